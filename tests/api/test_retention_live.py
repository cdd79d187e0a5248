"""The untagged-manifest retention policy against a live ``hamn serve``: its management
API (``/api/registries/{r}/policies/retention``), the server's periodic collection
applying it, and ``hamn gc`` reporting and respecting ``--dry-run``.

As in ACR, only manifests untagged after the policy was enabled count; tagged ones
stay; ``days 0`` deletes at the next collection.
"""

from __future__ import annotations

import json
import time
from typing import Any

from api_support import connect, expect_error, expect_status, push_image
from test_gc import hamn_gc

POLICY = "/api/registries/local/policies/retention"


def test_policy_show_update_and_validation(start_server: Any) -> None:
    reg = start_server(env={"HAMN_GC_INTERVAL": "0"})
    with connect(reg) as client:
        shown = expect_status(client.get(POLICY), 200).json()
        assert set(shown) == {"days", "lastUpdatedTime", "status"}
        assert (shown["days"], shown["status"]) == (7, "disabled")
        changed = expect_status(
            client.patch(
                POLICY, json={"status": "enabled", "days": 3, "type": "UntaggedManifests"}
            ),
            200,
        ).json()
        assert (changed["days"], changed["status"]) == (3, "enabled")
        assert changed["lastUpdatedTime"] >= shown["lastUpdatedTime"]
        # Only what is given changes; the registry shows the same policy.
        kept = expect_status(client.patch(POLICY, json={"days": 0}), 200).json()
        assert (kept["days"], kept["status"]) == (0, "enabled")
        registry = expect_status(client.get("/api/registries/local"), 200).json()
        assert registry["policies"]["retentionPolicy"] == kept
        for body in ({"days": 366}, {"days": -1}, {"days": "3"}, {"status": "on"}, {"type": "x"}):
            expect_error(client.patch(POLICY, json=body), 400, "BODY_INVALID")
        expect_error(client.get("/api/registries/nosuchreg/policies/retention"), 404, "NOT_FOUND")


def test_days_zero_deletes_untagged_on_the_next_collection(start_server: Any) -> None:
    reg = start_server(env={"HAMN_GC_INTERVAL": "1"})
    with connect(reg) as client:
        before = push_image(client, "app", None)  # untagged before the policy: stays
        expect_status(client.patch(POLICY, json={"status": "enabled", "days": 0}), 200)
        tagged = push_image(client, "app", "v1")
        after = push_image(client, "app", None)
        untagged = push_image(client, "app", "v2")
        expect_status(client.delete("/v2/app/manifests/v2"), 202)  # untagged now
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            gone = [
                client.get(f"/v2/app/manifests/{image.digest}").status_code == 404
                for image in (after, untagged)
            ]
            if all(gone):
                break
            time.sleep(0.5)
        else:
            raise AssertionError("retention did not delete within 30 s:\n" + reg.log()[-3000:])
        expect_status(client.get(f"/v2/app/manifests/{before.digest}"), 200)
        expect_status(client.get("/v2/app/manifests/v1"), 200)
        expect_status(client.get(f"/v2/app/manifests/{tagged.digest}"), 200)


def test_gc_command_applies_the_policy_and_respects_dry_run(start_server: Any) -> None:
    reg = start_server(env={"HAMN_GC_INTERVAL": "0"})
    with connect(reg) as client:
        expect_status(client.patch(POLICY, json={"status": "enabled", "days": 0}), 200)
        loose = push_image(client, "app", None)
        push_image(client, "app", "v1")
        dry = hamn_gc(reg.data_dir, "--dry-run")
        assert dry.returncode == 0, dry.stderr
        report = json.loads(dry.stdout)
        assert report["removed"]["untaggedManifests"] == 1
        assert report["untaggedManifests"] == [f"local/app@{loose.digest}"]
        expect_status(client.get(f"/v2/app/manifests/{loose.digest}"), 200)
        done = hamn_gc(reg.data_dir)
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["removed"]["untaggedManifests"] == 1
        assert client.get(f"/v2/app/manifests/{loose.digest}").status_code == 404
        expect_status(client.get("/v2/app/manifests/v1"), 200)
        # Disabled: nothing more goes.
        expect_status(client.patch(POLICY, json={"status": "disabled"}), 200)
        later = push_image(client, "app", None)
        assert json.loads(hamn_gc(reg.data_dir).stdout)["removed"]["untaggedManifests"] == 0
        expect_status(client.get(f"/v2/app/manifests/{later.digest}"), 200)
