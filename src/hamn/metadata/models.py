"""Plain, frozen value types the metadata store returns (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class Registry:
    """A registry: the unit of routing (login server) and, later, of access and quota."""

    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    """A manifest stored in a repository (content fetched separately, it can be 4 MiB)."""

    id: int
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    subject_digest: str | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class Referrer:
    """A manifest whose ``subject`` names another manifest (referrers API)."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None


@dataclass(frozen=True, slots=True)
class Upload:
    """A blob upload session in progress; ``size`` is the acknowledged offset."""

    id: str
    registry_id: int
    repository: str
    size: int
    created_at: datetime
    updated_at: datetime
