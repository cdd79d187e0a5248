"""Leases: named locks with an expiry, shared by every process of a deployment.

A lease is how processes on different machines take turns where a file lock
cannot reach: a blob's digest lock and an upload's single writer on object
storage, the garbage collector's turn. The record lives in the metadata
database (``hamn.metadata.leases.LeaseStore`` implements :class:`Leases`), and
the composition root hands it to whoever needs it, so storage never imports
metadata.

A holder that dies stops renewing and its lease expires after ``ttl``; a holder
that lives renews in the background (:class:`HeldLease`) for as long as it holds.
A holder id names its process (host, PID namespace, PID and start time), so a
process on the same host as a dead holder (a server restarted after ``kill -9``)
takes its leases over at once instead of waiting out their ``ttl``; elsewhere
only the expiry frees them.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import secrets
import socket
import time
from collections.abc import AsyncIterator
from typing import Protocol

from hamn.storage.base import StorageBusy

logger = logging.getLogger(__name__)

#: A lease lives this long unless renewed; renewals come every third of it.
DEFAULT_TTL = 30.0


class Leases(Protocol):
    """The shared record of who holds which lease."""

    async def acquire(self, name: str, holder: str, ttl: float) -> bool:
        """Take ``name`` for ``holder`` for ``ttl`` seconds if it is free, expired or
        already ``holder``'s; False when someone else holds it."""
        ...

    async def renew(self, name: str, holder: str, ttl: float) -> bool:
        """Extend ``holder``'s lease by ``ttl`` from now; False if it was lost."""
        ...

    async def release(self, name: str, holder: str) -> None:
        """Give up ``name`` if ``holder`` holds it."""
        ...

    async def holder(self, name: str) -> str | None:
        """Who holds ``name`` now (None: nobody, as far as the record says)."""
        ...

    async def take_over(self, name: str, old: str, new: str, ttl: float) -> bool:
        """Hand ``name`` from ``old`` (known to be dead) to ``new`` if ``old`` still holds it."""
        ...


class HeldLease:
    """A lease this process holds, renewed in the background until :meth:`release`."""

    def __init__(self, leases: Leases, name: str, holder: str, ttl: float) -> None:
        self.leases = leases
        self.name = name
        self.holder = holder
        self.ttl = ttl
        self.lost = False
        self._renewing = asyncio.create_task(self._renew())

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                renewed = await self.leases.renew(self.name, self.holder, self.ttl)
            except Exception:  # the database is down: try again; expiry decides
                logger.warning("could not renew the lease %s", self.name, exc_info=True)
                continue
            if not renewed:
                self.lost = True
                return

    async def release(self) -> None:
        """Stop renewing and give the lease up.

        Never raises: if the database is away, the release is tried again in the
        background until it answers or the lease has expired by itself; otherwise the
        lease would keep everyone else out for its whole ``ttl`` after the database
        came back (every push of the same blob waiting on it).
        """
        self._renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._renewing
        try:
            await self.leases.release(self.name, self.holder)
        except Exception:
            logger.warning("could not release the lease %s; retrying", self.name, exc_info=True)
            task = asyncio.create_task(self._release_later(time.monotonic() + self.ttl))
            _RELEASING.add(task)
            task.add_done_callback(_RELEASING.discard)

    async def _release_later(self, expires: float) -> None:
        while time.monotonic() < expires:
            await asyncio.sleep(0.5)
            with contextlib.suppress(Exception):  # still away: try again
                await self.leases.release(self.name, self.holder)
                return


#: Releases retried in the background (kept so they are not collected mid-way).
_RELEASING: set[asyncio.Task[None]] = set()


def _process_start(pid: int | str) -> str | None:
    """A process's start time in clock ticks since boot (``/proc/<pid>/stat`` field 22),
    which tells a live process from a later one that reuses its PID; None if gone (or a
    zombie: a killed server's workers linger as zombies until their new parent reaps them)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read().decode("ascii", "replace")
    except OSError:
        return None
    # The command name (field 2) may hold spaces and parentheses: split after its end.
    fields = stat.rpartition(")")[2].split()
    if fields[0] in ("Z", "X"):
        return None  # killed, waiting to be reaped: it holds nothing any more
    return fields[19]


def _this_host() -> str:
    """This host and PID namespace: where a holder's PID means the same process."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError), open("/proc/sys/kernel/random/boot_id") as fh:
        parts.append(fh.read().strip())
    with contextlib.suppress(OSError):
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


_HOST = _this_host()


def new_holder() -> str:
    """A holder id unique to one acquisition: ``<host>.<pid>.<start>.<random>``."""
    pid = os.getpid()
    return f"{_HOST}.{pid}.{_process_start(pid) or 0}.{secrets.token_hex(8)}"


def holder_is_dead(holder: str) -> bool:
    """Whether ``holder`` was a process of this host that has ended. A holder of
    another host (or of an unknown form) is never known to be dead."""
    parts = holder.split(".")
    if len(parts) != 4 or parts[0] != _HOST or not parts[1].isdigit():
        return False
    if int(parts[1]) == os.getpid():
        return False
    return _process_start(parts[1]) != parts[2]


async def _take_from_the_dead(leases: Leases, name: str, holder: str, ttl: float) -> bool:
    """Take ``name`` over if its holder is a dead process of this host."""
    current = await leases.holder(name)
    if current is None or not holder_is_dead(current):
        return False
    if await leases.take_over(name, current, holder, ttl):
        logger.info("took over the lease %s of a process that ended", name)
        return True
    return False


async def try_lease(leases: Leases, name: str, *, ttl: float = DEFAULT_TTL) -> HeldLease | None:
    """The lease ``name`` if it can be had at once (or its holder is a dead process of
    this host), else None."""
    holder = new_holder()
    if not await leases.acquire(name, holder, ttl) and not await _take_from_the_dead(
        leases, name, holder, ttl
    ):
        return None
    return HeldLease(leases, name, holder, ttl)


async def wait_lease(
    leases: Leases, name: str, *, wait: float = 60.0, ttl: float = DEFAULT_TTL
) -> HeldLease:
    """The lease ``name``, waiting up to ``wait`` seconds (with a short back-off) for its
    holder to let go or expire; StorageBusy after that."""
    holder = new_holder()
    deadline = time.monotonic() + wait
    pause = 0.002
    look_for_the_dead = time.monotonic()
    while not await leases.acquire(name, holder, ttl):
        # Once a second, see whether the holder is a dead process of this host.
        if time.monotonic() >= look_for_the_dead:
            if await _take_from_the_dead(leases, name, holder, ttl):
                break
            look_for_the_dead = time.monotonic() + 1.0
        if time.monotonic() > deadline:
            raise StorageBusy(f"the lease {name} is held")
        await asyncio.sleep(pause)
        pause = min(pause * 2, 0.1)
    return HeldLease(leases, name, holder, ttl)


@contextlib.asynccontextmanager
async def holding(
    leases: Leases, name: str, *, wait: float = 60.0, ttl: float = DEFAULT_TTL
) -> AsyncIterator[HeldLease]:
    """Hold the lease ``name`` for the ``async with`` block (see :func:`wait_lease`)."""
    lease = await wait_lease(leases, name, wait=wait, ttl=ttl)
    try:
        yield lease
    finally:
        await lease.release()
