"""``hamn check-health``: ``az acr check-health`` for hamn.

It prints a text report, not JSON: one line per check, ``OK`` or an error code
with what went wrong and what to do (the codes and hints are in
:mod:`hamn.cli.health`). It stops at the first error unless ``--ignore-errors``;
the exit status is 1 when any check failed, 0 otherwise (warnings do not fail).

* Always: the hamn CLI's version and the client tools on PATH (podman, buildah,
  skopeo, docker and its daemon, oras, helm, notation, cosign).
* With ``-n NAME`` or ``--server URL``: DNS, a TCP connection, TLS (for https),
  the ``/v2/`` challenge and ``/readyz``.
* With ``-n NAME``: signing in as ``hamn login`` does (refresh token, then an
  access token that must open ``/v2/`` and the registry's catalog), the registry's
  existence, and the entries ``hamn login`` writes in docker's and podman's files.

``-y/--yes`` is accepted for az's scripts: az asks before pulling an image;
hamn pulls nothing, so there is nothing to confirm.
"""

from __future__ import annotations

from pathlib import Path

import click
from click.core import ParameterSource

from hamn import __version__
from hamn.cli.client import normalize_server
from hamn.cli.commands.login import containers_auth_path, docker_config_path
from hamn.cli.context import HamnGroup, Invocation, command, registry_option
from hamn.cli.errors import CLIError
from hamn.cli.health import Report, StopChecks, info, skipped
from hamn.cli.health.local import check_credential_files, check_tools
from hamn.cli.health.network import Target, check_connect, check_dns, check_tls
from hamn.cli.health.registry import (
    Verify,
    check_access_token,
    check_challenge,
    check_readiness,
    check_refresh_token,
    check_registry,
    check_token_use,
    registry_client,
)
from hamn.cli.session import service_of


@click.group("health", cls=HamnGroup)
def health_commands() -> None:
    """Health checks (its command is added to ``hamn`` itself)."""


def _server_named() -> bool:
    source = click.get_current_context().get_parameter_source("server")
    return source not in (None, ParameterSource.DEFAULT)


def _server_checks(
    report: Report, target: Target, ca_file: Path | None, insecure: bool
) -> Verify | None:
    """DNS, connection, TLS, challenge and readiness. What to verify TLS with for the
    sign-in checks, or None when they must not run (no connection, untrusted TLS)."""
    addresses = check_dns(report, target)
    if addresses is None or not check_connect(report, target, addresses):
        report.add(skipped("Registry API checks", "the server cannot be reached"))
        return None
    trusted: Verify | None = True
    if target.scheme == "https":
        trusted = check_tls(report, target, ca_file, insecure)
    else:
        report.add(
            info(
                "TLS",
                "not used (plain HTTP): container clients need their insecure "
                "option, e.g. --tls-verify=false",
            )
        )
    # After an untrusted certificate (with --ignore-errors) the anonymous checks still
    # tell something; credentials are never sent over such a connection.
    anonymous_verify = trusted if trusted is not None else False
    if check_challenge(report, target, anonymous_verify):
        check_readiness(report, target, anonymous_verify)
    return trusted


def _sign_in_checks(
    report: Report, inv: Invocation, target: Target, registry: str, verify: Verify
) -> None:
    with registry_client(target, registry, inv.credentials, verify) as client:
        refresh = check_refresh_token(report, client, inv.credentials)
    if refresh is None:
        report.add(skipped("Registry and access token checks", "no refresh token"))
        return
    with registry_client(target, registry, refresh, verify) as client:
        exists = check_registry(report, client)
        token = check_access_token(report, client)
        if token is None:
            report.add(skipped("Access token on /v2/", "no access token"))
            return
        check_token_use(report, client, token, exists)


def _run(
    report: Report, inv: Invocation, registry: str | None, ca_file: Path | None, insecure: bool
) -> None:
    report.add(info("hamn CLI version", __version__))
    check_tools(report)
    if registry is None and not _server_named():
        report.add(info("Registry checks", "not run: pass -n NAME (and --server URL)"))
        return
    target = Target.of(normalize_server(inv.server))
    verify = _server_checks(report, target, ca_file, insecure)
    if registry is None:
        return
    if verify is None:
        report.add(
            skipped("Sign-in checks", "they need a reachable server whose certificate is trusted")
        )
    else:
        _sign_in_checks(report, inv, target, registry, verify)
    try:
        containers = containers_auth_path()
    except CLIError:
        containers = None
    check_credential_files(
        report,
        service_of(target.url),
        f"hamn login -n {registry} --server {target.url}",
        docker_config_path(),
        containers,
    )


@command(health_commands, "check-health")
@registry_option("-n", "--name", required=False)
@click.option("--ignore-errors", is_flag=True, help="Run every check, even after one has failed.")
@click.option("-y", "--yes", is_flag=True, help="Accepted for az's scripts; nothing is asked.")
@click.option(
    "--ca-file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    metavar="PEM",
    help="Trust this PEM certificate (or CA) for the server's TLS instead of the default store.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Check the rest even if the server's certificate is not trusted (it is still reported).",
)
def check_health(
    inv: Invocation,
    registry: str | None,
    ignore_errors: bool,
    yes: bool,
    ca_file: Path | None,
    insecure: bool,
) -> None:
    """Check the client tools, the way to the server, and signing in to a registry."""
    del yes  # nothing to confirm (see the module docstring)
    report = Report(click.echo, ignore_errors=ignore_errors)
    try:
        _run(report, inv, registry, ca_file, insecure)
    except StopChecks:
        click.echo("Stopped at the first error; --ignore-errors runs every check.")
    if report.errors:
        codes = ", ".join(dict.fromkeys(f.code or "?" for f in report.errors))
        raise CLIError(
            f"{len(report.errors)} check(s) failed: {codes}. Each says above what to do."
        )
