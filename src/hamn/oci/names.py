"""Repository names, tags and references (OCI Distribution Spec grammar)."""

from __future__ import annotations

import re

from hamn.errors import NAME_INVALID, TAG_INVALID, HamnError

_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_COMPONENT}(?:/{_COMPONENT})*\Z")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}\Z")
_REGISTRY_RE = re.compile(r"^[a-zA-Z0-9]{5,50}\Z")

#: Distribution's limit on a repository name (host plus path fits 255).
MAX_NAME_LENGTH = 255


def validate_repository_name(name: str) -> str:
    """Return ``name`` if it is a valid repository name, else raise NAME_INVALID."""
    if len(name) > MAX_NAME_LENGTH:
        raise HamnError(
            NAME_INVALID,
            f"repository name is longer than {MAX_NAME_LENGTH} characters",
            detail={"name": name[:300]},
        )
    if not _NAME_RE.match(name):
        raise HamnError(
            NAME_INVALID,
            "repository names are lowercase path components of [a-z0-9] separated by "
            "'.', '_', '__' or '-', joined by '/'",
            detail={"name": name[:300]},
        )
    return name


def validate_tag(tag: str) -> str:
    """Return ``tag`` if valid (``[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}``), else raise TAG_INVALID."""
    if not _TAG_RE.match(tag):
        raise HamnError(
            TAG_INVALID,
            "tags are 1-128 characters of [a-zA-Z0-9._-] and do not start with '.' or '-'",
            detail={"tag": tag[:300]},
        )
    return tag


def is_valid_registry_name(name: str) -> bool:
    """Registry names are 5-50 ASCII letters and digits (ACR's rule)."""
    return bool(_REGISTRY_RE.match(name))
