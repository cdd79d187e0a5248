"""The untagged-manifest retention policy (ACR's ``az acr config retention``).

A registry's ``policies`` object keeps it under ``retentionPolicy``::

    {"status": "enabled", "days": 7, "lastUpdatedTime": "...", "enabledTime": "..."}

When enabled, garbage collection (:mod:`hamn.services.gc`) deletes the untagged
manifests nothing needs once they have been untagged for ``days`` (0: at the next
collection). As in ACR it applies only to manifests untagged *after* it was enabled
(``enabledTime``, set when the status turns to enabled; changing ``days`` keeps it),
and locked manifests are kept. Pure rules, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

#: The key of the policy in a registry's ``policies`` object.
KEY: Final = "retentionPolicy"
#: ACR's default and bounds of ``--days``.
DEFAULT_DAYS: Final = 7
MAX_DAYS: Final = 365
#: The only ``--type`` ACR has.
UNTAGGED_MANIFESTS: Final = "UntaggedManifests"


@dataclass(frozen=True, slots=True)
class RetentionPolicy:
    """A registry's retention policy; the times are None if it was never set."""

    status: str = "disabled"
    days: int = DEFAULT_DAYS
    last_updated: datetime | None = None
    enabled_at: datetime | None = None

    @property
    def enabled(self) -> bool:
        """Whether collection applies it."""
        return self.status == "enabled" and self.enabled_at is not None

    def window(self, now: datetime) -> tuple[datetime, datetime] | None:
        """(since, before): the manifests untagged in it may go; None while disabled."""
        if not self.enabled or self.enabled_at is None:
            return None
        return self.enabled_at, now - timedelta(days=self.days)


def stored_status(value: Any) -> str:
    """A stored policy's ``status``: ``enabled`` or ``disabled`` (anything odd)."""
    return value if value in ("enabled", "disabled") else "disabled"


def stored_time(value: Any) -> datetime | None:
    """A stored policy's timestamp, or None when missing, odd or without a zone."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else None


def retention_policy(policies: Mapping[str, Any] | None) -> RetentionPolicy:
    """The retention policy stored in ``policies`` (defaults for what is missing or odd)."""
    stored = (policies or {}).get(KEY)
    if not isinstance(stored, dict):
        return RetentionPolicy()
    status = stored.get("status")
    days = stored.get("days")
    return RetentionPolicy(
        status=stored_status(status),
        days=days
        if isinstance(days, int) and not isinstance(days, bool) and 0 <= days <= MAX_DAYS
        else DEFAULT_DAYS,
        last_updated=stored_time(stored.get("lastUpdatedTime")),
        enabled_at=stored_time(stored.get("enabledTime")),
    )


def with_retention(
    policies: Mapping[str, Any] | None,
    now: datetime,
    *,
    status: str | None = None,
    days: int | None = None,
) -> tuple[dict[str, Any], RetentionPolicy]:
    """``policies`` with the retention policy changed at ``now`` (None keeps a value),
    and the new policy. Turning it on records ``now`` as the time it was enabled."""
    old = retention_policy(policies)
    new_status = old.status if status is None else status
    enabled_at = old.enabled_at
    if new_status == "enabled" and (old.status != "enabled" or enabled_at is None):
        enabled_at = now
    policy = RetentionPolicy(
        status=new_status,
        days=old.days if days is None else days,
        last_updated=now,
        enabled_at=enabled_at,
    )
    stored: dict[str, Any] = {
        "status": policy.status,
        "days": policy.days,
        "lastUpdatedTime": now.isoformat(),
    }
    if enabled_at is not None:
        stored["enabledTime"] = enabled_at.isoformat()
    return {**(policies or {}), KEY: stored}, policy
