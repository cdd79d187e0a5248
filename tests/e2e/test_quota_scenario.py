"""The seed's quota scenario (issue 4 point 2): usage follows pushes and deletes at once.

An image whose 1 GiB layer of random bytes nothing else shares is built with buildah
(``RUN dd if=/dev/urandom ...`` on a busybox base, chroot isolation, no network) and
pushed; ``hamn show-usage`` rises by that layer; ``hamn repository delete --image``
brings it back down, with no wait (ACR: "quota usage does not go down" for hours).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import httpx
from e2e_support import StorageTool, busybox_bytes
from test_cli_repository import Hamn

GIB = 1024**3
CONTAINERFILE = """\
FROM scratch
COPY busybox /bin/busybox
RUN ["/bin/busybox", "dd", "if=/dev/urandom", "of=/random.bin", "bs=1048576", "count=1024"]
"""


def size_of(hamn: Hamn, registry: str) -> int:
    usage = hamn.json("show-usage", "-n", registry)["value"]
    return int(next(u["currentValue"] for u in usage if u["name"] == "Size"))


def test_a_1_gib_layer_raises_usage_and_its_delete_lowers_it_at_once(
    live_registry: Any, buildah: StorageTool, tmp_path: Path
) -> None:
    hamn = Hamn.on(live_registry)
    registry = f"quota{uuid.uuid4().hex[:10]}"
    with httpx.Client(base_url=live_registry.url, auth=live_registry.auth, timeout=60) as api:
        created = api.post("/api/registries", json={"name": registry, "sku": "Basic"})
        assert created.status_code == 201, created.text
    ctx = tmp_path / "context"
    ctx.mkdir()
    (ctx / "busybox").write_bytes(busybox_bytes())
    (ctx / "busybox").chmod(0o755)
    (ctx / "Containerfile").write_text(CONTAINERFILE)
    local = f"localhost/e2e-quota-{uuid.uuid4().hex[:8]}:1"
    buildah("build", "--isolation", "chroot", "-f", str(ctx / "Containerfile"), "-t", local,
            str(ctx), timeout=600)  # fmt: skip

    before = size_of(hamn, registry)
    assert before == 0
    # Uncompressed layers: the registry stores (and counts) the bytes the build made.
    remote = f"docker://{live_registry.host}/{registry}/big:v1"
    buildah("push", *buildah.remote, "--signature-policy", buildah.policy,
            "--disable-compression", local, remote, timeout=600)  # fmt: skip
    pushed = size_of(hamn, registry)
    assert pushed - before >= GIB, (before, pushed)
    assert pushed - before < GIB + 16 * 1024**2  # the random layer, busybox, the config

    deleted = hamn("repository", "delete", "-n", registry, "--image", "big:v1", "-y")
    assert deleted.code == 0, deleted
    # At once: the very next question already sees it.
    assert size_of(hamn, registry) == before
