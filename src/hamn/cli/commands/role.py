"""``hamn role assignment create|list|delete`` and ``hamn role definition list``: ``az role``.

A scope is ``/`` (every registry), ``/registries/<r>`` (what ``hamn show``
gives as ``id``) or ``/registries/<r>/repositories/<repo>``. An Azure resource id
ending in ``/providers/Microsoft.ContainerRegistry/registries/<r>`` is taken as
``/registries/<r>``, so ids copied from ACR scripts work.

``list`` and ``delete`` follow az: without ``--scope`` they mean the top scope
``/`` only (az: the subscription), ``list --all`` means every scope you can see,
and ``delete`` removes every assignment that matches its filters, asking first
when there are no filters at all.
"""

from __future__ import annotations

import re
from collections import OrderedDict
from typing import Any

import click

from hamn.cli.commands.api import (
    api_path,
    call,
    multi_value_group,
    refusals,
    split_values,
    values,
)
from hamn.cli.context import (
    HamnGroup,
    Invocation,
    command,
    required,
    server_errors,
    usage_error,
)
from hamn.cli.errors import CLIError
from hamn.cli.tables import columns

ROOT_SCOPE = "/"
_ARM_REGISTRY = re.compile(r"/providers/microsoft\.containerregistry(/registries/.+)$", re.I)
_SCOPE = re.compile(r"^/registries/[^/]+(/repositories/.+)?$")
_SCOPE_HELP = (
    "'/', '/registries/<registry>' (the 'id' of 'hamn show') or "
    "'/registries/<registry>/repositories/<repository>'"
)


@click.group("role", cls=HamnGroup)
def role() -> None:
    """Role assignments (who may do what where) and the built-in role definitions."""


# `--ids a b c`, as az takes them (e.g. from `--query [].id -o tsv`).
@role.group("assignment", cls=multi_value_group("--ids"))
def assignment() -> None:
    """Grant, list and remove roles of users and service principals."""


@role.group("definition", cls=HamnGroup)
def definition() -> None:
    """The built-in roles and what they allow."""


# ----------------------------------------------------------------------- helpers


def scope_arg(value: str) -> str:
    """A scope from the command line, in hamn's form, or a usage error."""
    text = value.strip()
    arm = _ARM_REGISTRY.search(text)
    if arm:
        text = arm.group(1)
    text = text.rstrip("/") or ROOT_SCOPE
    if text != ROOT_SCOPE and not _SCOPE.match(text):
        raise usage_error(f"'{value}' is not a scope; give {_SCOPE_HELP}.")
    return text


def _assignment_id(value: str) -> str:
    # An id may be given whole ('/roleAssignments/<id>', as 'list' shows it) or bare.
    return value.rstrip("/").rsplit("/", 1)[-1]


def _same_scope(a: str, b: str) -> bool:
    return a.rstrip("/").lower() == b.rstrip("/").lower()


def _inherits(scope: str, parent: str) -> bool:
    """True when an assignment at ``parent`` also applies at ``scope``."""
    scope, parent = scope.rstrip("/").lower(), parent.rstrip("/").lower()
    return parent == "" or scope == parent or scope.startswith(parent + "/")


def _search(
    inv: Invocation, assignee: str | None, role_name: str | None, scope: str | None
) -> list[dict[str, Any]]:
    params = {
        key: value
        for key, value in (("assignee", assignee), ("role", role_name), ("scope", scope))
        if value
    }
    with server_errors():
        body = inv.client("").get_json(api_path("roleAssignments"), params=params)
    return [item for item in values(body) if isinstance(item, dict)]


#: ``-o table`` for assignments: az role's Principal, Role and Scope columns.
assignment_table = columns(
    ("Principal", ("principalName",)),
    ("Role", ("roleDefinitionName",)),
    ("Scope", ("scope",)),
)


def definition_table(result: Any) -> list[OrderedDict[str, str]]:
    """``-o table`` for role definitions: the name and what it allows."""

    def joined(item: dict[str, Any], key: str) -> str:
        return ", ".join(str(v) for v in item.get(key) or []) or " "

    return [
        OrderedDict(
            [
                ("Name", str(item.get("roleName") or " ")),
                ("DataActions", joined(item, "dataActions")),
                ("ManagementPermissions", joined(item, "managementPermissions")),
            ]
        )
        for item in (result if isinstance(result, list) else [result])
        if isinstance(item, dict)
    ]


# ---------------------------------------------------------------------- commands

_assignee_option = click.option(
    "--assignee",
    metavar="NAME",
    help="A user name or a service principal's appId.",
)
_role_option = click.option("--role", metavar="ROLE", help="A role name, e.g. AcrPull or Reader.")
_scope_option = click.option("--scope", metavar="SCOPE", help=f"The scope: {_SCOPE_HELP}.")


@command(assignment, "create", table=assignment_table)
@click.option(
    "--assignee",
    callback=required,
    metavar="NAME",
    help="The user name or service principal appId to grant the role to.",
)
@click.option("--role", callback=required, metavar="ROLE", help="The role, e.g. AcrPull.")
@click.option("--scope", callback=required, metavar="SCOPE", help=f"Where: {_SCOPE_HELP}.")
def create(inv: Invocation, assignee: str, role: str, scope: str) -> Any:
    """Grant a role to a user or service principal at a scope."""
    where = scope_arg(scope)
    body = {"role": role, "assignee": assignee, "scope": where}
    with refusals(
        not_found=f"No user or service principal '{assignee}', or no registry at '{where}' "
        "that you can see. 'hamn ad user list' and 'hamn ad sp list' list identities; "
        "'hamn list' lists registries.",
        conflict=f"'{assignee}' already holds {role} at '{where}'; 'hamn role assignment "
        f"list --assignee {assignee} --scope {where}' shows it",
    ):
        return call(inv.client(""), "POST", api_path("roleAssignments"), body)


@command(assignment, "list", table=assignment_table)
@_assignee_option
@_role_option
@_scope_option
@click.option("--all", "show_all", is_flag=True, help="Every scope you can see, not only one.")
@click.option(
    "--include-inherited",
    is_flag=True,
    help="Also the assignments at enclosing scopes (e.g. '/' for a registry).",
)
def list_assignments(
    inv: Invocation,
    assignee: str | None,
    role: str | None,
    scope: str | None,
    show_all: bool,
    include_inherited: bool,
) -> list[dict[str, Any]]:
    """List role assignments: at '/' (or --scope), or at every scope with --all."""
    if show_all and scope:
        raise usage_error("--scope is not needed with --all.")
    if show_all:
        return _search(inv, assignee, role, None)
    where = scope_arg(scope) if scope else ROOT_SCOPE
    if include_inherited:
        found = _search(inv, assignee, role, None)
        return [a for a in found if _inherits(where, str(a.get("scope", "")))]
    found = _search(inv, assignee, role, where)
    return [a for a in found if _same_scope(str(a.get("scope", "")), where)]


@command(assignment, "delete")
@click.option(
    "--ids",
    multiple=True,
    metavar="ID...",
    help="Assignment ids (as 'list' shows them); nothing else is needed then.",
)
@_assignee_option
@_role_option
@_scope_option
@click.option("-y", "--yes", is_flag=True, help="Do not prompt when no filter is given.")
def delete(
    inv: Invocation,
    ids: tuple[str, ...],
    assignee: str | None,
    role: str | None,
    scope: str | None,
    yes: bool,
) -> None:
    """Remove the role assignments that match (all of '/' only after a prompt)."""
    targets = split_values(ids)
    if targets and (assignee or role or scope):
        raise usage_error("give either --ids or --assignee/--role/--scope, not both.")
    if not targets:
        if not (assignee or role or scope):
            inv.confirm("This will delete every role assignment at scope '/'. Are you sure?", yes)
        where = scope_arg(scope) if scope else ROOT_SCOPE
        found = _search(inv, assignee, role, where)
        matches = [a for a in found if _same_scope(str(a.get("scope", "")), where)]
        if not matches:
            raise CLIError(_nothing_matched(inv, assignee, role, where, scope is None))
        targets = [str(a["id"]) for a in matches]
    client = inv.client("")
    for target in targets:
        ident = _assignment_id(target)
        with server_errors(
            not_found=f"Role assignment '{ident}' was not found. "
            "'hamn role assignment list --all' lists the ones you can see."
        ):
            client.delete(api_path("roleAssignments", ident))


def _nothing_matched(
    inv: Invocation, assignee: str | None, role: str | None, where: str, defaulted: bool
) -> str:
    message = f"No matched role assignments were found to delete at scope '{where}'."
    if defaulted and (assignee or role):
        elsewhere = sorted({str(a.get("scope")) for a in _search(inv, assignee, role, None)})
        if elsewhere:
            message += " Matches exist at " + ", ".join(f"'{s}'" for s in elsewhere)
            message += "; pass --scope to delete them."
    return message


@command(definition, "list", table=definition_table)
@click.option("-n", "--name", metavar="ROLE", help="Only this role.")
def list_definitions(inv: Invocation, name: str | None) -> list[Any]:
    """List the built-in roles with their data actions and management permissions."""
    with server_errors():
        roles = values(inv.client("").get_json(api_path("roleDefinitions")))
    if name:
        roles = [r for r in roles if str(r.get("roleName", "")).lower() == name.lower()]
    return roles
