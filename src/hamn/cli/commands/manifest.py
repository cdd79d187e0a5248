"""``hamn manifest ...``: ``az acr manifest``. Here ``-r/--registry`` picks the registry,
``-n/--name`` is the repository, and a fully qualified repository
(``myregistry.<domain>/hello-world``) may be given instead of both.
"""

from __future__ import annotations

from typing import Any

import click

from hamn.cli.commands.repository import (
    order_params,
    orderby_option,
    repo_arg,
    repository_not_found,
    top_option,
)
from hamn.cli.context import (
    HamnGroup,
    Invocation,
    command,
    registry_option,
    server_errors,
    usage_error,
)
from hamn.cli.references import parse_repository_id

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
