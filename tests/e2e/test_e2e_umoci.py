"""umoci round trip: pull with skopeo into an OCI layout, unpack, change the
filesystem and the config, repack, push back, pull again and see the change."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from e2e_support import (
    BUSYBOX,
    MARKER_PATH,
    MARKER_TEXT,
    CommandFailed,
    DirImage,
    Layout,
    Skopeo,
    assert_unauthorized,
    layer_files,
    layer_tar_bytes,
    need,
    run,
    sha256_digest,
)


def test_unpack_modify_repack_push_pull(
    live_registry: Any, skopeo: Skopeo, push_base: Callable[..., tuple[str, str]],
    busybox_layout: Layout, client_env: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    umoci = need("umoci")
    repo, base_digest = push_base("umoci")
    remote = f"docker://{live_registry.host}/{repo}"
    layout = Layout(tmp_path / "layout")
    assert skopeo.copy(f"{remote}:v1", layout.ref("v1")) == base_digest

    bundle = tmp_path / "bundle"
    run([umoci, "unpack", "--image", layout.image("v1"), bundle], env=client_env)
    rootfs = bundle / "rootfs"
    assert (rootfs / "bin" / "busybox").read_bytes() == BUSYBOX.read_bytes()
    assert (rootfs / MARKER_PATH).read_text() == MARKER_TEXT
    added = f"added by umoci {uuid.uuid4()}\n"
    (rootfs / "etc" / "hamn-umoci").write_text(added)
    (rootfs / MARKER_PATH).unlink()
    run([umoci, "repack", "--image", layout.image("v2"), bundle], env=client_env)
    run([umoci, "config", "--image", layout.image("v2"),
         "--config.label", "hamn.e2e=modified"], env=client_env)  # fmt: skip
    modified = layout.manifest_digest("v2")

    assert skopeo.copy(layout.ref("v2"), f"{remote}:v2") == modified

    # the registry has the new manifest: the old layer plus one with the change
    info = skopeo.inspect(f"{remote}:v2")
    assert info["Digest"] == modified
    assert info["Labels"]["hamn.e2e"] == "modified"
    assert sorted(info["RepoTags"]) == ["v1", "v2"]
    pulled = DirImage(tmp_path / "pulled")
    assert skopeo.copy(f"{remote}:v2", f"dir:{pulled.path}") == modified
    pulled.verify_blobs()
    layers = [ly["digest"] for ly in pulled.manifest()["layers"]]
    base_layers = [ly["digest"] for ly in busybox_layout.manifest("latest")["layers"]]
    assert layers[: len(base_layers)] == base_layers
    assert len(layers) == len(base_layers) + 1
    top = layer_files(pulled.blob(layers[-1]))
    assert top["etc/hamn-umoci"].decode() == added
    assert "etc/.wh.hamn-e2e" in top, f"no whiteout for the removed file in {sorted(top)}"
    config = json.loads(pulled.blob(pulled.manifest()["config"]["digest"]))
    assert config["rootfs"]["diff_ids"][-1] == sha256_digest(
        layer_tar_bytes(pulled.blob(layers[-1]))
    )

    # and a fresh unpack of what the registry serves shows the change applied
    again = Layout(tmp_path / "again")
    assert skopeo.copy(f"{remote}:v2", again.ref("v2")) == modified
    bundle2 = tmp_path / "bundle2"
    run([umoci, "unpack", "--image", again.image("v2"), bundle2], env=client_env)
    rootfs2 = bundle2 / "rootfs"
    assert (rootfs2 / "etc" / "hamn-umoci").read_text() == added
    assert not (rootfs2 / MARKER_PATH).exists()
    assert (rootfs2 / "bin" / "busybox").read_bytes() == BUSYBOX.read_bytes()
    # the original tag is untouched
    assert skopeo.inspect(f"{remote}:v1")["Digest"] == base_digest


@pytest.mark.usefixtures("auth_enforced")
def test_image_fetched_without_credentials_is_refused(
    live_registry: Any, skopeo: Skopeo, push_base: Callable[..., tuple[str, str]],
    client_env: dict[str, str], tmp_path: Path,
) -> None:  # fmt: skip
    """umoci reads images through skopeo: with no credentials (anonymous pull off) the
    fetch into a layout fails, saying unauthorized, and there is nothing to unpack."""
    umoci = need("umoci")
    repo, _ = push_base("umoci-anon")
    layout = Layout(tmp_path / "layout")
    with pytest.raises(CommandFailed) as failed:
        skopeo.anonymous().copy(f"docker://{live_registry.host}/{repo}:v1", layout.ref("v1"))
    assert failed.value.result is not None, failed.value
    assert_unauthorized(failed.value.result.stderr)
    unpack = run([umoci, "unpack", "--image", layout.image("v1"), tmp_path / "bundle"],
                 env=client_env, check=False)  # fmt: skip
    assert unpack.returncode != 0, unpack
