"""Rendering a command's result the way ``az`` does: ``--query`` then ``--output``.

Pure functions, no I/O. The rules follow the Azure CLI (knack) so that scripts
written for ``az acr`` read hamn's output unchanged:

* ``json``: two-space indent, keys sorted, non-ASCII written as is.
* ``jsonc`` / ``yamlc``: the same, coloured; only when stdout is a terminal
  (the caller decides and passes ``color``).
* ``yaml``: block style, keys sorted.
* ``tsv``: one line per list item; an object's values tab-separated, in the
  query's order for objects a ``--query`` built and in key order otherwise; a
  nested list is written as its length, a nested object as an empty field,
  null as ``None``; a boolean that is a whole line is ``true``/``false``, one
  inside an object ``True``/``False``.
* ``table``: a command's column transformer when it has one and no ``--query``
  is active, else columns derived from the scalar fields (``id``, ``type`` and
  ``etag`` left out), headers with a capital first letter.
* ``none``: nothing.

A result of ``None`` prints nothing in every format.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jmespath
import yaml

#: The ``-o/--output`` choices, in the order ``az`` lists them.
OUTPUT_FORMATS = ("json", "jsonc", "none", "table", "tsv", "yaml", "yamlc")

#: A table transformer turns a command's result into rows (dicts of column -> value).
TableTransformer = Callable[[Any], Any]

#: Keys the generic table leaves out (as az does: they are long and rarely useful).
_TABLE_SKIP_KEYS = frozenset({"id", "type", "etag"})

# ANSI colours for jsonc/yamlc.
_RESET = "\x1b[0m"
_KEY = "\x1b[94m"
_STRING = "\x1b[32m"
_NUMBER = "\x1b[36m"
_LITERAL = "\x1b[35m"


class OutputError(Exception):
    """The result cannot be shown in the requested format; the message says what to do."""


# ---------------------------------------------------------------- --query


def compile_query(expression: str) -> Any:
    """Compile a JMESPath expression; raise ValueError with a readable reason."""
    try:
        return jmespath.compile(expression)
    except (jmespath.exceptions.JMESPathError, KeyError, ValueError) as exc:
        raise ValueError(f"invalid JMESPath query {expression!r}: {exc}") from None


def apply_query(query: Any, result: Any) -> Any:
    """Apply a compiled query; objects the query builds keep the query's key order."""
    return query.search(result, jmespath.Options(dict_cls=OrderedDict))


# ---------------------------------------------------------------- formats


def render(
    result: Any,
    output: str,
    *,
    query_active: bool = False,
    table_transformer: TableTransformer | None = None,
    color: bool = False,
) -> str:
    """The text to write to stdout for ``result`` (already filtered by ``--query``)."""
    if result is None or output == "none":
        return ""
    if output in ("json", "jsonc"):
        text = format_json(result)
        return colorize_json(text) if output == "jsonc" and color else text
    if output in ("yaml", "yamlc"):
        text = format_yaml(result)
        return colorize_yaml(text) if output == "yamlc" and color else text
    if output == "tsv":
        return format_tsv(result)
    if output == "table":
        return format_table(result, query_active=query_active, transformer=table_transformer)
    raise OutputError(
        f"unknown output format {output!r}; choose one of {', '.join(OUTPUT_FORMATS)}"
    )


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return value.decode()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def format_json(result: Any) -> str:
    """Indented JSON with sorted keys, as ``az -o json`` prints it."""
    return (
        json.dumps(
            result,
            ensure_ascii=False,
            indent=2,
            sort_keys=True,
            separators=(",", ": "),
            default=_json_default,
        )
        + "\n"
    )


def _plain(value: Any) -> Any:
    """Ordered dicts and tuples as plain dicts and lists (safe_dump refuses OrderedDict)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, bytes | bytearray):
        return value.decode()
    return value


def format_yaml(result: Any) -> str:
    """Block-style YAML with sorted keys."""
    text: str = yaml.safe_dump(_plain(result), default_flow_style=False, allow_unicode=True)
    return text


_JSON_TOKEN = re.compile(
    r'(?P<string>"(?:[^"\\]|\\.)*")(?P<colon>\s*:)?'
    r"|(?P<number>-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)"
    r"|(?P<literal>\btrue\b|\bfalse\b|\bnull\b)"
)


def colorize_json(text: str) -> str:
    """``text`` (JSON) with keys, strings, numbers and literals in colour."""

    def paint(m: re.Match[str]) -> str:
        if m["string"] is not None:
            color = _KEY if m["colon"] else _STRING
            return f"{color}{m['string']}{_RESET}{m['colon'] or ''}"
        if m["number"] is not None:
            return f"{_NUMBER}{m['number']}{_RESET}"
        return f"{_LITERAL}{m['literal']}{_RESET}"

    return _JSON_TOKEN.sub(paint, text)


_YAML_KEY = re.compile(
    r"^(?P<lead>\s*(?:- )*)(?P<key>[^\s:'\"#-][^:]*?|'[^']*'|\"[^\"]*\"):(?= |$)"
)


def colorize_yaml(text: str) -> str:
    """``text`` (YAML from :func:`format_yaml`) with mapping keys in colour."""
    lines = []
    for line in text.splitlines(keepends=True):
        lines.append(_YAML_KEY.sub(lambda m: f"{m['lead']}{_KEY}{m['key']}{_RESET}:", line))
    return "".join(lines)


# ---------------------------------------------------------------- tsv


def _tsv_field(value: Any) -> str:
    if isinstance(value, list | tuple):
        return str(len(value))
    if isinstance(value, Mapping):
        # An empty field keeps the columns aligned when some rows have an object
        # where others have null.
        return ""
    return value if isinstance(value, str) else str(value)


def _tsv_row(row: Any) -> str:
    if isinstance(row, OrderedDict):
        fields: list[Any] = list(row.values())
    elif isinstance(row, Mapping):
        fields = [row[k] for k in sorted(row)]
    elif isinstance(row, list | tuple):
        fields = list(row)
    elif isinstance(row, bool):
        return "true" if row else "false"
    else:
        return _tsv_field(row)
    return "\t".join(_tsv_field(v) for v in fields)


def format_tsv(result: Any) -> str:
    """Tab-separated values: one line per list item (or one line for a single value)."""
    rows = result if isinstance(result, list) else [result]
    return "".join(_tsv_row(row) + "\n" for row in rows)


# ---------------------------------------------------------------- table


def _capitalize(key: str) -> str:
    return key[:1].upper() + key[1:]


def _auto_row(item: Any, sort_keys: bool) -> dict[str, Any]:
    row: dict[str, Any] = {}
    if isinstance(item, Mapping):
        keys = sorted(item) if sort_keys else list(item)
        for key in keys:
            value = item[key]
            if key in _TABLE_SKIP_KEYS or value is None:
                continue
            if isinstance(value, list | tuple | set | Mapping):
                continue
            row[_capitalize(str(key))] = value
    elif isinstance(item, list | tuple):
        for i, value in enumerate(item, start=1):
            row[f"Column{i}"] = value
    else:
        row["Result"] = item
    return row


def _width(text: str) -> int:
    """Display width: East Asian wide and full-width characters take two columns."""
    return sum(
        0
        if unicodedata.combining(ch)
        else 2
        if unicodedata.east_asian_width(ch) in ("W", "F")
        else 1
        for ch in text
    )


def _cell(value: Any) -> str:
    if value is None:
        return ""
    return value if isinstance(value, str) else str(value)


def _pad(text: str, width: int) -> str:
    return text + " " * (width - _width(text))


def render_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows as a plain text table: headers, a dashed rule, columns two spaces apart.

    Columns are the union of the rows' keys in first-seen order; a missing
    value is an empty cell. Everything is left-aligned (az turns off number
    parsing). Lines carry no trailing blanks.
    """
    headers: list[str] = []
    for row in rows:
        for key in row:
            if key not in headers:
                headers.append(key)
    if not headers:
        return ""
    cells = [[_cell(row.get(h)) for h in headers] for row in rows]
    widths = [
        max([_width(h)] + [_width(line) for r in cells for line in r[i].split("\n")])
        for i, h in enumerate(headers)
    ]
    out = ["  ".join(_pad(h, w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out.append("  ".join("-" * w for w in widths))
    for r in cells:
        split = [c.split("\n") for c in r]
        for n in range(max(len(s) for s in split)):
            parts = [s[n] if n < len(s) else "" for s in split]
            out.append("  ".join(_pad(p, w) for p, w in zip(parts, widths, strict=True)).rstrip())
    return "\n".join(out) + "\n"


def format_table(
    result: Any, *, query_active: bool = False, transformer: TableTransformer | None = None
) -> str:
    """``-o table``: the command's transformer (unless a query is active) or generic columns."""
    use_transformer = transformer is not None and not query_active
    if use_transformer:
        assert transformer is not None
        result = transformer(result)
    items = result if isinstance(result, list) else [result]
    sort_keys = not query_active and not use_transformer
    rows = [_auto_row(item, sort_keys) for item in items]
    if not rows:
        return "\n"
    text = render_table(rows)
    if not text:
        raise OutputError(
            "Table output unavailable: the result has no simple fields to show as columns. "
            'Use --query to pick fields (for example --query "[].{Name:name}") '
            "or another --output format."
        )
    return text
