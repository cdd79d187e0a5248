"""``hamn fsck``: check the deployment's stored content and references (SPEC §11).

Unlike the other commands it talks to no server: it opens the database and the
blob storage that ``hamn serve`` uses (the same ``--config``, ``--data-dir`` and
``HAMN_*`` settings) and is safe to run while the server runs. The checks live
in :mod:`hamn.services.fsck`; this module parses arguments, opens the stores,
shapes the report (az's ``-o``/``--query``) and sets the exit status:

* 0: nothing is wrong (or ``--repair`` removed everything that was);
* 1: problems remain (the report lists each, and what to do);
* 2: the command line is wrong;
* 3: the check could not run (no database, storage missing, a database error).
"""

from __future__ import annotations

import asyncio
import os
import re
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hamn.cli.context import HamnGroup, Invocation, command, log
from hamn.cli.errors import CLIError

if TYPE_CHECKING:
    from hamn.config import Settings
    from hamn.services.fsck import FsckReport

#: ``ctx.meta`` key through which the command hands its exit status to the wrapper.
_STATUS = "hamn.fsck.status"
_UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)([dhms])")


class CheckFailed(CLIError):
    """The check could not run at all (distinct from finding problems)."""

    exit_code = 3


class Duration(click.ParamType[float]):
    """A duration in seconds, written ``1h``, ``90m``, ``1h30m``, ``7d``, ``0`` or ``3600``."""

    name = "DURATION"

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> float:
        """Seconds; a malformed duration is a usage error."""
        if isinstance(value, int | float):
            return float(value)
        text = str(value).strip().lower()
        if re.fullmatch(r"\d+(?:\.\d+)?", text):
            return float(text)
        parts = _DURATION.findall(text)
        if not parts or "".join(n + u for n, u in parts) != text:
            self.fail(f"'{value}' is not a duration such as 1h, 90m, 1h30m or 7d", param, ctx)
        return sum(float(n) * _UNITS[u] for n, u in parts)


@click.group("fsck", cls=HamnGroup)
def fsck_commands() -> None:
    """Holder of ``fsck`` (added to ``hamn`` itself by hamn.cli.main)."""


def _table(result: Any) -> list[OrderedDict[str, str]]:
    """One row per problem; a clean report is one row of what was checked."""
    problems = (result.get("problems") or []) if isinstance(result, dict) else []
    if not problems:
        checked = result.get("checked", {}) if isinstance(result, dict) else {}
        return [
            OrderedDict(
                [
                    ("Status", str(result.get("status", " "))),
                    ("Blob files", str(checked.get("blobFiles", " "))),
                    ("Blob rows", str(checked.get("blobRows", " "))),
                    ("Manifests", str(checked.get("manifests", " "))),
                    ("Tags", str(checked.get("tags", " "))),
                    ("Uploads", str(checked.get("uploads", " "))),
                    ("In grace", str(result.get("inGrace", " "))),
                ]
            )
        ]
    return [
        OrderedDict(
            [
                ("Kind", p["kind"]),
                ("Subject", p["subject"]),
                ("Problem", p["problem"]),
                ("Repair", p.get("outcome") or p["repair"]),
                ("Remedy", p.get("remedy") or " "),
            ]
        )
        for p in problems
    ]


def report_json(report: FsckReport) -> dict[str, Any]:
    """The report in the CLI's JSON shape (camelCase keys, as az writes them)."""
    c = report.checked
    status = ("repaired" if report.problems else "clean") if report.clean else "problems"
    return {
        "status": status,
        "repair": report.repair,
        "checked": {
            "blobFiles": c.blob_files,
            "blobBytes": c.blob_bytes,
            "blobRows": c.blob_rows,
            "repositoryBlobs": c.repository_blobs,
            "manifests": c.manifests,
            "manifestBlobs": c.manifest_blobs,
            "manifestChildren": c.manifest_children,
            "tags": c.tags,
            "uploadFiles": c.upload_files,
            "uploads": c.uploads,
        },
        "inGrace": report.in_grace,
        "problemCounts": report.by_kind(),
        "remaining": len(report.remaining),
        "problems": [
            {
                "kind": p.kind,
                "severity": p.severity,
                "subject": p.subject,
                "repositories": list(p.repositories),
                "problem": p.problem,
                "repair": p.repair,
                "remedy": p.remedy,
                "repaired": p.repaired,
                "outcome": p.outcome,
            }
            for p in report.problems
        ],
    }


def _load(config_file: str | None, data_dir: Path | None) -> Settings:
    from pydantic import ValidationError

    from hamn.config import load_settings

    try:
        return load_settings(config_file, data_dir=data_dir)
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None


def _check_deployment_exists(settings: Settings) -> None:
    """Refuse to check an empty place: a wrong ``--data-dir`` must not read as data loss."""
    url = settings.resolved_database_url
    if url.startswith("sqlite:///"):
        path = url.removeprefix("sqlite:///")
        if not os.path.isfile(path):
            raise CheckFailed(
                f"No hamn database at {path}. Point --data-dir (or --config, or "
                "HAMN_DATA_DIR / HAMN_DATABASE_URL) at the server's data."
            )
    root = settings.resolved_storage_root
    if settings.storage_driver == "filesystem" and not os.path.isdir(root):
        raise CheckFailed(
            f"No blob storage at {root}. Point --data-dir (or storage_root) at the server's data."
        )


async def _check(
    settings: Settings, *, repair: bool, grace: float, abandoned_after: float
) -> FsckReport:
    from hamn.http.app import deployment_stores
    from hamn.services.fsck import FsckService

    # No migration: fsck reads the schema the server made, and writes only with --repair.
    with deployment_stores(settings) as (store, driver):
        return await FsckService(store, driver).check(
            repair=repair, grace=grace, abandoned_after=abandoned_after
        )


@command(fsck_commands, "fsck", server=False, table=_table)
@click.option(
    "--config", "config_file", type=click.Path(exists=True), help="The server's TOML settings file."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="The server's data directory.")
@click.option(
    "--repair",
    is_flag=True,
    help="Remove what nothing can reach (blob files without a row, orphaned, broken or "
    "abandoned uploads) and move corrupt blobs into the storage's quarantine/.",
)
@click.option(
    "--grace",
    type=Duration(),
    default="1h",
    show_default=True,
    help="Files and upload sessions changed more recently than this are taken for pushes "
    "in flight: neither problems nor removed.",
)
@click.option(
    "--abandoned-after",
    type=Duration(),
    default="7d",
    show_default=True,
    help="An upload session idle this long is abandoned.",
)
def fsck(
    invocation: Invocation,
    config_file: str | None,
    data_dir: Path | None,
    repair: bool,
    grace: float,
    abandoned_after: float,
) -> dict[str, Any]:
    """Check every stored blob's digest and every reference; --repair removes what is unreachable.

    Reads the database and storage of `hamn serve` (same --config, --data-dir and
    HAMN_* settings), safely while it runs. Exit status: 0 nothing wrong (or all
    repaired), 1 problems remain, 3 the check could not run.
    """
    settings = _load(config_file, data_dir)
    _check_deployment_exists(settings)
    try:
        report = asyncio.run(
            _check(settings, repair=repair, grace=grace, abandoned_after=abandoned_after)
        )
    except click.ClickException:
        raise
    except Exception as exc:
        log.debug("fsck failed", exc_info=True)
        raise CheckFailed(
            f"The check could not run: {type(exc).__name__}: {exc}. If the database is older "
            "than this hamn, start `hamn serve` once to migrate it."
        ) from None
    remaining = len(report.remaining)
    if remaining:
        found = ", ".join(f"{n} {kind}" for kind, n in report.by_kind().items())
        invocation.warn(
            f"fsck found {len(report.problems)} problem(s): {found}; {remaining} remain"
            + ("" if repair else " (run with --repair to remove what is unreachable)")
        )
    click.get_current_context().meta[_STATUS] = 1 if remaining else 0
    return report_json(report)


def _exit_with_status(cmd: click.Command) -> None:
    """After the report is printed, exit 1 when problems remain (the CI contract)."""
    inner = cmd.callback
    assert inner is not None

    def callback(**kwargs: Any) -> None:
        inner(**kwargs)
        ctx = click.get_current_context()
        ctx.exit(ctx.meta.get(_STATUS, 0))

    cmd.callback = callback


_exit_with_status(fsck)
