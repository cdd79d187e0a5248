"""``hamn manifest ...``: ``az acr manifest``. Here ``-r/--registry`` picks the registry,
``-n/--name`` is the repository, and a fully qualified repository
(``myregistry.<domain>/hello-world``) may be given instead of both.

Soft delete (``hamn config soft-delete``): ``list-deleted`` and ``list-deleted-tags``
give the deleted manifests and tags of a repository with ``deletedTime`` and
``expiresAfter`` (when they go for good); ``restore`` brings a deleted manifest back,
with a tag it had, through ACR's ``POST /acr/v1/_deleted/<repo>/_manifests/<digest>``.
"""

from __future__ import annotations

from typing import Any

import click

from hamn.cli.client import RegistryClient
from hamn.cli.commands.api import call
from hamn.cli.commands.repository import (
    deleted_errors,
    deleted_path,
    image_arg,
    order_params,
    orderby_option,
    repo_arg,
    repository_not_found,
    top_option,
    warn_if_soft_delete_disabled,
)
from hamn.cli.context import (
    HamnGroup,
    Invocation,
    command,
    registry_option,
    required,
    server_errors,
    usage_error,
)
from hamn.cli.references import parse_repository_id
from hamn.cli.tables import DELETED_MANIFEST, DELETED_TAG

_BAD_REPOSITORY = (
    "give either a fully qualified repository such as 'myregistry.localhost/hello-world' "
    "as a positional argument, or '-r myregistry -n hello-world'"
)


@click.group("manifest", cls=HamnGroup)
def manifest() -> None:
    """Manifests in a repository and their metadata."""


def registry_and_repository(
    repo_id: str | None, registry: str | None, repository: str | None
) -> tuple[str, str]:
    """Where a manifest command points: ``REPO_ID`` or ``-r`` with ``-n``."""
    if (repo_id and repository) or (not repo_id and not (registry and repository)):
        raise usage_error(_BAD_REPOSITORY)
    if repo_id:
        try:
            return parse_repository_id(repo_id)
        except ValueError as exc:
            raise usage_error(str(exc)) from None
    assert registry is not None and repository is not None
    return registry, repo_arg(repository)


@command(manifest, "list-metadata")
@click.argument("repo_id", required=False, metavar="[REPO_ID]")
@registry_option("-r", "--registry", required=False)
@click.option("-n", "--name", "repository", metavar="REPOSITORY", help="The repository.")
@top_option
@orderby_option
def list_metadata(
    inv: Invocation,
    repo_id: str | None,
    registry: str | None,
    repository: str | None,
    top: int | None,
    orderby: str | None,
) -> list[Any]:
    """List the metadata of a repository's manifests: size, platform, tags, attributes.

    REPO_ID is a fully qualified repository, such as myregistry.localhost/hello-world.
    """
    registry, repo = registry_and_repository(repo_id, registry, repository)
    client = inv.client(registry)
    with server_errors(not_found=repository_not_found(registry, repo)):
        return client.list_all(
            client.acr_path(repo, "_manifests"), "manifests", top=top, params=order_params(orderby)
        )


# ----------------------------------------------------------------------- soft delete


def _nothing_deleted(registry: str, repo: str) -> str:
    return (
        f"Repository '{repo}' has no deleted manifests in registry '{registry}'. "
        f"'hamn repository list-deleted -n {registry}' lists the repositories that have some."
    )


def _split_tag(value: str) -> tuple[str, str | None]:
    """``REPO[:TAG]`` as (repository, tag or None); a repository name holds no ``:``."""
    name, sep, tag = value.partition(":")
    if sep and not tag:
        raise usage_error(f"'{value}' has an empty tag; give 'repository:tag' or 'repository'")
    return repo_arg(name), (tag if sep else None)


@command(manifest, "list-deleted", table=DELETED_MANIFEST)
@registry_option("-r", "--registry")
@click.option(
    "-n", "--name", "repository", callback=required, metavar="REPOSITORY",
    help="The repository.",
)  # fmt: skip
@top_option
def list_deleted(inv: Invocation, registry: str, repository: str, top: int | None) -> list[Any]:
    """List the soft-deleted manifests of a repository and when each goes for good."""
    repo = repo_arg(repository)
    client = inv.client(registry)
    with deleted_errors(registry, _nothing_deleted(registry, repo), inv, client):
        manifests = client.list_all(deleted_path(client, repo, "_manifests"), "manifests", top=top)
    if not manifests:
        warn_if_soft_delete_disabled(inv, client, registry)
    return manifests


@command(manifest, "list-deleted-tags", table=DELETED_TAG)
@registry_option("-r", "--registry")
@click.option(
    "-n", "--name", "image", callback=required, metavar="REPOSITORY[:TAG]",
    help="The repository, or 'repository:tag' for the deleted tags of that name only.",
)  # fmt: skip
@top_option
def list_deleted_tags(inv: Invocation, registry: str, image: str, top: int | None) -> list[Any]:
    """List the soft-deleted tags of a repository (of one name with REPOSITORY:TAG)."""
    repo, tag = _split_tag(image)
    client = inv.client(registry)
    with deleted_errors(registry, _nothing_deleted(registry, repo), inv, client):
        tags = client.list_all(deleted_path(client, repo, "_tags"), "tags", top=None)
    if tag is not None:
        tags = [t for t in tags if isinstance(t, dict) and t.get("name") == tag]
    if not tags:
        warn_if_soft_delete_disabled(inv, client, registry)
    return tags if top is None else tags[:top]


def _deleted_digest(
    inv: Invocation,
    client: RegistryClient,
    registry: str,
    repo: str,
    tag: str,
    digest: str | None,
) -> str:
    """The deleted manifest ``repo:tag`` points to (``--digest`` picks among several)."""
    with deleted_errors(registry, _nothing_deleted(registry, repo), inv, client):
        tags = client.list_all(deleted_path(client, repo, "_tags"), "tags")
    digests = sorted(
        {str(t.get("digest")) for t in tags if isinstance(t, dict) and t.get("name") == tag}
    )
    if digest is not None:
        digests = [d for d in digests if d == digest]
    if not digests:
        raise usage_error(
            f"No deleted tag '{repo}:{tag}'"
            + (f" points to '{digest}'" if digest else "")
            + f" in registry '{registry}'. 'hamn manifest list-deleted-tags -r {registry} "
            f"-n {repo}:{tag}' lists them."
        )
    if len(digests) > 1:
        raise usage_error(
            f"The deleted tag '{repo}:{tag}' pointed to {len(digests)} manifests: "
            f"{', '.join(digests)}; choose one with --digest/-d."
        )
    return digests[0]


@command(manifest, "restore")
@registry_option("-r", "--registry")
@click.option(
    "-n", "--name", "image", callback=required, metavar="REPOSITORY@DIGEST|REPOSITORY:TAG",
    help="The deleted manifest: 'repository@digest', or 'repository:tag' for the one a "
    "deleted tag pointed to.",
)  # fmt: skip
@click.option(
    "-t", "--tag", metavar="TAG",
    help="The tag to put back on it (default: the tag of --name, if it has one).",
)  # fmt: skip
@click.option(
    "-d", "--digest", metavar="DIGEST",
    help="With 'repository:tag': which deleted manifest the tag pointed to, if several.",
)  # fmt: skip
@click.option("-y", "--yes", is_flag=True, help="Do not prompt for confirmation.")
def restore(
    inv: Invocation,
    registry: str,
    image: str,
    tag: str | None,
    digest: str | None,
    yes: bool,
) -> Any:
    """Restore a soft-deleted manifest, and a tag it had, before it expires."""
    ref = image_arg(image)
    client = inv.client(registry)
    if ref.digest is not None:
        if digest is not None and digest != ref.digest:
            raise usage_error(f"--digest {digest} differs from the digest in --name {image}")
        target = ref.digest
    else:
        assert ref.tag is not None
        target = _deleted_digest(inv, client, registry, ref.repository, ref.tag, digest)
        tag = tag or ref.tag
    what = f"the manifest '{ref.repository}@{target}'" + (f" with tag '{tag}'" if tag else "")
    inv.confirm(f"Are you sure you want to restore {what}?", yes)
    not_found = (
        f"'{ref.repository}@{target}' is not among the deleted manifests of registry "
        f"'{registry}' (restored already, or expired). 'hamn manifest list-deleted "
        f"-r {registry} -n {ref.repository}' lists them."
    )
    with deleted_errors(registry, not_found, inv, client):
        return call(
            client,
            "POST",
            deleted_path(client, ref.repository, "_manifests", target),
            {"tag": tag} if tag else None,
        )
