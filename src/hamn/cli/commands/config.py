"""``hamn config retention show|update``: ``az acr config retention``, the untagged-manifest
retention policy of a registry.

Enabled, garbage collection (``hamn serve``'s, or ``hamn gc``) deletes the untagged
manifests nothing needs once they have been untagged for ``--days`` (0: at the next
collection); only manifests untagged after it was enabled count, and locked ones
stay, as in ACR. Both commands print az's ``{"days", "lastUpdatedTime", "status"}``.
"""

from __future__ import annotations

from typing import Any

import click

from hamn.cli.commands.api import call, choice, registry_not_found, registry_path
from hamn.cli.context import (
    HamnGroup,
    Invocation,
    command,
    registry_option,
    required,
    server_errors,
)
from hamn.cli.tables import RETENTION

#: ``--type``: the one kind of retention ACR has.
UNTAGGED_MANIFESTS = "UntaggedManifests"


@click.group("config", cls=HamnGroup)
def config() -> None:
    """Registry policies."""


@config.group("retention", cls=HamnGroup)
def retention() -> None:
    """The retention policy: delete untagged manifests after some days."""


def _policy_type(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    value = required(ctx, param, value)
    if value.lower() != UNTAGGED_MANIFESTS.lower():
        raise click.BadParameter(
            f"{value!r} is not a retention type; the only one is {UNTAGGED_MANIFESTS}",
            ctx=ctx,
            param=param,
        )
    return UNTAGGED_MANIFESTS


def _path(registry: str) -> str:
    return registry_path(registry, "policies", "retention")


@command(retention, "show", table=RETENTION)
@registry_option("-r", "--registry")
def show(inv: Invocation, registry: str) -> Any:
    """Show the retention policy of a registry."""
    with server_errors(not_found=registry_not_found(registry)):
        return inv.client(registry).get_json(_path(registry))


@command(retention, "update", table=RETENTION)
@registry_option("-r", "--registry")
@click.option(
    "--status",
    type=choice("enabled", "disabled"),
    help="Enable or disable the policy; enabling it starts the clock: only manifests "
    "untagged afterwards are deleted.",
)
@click.option(
    "--days",
    type=click.IntRange(0, 365),
    help="Days an untagged manifest is kept, 0 to 365 (0: deleted at the next garbage "
    "collection). A new policy keeps them 7 days; left out, the days stay as they are.",
)
@click.option(
    "--type",
    "policy_type",
    metavar="UntaggedManifests",
    callback=_policy_type,
    help="What the policy retains: UntaggedManifests (the only kind).",
)
def update(
    inv: Invocation, registry: str, status: str | None, days: int | None, policy_type: str
) -> Any:
    """Change the retention policy of a registry."""
    body: dict[str, Any] = {"type": UNTAGGED_MANIFESTS}
    if status is not None:
        body["status"] = status.lower()
    if days is not None:
        body["days"] = days
    with server_errors(not_found=registry_not_found(registry)):
        return call(inv.client(registry), "PATCH", _path(registry), body)
