"""The report of the scaled group: its figures side by side, how hamn's throughput grows
from 1 to 2 processes, and hamn against Distribution on the same kind of storage."""

from __future__ import annotations

import os
from typing import Any

from tables import cell, figure, ratio, table
from targets import (
    D3_AZ,
    D3_FS,
    D3_S3,
    HAMN_AZ1,
    HAMN_AZ2,
    HAMN_FS1,
    HAMN_FS2,
    HAMN_S3_1,
    HAMN_S3_2,
    SCALED,
)

SHORT = {
    HAMN_AZ1: "hamn 1p az",
    HAMN_AZ2: "hamn 2p az",
    D3_AZ: "3.x az",
    HAMN_S3_1: "hamn 1p s3",
    HAMN_S3_2: "hamn 2p s3",
    D3_S3: "3.x s3",
    HAMN_FS1: "hamn 1p fs",
    HAMN_FS2: "hamn 2p fs",
    D3_FS: "3.x fs",
}
#: (column label, numerator, denominator)
RATIOS = (
    ("2p/1p az", HAMN_AZ2, HAMN_AZ1),
    ("1p/3.x az", HAMN_AZ1, D3_AZ),
    ("2p/3.x az", HAMN_AZ2, D3_AZ),
    ("2p/1p s3", HAMN_S3_2, HAMN_S3_1),
    ("1p/3.x s3", HAMN_S3_1, D3_S3),
    ("2p/3.x s3", HAMN_S3_2, D3_S3),
    ("2p/1p fs", HAMN_FS2, HAMN_FS1),
    ("1p/3.x fs", HAMN_FS1, D3_FS),
    ("2p/3.x fs", HAMN_FS2, D3_FS),
)
#: (label, result path, higher is better; None: shown, no ratio)
SCALED_ROWS: list[tuple[str, str, bool | None]] = [
    ("push monolithic MiB/s, best", "blob_push.mono_mib_s.best", True),
    ("push chunked MiB/s, best", "blob_push.chunked_mib_s.best", True),
    ("pull MiB/s, best", "blob_pull.mib_s.best", True),
    ("manifest GET req/s (wrk)", "manifest_get.rps", True),
    ("manifest GET p99 ms (wrk)", "manifest_get.p99_ms", False),
    ("manifest HEAD req/s (benchclient)", "manifest_head.rps", True),
    ("manifest HEAD p99 ms", "manifest_head.p99_ms", False),
    ("tags/list of 1,000 req/s", "tags_list.rps", True),
    ("tags/list of 1,000: one request alone ms", "tags_list.alone_ms", False),
    ("walk n=100: full walk ms, best", "tags_walk.ms.best", False),
    ("setup: tags created/s (manifest PUTs)", "tags_setup.rate", True),
    ("small layers POST+PUT layers/s, best", "small_layers.per_s.best", True),
    ("small layers single POST layers/s", "small_layers_single_post.per_s.best", True),
    ("server cores: pushing", "blob_push.server_cores", None),
    ("server cores: wrk GET", "manifest_get.server_cores", None),
    ("server cores: small layers", "small_layers.server_cores", None),
    ("machine cores busy: pushing", "blob_push.machine_cores", None),
    ("machine cores busy: wrk GET", "manifest_get.machine_cores", None),
    ("machine cores busy: small layers", "small_layers.machine_cores", None),
    ("nginx cores: wrk GET", "manifest_get.service_cores.nginx", None),
    ("storage cores: pushing", "blob_push.service_cores.storage", None),
    ("storage cores: wrk GET", "manifest_get.service_cores.storage", None),
    ("storage cores: small layers", "small_layers.service_cores.storage", None),
    ("postgres cores: wrk GET", "manifest_get.service_cores.postgres", None),
    ("postgres cores: small layers", "small_layers.service_cores.postgres", None),
    ("RSS MiB of the servers, idle", "memory.idle_mib", False),
    ("RSS MiB of the servers, peak", "memory.peak_mib", False),
]
#: The throughput rows the 1 -> 2 process verdicts are given for.
SCALING_ROWS = [r for r in SCALED_ROWS if r[2] is True]
#: 2p/1p at or above this is growth; below FLAT_LOW a loss.
GROWS, FLAT_LOW = 1.15, 0.9


def _with_storage(entry: dict[str, Any]) -> dict[str, Any]:
    """The entry with its storage service's CPU also under the name ``storage``."""
    results = {}
    for key, value in entry.get("results", {}).items():
        if isinstance(value, dict) and "service_cores" in value:
            cores = dict(value["service_cores"])
            for name in ("azurite", "seaweedfs"):
                if name in cores:
                    cores["storage"] = cores[name]
            value = {**value, "service_cores": cores}
        results[key] = value
    return {**entry, "results": results}


def scaled_report(doc: dict[str, Any]) -> list[str]:
    """Section 7 (empty when no scaled target ran)."""
    targets = {n: _with_storage(e) for n, e in doc["targets"].items() if n in SCALED}
    if not targets:
        return []
    cols = [n for n in SCALED if n in targets]
    ratios = [(label, a, b) for label, a, b in RATIOS if a in targets and b in targets]
    out = ["7. Scaled set-up: PostgreSQL + object storage, every target behind nginx"]
    for name in cols:
        setup = targets[name].get("setup", {})
        workers = setup.get("workers")
        out.append(
            f"  {SHORT[name]} = {name}: {setup.get('processes', '?')} process(es)"
            + (f" x {workers} worker(s)" if workers else "")
            + f", {setup.get('storage_service', '?')}"
            + (f", {setup['database']}" if setup.get("database") else "")
        )
    rows = []
    for label, path, higher in SCALED_ROWS:
        cells = [cell(targets[n], path) for n in cols]
        if all(c == "-" for c in cells):
            continue
        rs = []
        for _, a, b in ratios:
            r = ratio(figure(targets[a], path), figure(targets[b], path)) if higher else None
            rs.append(f"{r:.2f}" if r is not None else "-")
        arrow = {True: " (up)", False: " (down)", None: ""}[higher]
        rows.append([label + arrow, *cells, *rs])
    out.append(table(["", *(SHORT[n] for n in cols), *(r[0] for r in ratios)], rows))
    out.append(
        "  ratios: 2p/1p = hamn with 2 processes / with 1; 1p/3.x, 2p/3.x = hamn / "
        "Distribution 3.x on the same storage; cores are CPU time over wall time of the step"
    )
    out.extend(_scaling(targets))
    errs = [(n, k, v) for n in cols for k, v in targets[n].get("errors", {}).items()]
    if errs:
        out.append("")
        out.append("Errors (scaled)")
        out.extend(f"  {n} / {k}: {v}" for n, k, v in errs)
    return out


def _scaling(targets: dict[str, dict[str, Any]]) -> list[str]:
    """How throughput grows from 1 to 2 processes, workload by workload."""
    out: list[str] = []
    for one, two, kind in (
        (HAMN_AZ1, HAMN_AZ2, "Azurite"),
        (HAMN_S3_1, HAMN_S3_2, "S3"),
        (HAMN_FS1, HAMN_FS2, "a shared local directory"),
    ):
        if one not in targets or two not in targets:
            continue
        out.append("")
        out.append(f"1 -> 2 processes (hamn on PostgreSQL + {kind}), on {os.cpu_count()} cores")
        rows = []
        for label, path, _ in SCALING_ROWS:
            r = ratio(figure(targets[two], path), figure(targets[one], path))
            if r is None:
                continue
            verdict = "grows" if r >= GROWS else "flat" if r >= FLAT_LOW else "drops"
            rows.append([label, f"{r:.2f}x", verdict])
        out.append(table(["workload", "2p/1p", ""], rows))
    return out
