"""The retention policy's rules (hamn.services.retention) and its management use cases:
READ shows it, WRITE changes it, enabling it records when, changing days keeps that."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from management_world import World, run

from hamn.errors import HamnError
from hamn.services.retention import (
    DEFAULT_DAYS,
    RetentionPolicy,
    retention_policy,
    with_retention,
)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
DAY = timedelta(days=1)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


# -- the rules ---------------------------------------------------------------------------------
def test_defaults_for_nothing_or_odd_values() -> None:
    assert retention_policy(None) == RetentionPolicy("disabled", DEFAULT_DAYS, None, None)
    odd = {"retentionPolicy": {"status": "on", "days": 999, "lastUpdatedTime": "x"}}
    assert retention_policy(odd) == RetentionPolicy()
    assert retention_policy({"retentionPolicy": {"days": True}}).days == DEFAULT_DAYS


def test_enabling_records_the_time_and_changing_days_keeps_it() -> None:
    other = {"quarantinePolicy": {"status": "enabled"}}
    policies, policy = with_retention(other, T0, status="enabled", days=3)
    assert policies["quarantinePolicy"] == other["quarantinePolicy"]  # other policies stay
    assert (policy.status, policy.days, policy.enabled_at, policy.last_updated) == (
        "enabled",
        3,
        T0,
        T0,
    )
    assert retention_policy(policies) == policy
    policies, policy = with_retention(policies, T0 + DAY, days=0)
    assert (policy.days, policy.enabled_at, policy.last_updated) == (0, T0, T0 + DAY)
    assert policy.window(T0 + 2 * DAY) == (T0, T0 + 2 * DAY)
    # Disabled: no window; enabled again: the clock starts again.
    policies, policy = with_retention(policies, T0 + 3 * DAY, status="disabled")
    assert policy.window(T0 + 4 * DAY) is None and policy.days == 0
    policies, policy = with_retention(policies, T0 + 5 * DAY, status="enabled")
    assert policy.window(T0 + 6 * DAY) == (T0 + 5 * DAY, T0 + 6 * DAY)


def test_days_set_how_long_after_untagging() -> None:
    _, policy = with_retention(None, T0, status="enabled")
    assert policy.days == DEFAULT_DAYS
    assert policy.window(T0 + 10 * DAY) == (T0, T0 + 3 * DAY)


# -- the management use cases ------------------------------------------------------------------
def test_read_shows_write_changes(world: World) -> None:
    async def case(w: World) -> None:
        boss = await w.principal("owner", ("Owner", "/"))
        made = await w.service.create_registry(boss, "retained", "Premium")
        reader = await w.principal("reader", ("Reader", "/registries/retained"))
        puller = await w.principal("puller", ("AcrPull", "/registries/retained"))
        shown = await w.service.get_retention(reader, "retained")
        assert (shown.status, shown.days, shown.enabled_at) == ("disabled", 7, None)
        assert shown.last_updated == made.info.updated_at
        with pytest.raises(HamnError) as denied:
            await w.service.update_retention(reader, "retained", status="enabled")
        assert denied.value.code.code == "DENIED"
        with pytest.raises(HamnError) as hidden:
            await w.service.get_retention(puller, "retained")
        assert hidden.value.code.code == "NOT_FOUND"
        with pytest.raises(HamnError) as invalid:
            await w.service.update_retention(boss, "retained", days=366)
        assert invalid.value.code.code == "BODY_INVALID"

        changed = await w.service.update_retention(boss, "retained", status="enabled", days=0)
        assert (changed.status, changed.days) == ("enabled", 0)
        assert changed.enabled_at is not None and changed.enabled_at == changed.last_updated
        again = await w.service.update_retention(boss, "RETAINED", days=2)
        assert again.enabled_at == changed.enabled_at and again.days == 2
        assert await w.service.get_retention(reader, "retained") == again
        # The registry's policies hold it (what GC reads), beside the other settings.
        info = (await w.service.get_registry(reader, "retained")).info
        assert retention_policy(info.policies) == again
        assert info.sku == "Premium"

    run(case(world))
