"""Limits on failed sign-ins shared by every process of a deployment.

Counted in the database: per-process counts would multiply the limit by the
number of processes (and hosts) of a deployment.

The count is a sliding-window estimate from fixed windows: the failures of the
current window plus the previous window's, weighted by how much of it still
overlaps the sliding window. Keys are hashes, so the table holds no user name
or address.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from hamn.errors import TOOMANYREQUESTS, HamnError


class FailureCounts(Protocol):
    """Failure counts per (key, window), shared by all processes."""

    async def counts(
        self, keys: Sequence[str], windows: Sequence[int]
    ) -> dict[tuple[str, int], int]:
        """Failures per (key, window)."""
        ...

    async def add(self, keys: Sequence[str], window: int, *, keep_from: int) -> None:
        """Count one failure per key in ``window``; forget windows before ``keep_from``."""
        ...


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode("utf-8", "surrogatepass")).hexdigest()


class SharedSignInLimits:
    """``per_user`` failures a window per (address, user name), ``per_address`` per address."""

    def __init__(
        self,
        counts: FailureCounts,
        *,
        per_user: int,
        per_address: int,
        window: float = 60.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.counts = counts
        self.per_user = per_user
        self.per_address = per_address
        self.window = window
        self._clock = clock

    def _keys(self, address: str, username: str) -> list[tuple[str, int]]:
        return [
            (_key("address", address), self.per_address),
            (_key("user", address, username.lower()), self.per_user),
        ]

    async def check(self, address: str, username: str) -> None:
        """Raise 429 with Retry-After when either key is at its limit."""
        now = self._clock()
        current = int(now // self.window)
        keys = self._keys(address, username)
        counts = await self.counts.counts([k for k, _ in keys], [current - 1, current])
        overlap = 1.0 - (now - current * self.window) / self.window
        for key, limit in keys:
            estimate = counts.get((key, current), 0) + counts.get((key, current - 1), 0) * overlap
            if estimate >= limit:
                retry = max(1, math.ceil((current + 1) * self.window - now))
                raise HamnError(
                    TOOMANYREQUESTS,
                    f"too many failed sign-ins; retry in {retry} s",
                    headers={"Retry-After": str(retry)},
                )

    async def failed(self, address: str, username: str) -> None:
        """Count one failure against both keys."""
        current = int(self._clock() // self.window)
        await self.counts.add(
            [k for k, _ in self._keys(address, username)], current, keep_from=current - 1
        )
