"""``hamn repository ...``: ``az acr repository`` over ACR's metadata API (``/acr/v1``).

Results have az's shapes: ``list`` and ``show-tags`` give names,
``show-manifests`` gives ``[{digest, tags, timestamp}]`` (``--detail``: the
server's full entries), ``show`` gives the repository, tag or manifest object,
``delete --repository`` gives what was deleted; ``delete --image`` and
``untag`` print nothing; ``update`` sends ACR's ``PATCH`` of the changeable
attributes (``deleteEnabled``, ``writeEnabled``, ``listEnabled``, ``readEnabled``);
``list-deleted`` gives the names of repositories with soft-deleted content
(``/acr/v1/_deleted/_catalog``, routed to the registry by its login server).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import click
import httpx

from hamn.cli.client import RegistryClient, RegistryError
from hamn.cli.commands.api import BOOLEAN, call, registry_not_found, registry_path
from hamn.cli.context import (
    HamnGroup,
    Invocation,
    command,
    describe,
    registry_option,
    required,
    server_errors,
    usage_error,
)
from hamn.cli.errors import CLIError
from hamn.cli.references import Image, parse_image, repository_name

#: ``--orderby`` values and what the metadata API calls them.
ORDERBY = {"time_asc": "timeasc", "time_desc": "timedesc"}

top_option = click.option(
    "--top",
    type=click.IntRange(min=0),
    help="Limit the number of items in the results.",
)
orderby_option = click.option(
    "--orderby",
    type=click.Choice(sorted(ORDERBY)),
    help="Order the items by time of last update (default: by name).",
)
detail_option = click.option(
    "--detail", is_flag=True, help="Show every attribute, not only the names."
)
repository_option = click.option(
    "--repository", callback=required, metavar="REPOSITORY", help="The name of the repository."
)


@click.group("repository", cls=HamnGroup)
def repository() -> None:
    """Repositories in a registry: list them, their tags and manifests; show, untag, delete."""


# ----------------------------------------------------------------------- helpers


def repo_arg(value: str) -> str:
    """A repository name from the command line, or a usage error."""
    try:
        return repository_name(value)
    except ValueError as exc:
        raise usage_error(str(exc)) from None


def image_arg(value: str, *, allow_digest: bool = True) -> Image:
    """An image (``repo:tag`` / ``repo@digest``) from the command line, or a usage error."""
    try:
        return parse_image(value, allow_digest=allow_digest)
    except ValueError as exc:
        raise usage_error(str(exc)) from None


def order_params(orderby: str | None) -> dict[str, str]:
    """The ``orderby`` query parameter for ``--orderby``."""
    return {"orderby": ORDERBY[orderby]} if orderby else {}


def repository_not_found(registry: str, repo: str) -> str:
    """What to say when a repository (or its registry) is not there."""
    return (
        f"Repository '{repo}' was not found in registry '{registry}'. "
        f"'hamn repository list -n {registry}' lists its repositories."
    )


def image_not_found(registry: str, image: Image) -> str:
    """What to say when a tag or manifest is not there."""
    lister = "show-tags" if image.tag else "show-manifests"
    return (
        f"Image '{image}' was not found in registry '{registry}'. "
        f"'hamn repository {lister} -n {registry} --repository {image.repository}' lists them."
    )


def one_of(repository: str | None, image: str | None) -> None:
    """Exactly one of ``--repository`` and ``--image``."""
    if bool(repository) == bool(image):
        raise usage_error("give exactly one of --image IMAGE or --repository REPOSITORY")


def catalog(client: RegistryClient, registry: str, top: int | None) -> list[str]:
    """Every repository name in the registry, paged: ``/v2/_catalog`` on the registry's
    login server, else ``/v2/<registry>/_catalog`` (the registry named in the path)."""
    path = "/v2/_catalog" if client.host_routed else f"/v2/{quote(registry, safe='')}/_catalog"
    names: list[str] = client.list_all(path, "repositories", top=top)
    return names


def _tag_digest(client: RegistryClient, registry: str, image: Image) -> str:
    assert image.tag is not None
    with server_errors(not_found=image_not_found(registry, image)):
        body = client.get_json(client.acr_path(image.repository, "_tags", image.tag))
    digest = (body.get("tag") or {}).get("digest") if isinstance(body, dict) else None
    if not digest:
        raise CLIError(f"Could not get the manifest digest for image '{image}'.")
    return str(digest)


def deleted_path(client: RegistryClient, repo: str, *parts: str) -> str:
    """``/acr/v1/_deleted/[<registry>/]<repo>/<parts...>``: a repository's soft-deleted
    content. The registry segment is there unless the server URL is the registry's login
    server, as for ``/v2/<registry>/...``."""
    segments = [] if client.host_routed else [quote(client.registry, safe="")]
    segments.append(quote(repo, safe="/"))
    segments.extend(quote(part, safe=":") for part in parts)
    return "/acr/v1/_deleted/" + "/".join(segments)


def deleted_catalog(client: RegistryClient, registry: str, top: int | None) -> list[str]:
    """The repositories holding deleted content: ``GET /acr/v1/_deleted/_catalog``.

    Like ``/acr/v1/_catalog``, it has no repository to carry the registry's name, so the
    server routes it by host. Unless the server URL already is the registry's login
    server, the request goes to the same server with ``Host:`` the login server, which
    the management API gives (READ on the registry).
    """
    headers: dict[str, str] = {}
    if not client.host_routed:
        with server_errors(
            not_found=f"{registry_not_found(registry)}; or run the command with --server "
            f"set to the registry's login server"
        ):
            info = client.get_json(registry_path(registry))
        login_server = info.get("loginServer") if isinstance(info, dict) else None
        if not isinstance(login_server, str) or not login_server:
            raise CLIError(f"The server did not give the login server of registry '{registry}'.")
        port = httpx.URL(client.server).port
        headers["Host"] = login_server if port is None else f"{login_server}:{port}"
    names: list[str] = client.list_all(
        "/acr/v1/_deleted/_catalog", "repositories", top=top, headers=headers
    )
    return names


def enable_soft_delete_hint(registry: str) -> str:
    """How to turn soft delete on, worded for a message."""
    return (
        f"enable it with 'hamn config soft-delete update -r {registry} --status enabled "
        "--days 7' (deleted content is kept only while it is enabled)"
    )


@contextmanager
def deleted_errors(
    registry: str, not_found: str, inv: Invocation, client: RegistryClient
) -> Iterator[None]:
    """Server refusals of ``/acr/v1/_deleted`` in words: a server without soft delete,
    soft delete not enabled in the registry, or nothing deleted there (``not_found``,
    with a warning first if that is because soft delete is off)."""
    try:
        yield
    except RegistryError as exc:
        if exc.status == 404:
            warn_if_soft_delete_disabled(inv, client, registry)
        text = (exc.message or "").lower()
        if exc.status == 405 or exc.code == "UNSUPPORTED":
            raise CLIError(
                f"{describe(exc)}. This server does not support soft delete; "
                "upgrade it to list or restore deleted content."
            ) from None
        if "soft delete" in text and ("not enabled" in text or "disabled" in text):
            raise CLIError(
                f"{describe(exc)}. Soft delete is not enabled in registry '{registry}': "
                f"{enable_soft_delete_hint(registry)}."
            ) from None
        raise CLIError(describe(exc, not_found)) from None


def warn_if_soft_delete_disabled(inv: Invocation, client: RegistryClient, registry: str) -> None:
    """Warn that nothing is kept when the registry's soft delete policy is off (checked
    only if the caller may read the policy; nothing is said otherwise)."""
    try:
        policy = client.get_json(
            "/api/registries/" + quote(registry, safe="") + "/policies/softdelete"
        )
    except RegistryError:
        return
    if isinstance(policy, dict) and policy.get("status") == "disabled":
        inv.warn(
            f"Soft delete is not enabled in registry '{registry}', so deleted manifests and "
            f"tags are not kept: {enable_soft_delete_hint(registry)}."
        )


# ---------------------------------------------------------------------- commands


@command(repository, "list")
@registry_option("-n", "--name")
@top_option
def list_repositories(inv: Invocation, registry: str, top: int | None) -> list[str]:
    """List the repositories in a registry."""
    client = inv.client(registry)
    with server_errors(not_found=f"Registry '{registry}' was not found on {client.server}."):
        return catalog(client, registry, top)


@command(repository, "list-deleted")
@registry_option("-n", "--name")
@top_option
def list_deleted(inv: Invocation, registry: str, top: int | None) -> list[str]:
    """List the repositories that hold soft-deleted manifests or tags."""
    client = inv.client(registry)
    with deleted_errors(
        registry, f"Registry '{registry}' was not found on {client.server}.", inv, client
    ):
        names = deleted_catalog(client, registry, top)
    if not names:
        warn_if_soft_delete_disabled(inv, client, registry)
    return names


@command(repository, "show-tags")
@registry_option("-n", "--name")
@repository_option
@top_option
@orderby_option
@detail_option
def show_tags(
    inv: Invocation,
    registry: str,
    repository: str,
    top: int | None,
    orderby: str | None,
    detail: bool,
) -> list[Any]:
    """Show the tags of a repository (names; --detail for every attribute)."""
    repo = repo_arg(repository)
    client = inv.client(registry)
    with server_errors(not_found=repository_not_found(registry, repo)):
        tags = client.list_all(
            client.acr_path(repo, "_tags"), "tags", top=top, params=order_params(orderby)
        )
    if detail:
        return tags
    return [tag["name"] for tag in tags]


@command(repository, "show-manifests")
@registry_option("-n", "--name")
@repository_option
@top_option
@orderby_option
@detail_option
def show_manifests(
    inv: Invocation,
    registry: str,
    repository: str,
    top: int | None,
    orderby: str | None,
    detail: bool,
) -> list[Any]:
    """Show the manifests of a repository: digest, tags and last update time."""
    repo = repo_arg(repository)
    client = inv.client(registry)
    with server_errors(not_found=repository_not_found(registry, repo)):
        manifests = client.list_all(
            client.acr_path(repo, "_manifests"),
            "manifests",
            top=top,
            params=order_params(orderby),
        )
    if detail:
        return manifests
    return [
        {
            "digest": item.get("digest", ""),
            "tags": item.get("tags") or [],
            "timestamp": item.get("lastUpdateTime", ""),
        }
        for item in manifests
    ]


@command(repository, "show")
@registry_option("-n", "--name")
@click.option("--repository", metavar="REPOSITORY", help="The name of the repository.")
@click.option(
    "-t",
    "--image",
    metavar="IMAGE",
    help="An image: 'repository:tag' or 'repository@digest'.",
)
def show(inv: Invocation, registry: str, repository: str | None, image: str | None) -> Any:
    """Show the attributes of a repository, or of one image in it."""
    one_of(repository, image)
    client = inv.client(registry)
    if repository:
        repo = repo_arg(repository)
        with server_errors(not_found=repository_not_found(registry, repo)):
            return client.get_json(client.acr_path(repo))
    assert image is not None
    ref = image_arg(image)
    with server_errors(not_found=image_not_found(registry, ref)):
        if ref.tag:
            body = client.get_json(client.acr_path(ref.repository, "_tags", ref.tag))
            return body.get("tag") if isinstance(body, dict) else body
        assert ref.digest is not None
        body = client.get_json(client.acr_path(ref.repository, "_manifests", ref.digest))
        return body.get("manifest") if isinstance(body, dict) else body


@command(repository, "delete")
@registry_option("-n", "--name")
@click.option("--repository", metavar="REPOSITORY", help="The repository to delete.")
@click.option(
    "-t",
    "--image",
    metavar="IMAGE",
    help="The image to delete: 'repository:tag' or 'repository@digest'. "
    "The manifest goes, with every tag that points to it.",
)
@click.option("-y", "--yes", is_flag=True, help="Do not prompt for confirmation.")
def delete(
    inv: Invocation, registry: str, repository: str | None, image: str | None, yes: bool
) -> Any:
    """Delete a repository, or a manifest and every tag that points to it."""
    one_of(repository, image)
    client = inv.client(registry)
    if repository:
        repo = repo_arg(repository)
        inv.confirm(
            f"Are you sure you want to delete the repository '{repo}' and all images under it?",
            yes,
        )
        with server_errors(not_found=repository_not_found(registry, repo)):
            return client.delete(client.acr_path(repo))
    assert image is not None
    ref = image_arg(image)
    digest = ref.digest or _tag_digest(client, registry, ref)
    by_digest = Image(ref.repository, digest=digest)
    with server_errors(not_found=image_not_found(registry, by_digest)):
        body = client.get_json(client.acr_path(ref.repository, "_manifests", digest))
    manifest = body.get("manifest") if isinstance(body, dict) else None
    tags = (manifest or {}).get("tags") or []
    message = f"This operation will delete the manifest '{digest}'"
    if tags:
        images = ", ".join(f"'{ref.repository}:{tag}'" for tag in tags)
        message += f" and all the following images: {images}"
    if yes:
        inv.warn(message)
    else:
        inv.confirm(f"{message}.\nAre you sure you want to continue?", False)
    with server_errors(not_found=image_not_found(registry, by_digest)):
        client.delete(client.v2_path(ref.repository, "manifests", digest))
    return None


@command(repository, "untag")
@registry_option("-n", "--name")
@click.option(
    "-t",
    "--image",
    callback=required,
    metavar="IMAGE",
    help="The tag to remove, as 'repository:tag'. The manifest and its layers stay.",
)
def untag(inv: Invocation, registry: str, image: str) -> None:
    """Remove a tag; the manifest it pointed to stays (delete it by digest)."""
    ref = image_arg(image, allow_digest=False)
    assert ref.tag is not None
    client = inv.client(registry)
    with server_errors(not_found=image_not_found(registry, ref)):
        client.delete(client.acr_path(ref.repository, "_tags", ref.tag))


#: ``repository update`` flags and the changeable attributes they set.
LOCK_FLAGS = {
    "delete_enabled": "deleteEnabled",
    "write_enabled": "writeEnabled",
    "list_enabled": "listEnabled",
    "read_enabled": "readEnabled",
}


@command(repository, "update")
@registry_option("-n", "--name")
@click.option("--repository", metavar="REPOSITORY", help="The repository to change.")
@click.option(
    "-t",
    "--image",
    metavar="IMAGE",
    help="The image to change: 'repository:tag' (the tag) or 'repository@digest' (the manifest).",
)
@click.option("--delete-enabled", type=BOOLEAN, help="Whether it may be deleted.")
@click.option(
    "--write-enabled", type=BOOLEAN, help="Whether it may be overwritten (false also: deleted)."
)
@click.option("--list-enabled", type=BOOLEAN, help="Whether it shows in lists.")
@click.option("--read-enabled", type=BOOLEAN, help="Whether it may be pulled.")
def update(
    inv: Invocation,
    registry: str,
    repository: str | None,
    image: str | None,
    **locks: bool | None,
) -> Any:
    """Lock or unlock a repository, a tag or a manifest (its changeable attributes)."""
    one_of(repository, image)
    body = {LOCK_FLAGS[flag]: value for flag, value in locks.items() if value is not None}
    if not body:
        raise usage_error(
            "give at least one of --delete-enabled, --write-enabled, --list-enabled, "
            "--read-enabled (true or false)."
        )
    client = inv.client(registry)
    if repository:
        repo = repo_arg(repository)
        with server_errors(not_found=repository_not_found(registry, repo)):
            return call(client, "PATCH", client.acr_path(repo), body)
    assert image is not None
    ref = image_arg(image)
    kind, reference = ("tag", ref.tag) if ref.tag else ("manifest", ref.digest)
    assert reference is not None
    path = client.acr_path(ref.repository, f"_{kind}s", reference)
    with server_errors(not_found=image_not_found(registry, ref)):
        answer = call(client, "PATCH", path, body)
    return answer.get(kind, answer) if isinstance(answer, dict) else answer
