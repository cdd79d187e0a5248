"""``hamn create|show|list|update|delete|check-name|show-usage``: ``az acr`` on registries.

These are top-level commands (``az acr create`` is ``hamn create``), so they are
collected in a group that is never shown itself: :func:`hamn.cli.commands.register`
adds each of its commands to ``hamn``. Results are the management API's
Registry objects (az's flattened ARM shape); ``list`` prints an array and
``show-usage`` the ``{"value": [...]}`` object, as az does.
"""

from __future__ import annotations

from typing import Any

import click

from hamn.cli.commands.api import (
    BOOLEAN,
    Decorator,
    api_path,
    call,
    canonical,
    choice,
    refusals,
    registry_not_found,
    registry_path,
    values,
)
from hamn.cli.context import (
    HamnGroup,
    Invocation,
    command,
    registry_name,
    registry_option,
    required,
    server_errors,
)
from hamn.cli.tables import REGISTRY, USAGE

SKUS = ("Basic", "Standard", "Premium")


@click.group("registry", cls=HamnGroup)
def registry_commands() -> None:
    """Registries (its commands are added to ``hamn`` itself)."""


def _new_name(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    return registry_name(ctx, required(ctx, param, value))


def _admin_option(help_text: str) -> Decorator:
    return click.option("--admin-enabled", type=BOOLEAN, default=None, help=help_text)


def _anonymous_option(help_text: str) -> Decorator:
    return click.option("--anonymous-pull-enabled", type=BOOLEAN, default=None, help=help_text)


def _settings(
    sku: str | None, admin_enabled: bool | None, anonymous_pull_enabled: bool | None
) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if sku is not None:
        body["sku"] = canonical(sku, *SKUS)
    if admin_enabled is not None:
        body["adminUserEnabled"] = admin_enabled
    if anonymous_pull_enabled is not None:
        body["anonymousPullEnabled"] = anonymous_pull_enabled
    return body


@command(registry_commands, "create", table=REGISTRY)
@click.option(
    "-n",
    "--name",
    "name",
    callback=_new_name,
    metavar="NAME",
    help="The name of the new registry: 5-50 letters and digits.",
)
@click.option(
    "--sku",
    type=choice(*SKUS),
    callback=required,
    help="The service tier; it sets the included storage (10, 100 or 500 GiB).",
)
@_admin_option("Enable the admin user (username = registry name, two passwords).")
@_anonymous_option("Let anyone pull from the registry without signing in.")
def create(
    inv: Invocation,
    name: str,
    sku: str,
    admin_enabled: bool | None,
    anonymous_pull_enabled: bool | None,
) -> Any:
    """Create a registry."""
    body = {"name": name, **_settings(sku, admin_enabled, anonymous_pull_enabled)}
    with refusals(
        conflict=f"A registry named '{name}' already exists (names are unique whatever their "
        "case); choose another name ('hamn check-name -n NAME' tells whether one is free)"
    ):
        return call(inv.client(""), "POST", api_path("registries"), body)


@command(registry_commands, "show", table=REGISTRY)
@registry_option("-n", "--name")
def show(inv: Invocation, registry: str) -> Any:
    """Show a registry: its login server, SKU, admin user and policies."""
    with server_errors(not_found=registry_not_found(registry)):
        return inv.client(registry).get_json(registry_path(registry))


@command(registry_commands, "list", table=REGISTRY)
def list_registries(inv: Invocation) -> list[Any]:
    """List the registries you can see (those you hold Reader or better on)."""
    with server_errors():
        return values(inv.client("").get_json(api_path("registries")))


@command(registry_commands, "update", table=REGISTRY)
@registry_option("-n", "--name")
@click.option("--sku", type=choice(*SKUS), help="Move to another service tier.")
@_admin_option("Enable or disable the admin user.")
@_anonymous_option("Allow or forbid pulls without signing in.")
def update(
    inv: Invocation,
    registry: str,
    sku: str | None,
    admin_enabled: bool | None,
    anonymous_pull_enabled: bool | None,
) -> Any:
    """Change a registry's SKU, admin user or anonymous pull."""
    body = _settings(sku, admin_enabled, anonymous_pull_enabled)
    with server_errors(not_found=registry_not_found(registry)):
        return call(inv.client(registry), "PATCH", registry_path(registry), body)


@command(registry_commands, "delete")
@registry_option("-n", "--name")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt for confirmation.")
def delete(inv: Invocation, registry: str, yes: bool) -> None:
    """Delete a registry with everything in it."""
    inv.confirm(
        f"Are you sure you want to delete the registry '{registry}' and every repository, "
        "token and scope map in it?",
        yes,
    )
    with server_errors(not_found=registry_not_found(registry)):
        inv.client(registry).delete(registry_path(registry))


@command(registry_commands, "check-name")
@click.option(
    "-n", "--name", "name", callback=required, metavar="NAME", help="The registry name to check."
)
def check_name(inv: Invocation, name: str) -> Any:
    """Tell whether a registry name is valid and free: ``{nameAvailable, reason, message}``."""
    with server_errors():
        return call(inv.client(""), "POST", api_path("checkNameAvailability"), {"name": name})


@command(registry_commands, "show-usage", table=USAGE)
@registry_option("-n", "--name")
def show_usage(inv: Invocation, registry: str) -> Any:
    """Show a registry's storage against its SKU's limit, and its counts."""
    with server_errors(not_found=registry_not_found(registry)):
        return inv.client(registry).get_json(registry_path(registry, "usages"))
