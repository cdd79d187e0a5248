"""Formatting of the report: figures, tables, ratios, and the rows every target gets."""

from __future__ import annotations

from typing import Any


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        a = abs(v)
        if a >= 100:
            return f"{v:,.0f}"
        if a >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    return str(v)


def dig(d: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(d, dict) or part not in d:
            return None
        d = d[part]
    return d


# (section, label, result path, higher_is_better)
ROWS: list[tuple[str, str, str, bool | None]] = [
    ("2. 256 MiB blob", "push monolithic MiB/s, best", "blob_push.mono_mib_s.best", True),
    ("2. 256 MiB blob", "push monolithic MiB/s, median", "blob_push.mono_mib_s.median", True),
    ("2. 256 MiB blob", "push chunked MiB/s, best", "blob_push.chunked_mib_s.best", True),
    ("2. 256 MiB blob", "push chunked MiB/s, median", "blob_push.chunked_mib_s.median", True),
    ("2. 256 MiB blob", "pull MiB/s, best", "blob_pull.mib_s.best", True),
    ("2. 256 MiB blob", "pull MiB/s, median", "blob_pull.mib_s.median", True),
    ("2. 256 MiB blob", "server cores used while pushing", "blob_push.server_cores", None),
    ("3. manifest by tag", "GET req/s (wrk)", "manifest_get.rps", True),
    ("3. manifest by tag", "GET p99 ms (wrk)", "manifest_get.p99_ms", False),
    ("3. manifest by tag", "HEAD req/s (benchclient)", "manifest_head.rps", True),
    ("3. manifest by tag", "HEAD p99 ms (benchclient)", "manifest_head.p99_ms", False),
    ("3. manifest by tag", "GET req/s (benchclient)", "manifest_get_benchclient.rps", True),
    ("3. manifest by tag", "GET p99 ms (benchclient)", "manifest_get_benchclient.p99_ms", False),
    ("3. manifest by tag", "server cores used, wrk GET", "manifest_get.server_cores", None),
    ("3. manifest by tag", "machine cores busy, wrk GET", "manifest_get.machine_cores", None),
    ("4. tags", "tags/list of 1,000: req/s", "tags_list.rps", True),
    ("4. tags", "tags/list of 1,000: p99 ms", "tags_list.p99_ms", False),
    ("4. tags", "walk n=100: full walk ms, best", "tags_walk.ms.best", False),
    ("4. tags", "walk n=100: pages", "tags_walk.pages", None),
    ("4. tags", "walk n=100: pages/s", "tags_walk.pages_s", True),
    ("4. tags", "walk n=100: tags/s", "tags_walk.tags_s", True),
    ("4. tags", "walk: server honours n", "tags_walk.honours_n", None),
    ("4. tags", "setup: tags created/s (not a goal)", "walk_setup.rate", None),
    ("5. small layers", "POST+PUT layers/s, best", "small_layers.per_s.best", True),
    ("5. small layers", "POST+PUT layers/s, median", "small_layers.per_s.median", True),
    ("5. small layers", "client cores used", "small_layers.client_cores", None),
    ("5. small layers", "server cores used (approx.)", "small_layers.server_cores", None),
    ("5. small layers", "single POST layers/s, best", "small_layers_single_post.per_s.best", True),
    ("6. memory (RSS of the process tree)", "idle MiB", "memory.idle_mib", False),
    (
        "6. memory (RSS of the process tree)",
        "peak during small pushes MiB",
        "memory.small_push_mib",
        False,
    ),
    (
        "6. memory (RSS of the process tree)",
        "peak during 256 MiB pushes MiB",
        "memory.big_push_mib",
        False,
    ),
    ("6. memory (RSS of the process tree)", "growth big - small MiB", "memory.growth_mib", False),
    ("6. memory (RSS of the process tree)", "flat (growth <= 32 MiB)", "memory.flat", None),
    (
        "6. memory (RSS of the process tree)",
        "peak over the whole run MiB",
        "memory.peak_mib",
        False,
    ),
]


def table(header: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    line = "  ".join("-" * w for w in widths)

    def one(r: list[str]) -> str:
        return "  ".join(
            str(c).ljust(w) if i == 0 else str(c).rjust(w)
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )

    return "\n".join([one(header), line, *(one(r) for r in rows)])


def ratio(a: Any, b: Any) -> float | None:
    if isinstance(a, bool) or isinstance(b, bool):
        return None
    if isinstance(a, int | float) and isinstance(b, int | float) and b:
        return float(a) / float(b)
    return None


def unsupported_cell(res: dict[str, Any], path: str) -> str | None:
    key = path.split(".")[0]
    if isinstance(res.get(key), dict) and res[key].get("unsupported"):
        return "n/a"
    if key in res.get("_errors", {}):
        return "ERR"
    return None


def figure(entry: dict[str, Any], path: str) -> Any:
    """A target's figure at ``path`` of its results (``*_setup.rate``, tags made per
    second, is derived)."""
    res = entry.get("results", {})
    if path.endswith("_setup.rate"):
        ws = res.get(path.split(".")[0])
        return ws["tags"] / ws["setup_seconds"] if ws and ws["setup_seconds"] else None
    return dig(res, path)


def cell(entry: dict[str, Any], path: str) -> str:
    """The figure as the tables show it: n/a when unsupported, ERR when it failed."""
    val = figure(entry, path)
    if val is not None:
        return fmt(val)
    res = {**entry.get("results", {}), "_errors": entry.get("errors", {})}
    return unsupported_cell(res, path) or "-"
