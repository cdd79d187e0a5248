"""``hamn config retention|soft-delete show|update``: ``az acr config retention`` and
``az acr config soft-delete``, a registry's policies.

Retention enabled, garbage collection (a job worker's, or ``hamn gc``) deletes the
untagged manifests nothing needs once they have been untagged for ``--days`` (0: at the
next collection); only manifests untagged after it was enabled count, and locked ones
stay, as in ACR. Its commands print az's ``{"days", "lastUpdatedTime", "status"}``.

Soft delete enabled, deleted manifests and their tags stay listed (``hamn manifest
list-deleted``) and restorable (``hamn manifest restore``) for ``--days`` (1 to 90),
counting toward usage until purged. Its commands print az's ``{"retentionDays",
"status", "lastUpdatedTime"}``. As in ACR, the two policies cannot both be enabled:
the server refuses enabling one while the other is (409, saying which to disable).
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
from hamn.cli.tables import RETENTION, SOFT_DELETE

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


@config.group("soft-delete", cls=HamnGroup)
def soft_delete() -> None:
    """The soft delete policy: keep deleted manifests and tags restorable for some days."""


def _soft_delete_path(registry: str) -> str:
    return registry_path(registry, "policies", "softdelete")


@command(soft_delete, "show", table=SOFT_DELETE)
@registry_option("-r", "--registry")
def show_soft_delete(inv: Invocation, registry: str) -> Any:
    """Show the soft delete policy of a registry."""
    with server_errors(not_found=registry_not_found(registry)):
        return inv.client(registry).get_json(_soft_delete_path(registry))


@command(soft_delete, "update", table=SOFT_DELETE)
@registry_option("-r", "--registry")
@click.option(
    "--status",
    type=choice("enabled", "disabled"),
    help="Enable or disable soft delete. It cannot be enabled while the retention policy "
    "is (as in ACR).",
)
@click.option(
    "--days",
    type=click.IntRange(1, 90),
    help="Days deleted manifests and tags stay restorable, 1 to 90. A new policy keeps "
    "them 7 days; left out, the days stay as they are.",
)
def update_soft_delete(inv: Invocation, registry: str, status: str | None, days: int | None) -> Any:
    """Change the soft delete policy of a registry."""
    body: dict[str, Any] = {}
    if status is not None:
        body["status"] = status.lower()
    if days is not None:
        body["days"] = days
    with server_errors(not_found=registry_not_found(registry)):
        return call(inv.client(registry), "PATCH", _soft_delete_path(registry), body)
