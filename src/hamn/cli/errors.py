"""How the CLI fails: ``ERROR: <what went wrong and what to do>`` on stderr.

As in ``az``: exit status 1 for a failed command, 2 for a usage error (an
unknown option, a missing argument, arguments that exclude each other).
"""

from __future__ import annotations

from typing import IO, Any

import click


class CLIError(click.ClickException):
    """A command failed; ``message`` says what happened and what to do about it."""

    exit_code = 1

    def show(self, file: IO[Any] | None = None) -> None:
        """Write ``ERROR: <message>`` to stderr."""
        click.echo(f"ERROR: {self.format_message()}", file=file, err=file is None)


class ArgumentUsageError(click.UsageError):
    """The command line is wrong; shown with a pointer to the command's help."""

    def show(self, file: IO[Any] | None = None) -> None:
        """Write ``ERROR: <message>`` and where to find the command's help."""
        text = f"ERROR: {self.format_message()}"
        if self.ctx is not None:
            text += f"\nTry '{self.ctx.command_path} -h' for help."
        click.echo(text, file=file, err=file is None)
