"""``hamn scope-map ...``: ``az acr scope-map``, what a token may do in which repositories.

Actions are stored as ``repositories/<repo>/<action>`` (``<repo>`` may be a
wildcard such as ``samples/*``); ``--repository REPO ACTION [ACTION ...]`` is
how they are given, as in az.
"""

from __future__ import annotations

from typing import Any

import click

from hamn.cli.commands.api import (
    MultiValueGroup,
    call,
    list_in_registry,
    refusals,
    registry_not_found,
    registry_path,
    repository_actions,
    repository_option,
)
from hamn.cli.context import (
    Invocation,
    command,
    registry_option,
    required,
    server_errors,
    usage_error,
)
from hamn.cli.tables import SCOPE_MAP


@click.group("scope-map", cls=MultiValueGroup)
def scope_map() -> None:
    """Scope maps: the repositories and actions a token is allowed."""


_name_option = click.option(
    "-n", "--name", "name", callback=required, metavar="NAME", help="The name of the scope map."
)
_description_option = click.option("--description", metavar="TEXT", help="What it is for.")


def scope_map_not_found(registry: str, name: str) -> str:
    """What to say when a scope map (or its registry) is not there."""
    return (
        f"Scope map '{name}' was not found in registry '{registry}', or you cannot see that "
        f"registry. 'hamn scope-map list -r {registry}' lists its scope maps."
    )


def _path(registry: str, name: str) -> str:
    return registry_path(registry, "scopeMaps", name)


@command(scope_map, "create", table=SCOPE_MAP)
@_name_option
@registry_option("-r", "--registry")
@repository_option("--repository", help_text="A repository and the actions to allow in it.")
@_description_option
def create(
    inv: Invocation,
    name: str,
    registry: str,
    repository: tuple[str, ...],
    description: str | None,
) -> Any:
    """Create a scope map."""
    if not repository:
        raise usage_error("the following arguments are required: --repository REPO ACTION...")
    body: dict[str, Any] = {"name": name, "actions": repository_actions(repository)}
    if description is not None:
        body["description"] = description
    with refusals(
        not_found=registry_not_found(registry),
        conflict=f"Scope map '{name}' already exists in registry '{registry}'; change it "
        f"with 'hamn scope-map update -n {name} -r {registry}'",
    ):
        return call(inv.client(registry), "POST", registry_path(registry, "scopeMaps"), body)


@command(scope_map, "list", table=SCOPE_MAP)
@registry_option("-r", "--registry")
def list_scope_maps(inv: Invocation, registry: str) -> list[Any]:
    """List a registry's scope maps."""
    return list_in_registry(inv, registry, "scopeMaps")


@command(scope_map, "show", table=SCOPE_MAP)
@_name_option
@registry_option("-r", "--registry")
def show(inv: Invocation, name: str, registry: str) -> Any:
    """Show a scope map and its actions."""
    with server_errors(not_found=scope_map_not_found(registry, name)):
        return inv.client(registry).get_json(_path(registry, name))


@command(scope_map, "update", table=SCOPE_MAP)
@_name_option
@registry_option("-r", "--registry")
@repository_option("--add-repository", help_text="A repository and actions to allow.")
@repository_option(
    "--remove-repository", "--remove-repo", help_text="A repository and actions to take away."
)
@_description_option
def update(
    inv: Invocation,
    name: str,
    registry: str,
    add_repository: tuple[str, ...],
    remove_repository: tuple[str, ...],
    description: str | None,
) -> Any:
    """Add or remove actions, or change the description."""
    if not (add_repository or remove_repository or description is not None):
        raise usage_error("give --add-repository, --remove-repository or --description.")
    added = repository_actions(add_repository, "--add-repository")
    removed = repository_actions(remove_repository, "--remove-repository")
    client = inv.client(registry)
    body: dict[str, Any] = {}
    if description is not None:
        body["description"] = description
    with server_errors(not_found=scope_map_not_found(registry, name)):
        if added or removed:
            current = client.get_json(_path(registry, name))
            actions = [str(a) for a in (current.get("actions") or [])]
            for action in removed:
                if action not in actions:
                    inv.warn(f"'{action}' is not in scope map '{name}'; nothing to remove.")
            actions = [a for a in actions if a not in removed]
            actions += [a for a in added if a not in actions]
            body["actions"] = actions
        return call(client, "PATCH", _path(registry, name), body)


@command(scope_map, "delete")
@_name_option
@registry_option("-r", "--registry")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt for confirmation.")
def delete(inv: Invocation, name: str, registry: str, yes: bool) -> None:
    """Delete a scope map (the server refuses while a token uses it)."""
    inv.confirm(f"Are you sure you want to delete the scope map '{name}'?", yes)
    with server_errors(not_found=scope_map_not_found(registry, name)):
        inv.client(registry).delete(_path(registry, name))
