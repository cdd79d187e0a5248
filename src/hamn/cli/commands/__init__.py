"""``hamn``'s command groups, shaped like ``az acr``'s. :func:`register` adds them to the CLI."""

from __future__ import annotations

import click

from hamn.cli.commands.auth import auth
from hamn.cli.commands.login import login_commands
from hamn.cli.commands.manifest import manifest
from hamn.cli.commands.repository import repository


def register(cli: click.Group) -> None:
    """Add every command group to the ``hamn`` group."""
    cli.add_command(repository)
    cli.add_command(manifest)
    cli.add_command(auth)
    for command in login_commands.commands.values():
        cli.add_command(command)
