"""Plain, frozen value types the metadata store returns (never ORM rows)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

#: How ACR's metadata listings are ordered: by name (digest), or by time either way.
ListOrder = Literal["name", "timeasc", "timedesc"]


@dataclass(frozen=True, slots=True)
class ChangeableAttributes:
    """ACR's lock flags on a repository, a tag or a manifest (all true unless locked)."""

    delete_enabled: bool = True
    write_enabled: bool = True
    read_enabled: bool = True
    list_enabled: bool = True


#: Nothing locked: what every repository, tag and manifest starts with.
UNLOCKED = ChangeableAttributes()


@dataclass(frozen=True, slots=True)
class AttributeChanges:
    """A change of changeable attributes: None leaves a flag as it is."""

    delete_enabled: bool | None = None
    write_enabled: bool | None = None
    read_enabled: bool | None = None
    list_enabled: bool | None = None


@dataclass(frozen=True, slots=True)
class AffectedContent:
    """What a write would change, with the attributes read inside the write's own
    transaction (so a concurrent lock cannot slip between check and write).

    ``manifests`` are (digest, attributes) and ``tags`` are (name, attributes) of
    what the write would delete or repoint. A service's guard reads it and raises
    to refuse the write; the store decides nothing.
    """

    repository: str
    attributes: ChangeableAttributes
    manifests: tuple[tuple[str, ChangeableAttributes], ...] = ()
    tags: tuple[tuple[str, ChangeableAttributes], ...] = ()


@dataclass(frozen=True, slots=True)
class Registry:
    """A registry: the unit of routing (login server), of access and of quota (its SKU)."""

    id: int
    name: str
    created_at: datetime
    sku: str = "Basic"


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
    # Pull locks, read in the same statement that finds the manifest: the
    # repository's, the manifest's and (found by tag) the tag's readEnabled.
    repository_read_enabled: bool = True
    manifest_read_enabled: bool = True
    tag_read_enabled: bool = True


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


@dataclass(frozen=True, slots=True)
class RepositoryInfo:
    """A repository with its counts (ACR's repository attributes)."""

    name: str
    created_at: datetime
    updated_at: datetime
    manifest_count: int
    tag_count: int
    attributes: ChangeableAttributes = UNLOCKED


@dataclass(frozen=True, slots=True)
class TagInfo:
    """A tag, the digest it points to, and when it was first and last pushed."""

    name: str
    digest: str
    created_at: datetime
    updated_at: datetime
    attributes: ChangeableAttributes = UNLOCKED


@dataclass(frozen=True, slots=True)
class ManifestInfo:
    """A manifest with its bytes and its tags (sorted), for ACR's manifest attributes."""

    digest: str
    media_type: str
    content: bytes
    created_at: datetime
    tags: tuple[str, ...]
    attributes: ChangeableAttributes = UNLOCKED


@dataclass(frozen=True, slots=True)
class DeletedRepository:
    """What deleting a repository removed (ACR's ``manifestsDeleted`` / ``tagsDeleted``)."""

    manifests: list[str]
    tags: list[str]


@dataclass(frozen=True, slots=True)
class DeletedManifest:
    """A soft-deleted manifest in the recycle bin; ``info.tags`` are the tags it had
    (those still in the recycle bin with it)."""

    info: ManifestInfo
    deleted_at: datetime


@dataclass(frozen=True, slots=True)
class DeletedTag:
    """A soft-deleted tag in the recycle bin and the manifest it pointed at."""

    name: str
    digest: str
    deleted_at: datetime


#: What a restore did: ``restored``; ``unknown`` (no such manifest, or nothing of it
#: in the recycle bin); ``live`` (the digest is live again: pushed or restored
#: meanwhile); ``tag_unknown`` (the named tag is not in the recycle bin with it);
#: ``tag_taken`` (the named tag points at another manifest now).
RestoreOutcome = Literal["restored", "unknown", "live", "tag_unknown", "tag_taken"]


@dataclass(frozen=True, slots=True)
class PurgedManifest:
    """A manifest the collector removed for good from the recycle bin."""

    repository: str
    digest: str
    size: int
