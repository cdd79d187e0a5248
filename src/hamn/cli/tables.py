"""``-o table`` column transformers: UPPERCASE headers and the fields ``az acr`` shows.

A transformer takes a command's JSON result and returns rows (ordered dicts of
header -> text). Every cell is a string; a missing or empty value is a single
blank, as in ``az``, so columns stay aligned. Commands without a transformer
(``repository ...``, ``manifest ...``, as in ``az``) get the generic table of
:mod:`hamn.cli.output`.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime
from typing import Any

from hamn.cli.output import TableTransformer

#: A path into a JSON value: keys and list indexes.
Path = tuple[str | int, ...]


def field(item: Any, *path: str | int) -> str:
    """The value at ``path`` as text; a single blank when absent, null or empty.

    Unlike az, which blanks every falsy value, 0 and False are shown: an empty
    usage count or a disabled admin user is information, not a missing value.
    """
    value = item
    try:
        for step in path:
            value = value[step]
    except (KeyError, IndexError, TypeError):
        return " "
    if value is None or value == "" or value == [] or value == {}:
        return " "
    return str(value)


def timestamp(text: str) -> str:
    """An ISO 8601 time as ``YYYY-MM-DDTHH:MM:SSZ`` (the text unchanged if it is not one)."""
    if not text.strip():
        return " "
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return text
    return parsed.strftime("%Y-%m-%dT%H:%M:%SZ")


def _items(result: Any) -> list[Any]:
    # A list result wrapped as {"value": [...]} (show-usage) is shown item by item.
    if isinstance(result, dict) and isinstance(result.get("value"), list):
        result = result["value"]
    return result if isinstance(result, list) else [result]


def columns(
    *spec: tuple[str, Path] | tuple[str, Path, Callable[[str], str]],
) -> TableTransformer:
    """A transformer showing one column per ``(HEADER, path[, format])``."""

    def transform(result: Any) -> list[OrderedDict[str, str]]:
        rows = []
        for item in _items(result):
            row: OrderedDict[str, str] = OrderedDict()
            for entry in spec:
                header, path = entry[0], entry[1]
                text = field(item, *path)
                if len(entry) == 3:
                    text = entry[2](text)
                row[header] = text
            rows.append(row)
        return rows

    return transform


#: ``hamn show`` / ``hamn list``: a registry (az's registry columns, no resource group).
REGISTRY = columns(
    ("NAME", ("name",)),
    ("LOCATION", ("location",)),
    ("SKU", ("sku", "name")),
    ("LOGIN SERVER", ("loginServer",)),
    ("CREATION DATE", ("creationDate",), timestamp),
    ("ADMIN ENABLED", ("adminUserEnabled",)),
)

#: ``hamn show-usage``.
USAGE = columns(
    ("NAME", ("name",)),
    ("LIMIT", ("limit",)),
    ("CURRENT VALUE", ("currentValue",)),
    ("UNIT", ("unit",)),
)

#: ``hamn config retention show|update``.
RETENTION = columns(
    ("STATUS", ("status",)),
    ("DAYS", ("days",)),
    ("LAST UPDATED", ("lastUpdatedTime",), timestamp),
)

#: ``hamn config soft-delete show|update``.
SOFT_DELETE = columns(
    ("STATUS", ("status",)),
    ("RETENTION DAYS", ("retentionDays",)),
    ("LAST UPDATED", ("lastUpdatedTime",), timestamp),
)


def joined(item: Any, key: str) -> str:
    """A list of names at ``key`` as ``a, b``; a single blank when there is none."""
    value = item.get(key) if isinstance(item, dict) else None
    if not isinstance(value, list) or not value:
        return " "
    return ", ".join(str(v) for v in value)


def deleted_manifest(result: Any) -> list[OrderedDict[str, str]]:
    """``hamn manifest list-deleted``: a deleted manifest, its tags, and when it goes."""
    return [
        OrderedDict(
            [
                ("DIGEST", field(item, "digest")),
                ("TAGS", joined(item, "tags")),
                ("DELETED", timestamp(field(item, "deletedTime"))),
                ("EXPIRES AFTER", timestamp(field(item, "expiresAfter"))),
                ("SIZE", field(item, "imageSize")),
            ]
        )
        for item in _items(result)
    ]


#: ``hamn manifest list-deleted``.
DELETED_MANIFEST = deleted_manifest

#: ``hamn manifest list-deleted-tags``.
DELETED_TAG = columns(
    ("NAME", ("name",)),
    ("DIGEST", ("digest",)),
    ("DELETED", ("deletedTime",), timestamp),
    ("EXPIRES AFTER", ("expiresAfter",), timestamp),
)

#: ``hamn credential show|renew``.
CREDENTIAL = columns(
    ("USERNAME", ("username",)),
    ("PASSWORD", ("passwords", 0, "value")),
    ("PASSWORD2", ("passwords", 1, "value")),
)


def last_segment(text: str) -> str:
    """The last segment of a resource id (``/registries/r/scopeMaps/s`` -> ``s``)."""
    return text.rstrip("/").rsplit("/", 1)[-1] or " "


#: ``hamn token list|show|create|update``.
TOKEN = columns(
    ("NAME", ("name",)),
    ("SCOPE MAP", ("scopeMapId",), last_segment),
    ("STATUS", ("status",)),
    ("PROVISIONING STATE", ("provisioningState",)),
    ("CREATION DATE", ("creationDate",), timestamp),
)

#: ``hamn scope-map list|show|create|update``.
SCOPE_MAP = columns(
    ("NAME", ("name",)),
    ("TYPE", ("scopeMapType",)),
    ("CREATION DATE", ("creationDate",), timestamp),
    ("DESCRIPTION", ("description",)),
)


def token_credential(result: Any) -> list[OrderedDict[str, str]]:
    """``hamn token credential generate``: the username and each password by its name."""
    rows = []
    for item in _items(result):
        row: OrderedDict[str, str] = OrderedDict([("USERNAME", field(item, "username"))])
        passwords = item.get("passwords") if isinstance(item, dict) else None
        by_name = {p.get("name"): p for p in passwords or [] if isinstance(p, dict)}
        for name in ("password1", "password2"):
            row[name.upper()] = field(by_name, name, "value")
            row[f"{name.upper()} EXPIRY"] = timestamp(field(by_name, name, "expiry"))
        rows.append(row)
    return rows
