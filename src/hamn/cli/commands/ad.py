"""``hamn ad user ...`` and ``hamn ad sp ...``: the identities ``az ad`` manages.

Users sign in with their name and password; service principals with their
``appId`` and a secret. Results are the management API's User and
ServicePrincipal objects; users also carry az's ``userPrincipalName`` and
``accountEnabled``, so queries written for ``az ad user`` read them.
``sp create-for-rbac`` and ``sp credential reset`` print
``{appId, displayName, password, tenant}`` as az does, ``tenant`` being the
server the principal signs in to. A generated secret is shown once.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from hamn.cli.client import RegistryClient, RegistryError
from hamn.cli.commands.api import (
    BOOLEAN,
    api_path,
    call,
    multi_value_group,
    refusals,
    split_values,
    values,
)
from hamn.cli.commands.role import scope_arg
from hamn.cli.context import (
    HamnGroup,
    Invocation,
    command,
    describe,
    required,
    server_errors,
    usage_error,
)
from hamn.cli.errors import CLIError

_ONE_TIME_NOTICE = (
    "The output includes a secret that is shown only this once. Keep it out of logs and "
    "source control; 'hamn ad sp credential reset --id {app_id}' makes a new one."
)


@click.group("ad", cls=HamnGroup)
def ad() -> None:
    """Users and service principals: the identities roles are assigned to."""


@ad.group("user", cls=HamnGroup)
def user() -> None:
    """Users: a name and a password."""


# `--scopes S1 S2`, as az takes them.
@ad.group("sp", cls=multi_value_group("--scopes"))
def sp() -> None:
    """Service principals: an appId and a secret, for automation."""


@sp.group("credential", cls=HamnGroup)
def sp_credential() -> None:
    """A service principal's secret."""


# ----------------------------------------------------------------------- helpers


def _user(item: Any) -> Any:
    """A User with az's names for two of its fields added."""
    if not isinstance(item, dict):
        return item
    return {
        **item,
        "userPrincipalName": item.get("name"),
        "accountEnabled": not item.get("disabled", False),
    }


def _user_not_found(name: str) -> str:
    return f"User '{name}' was not found. 'hamn ad user list' lists users (it needs Reader at '/')."


def _sp_not_found(app_id: str) -> str:
    return (
        f"Service principal '{app_id}' was not found. 'hamn ad sp list' lists them with their "
        "appId (it needs Reader at '/')."
    )


def _secret(inv: Invocation, client_server: str, sp_body: Any, *, name: bool) -> dict[str, Any]:
    body = sp_body if isinstance(sp_body, dict) else {}
    app_id = str(body.get("appId", ""))
    inv.warn(_ONE_TIME_NOTICE.format(app_id=app_id))
    result = {"appId": app_id, "password": body.get("password"), "tenant": client_server}
    if name:
        result["displayName"] = body.get("displayName")
    return result


def _unassigned(client: RegistryClient, app_id: str, what: str, exc: RegistryError) -> str:
    """Take back a new service principal whose role could not be assigned; say so."""
    # Without its role the principal is of no use, and its secret would be lost:
    # removing it makes running the command again the fix.
    try:
        client.delete(api_path("servicePrincipals", app_id))
    except RegistryError:
        return (
            f"Could not assign {what} ({describe(exc)}). The service principal '{app_id}' "
            f"was created; delete it with 'hamn ad sp delete --id {app_id}'."
        )
    return (
        f"Could not assign {what} ({describe(exc)}), so the service principal was not kept. "
        "Check the role ('hamn role definition list'), the scope ('hamn list') and that you "
        "may assign roles there (Owner)."
    )


def _user_password_is_long(cmd: click.Command) -> click.Command:
    """Leave ``--password`` to the user's new password; signing in keeps ``-p``.

    az's ``ad user create|update --password`` is the user's password, while
    every hamn command takes ``-p/--password`` for the caller's own; two options
    with one flag would leave click to pick.
    """
    for param in cmd.params:
        if isinstance(param, click.Option) and param.name == "password":
            param.opts = [opt for opt in param.opts if opt != "--password"]
    return cmd


# ------------------------------------------------------------------------- users

_id_option = click.option(
    "--id", "name", callback=required, metavar="NAME", help="The user's name."
)


@command(user, "create")
@click.option("--display-name", callback=required, metavar="TEXT", help="The name people see.")
@click.option(
    "--user-principal-name",
    "name",
    callback=required,
    metavar="NAME",
    help="The name the user signs in with, e.g. someone@example.com.",
)
@click.option(
    "--password",
    "user_password",
    metavar="PASSWORD",
    help="The user's password (default: one is generated and shown once).",
)
def user_create(inv: Invocation, display_name: str, name: str, user_password: str | None) -> Any:
    """Create a user."""
    body: dict[str, Any] = {"name": name, "displayName": display_name}
    if user_password is not None:
        body["password"] = user_password
    with refusals(
        conflict=f"A user named '{name}' already exists; 'hamn ad user show --id {name}' shows it"
    ):
        created = call(inv.client(""), "POST", api_path("users"), body)
    if isinstance(created, dict) and created.get("password") and user_password is None:
        inv.warn("The output includes the generated password, shown only this once.")
    return _user(created)


_user_password_is_long(user_create)


@command(user, "list")
@click.option("--upn", metavar="NAME", help="Only the user with this name.")
@click.option("--display-name", metavar="TEXT", help="Only users whose display name starts so.")
def user_list(inv: Invocation, upn: str | None, display_name: str | None) -> list[Any]:
    """List users."""
    with server_errors():
        users = values(inv.client("").get_json(api_path("users")))
    if upn:
        users = [u for u in users if str(u.get("name", "")).lower() == upn.lower()]
    if display_name:
        users = [u for u in users if str(u.get("displayName", "")).startswith(display_name)]
    return [_user(u) for u in users]


@command(user, "show")
@_id_option
def user_show(inv: Invocation, name: str) -> Any:
    """Show a user."""
    with server_errors(not_found=_user_not_found(name)):
        return _user(inv.client("").get_json(api_path("users", name)))


@command(user, "update")
@_id_option
@click.option("--display-name", metavar="TEXT", help="A new display name.")
@click.option(
    "--password", "user_password", metavar="PASSWORD", help="A new password for the user."
)
@click.option(
    "--account-enabled",
    type=BOOLEAN,
    default=None,
    help="false stops the user signing in (and its refresh tokens); true lets it again.",
)
def user_update(
    inv: Invocation,
    name: str,
    display_name: str | None,
    user_password: str | None,
    account_enabled: bool | None,
) -> None:
    """Change a user's password, display name, or whether it may sign in."""
    body: dict[str, Any] = {}
    if display_name is not None:
        body["displayName"] = display_name
    if user_password is not None:
        body["password"] = user_password
    if account_enabled is not None:
        body["disabled"] = not account_enabled
    if not body:
        raise usage_error("give at least one of --display-name, --password, --account-enabled.")
    with server_errors(not_found=_user_not_found(name)):
        call(inv.client(""), "PATCH", api_path("users", name), body)


_user_password_is_long(user_update)


@command(user, "delete")
@_id_option
def user_delete(inv: Invocation, name: str) -> None:
    """Delete a user (its role assignments go with it)."""
    with server_errors(not_found=_user_not_found(name)):
        inv.client("").delete(api_path("users", name))


# ------------------------------------------------------------- service principals

_app_id_option = click.option(
    "--id", "app_id", callback=required, metavar="APPID", help="The service principal's appId."
)


@command(sp, "create-for-rbac")
@click.option(
    "-n",
    "--name",
    "--display-name",
    "display_name",
    metavar="NAME",
    help="The display name (default: hamn-cli-<time>).",
)
@click.option("--role", metavar="ROLE", help="A role to grant it at every --scopes, e.g. AcrPush.")
@click.option(
    "--scopes",
    multiple=True,
    metavar="SCOPE...",
    help="Where --role applies, e.g. the 'id' of 'hamn show'.",
)
def sp_create_for_rbac(
    inv: Invocation, display_name: str | None, role: str | None, scopes: tuple[str, ...]
) -> Any:
    """Create a service principal, optionally with a role at some scopes."""
    where = [scope_arg(s) for s in split_values(scopes)]
    if bool(role) != bool(where):
        raise usage_error("--role and --scopes go together: give both, or neither.")
    name = display_name or datetime.now(UTC).strftime("hamn-cli-%Y-%m-%d-%H-%M-%S")
    client = inv.client("")
    with server_errors():
        created = call(client, "POST", api_path("servicePrincipals"), {"displayName": name})
    app_id = str((created or {}).get("appId", ""))
    for scope in where:
        try:
            call(
                client,
                "POST",
                api_path("roleAssignments"),
                {"role": role, "assignee": app_id, "scope": scope},
            )
        except RegistryError as exc:
            raise CLIError(_unassigned(client, app_id, f"{role} at '{scope}'", exc)) from None
    return _secret(inv, client.server, created, name=True)


@command(sp, "list")
@click.option("--display-name", metavar="TEXT", help="Only those whose display name starts so.")
def sp_list(inv: Invocation, display_name: str | None) -> list[Any]:
    """List service principals."""
    with server_errors():
        principals = values(inv.client("").get_json(api_path("servicePrincipals")))
    if display_name:
        principals = [
            p for p in principals if str(p.get("displayName", "")).startswith(display_name)
        ]
    return principals


@command(sp, "show")
@_app_id_option
def sp_show(inv: Invocation, app_id: str) -> Any:
    """Show a service principal."""
    with server_errors(not_found=_sp_not_found(app_id)):
        return inv.client("").get_json(api_path("servicePrincipals", app_id))


@command(sp, "delete")
@_app_id_option
def sp_delete(inv: Invocation, app_id: str) -> None:
    """Delete a service principal (its role assignments go with it)."""
    with server_errors(not_found=_sp_not_found(app_id)):
        inv.client("").delete(api_path("servicePrincipals", app_id))


@command(sp_credential, "reset")
@_app_id_option
def sp_credential_reset(inv: Invocation, app_id: str) -> Any:
    """Give a service principal a new secret; the old one stops working."""
    client = inv.client("")
    with server_errors(not_found=_sp_not_found(app_id)):
        body = call(client, "POST", api_path("servicePrincipals", app_id, "resetCredential"))
    return _secret(inv, client.server, body, name=False)
