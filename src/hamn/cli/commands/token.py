"""``hamn token ...``: ``az acr token``, repository-scoped credentials of one registry.

A token signs in with its name and one of its two passwords, and may do what
its scope map lists. ``create --repository REPO ACTION...`` first creates a
scope map named ``<token>-scope-map`` with those actions, as az does.
Passwords are shown once: by ``create`` (unless ``--no-passwords``) and by
``credential generate``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import click

from hamn.cli.client import RegistryClient, RegistryError
from hamn.cli.commands.api import (
    MultiValueGroup,
    call,
    choice,
    list_in_registry,
    refusals,
    registry_not_found,
    registry_path,
    repository_actions,
    repository_option,
)
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
from hamn.cli.tables import TOKEN, token_credential

PASSWORD_NAMES = ("password1", "password2")
_STORE_THEM = "Store the passwords now: they are shown only this once."


@click.group("token", cls=MultiValueGroup)
def token() -> None:
    """Tokens: credentials limited to some repositories of one registry."""


@token.group("credential", cls=HamnGroup)
def token_credential_group() -> None:
    """A token's two passwords."""


# ----------------------------------------------------------------------- helpers

_name_option = click.option(
    "-n", "--name", "name", callback=required, metavar="TOKEN", help="The name of the token."
)
_status_option = click.option(
    "--status",
    type=choice("enabled", "disabled"),
    help="A disabled token cannot sign in.",
)


def token_not_found(registry: str, name: str) -> str:
    """What to say when a token (or its registry) is not there."""
    return (
        f"Token '{name}' was not found in registry '{registry}', or you cannot see that "
        f"registry. 'hamn token list -r {registry}' lists its tokens."
    )


def _token_path(registry: str, name: str, *rest: str) -> str:
    return registry_path(registry, "tokens", name, *rest)


def _expiry(days: int | None, when: str | None) -> str | None:
    if days is not None and when is not None:
        raise usage_error("give --expiration-in-days or --expiration, not both.")
    if days is not None:
        moment = datetime.now(UTC) + timedelta(days=days)
        return moment.isoformat(timespec="seconds").replace("+00:00", "Z")
    if when is None:
        return None
    try:
        parsed = datetime.fromisoformat(when.replace("Z", "+00:00"))
    except ValueError:
        raise usage_error(f"'{when}' is not an ISO 8601 time, e.g. 2030-01-31T00:00:00Z.") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _chosen(password1: bool, password2: bool) -> list[str]:
    chosen = [n for n, on in zip(PASSWORD_NAMES, (password1, password2), strict=True) if on]
    return chosen or list(PASSWORD_NAMES)


def _create_scope_map(
    client: RegistryClient, registry: str, token_name: str, actions: list[str]
) -> str:
    name = f"{token_name}-scope-map"
    body = {
        "name": name,
        "actions": actions,
        "description": f"Made by 'hamn token create' for token '{token_name}'.",
    }
    with refusals(
        not_found=registry_not_found(registry),
        conflict=f"Scope map '{name}' already exists; give it with --scope-map {name}, or "
        f"delete it first ('hamn scope-map delete -n {name} -r {registry}')",
    ):
        call(client, "POST", registry_path(registry, "scopeMaps"), body)
    return name


# ---------------------------------------------------------------------- commands


@command(token, "create", table=TOKEN)
@_name_option
@registry_option("-r", "--registry")
@click.option("--scope-map", metavar="NAME", help="An existing scope map to give the token.")
@repository_option(
    "--repository",
    help_text="A repository and the actions the token may do in it; a scope map "
    "'<token>-scope-map' is made from them.",
)
@_status_option
@click.option("--no-passwords", is_flag=True, help="Make no passwords now (see 'credential').")
def create(
    inv: Invocation,
    name: str,
    registry: str,
    scope_map: str | None,
    repository: tuple[str, ...],
    status: str | None,
    no_passwords: bool,
) -> Any:
    """Create a token with a scope map (given, or made from --repository)."""
    if bool(scope_map) == bool(repository):
        raise usage_error("give exactly one of --scope-map or --repository REPO ACTION...")
    actions = repository_actions(repository) if repository else []
    client = inv.client(registry)
    made_map = None
    if actions:
        made_map = scope_map = _create_scope_map(client, registry, name, actions)
    body: dict[str, Any] = {"name": name, "scopeMap": scope_map}
    if status:
        body["status"] = status.lower()
    if no_passwords:
        body["noPasswords"] = True
    try:
        created = call(client, "POST", registry_path(registry, "tokens"), body)
    except RegistryError as exc:
        if made_map:
            # Leave nothing half made: a rerun would trip over the scope map.
            try:
                client.delete(registry_path(registry, "scopeMaps", made_map))
            except RegistryError:
                inv.warn(f"The scope map '{made_map}' made for the token was left behind.")
        if exc.status == 409:
            raise CLIError(
                f"Token '{name}' already exists in registry '{registry}' ({exc.describe()}); "
                f"'hamn token show -n {name} -r {registry}' shows it."
            ) from None
        raise CLIError(
            describe(
                exc,
                f"Registry '{registry}' or scope map '{scope_map}' was not found. "
                f"'hamn scope-map list -r {registry}' lists its scope maps.",
            )
        ) from None
    if not no_passwords:
        inv.warn(_STORE_THEM)
    return created


@command(token, "list", table=TOKEN)
@registry_option("-r", "--registry")
def list_tokens(inv: Invocation, registry: str) -> list[Any]:
    """List a registry's tokens."""
    return list_in_registry(inv, registry, "tokens")


@command(token, "show", table=TOKEN)
@_name_option
@registry_option("-r", "--registry")
def show(inv: Invocation, name: str, registry: str) -> Any:
    """Show a token (its passwords' names and expiry, never their values)."""
    with server_errors(not_found=token_not_found(registry, name)):
        return inv.client(registry).get_json(_token_path(registry, name))


@command(token, "update", table=TOKEN)
@_name_option
@registry_option("-r", "--registry")
@click.option("--scope-map", metavar="NAME", help="Give the token another scope map.")
@_status_option
def update(
    inv: Invocation, name: str, registry: str, scope_map: str | None, status: str | None
) -> Any:
    """Change a token's scope map or status."""
    body: dict[str, Any] = {}
    if scope_map:
        body["scopeMap"] = scope_map
    if status:
        body["status"] = status.lower()
    if not body:
        raise usage_error("give --scope-map or --status (or both).")
    with server_errors(not_found=token_not_found(registry, name)):
        return call(inv.client(registry), "PATCH", _token_path(registry, name), body)


@command(token, "delete")
@_name_option
@registry_option("-r", "--registry")
@click.option("-y", "--yes", is_flag=True, help="Do not prompt for confirmation.")
def delete(inv: Invocation, name: str, registry: str, yes: bool) -> None:
    """Delete a token; whoever uses its passwords loses access at once."""
    inv.confirm(
        f"Deleting the token '{name}' stops everyone who signs in with it. Are you sure?", yes
    )
    with server_errors(not_found=token_not_found(registry, name)):
        inv.client(registry).delete(_token_path(registry, name))


@command(token_credential_group, "generate", table=token_credential)
@_name_option
@registry_option("-r", "--registry")
@click.option("--password1", is_flag=True, help="Generate password1 (default: both).")
@click.option("--password2", is_flag=True, help="Generate password2 (default: both).")
@click.option(
    "--expiration-in-days",
    type=click.IntRange(min=1),
    help="The new passwords expire after this many days (default: never).",
)
@click.option(
    "--expiration",
    metavar="TIME",
    help="The new passwords expire at this ISO 8601 time, e.g. 2030-01-31T00:00:00Z.",
)
def credential_generate(
    inv: Invocation,
    name: str,
    registry: str,
    password1: bool,
    password2: bool,
    expiration_in_days: int | None,
    expiration: str | None,
) -> Any:
    """Generate new passwords for a token (the old ones stop working)."""
    expiry = _expiry(expiration_in_days, expiration)
    client = inv.client(registry)
    username = name
    passwords: list[Any] = []
    for password in _chosen(password1, password2):
        body: dict[str, Any] = {"name": password}
        if expiry:
            body["expiry"] = expiry
        with server_errors(not_found=token_not_found(registry, name)):
            answer = call(client, "POST", _token_path(registry, name, "generateCredentials"), body)
        if isinstance(answer, dict):
            username = str(answer.get("username") or username)
            new = [p for p in answer.get("passwords") or [] if p.get("name") == password]
            passwords.extend(new or answer.get("passwords") or [])
    inv.warn(_STORE_THEM)
    return {"username": username, "passwords": passwords}


@command(token_credential_group, "delete", table=TOKEN)
@_name_option
@registry_option("-r", "--registry")
@click.option("--password1", is_flag=True, help="Delete password1.")
@click.option("--password2", is_flag=True, help="Delete password2.")
def credential_delete(
    inv: Invocation, name: str, registry: str, password1: bool, password2: bool
) -> Any:
    """Delete one or both of a token's passwords; prints the token."""
    if not (password1 or password2):
        raise usage_error("give --password1, --password2 or both.")
    client = inv.client(registry)
    with server_errors(not_found=token_not_found(registry, name)):
        for password in _chosen(password1, password2):
            client.delete(_token_path(registry, name, "passwords", password))
        return client.get_json(_token_path(registry, name))
