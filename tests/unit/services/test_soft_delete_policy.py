"""The soft delete policy's rules (hamn.services.soft_delete_policy) and its management
use cases: READ shows it, WRITE changes it, days are 1 to 90, and it excludes the
retention policy both ways (409 IN_USE saying what to disable), as in ACR."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from management_world import World, run

from hamn.errors import HamnError
from hamn.services.soft_delete_policy import (
    DEFAULT_DAYS,
    SoftDeletePolicy,
    conflict,
    soft_delete_policy,
    with_soft_delete,
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
    assert soft_delete_policy(None) == SoftDeletePolicy("disabled", DEFAULT_DAYS, None)
    odd = {"softDeletePolicy": {"status": "on", "retentionDays": 91, "lastUpdatedTime": "x"}}
    assert soft_delete_policy(odd) == SoftDeletePolicy()
    for days in (0, True, "3", None):
        stored = {"softDeletePolicy": {"retentionDays": days}}
        assert soft_delete_policy(stored).retention_days == DEFAULT_DAYS
    assert not soft_delete_policy(None).enabled


def test_changes_keep_other_policies_and_unchanged_values() -> None:
    other = {"retentionPolicy": {"status": "disabled", "days": 3}}
    policies, policy = with_soft_delete(other, T0, status="enabled", days=30)
    assert policies["retentionPolicy"] == other["retentionPolicy"]
    assert policies["softDeletePolicy"] == {
        "status": "enabled",
        "retentionDays": 30,
        "lastUpdatedTime": T0.isoformat(),
    }
    assert soft_delete_policy(policies) == policy == SoftDeletePolicy("enabled", 30, T0)
    policies, policy = with_soft_delete(policies, T0 + DAY, status="disabled")
    assert policy == SoftDeletePolicy("disabled", 30, T0 + DAY)
    _, policy = with_soft_delete(None, T0, status="enabled")
    assert policy.retention_days == DEFAULT_DAYS and policy.enabled


def test_soft_delete_and_retention_exclude_each_other() -> None:
    retained = {"retentionPolicy": {"status": "enabled", "days": 1}}
    soft = {"softDeletePolicy": {"status": "enabled", "retentionDays": 7}}
    why = conflict(retained, "softDelete", "reg1")
    assert why is not None and "hamn config retention update -r reg1 --status disabled" in why
    why = conflict(soft, "retention", "reg1")
    assert why is not None and "hamn config soft-delete update -r reg1 --status disabled" in why
    assert conflict(soft, "softDelete", "reg1") is None
    assert conflict(retained, "retention", "reg1") is None
    assert conflict(None, "softDelete", "reg1") is None


# -- the management use cases ------------------------------------------------------------------
def test_read_shows_write_changes(world: World) -> None:
    async def case(w: World) -> None:
        boss = await w.principal("owner", ("Owner", "/"))
        made = await w.service.create_registry(boss, "softreg", "Premium")
        reader = await w.principal("reader", ("Reader", "/registries/softreg"))
        puller = await w.principal("puller", ("AcrPull", "/registries/softreg"))
        shown = await w.service.get_soft_delete(reader, "softreg")
        assert (shown.status, shown.retention_days) == ("disabled", 7)
        assert shown.last_updated == made.info.updated_at
        with pytest.raises(HamnError) as denied:
            await w.service.update_soft_delete(reader, "softreg", status="enabled")
        assert denied.value.code.code == "DENIED"
        with pytest.raises(HamnError) as hidden:
            await w.service.get_soft_delete(puller, "softreg")
        assert hidden.value.code.code == "NOT_FOUND"
        for days in (0, 91):
            with pytest.raises(HamnError) as invalid:
                await w.service.update_soft_delete(boss, "softreg", days=days)
            assert invalid.value.code.code == "BODY_INVALID"
            assert "1 to 90" in invalid.value.message

        changed = await w.service.update_soft_delete(boss, "softreg", status="enabled", days=14)
        assert (changed.status, changed.retention_days) == ("enabled", 14)
        again = await w.service.update_soft_delete(boss, "SOFTREG", days=2)
        assert (again.status, again.retention_days) == ("enabled", 2)
        assert await w.service.get_soft_delete(reader, "softreg") == again
        # The registry's policies hold it in the shape the store and collector read.
        info = (await w.service.get_registry(reader, "softreg")).info
        assert info.policies is not None
        assert info.policies["softDeletePolicy"]["retentionDays"] == 2
        assert soft_delete_policy(info.policies) == again

    run(case(world))


def test_enabling_one_while_the_other_is_enabled_is_refused(world: World) -> None:
    async def case(w: World) -> None:
        boss = await w.principal("owner", ("Owner", "/"))
        await w.service.create_registry(boss, "softreg", "Premium")
        await w.service.update_soft_delete(boss, "softreg", status="enabled")
        with pytest.raises(HamnError) as refused:
            await w.service.update_retention(boss, "softreg", status="enabled")
        assert (refused.value.code.code, refused.value.status) == ("IN_USE", 409)
        assert "hamn config soft-delete update -r softreg --status disabled" in (
            refused.value.message
        )
        # Changing retention's days while it stays disabled is not enabling it.
        assert (await w.service.update_retention(boss, "softreg", days=3)).status == "disabled"
        await w.service.update_soft_delete(boss, "softreg", status="disabled")
        await w.service.update_retention(boss, "softreg", status="enabled")
        with pytest.raises(HamnError) as refused:
            await w.service.update_soft_delete(boss, "softreg", status="enabled", days=5)
        assert (refused.value.code.code, refused.value.status) == ("IN_USE", 409)
        assert "hamn config retention update -r softreg" in refused.value.message
        kept = await w.service.get_soft_delete(boss, "softreg")
        assert (kept.status, kept.retention_days) == ("disabled", 7)  # nothing changed

    run(case(world))
