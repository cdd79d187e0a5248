"""``hamn job list``: the deployment's background jobs (garbage collection...).

Like ``hamn gc`` it talks to no server: it reads the database of ``hamn serve``
(the same ``--config``, ``--data-dir`` and ``HAMN_*`` settings), so an operator can
see what the job workers did, what waits, and why a job failed.

Exit status: 0 done, 2 the command line is wrong, 3 the jobs could not be read.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from hamn.cli.commands.fsck import CheckFailed, _check_deployment_exists, _load
from hamn.cli.context import HamnGroup, Invocation, command, log

if TYPE_CHECKING:
    from hamn.config import Settings
    from hamn.metadata.jobs import Job, JobState

STATES = ("queued", "running", "succeeded", "failed")


@click.group("job", cls=HamnGroup)
def job() -> None:
    """Background jobs the job workers run (hamn worker)."""


def _time(value: Any) -> str:
    return value.isoformat() if value is not None else ""


def job_json(found: Job) -> dict[str, Any]:
    """A job in the CLI's JSON shape (camelCase keys, as az writes them)."""
    return {
        "id": found.id,
        "kind": found.kind,
        "state": found.state,
        "attempts": found.attempts,
        "maxAttempts": found.max_attempts,
        "runAt": _time(found.run_at),
        "claimedBy": found.claimed_by,
        "leaseUntil": _time(found.lease_until),
        "lastError": found.last_error,
        "createdAt": _time(found.created_at),
        "startedAt": _time(found.started_at),
        "finishedAt": _time(found.finished_at),
        "uniqueKey": found.unique_key,
        "payload": found.payload,
    }


def _table(result: Any) -> list[OrderedDict[str, str]]:
    columns = (("Id", "id"), ("Kind", "kind"), ("State", "state"), ("Attempts", "attempts"))
    rows = []
    for item in result if isinstance(result, list) else []:
        row = OrderedDict((title, str(item.get(key, ""))) for title, key in columns)
        row["Run at"] = str(item.get("runAt", ""))
        row["Finished"] = str(item.get("finishedAt", ""))
        row["Error"] = str(item.get("lastError") or "")[:80]
        rows.append(row)
    return rows


async def _list(
    settings: Settings, kind: str | None, state: JobState | None, top: int
) -> list[Job]:
    from hamn.http.app import deployment_stores
    from hamn.metadata.jobs import JobStore

    with deployment_stores(settings) as (store, _):
        return await JobStore(store).listing(kind=kind, state=state, limit=top, newest_first=True)


@command(job, "list", server=False, table=_table)
@click.option(
    "--config", "config_file", type=click.Path(exists=True), help="The server's TOML settings file."
)
@click.option("--data-dir", type=click.Path(path_type=Path), help="The server's data directory.")
@click.option("--kind", help="Only jobs of this kind (gc, ...).")
@click.option("--state", type=click.Choice(STATES), help="Only jobs in this state.")
@click.option("--top", type=click.IntRange(1, 10000), default=100, show_default=True)
def job_list(
    invocation: Invocation,
    config_file: str | None,
    data_dir: Path | None,
    kind: str | None,
    state: JobState | None,
    top: int,
) -> list[dict[str, Any]]:
    """List the deployment's jobs, newest first: what ran, what waits, what failed and why.

    Reads the database of `hamn serve` (same --config, --data-dir and HAMN_* settings).
    Finished jobs are kept for a day.
    """
    settings = _load(config_file, data_dir)
    _check_deployment_exists(settings)
    try:
        found = asyncio.run(_list(settings, kind, state, top))
    except Exception as exc:
        log.debug("job list failed", exc_info=True)
        raise CheckFailed(f"The jobs could not be read: {type(exc).__name__}: {exc}.") from None
    return [job_json(j) for j in found]
