"""``hamn``'s command groups, shaped like ``az acr``'s. :func:`register` adds them to the CLI."""

from __future__ import annotations

import click

from hamn.cli.commands.ad import ad
from hamn.cli.commands.auth import auth
from hamn.cli.commands.config import config
from hamn.cli.commands.credential import credential
from hamn.cli.commands.login import login_commands
from hamn.cli.commands.manifest import manifest
from hamn.cli.commands.purge import purge_commands
from hamn.cli.commands.registry import registry_commands
from hamn.cli.commands.repository import repository
from hamn.cli.commands.role import role
from hamn.cli.commands.scope_map import scope_map
from hamn.cli.commands.token import token


def register(cli: click.Group) -> None:
    """Add every command group to the ``hamn`` group."""
    cli.add_command(repository)
    cli.add_command(manifest)
    for command in registry_commands.commands.values():
        cli.add_command(command)
    for command in purge_commands.commands.values():
        cli.add_command(command)
    for group in (credential, role, ad, token, scope_map, config):
        cli.add_command(group)
    cli.add_command(auth)
    for command in login_commands.commands.values():
        cli.add_command(command)
