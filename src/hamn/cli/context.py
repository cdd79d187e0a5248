"""What every ``hamn`` command shares: az's global arguments and one way to run a command.

A command is a plain function returning a JSON-able result (or None). The
:func:`command` decorator gives it ``--query``, ``-o/--output``, ``--debug``,
``--verbose`` and ``--only-show-errors`` (accepted anywhere after the command
name, as in ``az``), and, with ``server=True``, the connection arguments
``--server``, ``-u/--username`` and ``-p/--password``. Running it then:

1. sets up logging on stderr (``WARNING:``/``INFO:``/``DEBUG:`` lines);
2. calls the function with an :class:`Invocation` (client, prompts, warnings);
3. applies ``--query`` and writes the result in the chosen format;
4. turns every failure into ``ERROR: <message>`` and exit status 1
   (usage errors: status 2), never a traceback.
"""

from __future__ import annotations

import functools
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import click
import httpx
from click.core import ParameterSource

from hamn.cli.client import (
    DEFAULT_SERVER,
    Credentials,
    RegistryClient,
    RegistryError,
    ServerUnreachable,
    normalize_server,
)
from hamn.cli.errors import ArgumentUsageError, CLIError
from hamn.cli.output import (
    OUTPUT_FORMATS,
    OutputError,
    TableTransformer,
    apply_query,
    compile_query,
    render,
)
from hamn.cli.session import expired_message, load_session, same_server
from hamn.oci.names import is_valid_registry_name

log = logging.getLogger("hamn.cli")

#: Environment variables the CLI reads (az's ``AZURE_CORE_OUTPUT`` and friends).
ENV_OUTPUT = "HAMN_OUTPUT"
ENV_SERVER = "HAMN_SERVER"
ENV_USERNAME = "HAMN_USERNAME"
ENV_PASSWORD = "HAMN_PASSWORD"  # noqa: S105 - a variable name, not a secret
ENV_REGISTRY = "HAMN_REGISTRY"

#: Parameter names of the global arguments (shown under "Global Arguments" in help).
GLOBAL_PARAMS = frozenset({"query", "output", "debug", "verbose", "only_show_errors"})
#: Parameter names of the connection arguments (listed after a command's own).
SERVER_PARAMS = frozenset({"server", "username", "password"})
_PENDING_WARNINGS = "hamn.pending_warnings"


# ------------------------------------------------------------------ click classes


def _as_usage_error(exc: click.UsageError, ctx: click.Context) -> click.UsageError:
    if isinstance(exc, ArgumentUsageError | click.exceptions.NoArgsIsHelpError):
        return exc
    return ArgumentUsageError(exc.format_message(), exc.ctx or ctx)


class HamnCommand(click.Command):
    """A command whose usage errors read ``ERROR: ...``; its help lists global arguments apart."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse, turning click's usage errors into az-style ones."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _as_usage_error(exc, ctx) from None

    def format_options(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """Two sections, as az prints them: Arguments and Global Arguments."""
        own: list[tuple[str, str]] = []
        connection: list[tuple[str, str]] = []
        common: list[tuple[str, tuple[str, str]]] = []
        help_option = self.get_help_option(ctx)
        for param in self.get_params(ctx):
            record = param.get_help_record(ctx)
            if record is None:
                continue
            if param.name in GLOBAL_PARAMS or param is help_option:
                common.append((max(param.opts, key=len), record))
            elif param.name in SERVER_PARAMS:
                connection.append(record)
            else:
                own.append(record)
        if own or connection:
            with formatter.section("Arguments"):
                formatter.write_dl(own + connection)
        if common:
            # Alphabetical by long name, as az lists them.
            with formatter.section("Global Arguments"):
                formatter.write_dl([record for _, record in sorted(common)])


class HamnGroup(click.Group):
    """A command group whose unknown-command errors read ``ERROR: ...``."""

    command_class = HamnCommand

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        """Parse, turning click's usage errors into az-style ones."""
        try:
            return super().parse_args(ctx, args)
        except click.UsageError as exc:
            raise _as_usage_error(exc, ctx) from None

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        """Find the subcommand, turning click's usage errors into az-style ones."""
        try:
            return super().resolve_command(ctx, args)
        except click.UsageError as exc:
            raise _as_usage_error(exc, ctx) from None


# ------------------------------------------------------------------ parameters


class QueryType(click.ParamType[Any]):
    """``--query``: a JMESPath expression, compiled while the arguments are parsed."""

    name = "JMESPATH"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        """Compile the expression; a bad one is a usage error."""
        if not isinstance(value, str):
            return value
        try:
            return compile_query(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def usage_error(message: str) -> ArgumentUsageError:
    """A usage error (exit status 2) for the command being run."""
    return ArgumentUsageError(message, click.get_current_context(silent=True))


def required(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """Option callback: the option must be given (worded as az words it)."""
    if value is None or value == "":
        flags = "/".join(sorted(getattr(param, "opts", []), key=len, reverse=True))
        raise click.UsageError(f"the following arguments are required: {flags}", ctx=ctx)
    return value


def warn_later(ctx: click.Context, message: str) -> None:
    """Queue a warning found while parsing; it is shown once logging honours the flags."""
    ctx.meta.setdefault(_PENDING_WARNINGS, []).append(message)


def registry_name(ctx: click.Context, value: str) -> str:
    """A registry name from ``-n``/``-r``; a login server (``r.domain[:port]``) gives its name."""
    value = value.strip()
    if "." in value and "/" not in value:
        name = value.split(".", 1)[0]
        warn_later(ctx, f"'{value}' is a login server; using its registry name '{name}'.")
        value = name
    if not is_valid_registry_name(value):
        raise click.BadParameter(
            f"'{value}' is not a registry name (5-50 letters and digits).", ctx=ctx
        )
    return value


def registry_option(*decls: str, required: bool = True) -> Callable[[Any], Any]:
    """The registry argument (``-n/--name`` or ``-r/--registry``), defaulting to HAMN_REGISTRY."""
    flags = "/".join(sorted(decls, key=len, reverse=True))

    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is None and required:
            raise click.UsageError(
                f"the following arguments are required: {flags} (or set {ENV_REGISTRY})", ctx=ctx
            )
        return None if value is None else registry_name(ctx, value)

    return click.option(
        *decls,
        "registry",
        envvar=ENV_REGISTRY,
        callback=check,
        metavar="NAME",
        help=f"The name of the registry (default: ${ENV_REGISTRY}).",
    )


def _global_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--query",
            type=QueryType(),
            default=None,
            help="JMESPath query string. See https://jmespath.org/ for more information "
            "and examples.",
        ),
        click.option(
            "-o",
            "--output",
            type=click.Choice(OUTPUT_FORMATS, case_sensitive=False),
            envvar=ENV_OUTPUT,
            default="json",
            help=f"Output format (default: ${ENV_OUTPUT}, else json).",
        ),
        click.option(
            "--only-show-errors", is_flag=True, help="Only show errors, suppressing warnings."
        ),
        click.option("--verbose", is_flag=True, help="Increase logging verbosity."),
        click.option(
            "--debug",
            is_flag=True,
            help="Show all debug logs, including HTTP requests (credentials redacted).",
        ),
    ]
    for option in options:
        f = option(f)
    return f


def _server_options(f: Callable[..., Any]) -> Callable[..., Any]:
    options = [
        click.option(
            "--server",
            envvar=ENV_SERVER,
            default=None,
            metavar="URL",
            help=f"The hamn server (default: ${ENV_SERVER}, else the server of the "
            f"'hamn auth login' session, else {DEFAULT_SERVER}).",
        ),
        click.option(
            "-u",
            "--username",
            envvar=ENV_USERNAME,
            help=f"The username used to log into the registry (default: ${ENV_USERNAME}).",
        ),
        click.option(
            "-p",
            "--password",
            envvar=ENV_PASSWORD,
            help=f"The password used to log into the registry (default: ${ENV_PASSWORD}).",
        ),
    ]
    for option in options:
        f = option(f)
    return f


# ------------------------------------------------------------------ invocation


@dataclass
class Invocation:
    """What a running command may use: the server, credentials, prompts and warnings."""

    server: str = DEFAULT_SERVER
    credentials: Credentials | None = None
    _clients: list[RegistryClient] = field(default_factory=list)

    def client(self, registry: str) -> RegistryClient:
        """A client for ``registry`` on the server (closed when the command ends)."""
        client = RegistryClient(self.server, registry, self.credentials)
        self._clients.append(client)
        return client

    def close(self) -> None:
        """Close every client this invocation opened."""
        for client in self._clients:
            client.close()
        self._clients.clear()

    @staticmethod
    def warn(message: str) -> None:
        """``WARNING: message`` on stderr (not with --only-show-errors)."""
        log.warning("%s", message)

    @staticmethod
    def confirm(message: str, yes: bool) -> None:
        """Ask ``message (y/n)``; raise unless the answer is yes. ``yes`` skips the question.

        Without a terminal on stdin there is nobody to ask, so the command
        refuses (as az does) instead of guessing.
        """
        if yes:
            return
        if not sys.stdin.isatty():
            raise CLIError(
                "Unable to prompt for confirmation as no tty is available. Use --yes (-y)."
            )
        while True:
            click.echo(f"{message} (y/n): ", nl=False, err=True)
            answer = sys.stdin.readline()
            if not answer:
                raise CLIError("Operation cancelled.")
            answer = answer.strip().lower()
            if answer in ("y", "yes"):
                return
            if answer in ("n", "no"):
                raise CLIError("Operation cancelled.")


class _StderrHandler(logging.Handler):
    """``LEVEL: message`` lines on the current ``sys.stderr`` (tests swap it)."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(logging.Formatter("%(levelname)s: %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stderr.write(self.format(record) + "\n")
            sys.stderr.flush()
        except Exception:  # pragma: no cover - logging must never fail a command
            self.handleError(record)


def configure_logging(*, verbose: bool, debug: bool, only_show_errors: bool) -> None:
    """Log to stderr at the level the flags ask for (az: warnings by default)."""
    root = logging.getLogger("hamn.cli")
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_StderrHandler())
    root.propagate = False
    if debug:
        level = logging.DEBUG
    elif verbose:
        level = logging.INFO
    elif only_show_errors:
        level = logging.ERROR
    else:
        level = logging.WARNING
    root.setLevel(level)


def describe(exc: RegistryError, not_found: str | None = None) -> str:
    """A server refusal in words, with what to do about it."""
    text = exc.describe()
    if exc.status == 401:
        url = httpx.URL(exc.url)
        server = f"{url.scheme}://{url.netloc.decode('ascii')}" if url.host else "URL"
        return (
            f"{text}. Sign in: run 'hamn auth login --server {server}', or pass "
            f"-u/--username and -p/--password (or set {ENV_USERNAME} and {ENV_PASSWORD})."
        )
    if exc.status == 403:
        return (
            f"{text}. Your identity may not do this here; ask an owner of the registry "
            "for a role that allows it."
        )
    if exc.status == 404 and not_found:
        return f"{not_found} ({exc.code or 'HTTP 404'}: {exc.message or 'not found'})"
    if exc.status in (429, 503):
        return f"{text}. The server is busy; try again in a moment."
    if exc.status >= 500:
        return f"{text}. The server failed; its log has the details (--debug shows the exchange)."
    return text


@contextmanager
def server_errors(not_found: str | None = None) -> Iterator[None]:
    """Turn a server refusal inside the block into ``CLIError`` (``not_found`` words a 404)."""
    try:
        yield
    except RegistryError as exc:
        raise CLIError(describe(exc, not_found)) from None


def _write(text: str) -> None:
    if not text:
        return
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # The reader went away (`| head`); stop quietly, as az does.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except UnicodeEncodeError:
        log.warning(
            "Unable to encode the output as %s; unsupported characters are left out.",
            sys.stdout.encoding,
        )
        sys.stdout.write(text.encode("ascii", "ignore").decode("ascii"))
        sys.stdout.flush()


def run(
    call: Callable[[Invocation], Any],
    *,
    invocation: Invocation,
    output: str,
    query: Any,
    table: TableTransformer | None,
) -> None:
    """Run a command function and print its result (see the module docstring)."""
    started = time.monotonic()
    try:
        try:
            result = call(invocation)
        except click.ClickException:
            raise
        except RegistryError as exc:
            raise CLIError(describe(exc)) from None
        except ServerUnreachable as exc:
            raise CLIError(
                f"{exc}. Start it with 'hamn serve', or point --server (or {ENV_SERVER}) at it."
            ) from None
        except Exception as exc:
            log.debug("unexpected error", exc_info=True)
            raise CLIError(
                f"The command failed with an unexpected error: {type(exc).__name__}: {exc}. "
                "Run it again with --debug for the details, and report it."
            ) from None
        finally:
            invocation.close()
        if query is not None:
            result = apply_query(query, result)
        color = sys.stdout.isatty() and "NO_COLOR" not in os.environ
        try:
            text = render(
                result,
                output.lower(),
                query_active=query is not None,
                table_transformer=table,
                color=color,
            )
        except OutputError as exc:
            raise CLIError(str(exc)) from None
        _write(text)
    finally:
        log.info("Command ran in %.3f seconds", time.monotonic() - started)


def command(
    group: click.Group,
    name: str,
    *,
    table: TableTransformer | None = None,
    server: bool = True,
    default_output: str | None = None,
) -> Callable[[Callable[..., Any]], click.Command]:
    """Register ``func(invocation, **arguments)`` as ``group name`` with az's global arguments.

    ``default_output`` replaces ``json`` as the format when neither ``-o`` nor
    ``HAMN_OUTPUT`` chooses one (``kube-secret`` prints YAML, as kubectl reads it).
    """

    def decorator(func: Callable[..., Any]) -> click.Command:
        @functools.wraps(func)
        def callback(**kwargs: Any) -> None:
            output = kwargs.pop("output")
            query = kwargs.pop("query")
            configure_logging(
                verbose=kwargs.pop("verbose"),
                debug=kwargs.pop("debug"),
                only_show_errors=kwargs.pop("only_show_errors"),
            )
            ctx = click.get_current_context()
            for message in ctx.meta.pop(_PENDING_WARNINGS, []):
                log.warning("%s", message)
            if default_output and ctx.get_parameter_source("output") is ParameterSource.DEFAULT:
                output = default_output
            invocation = Invocation()
            if server:
                invocation.server, invocation.credentials = connection(
                    kwargs.pop("server"), kwargs.pop("username"), kwargs.pop("password")
                )
            run(
                lambda inv: func(inv, **kwargs),
                invocation=invocation,
                output=output,
                query=query,
                table=table,
            )

        wrapped = _global_options(callback)
        if server:
            wrapped = _server_options(wrapped)
        cmd = click.command(name, cls=HamnCommand)(wrapped)
        group.add_command(cmd)
        return cmd

    return decorator


def connection(
    server: str | None, username: str | None, password: str | None
) -> tuple[str, Credentials | None]:
    """The server and credentials of a command (control-plane.md, "CLI session").

    Credentials are ``-u/-p``, else ``HAMN_USERNAME``/``HAMN_PASSWORD`` (click
    reads both into ``username``/``password``), else the ``hamn auth login``
    session, else none. The session's refresh token goes to the session's
    server only; ``server`` defaults to it when neither ``--server`` nor
    ``HAMN_SERVER`` names one. An expired session is an error rather than a
    silent anonymous request: the user believes they are signed in.
    """
    explicit = _credentials(username, password)
    session = load_session() if server is None or explicit is None else None
    if server is None:
        server = session.server if session is not None else DEFAULT_SERVER
    if explicit is not None or session is None:
        return server, explicit
    if not same_server(server, session.server):
        log.info(
            "Not using the session of %s for %s: it is for another server.",
            session.server,
            normalize_server(server),
        )
        return server, None
    if session.expired():
        raise CLIError(expired_message(session))
    log.info("Signed in to %s as %s (hamn auth login).", session.server, session.username)
    return server, session.credentials()


def _credentials(username: str | None, password: str | None) -> Credentials | None:
    if not username and not password:
        return None
    if not username:
        raise ArgumentUsageError(
            f"--password needs --username (-u) too (or set {ENV_USERNAME}).",
            click.get_current_context(),
        )
    if password is None:
        if not sys.stdin.isatty():
            raise ArgumentUsageError(
                f"--username needs --password (-p) too (or set {ENV_PASSWORD}).",
                click.get_current_context(),
            )
        password = click.prompt("Password", hide_input=True, err=True)
    return Credentials(username, password)
