"""What processes of one deployment share through the database, on every supported
database: leases (hamn.metadata.leases) and failed sign-in counts
(hamn.metadata.sign_in_failures with hamn.services.sign_in_limits).

Each case uses two store objects on one database, as two server processes would.
"""

# ruff: noqa: F811 - the store fixtures are imported from test_metadata_store

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine
from store_support import run
from test_metadata_store import engine, store  # noqa: F401

from hamn.errors import TOOMANYREQUESTS, HamnError
from hamn.metadata.leases import LeaseStore
from hamn.metadata.sign_in_failures import SignInFailureStore
from hamn.metadata.store import MetadataStore, MetadataUnavailable
from hamn.services.sign_in_limits import SharedSignInLimits
from hamn.storage.base import StorageBusy
from hamn.storage.leases import holding, try_lease, wait_lease


@pytest.fixture
def other(engine: Engine) -> Iterator[MetadataStore]:
    """A second store on the same database: another process."""
    s = MetadataStore(engine, threads=4)
    yield s
    s.close()


class Ticks:
    def __init__(self) -> None:
        self.now = 6000.0  # the start of a 60 s window

    def __call__(self) -> float:
        return self.now


def test_a_lease_is_held_by_one_holder_until_released_or_expired(
    store: MetadataStore, other: MetadataStore
) -> None:
    one, two = LeaseStore(store), LeaseStore(other)

    async def scenario() -> None:
        assert await one.acquire("blob:x", "a", 30)
        assert not await two.acquire("blob:x", "b", 30)
        assert await one.acquire("blob:x", "a", 30)  # the holder may take it again
        assert not await two.renew("blob:x", "b", 30)
        await two.release("blob:x", "b")  # not b's: nothing happens
        assert not await two.acquire("blob:x", "b", 30)
        await one.release("blob:x", "a")
        assert await two.acquire("blob:x", "b", 0.05)
        await asyncio.sleep(0.1)  # b died without releasing: its lease expires
        assert await one.acquire("blob:x", "a", 30)
        assert not await two.renew("blob:x", "b", 30)  # b learns it lost the lease

    run(scenario())


def test_many_contenders_take_turns_one_at_a_time(
    store: MetadataStore, other: MetadataStore
) -> None:
    stores = [LeaseStore(store), LeaseStore(other)]
    inside = 0
    most = 0
    turns = 0

    async def contender(i: int) -> None:
        nonlocal inside, most, turns
        for _ in range(5):
            async with holding(stores[i % 2], "gc", wait=30):
                inside += 1
                most = max(most, inside)
                await asyncio.sleep(0.002)
                inside -= 1
                turns += 1

    async def scenario() -> None:
        await asyncio.gather(*(contender(i) for i in range(8)))

    run(scenario())
    assert (turns, most) == (40, 1)


def test_a_held_lease_is_renewed_and_waiting_for_it_gives_up(
    store: MetadataStore, other: MetadataStore
) -> None:
    async def scenario() -> None:
        held = await try_lease(LeaseStore(store), "upload:u1", ttl=0.3)
        assert held is not None
        await asyncio.sleep(0.7)  # past its first expiry: renewals kept it
        assert await try_lease(LeaseStore(other), "upload:u1") is None
        with pytest.raises(StorageBusy):
            await wait_lease(LeaseStore(other), "upload:u1", wait=0.2)
        assert not held.lost
        await held.release()
        again = await try_lease(LeaseStore(other), "upload:u1")
        assert again is not None
        await again.release()

    run(scenario())


def test_failed_sign_ins_are_limited_across_processes(
    store: MetadataStore, other: MetadataStore
) -> None:
    clock = Ticks()
    limits = [
        SharedSignInLimits(SignInFailureStore(s), per_user=4, per_address=100, clock=clock)
        for s in (store, other)
    ]

    async def scenario() -> None:
        # Four failures, spread over two processes, reach the per-user limit of four.
        for i in range(4):
            await limits[i % 2].check("10.0.0.1", "alice")
            await limits[i % 2].failed("10.0.0.1", "ALICE")
            clock.now += 1
        for lim in limits:
            with pytest.raises(HamnError) as caught:
                await lim.check("10.0.0.1", "alice")
            assert caught.value.code is TOOMANYREQUESTS
            assert caught.value.headers["Retry-After"] == "56"
        # Others are not locked out.
        await limits[0].check("10.0.0.2", "alice")
        await limits[1].check("10.0.0.1", "bob")
        # Half a window later the previous window counts half: 4 * 0.5 < 4.
        clock.now = 6000.0 + 60 + 30
        await limits[1].check("10.0.0.1", "alice")

    run(scenario())


def test_an_address_guessing_many_users_is_limited_and_old_windows_are_forgotten(
    store: MetadataStore, other: MetadataStore
) -> None:
    clock = Ticks()
    counts = SignInFailureStore(store)
    limits = SharedSignInLimits(counts, per_user=100, per_address=5, clock=clock)

    async def scenario() -> None:
        for i in range(5):
            await limits.failed("10.0.0.9", f"user{i}")
        with pytest.raises(HamnError):
            await SharedSignInLimits(
                SignInFailureStore(other), per_user=100, per_address=5, clock=clock
            ).check("10.0.0.9", "someone-new")
        await limits.check("10.0.0.8", "someone-new")
        clock.now += 600
        await limits.failed("10.0.0.7", "x")  # a later failure prunes old windows
        window = int(clock.now // 60)
        assert await counts.counts([], [window]) == {}

    run(scenario())


_HOLD = """
import asyncio, sys, time
from hamn.metadata.store import MetadataStore, create_metadata_engine
from hamn.metadata.leases import LeaseStore
from hamn.storage.leases import new_holder
store = MetadataStore(create_metadata_engine(sys.argv[1]))
print(asyncio.run(LeaseStore(store).acquire(sys.argv[2], new_holder(), 30)), flush=True)
if sys.argv[3] == "stay":
    time.sleep(60)
"""


def test_a_lease_of_a_dead_process_of_this_host_is_taken_over_at_once(
    engine: Engine, store: MetadataStore
) -> None:
    """A server killed with -9 leaves its leases behind; one restarted on the same host
    takes them over at once instead of waiting out their 30 s. A live holder, or one
    of another host, keeps them."""
    import subprocess
    import sys

    url = engine.url.render_as_string(hide_password=False)
    leases = LeaseStore(store)
    dead = subprocess.run(
        [sys.executable, "-c", _HOLD, url, "upload:dead", "exit"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dead.stdout.strip() == "True", dead.stderr
    alive = subprocess.Popen(
        [sys.executable, "-c", _HOLD, url, "upload:alive", "stay"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert alive.stdout is not None and alive.stdout.readline().strip() == "True"

        # A holder killed but not reaped yet (a zombie, as a killed server's workers are
        # until init reaps them) holds nothing either.
        zombie = subprocess.Popen(
            [sys.executable, "-c", _HOLD, url, "upload:zombie", "exit"], stdout=subprocess.PIPE
        )
        assert zombie.stdout is not None and zombie.stdout.readline().strip() == b"True"
        deadline = time.monotonic() + 30
        while _state(zombie.pid) != "Z" and time.monotonic() < deadline:
            time.sleep(0.01)
        assert _state(zombie.pid) == "Z"

        async def scenario() -> None:
            taken = await try_lease(leases, "upload:dead")
            assert taken is not None
            await taken.release()
            taken = await try_lease(leases, "upload:zombie")
            assert taken is not None
            await taken.release()
            assert await try_lease(leases, "upload:alive") is None
            # A holder of another host is never presumed dead: only its expiry frees it.
            assert await leases.acquire("upload:remote", "0123456789ab.1.1.00", 30)
            assert await try_lease(leases, "upload:remote") is None
            with pytest.raises(StorageBusy):
                await wait_lease(leases, "upload:remote", wait=1.5)

        run(scenario())
        zombie.wait()
    finally:
        alive.kill()
        alive.wait()


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().rpartition(")")[2].split()[0]


class _AwayOnce(LeaseStore):
    """The real lease record, whose first release finds the database away."""

    failed = False

    async def release(self, name: str, holder: str) -> None:
        if not self.failed:
            self.failed = True
            raise MetadataUnavailable("OperationalError")
        await super().release(name, holder)


def test_a_release_the_database_missed_is_retried_and_never_raises(
    store: MetadataStore, other: MetadataStore
) -> None:
    away = _AwayOnce(store)

    async def scenario() -> None:
        held = await try_lease(away, "blob:x", ttl=30)
        assert held is not None
        await held.release()  # the database is away: no exception for the caller...
        assert away.failed
        # ...and the lease is freed once it answers, long before its 30 s are up.
        deadline = time.monotonic() + 5
        while (got := await try_lease(LeaseStore(other), "blob:x")) is None:
            assert time.monotonic() < deadline, "the release was not retried"
            await asyncio.sleep(0.1)
        await got.release()

    run(scenario())
