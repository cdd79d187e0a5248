"""``hamn``: the command line. ``hamn serve`` runs the registry."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from hamn import __version__
from hamn.cli.commands import register
from hamn.cli.commands.check_health import check_health
from hamn.cli.commands.fsck import fsck
from hamn.cli.commands.gc import gc
from hamn.cli.commands.job import job
from hamn.cli.commands.worker import WorkerProcesses, worker

if TYPE_CHECKING:
    from hamn.config import Settings

# The server stack (settings, stores, the web app) is imported inside ``serve``
# only: every other command talks HTTP, and importing it costs them ~0.5 s each.

#: Seconds a worker may take to finish in-flight requests on shutdown.
WORKER_STOP_SECONDS = 15


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hamn")
def cli() -> None:
    """hamn: a self-hosted container registry service modelled on Azure Container Registry."""


register(cli)
cli.add_command(check_health)
# Beside ``serve``: like it, ``fsck`` and ``gc`` work on the deployment's own database
# and storage.
cli.add_command(fsck)
cli.add_command(gc)
# ``worker`` runs background jobs from the deployment's database beside ``serve``;
# ``job list`` shows them.
cli.add_command(worker)
cli.add_command(job)


def _prepare(settings: Settings) -> tuple[bool, str | None]:
    """Create the data directory, migrate the schema, ensure the default registry, a
    signing key and the first owner.

    Returns whether this is the first start (the database did not exist) and the
    first owner's generated password, if one was generated now.
    """
    from hamn.http.app import prepare_service
    from hamn.metadata.store import MetadataStore, create_metadata_engine, migrate

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    first_start = not (settings.data_dir / "metadata.db").exists() and not settings.database_url
    engine = create_metadata_engine(
        settings.resolved_database_url, sqlite_synchronous=settings.sqlite_synchronous
    )
    migrate(engine)
    store = MetadataStore(engine, threads=1)
    try:
        password = asyncio.run(prepare_service(settings, store))
    finally:
        store.close()
    return first_start, password


def _hand_over_password(settings: Settings, password: str) -> str:
    """Where the banner shows a generated first-owner password.

    On a terminal it is shown as is, once. Otherwise stderr is probably a log
    (systemd, a container runtime), where a password must never land, so it goes
    to a 0600 file in the data directory and the banner names the file.
    """
    if sys.stderr.isatty():
        return f"password: {password}"
    path = settings.data_dir / "bootstrap-password"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(password + "\n")
    return f"password in {path} (delete the file once you have signed in)"


def _banner(settings: Settings, first_start: bool, password: str | None) -> str:
    address = f"{settings.host}:{settings.port}"

    def verify_flag(flag: str) -> str:
        # Plain HTTP needs the clients' "insecure" flag; with TLS they verify the certificate.
        return "" if settings.tls_cert else f"{flag}=false "

    lines = [f"hamn {__version__} serving the registry API on {settings.scheme}://{address}"]
    lines.append(f"  data directory: {settings.data_dir.absolute()}")
    if settings.job_workers:
        gc = f"every {settings.gc_interval:g} s" if settings.gc_interval else "off"
        lines.append(f"  job workers:    {settings.job_workers} (garbage collection {gc})")
    else:
        lines.append("  job workers:    none here (run `hamn worker` for background jobs)")
    if settings.tls_cert:
        lines.append(f"  TLS:            {settings.tls_min_version} and newer, {settings.tls_cert}")
    if settings.default_registry:
        reg = settings.default_registry
        lines += [
            f"  registry:       {reg} (default: {address}/<repository> reaches it;",
            f"                  so do {reg.lower()}.{settings.domain}:{settings.port}/<repository>"
            f" and {address}/{reg}/<repository>)",
            "  sign in:        hamn auth login --server "
            f"{settings.scheme}://{address} -u {settings.bootstrap_username}",
            f"                  then: hamn login -n {reg}  (docker, podman, buildah, skopeo)",
            f"  push an image:  skopeo copy {verify_flag('--dest-tls-verify')}"
            f"oci:./layout:latest docker://{address}/hello:latest",
            f"                 podman push {verify_flag('--tls-verify')}"
            f"hello docker://{address}/hello:latest",
        ]
    if first_start:
        lines.append("  (first start: created the data directory and the database)")
    if password:
        lines += [
            f"  first owner:    {settings.bootstrap_username}, "
            + _hand_over_password(settings, password),
            "                  (the server keeps only a hash; set HAMN_BOOTSTRAP_PASSWORD",
            "                  to choose it instead)",
        ]
    return "\n".join(lines)


@cli.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 5000).")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where data lives.")
@click.option("--workers", type=int, help="Worker processes (default 2).")
@click.option("--default-registry", help="Registry that answers plain <host>/<repo> paths.")
@click.option("--domain", help="Login servers are <registry>.<domain> (default localhost).")
@click.option("--config", "config_file", type=click.Path(exists=True), help="A TOML settings file.")
@click.option(
    "--tls-cert", type=click.Path(path_type=Path), help="PEM certificate (chain) for TLS."
)
@click.option("--tls-key", type=click.Path(path_type=Path), help="PKCS#8 PEM private key for TLS.")
@click.option(
    "--tls-min-version",
    type=click.Choice(["1.2", "1.3"]),
    help="Oldest TLS version accepted (default 1.2).",
)
@click.option("--debug", is_flag=True, default=None, help="Log at debug level.")
def serve(
    host: str | None,
    port: int | None,
    data_dir: Path | None,
    workers: int | None,
    default_registry: str | None,
    domain: str | None,
    config_file: str | None,
    tls_cert: Path | None,
    tls_key: Path | None,
    tls_min_version: str | None,
    debug: bool | None,
) -> None:
    """Run the registry (embedded defaults: SQLite and the local filesystem)."""
    from granian import Granian
    from granian.constants import Interfaces, Loops, SSLProtocols
    from pydantic import ValidationError

    from hamn.config import load_settings
    from hamn.http.app import SETTINGS_ENV
    from hamn.http.observability import METRICS_DIR_ENV, fresh_metrics_directory
    from hamn.logs import granian_log_config

    try:
        settings = load_settings(
            config_file,
            host=host,
            port=port,
            data_dir=data_dir,
            workers=workers,
            default_registry=default_registry,
            domain=domain,
            tls_cert=tls_cert,
            tls_key=tls_key,
            tls_min_version=tls_min_version,
            log_level="debug" if debug else None,
        )
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        first_start, password = _prepare(settings)
    except ValueError as exc:  # a bad server key or bootstrap password
        raise click.UsageError(str(exc)) from None
    # The banner goes to the terminal only: it is not a log line, and it is shown once.
    click.echo(_banner(settings, first_start, password), err=True)
    os.environ[SETTINGS_ENV] = settings.model_dump_json(exclude={"bootstrap_password"})
    # Workers share metrics through files in one directory, named before any of
    # them imports prometheus_client (it picks multiprocess mode at import).
    os.environ[METRICS_DIR_ENV] = fresh_metrics_directory(settings.data_dir / "run" / "metrics")
    # Background jobs (garbage collection...) run in job worker processes of their own.
    job_workers = WorkerProcesses(settings.job_workers)
    job_workers.start()
    try:
        Granian(
            "hamn.http.app:app_from_environment",
            factory=True,
            address=settings.host,
            port=settings.port,
            interface=Interfaces.ASGI,
            workers=settings.workers,
            loop=Loops.uvloop,
            log_level=settings.log_level,  # type: ignore[arg-type]
            log_access=False,
            log_dictconfig=granian_log_config(settings.log_level),
            backlog=2048,
            respawn_failed_workers=True,
            # A worker once hung in granian's own signal handling on shutdown (seen
            # after hours under load, not reproduced on demand); a stop must still
            # stop, so workers that do not exit gracefully are killed after this.
            workers_kill_timeout=WORKER_STOP_SECONDS,
            ssl_cert=settings.tls_cert,
            ssl_key=settings.tls_key,
            ssl_protocol_min=SSLProtocols.tls13
            if settings.tls_min_version == "1.3"
            else SSLProtocols.tls12,
        ).serve()
    finally:
        job_workers.stop()


def main() -> None:
    """Console entry point."""
    try:
        cli(prog_name="hamn")
    except KeyboardInterrupt:
        sys.exit(130)
