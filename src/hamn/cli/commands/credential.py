"""``hamn credential show|renew``: ``az acr credential``, the registry's admin user.

Both print ``{"username": <registry>, "passwords": [{"name": "password", "value"},
{"name": "password2", "value"}]}``. A disabled admin user is refused by the
server with the command that enables it.
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
from hamn.cli.tables import CREDENTIAL


@click.group("credential", cls=HamnGroup)
def credential() -> None:
    """The admin user's credentials of a registry."""


@command(credential, "show", table=CREDENTIAL)
@registry_option("-n", "--name")
def show(inv: Invocation, registry: str) -> Any:
    """Show the admin user's name and its two passwords."""
    with server_errors(not_found=registry_not_found(registry)):
        return call(inv.client(registry), "POST", registry_path(registry, "listCredentials"))


@command(credential, "renew", table=CREDENTIAL)
@registry_option("-n", "--name")
@click.option(
    "--password-name",
    type=choice("password", "password2"),
    callback=required,
    help="The password to regenerate; the other one keeps working.",
)
def renew(inv: Invocation, registry: str, password_name: str) -> Any:
    """Regenerate one of the admin user's passwords."""
    body = {"name": password_name.lower()}
    with server_errors(not_found=registry_not_found(registry)):
        return call(
            inv.client(registry), "POST", registry_path(registry, "regenerateCredential"), body
        )
