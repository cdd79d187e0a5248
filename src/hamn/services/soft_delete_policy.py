"""The soft delete policy (ACR's ``az acr config soft-delete``): its stored shape and rules.

A registry's ``policies`` object keeps it under ``softDeletePolicy``::

    {"status": "enabled", "retentionDays": 7, "lastUpdatedTime": "..."}

While it is enabled, deleting a manifest keeps it (and the tags it had) as deleted
content for ``retentionDays`` (1 to 90, as in ACR): listed by ``manifest list-deleted``,
restorable by ``manifest restore``, counting toward usage until the collector purges it.
The store and the collector read this shape; this module only reads and writes it.

As ACR does, soft delete and the untagged-manifest retention policy
(:mod:`hamn.services.retention`) exclude each other: retention would delete for good
what soft delete promises to keep restorable, so enabling one while the other is
enabled is refused (:func:`conflict`). Pure rules, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, TypeGuard

from hamn.services.retention import retention_policy, stored_status, stored_time

#: The key of the policy in a registry's ``policies`` object.
KEY: Final = "softDeletePolicy"
#: ACR's default and bounds of ``--days``.
DEFAULT_DAYS: Final = 7
MIN_DAYS: Final = 1
MAX_DAYS: Final = 90


@dataclass(frozen=True, slots=True)
class SoftDeletePolicy:
    """A registry's soft delete policy; ``last_updated`` is None if it was never set."""

    status: str = "disabled"
    retention_days: int = DEFAULT_DAYS
    last_updated: datetime | None = None

    @property
    def enabled(self) -> bool:
        """Whether deletes keep content restorable."""
        return self.status == "enabled"


def valid_days(days: Any) -> TypeGuard[int]:
    """Whether ``days`` is an allowed ``retentionDays`` (an int, 1 to 90)."""
    return isinstance(days, int) and not isinstance(days, bool) and MIN_DAYS <= days <= MAX_DAYS


def soft_delete_policy(policies: Mapping[str, Any] | None) -> SoftDeletePolicy:
    """The soft delete policy stored in ``policies`` (defaults for what is missing or odd)."""
    stored = (policies or {}).get(KEY)
    if not isinstance(stored, dict):
        return SoftDeletePolicy()
    status = stored.get("status")
    days = stored.get("retentionDays")
    return SoftDeletePolicy(
        status=stored_status(status),
        retention_days=days if valid_days(days) else DEFAULT_DAYS,
        last_updated=stored_time(stored.get("lastUpdatedTime")),
    )


def with_soft_delete(
    policies: Mapping[str, Any] | None,
    now: datetime,
    *,
    status: str | None = None,
    days: int | None = None,
) -> tuple[dict[str, Any], SoftDeletePolicy]:
    """``policies`` with the soft delete policy changed at ``now`` (None keeps a value),
    and the new policy."""
    old = soft_delete_policy(policies)
    policy = SoftDeletePolicy(
        status=old.status if status is None else status,
        retention_days=old.retention_days if days is None else days,
        last_updated=now,
    )
    stored = {
        "status": policy.status,
        "retentionDays": policy.retention_days,
        "lastUpdatedTime": now.isoformat(),
    }
    return {**(policies or {}), KEY: stored}, policy


def conflict(policies: Mapping[str, Any] | None, enabling: str, registry: str) -> str | None:
    """Why ``enabling`` (``"softDelete"`` or ``"retention"``) cannot be turned on in
    ``registry`` given its ``policies``, with what to do; None when nothing stands in the way."""
    if enabling == "softDelete" and retention_policy(policies).status == "enabled":
        return (
            "soft delete cannot be enabled while the retention policy is enabled (as in ACR: "
            "retention would delete for good what soft delete keeps restorable); disable it "
            f"first: hamn config retention update -r {registry} --status disabled "
            "--type UntaggedManifests"
        )
    if enabling == "retention" and soft_delete_policy(policies).enabled:
        return (
            "the retention policy cannot be enabled while soft delete is enabled (as in ACR: "
            "retention would delete for good what soft delete keeps restorable); disable it "
            f"first: hamn config soft-delete update -r {registry} --status disabled"
        )
    return None
