"""The soft delete policy's management API against a live ``hamn serve``
(``/api/registries/{r}/policies/softdelete``): az's shape, partial updates, strict
bodies, the registry's ``policies.softDeletePolicy``, and the refusal (409 IN_USE) to
enable soft delete and retention together, as ACR refuses it."""

from __future__ import annotations

from typing import Any

from api_support import connect, expect_error, expect_status

POLICY = "/api/registries/local/policies/softdelete"
RETENTION = "/api/registries/local/policies/retention"


def test_soft_delete_policy_show_update_and_validation(start_server: Any) -> None:
    reg = start_server(env={"HAMN_GC_INTERVAL": "0"})
    with connect(reg) as client:
        shown = expect_status(client.get(POLICY), 200).json()
        assert set(shown) == {"retentionDays", "lastUpdatedTime", "status"}
        assert (shown["retentionDays"], shown["status"]) == (7, "disabled")
        changed = expect_status(client.patch(POLICY, json={"status": "enabled", "days": 30}), 200)
        assert (changed.json()["retentionDays"], changed.json()["status"]) == (30, "enabled")
        assert changed.json()["lastUpdatedTime"] >= shown["lastUpdatedTime"]
        kept = expect_status(client.patch(POLICY, json={"days": 1}), 200).json()
        assert (kept["retentionDays"], kept["status"]) == (1, "enabled")
        assert expect_status(client.get(POLICY), 200).json() == kept
        registry = expect_status(client.get("/api/registries/local"), 200).json()
        assert registry["policies"]["softDeletePolicy"] == kept
        for body in ({"days": 0}, {"days": 91}, {"days": "3"}, {"status": "on"}, {"type": "x"}):
            expect_error(client.patch(POLICY, json=body), 400, "BODY_INVALID")
        expect_error(client.get("/api/registries/nosuchreg/policies/softdelete"), 404, "NOT_FOUND")


def test_soft_delete_and_retention_are_not_enabled_together(start_server: Any) -> None:
    reg = start_server(env={"HAMN_GC_INTERVAL": "0"})
    with connect(reg) as client:
        expect_status(client.patch(POLICY, json={"status": "enabled"}), 200)
        error = expect_error(client.patch(RETENTION, json={"status": "enabled"}), 409, "IN_USE")
        assert "hamn config soft-delete update -r local --status disabled" in error["message"]
        assert expect_status(client.get(RETENTION), 200).json()["status"] == "disabled"
        expect_status(client.patch(POLICY, json={"status": "disabled"}), 200)
        expect_status(client.patch(RETENTION, json={"status": "enabled", "days": 3}), 200)
        error = expect_error(client.patch(POLICY, json={"status": "enabled"}), 409, "IN_USE")
        assert "hamn config retention update -r local --status disabled" in error["message"]
        assert expect_status(client.get(POLICY), 200).json()["status"] == "disabled"
