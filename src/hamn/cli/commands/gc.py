"""``hamn gc``: collect garbage in the deployment's storage (SPEC §5.4).

Like ``hamn fsck`` it talks to no server: it opens the database and blob storage
of ``hamn serve`` (the same ``--config``, ``--data-dir`` and ``HAMN_*``
settings) and is safe while the server runs (see :mod:`hamn.services.gc`). The
deployment also collects by itself every ``gc_interval`` (a ``gc`` job its job
workers run); this command is for operators who want it now, or want to see what
it would remove (``--dry-run``). It takes the same lease in the database as a
job's collection, so it never overlaps one on any host: it exits 3 instead.

Exit status: 0 done, 2 the command line is wrong, 3 the collection could not
run (no database, another collection running, a database error).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hamn.cli.commands.fsck import CheckFailed, Duration, _check_deployment_exists, _load
from hamn.cli.context import HamnGroup, Invocation, command, log

if TYPE_CHECKING:
    from hamn.config import Settings
    from hamn.services.gc import GcReport


@click.group("gc", cls=HamnGroup)
def gc_commands() -> None:
    """Holder of ``gc`` (added to ``hamn`` itself by hamn.cli.main)."""


def _table(result: Any) -> list[OrderedDict[str, str]]:
    counts = result.get("removed", {}) if isinstance(result, dict) else {}
    return [
        OrderedDict(
            [
                ("Dry run", str(result.get("dryRun", " "))),
                ("Untagged manifests", str(counts.get("untaggedManifests", " "))),
                ("Blob links", str(counts.get("blobLinks", " "))),
                ("Blobs", str(counts.get("blobs", " "))),
                ("Files without row", str(counts.get("blobFilesWithoutRow", " "))),
                ("Abandoned uploads", str(counts.get("abandonedUploads", " "))),
                ("Upload files", str(counts.get("uploadFilesWithoutSession", " "))),
                ("Bytes freed", str(result.get("bytesFreed", " "))),
                ("In use", str(result.get("inUse", " "))),
            ]
        )
    ]


def report_json(report: GcReport) -> dict[str, Any]:
    """The report in the CLI's JSON shape (camelCase keys, as az writes them); the
    lists name at most the first thousand of each kind, the counts are complete."""
    return {
        "dryRun": report.dry_run,
        "grace": report.grace,
        "uploadTimeout": report.upload_timeout,
        "startedAt": report.started_at.isoformat(),
        "seconds": round(report.seconds, 3),
        "removed": {
            "untaggedManifests": report.untagged_manifests.count,
            "untaggedManifestBytes": report.untagged_manifests.bytes,
            "blobLinks": report.links.count,
            "blobs": report.blobs.count,
            "blobBytes": report.blobs.bytes,
            "blobFilesWithoutRow": report.orphan_blob_files.count,
            "blobFileBytes": report.orphan_blob_files.bytes,
            "abandonedUploads": report.uploads.count,
            "abandonedUploadBytes": report.uploads.bytes,
            "uploadFilesWithoutSession": report.orphan_upload_files.count,
            "uploadFileBytes": report.orphan_upload_files.bytes,
        },
        "bytesFreed": report.bytes_freed,
        "inUse": report.in_use,
        "untaggedManifests": report.untagged_manifests.items,
        "blobLinks": report.links.items,
        "blobs": report.blobs.items,
        "blobFilesWithoutRow": report.orphan_blob_files.items,
        "abandonedUploads": report.uploads.items,
        "uploadFilesWithoutSession": report.orphan_upload_files.items,
    }


async def _collect(
    settings: Settings,
    *,
    dry_run: bool,
    grace: float,
    upload_timeout: float,
    delete_untagged: bool,
) -> GcReport:
    from hamn.http.app import deployment_stores, garbage_collector

    with deployment_stores(settings) as (store, driver):
        collector = garbage_collector(settings, store, driver)
        collector.grace, collector.upload_timeout = grace, upload_timeout
        collector.delete_untagged = collector.delete_untagged or delete_untagged
        return await collector.collect(dry_run=dry_run)


@command(gc_commands, "gc", server=False, table=_table)
@click.option(
    "--config", "config_file", type=click.Path(exists=True), help="The server's TOML settings file."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="The server's data directory.")
@click.option("--dry-run", is_flag=True, help="Report what would be removed; remove nothing.")
@click.option(
    "--grace",
    type=Duration(),
    help="Blob links younger than this are kept for pushes in flight "
    "(default: the gc_grace setting, 1h).",
)
@click.option(
    "--upload-timeout",
    type=Duration(),
    help="Upload sessions idle this long are removed (default: the upload_timeout setting, 24h).",
)
@click.option(
    "--delete-untagged",
    is_flag=True,
    help="Also delete untagged manifests nothing needs (no tag, in no index, not a "
    "referrer of a kept manifest, not locked) once untagged for --grace; default: the "
    "gc_delete_untagged setting, off, as ACR keeps them.",
)
def gc(
    invocation: Invocation,
    config_file: str | None,
    data_dir: Path | None,
    dry_run: bool,
    grace: float | None,
    upload_timeout: float | None,
    delete_untagged: bool,
) -> dict[str, Any]:
    """Remove blobs no image uses and abandoned uploads, beside a running server.

    Removes blob links no manifest of their repository references (older than
    --grace), blobs nothing links or references, and upload sessions idle for
    --upload-timeout. Untagged manifests are kept, except that each registry's
    enabled retention policy (`hamn config retention update`) first deletes those
    untagged for its --days since it was enabled. Reads the database and storage
    of `hamn serve` (same --config, --data-dir and HAMN_* settings).
    """
    from hamn.services.gc import CollectionRunning

    settings = _load(config_file, data_dir)
    _check_deployment_exists(settings)
    try:
        report = asyncio.run(
            _collect(
                settings,
                dry_run=dry_run,
                grace=settings.gc_grace if grace is None else grace,
                upload_timeout=settings.upload_timeout
                if upload_timeout is None
                else upload_timeout,
                delete_untagged=delete_untagged,
            )
        )
    except CollectionRunning as exc:
        raise CheckFailed(f"{exc}; try again when it has finished.") from None
    except click.ClickException:
        raise
    except Exception as exc:
        log.debug("gc failed", exc_info=True)
        raise CheckFailed(
            f"The collection could not run: {type(exc).__name__}: {exc}. If the database is "
            "older than this hamn, start `hamn serve` once to migrate it."
        ) from None
    return report_json(report)
