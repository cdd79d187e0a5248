"""The management use cases on a real IdentityStore: every permission rule, the registry
and admin-credential behaviour, usage, scope maps, tokens, role assignments, users and
service principals, and concurrent creates."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Coroutine, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from management_world import ADMIN, ANONYMOUS, TOKEN, World, run

from hamn.auth.secrets import verify_secret
from hamn.errors import HamnError
from hamn.services.identity import Identity

Case = Callable[[World], Coroutine[Any, Any, None]]


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = World(tmp_path)
    yield w
    w.close()


def play(world: World, case: Case) -> None:
    run(case(world))


async def fails(code: str, awaitable: Any) -> HamnError:
    """Await ``awaitable`` and return the HamnError it raised with ``code``."""
    with pytest.raises(HamnError) as caught:
        await awaitable
    assert caught.value.code.code == code, caught.value.message
    return caught.value


async def owner(world: World) -> Identity:
    return await world.principal("owner", ("Owner", "/"))


# -- who may use the management plane ------------------------------------------------------


@pytest.mark.parametrize(
    ("identity", "code"), [(ANONYMOUS, "UNAUTHORIZED"), (ADMIN, "DENIED"), (TOKEN, "DENIED")]
)
def test_only_principals_manage(world: World, identity: Identity, code: str) -> None:
    async def case(w: World) -> None:
        err = await fails(code, w.service.list_registries(identity))
        if code == "DENIED":
            assert "data plane only" in err.message
        await fails(code, w.service.me(identity))
        await fails(code, w.service.create_registry(identity, "newregistry", "Basic"))

    play(world, case)


def test_the_permission_matrix(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        for name in ("alpha1", "beta22"):
            await w.service.create_registry(boss, name, "Basic")
        contributor = await w.principal("contrib", ("Contributor", "/"))
        reader = await w.principal("reader", ("Reader", "/"))
        alpha_reader = await w.principal("areader", ("Reader", "/registries/alpha1"))
        alpha_contrib = await w.principal("acontrib", ("Contributor", "/registries/alpha1"))
        alpha_owner = await w.principal("aowner", ("Owner", "/registries/alpha1"))
        puller = await w.principal("puller", ("AcrPull", "/registries/alpha1"))
        s = w.service

        # Owner and Contributor at / create; Reader and registry-scoped roles do not.
        await s.create_registry(contributor, "gamma3", "Basic")
        for who in (reader, alpha_reader, alpha_contrib, alpha_owner, puller):
            await fails("DENIED", s.create_registry(who, "delta4", "Basic"))

        # Lists show what each can see; AcrPull sees nothing.
        names = lambda found: [r.info.name for r in found]  # noqa: E731
        assert names(await s.list_registries(reader)) == ["alpha1", "beta22", "gamma3"]
        assert names(await s.list_registries(alpha_reader)) == ["alpha1"]
        assert names(await s.list_registries(puller)) == []

        # Unseen registries are NOT_FOUND exactly like absent ones.
        absent = await fails("NOT_FOUND", s.get_registry(alpha_reader, "nosuchreg"))
        unseen = await fails("NOT_FOUND", s.get_registry(alpha_reader, "beta22"))
        assert absent.message.replace("nosuchreg", "X") == unseen.message.replace("beta22", "X")
        await fails("NOT_FOUND", s.get_registry(puller, "alpha1"))
        await fails("NOT_FOUND", s.update_registry(puller, "alpha1", sku="Premium"))
        await fails("NOT_FOUND", s.usages(puller, "alpha1"))

        # Readers read, but do not write.
        assert (await s.get_registry(alpha_reader, "ALPHA1")).info.name == "alpha1"
        await s.usages(reader, "alpha1")
        err = await fails("DENIED", s.update_registry(alpha_reader, "alpha1", sku="Premium"))
        assert "Owner or Contributor" in err.message
        await fails("DENIED", s.delete_registry(reader, "alpha1"))
        await fails("DENIED", s.list_credentials(reader, "alpha1"))

        # Contributors write but do not assign roles; Owners do, at their scope only.
        await s.update_registry(alpha_contrib, "alpha1", sku="Standard")
        await fails(
            "DENIED",
            s.create_role_assignment(alpha_contrib, "AcrPull", "reader", "/registries/alpha1"),
        )
        await fails("DENIED", s.create_role_assignment(contributor, "AcrPull", "reader", "/"))
        await s.create_role_assignment(alpha_owner, "AcrPull", "reader", "/registries/alpha1")
        await fails("DENIED", s.create_role_assignment(alpha_owner, "AcrPull", "reader", "/"))
        await fails(
            "NOT_FOUND",
            s.create_role_assignment(alpha_owner, "AcrPull", "reader", "/registries/beta22"),
        )

        # Principals are managed at / only.
        await fails("DENIED", s.list_principals(alpha_owner, "user"))
        await fails("DENIED", s.create_user(contributor, "someone"))
        assert [p.name for p in await s.list_principals(reader, "user")]

    play(world, case)


# -- registries ----------------------------------------------------------------------------


def test_create_registry_checks_name_and_sku(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        for bad in ("abcd", "a" * 51, "has-dash", "ünicode"):
            err = await fails("NAME_INVALID", w.service.create_registry(boss, bad, "Basic"))
            assert "5 to 50 letters and digits" in err.message
        await fails("BODY_INVALID", w.service.create_registry(boss, "goodname", "Gold"))
        made = await w.service.create_registry(boss, "GoodName", "premium")
        assert made.info.sku == "Premium"
        assert made.login_server == "goodname.example.test"
        err = await fails("ALREADY_EXISTS", w.service.create_registry(boss, "goodNAME", "Basic"))
        assert "regardless of letter case" in err.message
        check = await w.service.check_name(boss, "goodname")
        assert (check.available, check.reason) == (False, "AlreadyExists")
        assert (await w.service.check_name(boss, "abc")).reason == "Invalid"
        assert (await w.service.check_name(boss, "freename")).available

    play(world, case)


def test_anonymous_pull_needs_standard_or_premium(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        err = await fails(
            "BODY_INVALID",
            w.service.create_registry(boss, "anonreg", "Basic", anonymous_pull_enabled=True),
        )
        assert "Standard or Premium" in err.message
        await w.service.create_registry(boss, "anonreg", "Standard", anonymous_pull_enabled=True)
        await fails("BODY_INVALID", w.service.update_registry(boss, "anonreg", sku="Basic"))
        updated = await w.service.update_registry(
            boss, "anonreg", sku="Basic", anonymous_pull_enabled=False
        )
        assert (updated.info.sku, updated.info.anonymous_pull_enabled) == ("Basic", False)

    play(world, case)


def test_admin_credentials(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        await w.service.create_registry(boss, "adminreg", "Basic", admin_user_enabled=True)
        shown = await w.service.list_credentials(boss, "adminreg")
        assert shown.username == "adminreg" and shown.password != shown.password2
        stored = await w.identities.get_admin_credentials("adminreg")
        assert stored is not None and stored.password_hash and stored.sealed
        assert verify_secret(stored.password_hash, shown.password)
        assert shown.password not in stored.sealed

        renewed = await w.service.regenerate_credential(boss, "adminreg", "password2")
        assert renewed.password == shown.password and renewed.password2 != shown.password2
        assert await w.service.list_credentials(boss, "adminreg") == renewed

        await w.service.update_registry(boss, "adminreg", admin_user_enabled=False)
        err = await fails("ADMIN_DISABLED", w.service.list_credentials(boss, "adminreg"))
        assert "hamn update -n adminreg --admin-enabled true" in err.message

        # Enabling later makes passwords when there are none.
        await w.service.create_registry(boss, "lateadmin", "Basic")
        await w.service.update_registry(boss, "lateadmin", admin_user_enabled=True)
        assert (await w.service.list_credentials(boss, "lateadmin")).password

    play(world, case)


def test_delete_registry(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        await w.service.create_registry(boss, "shortlived", "Basic")
        await w.service.delete_registry(boss, "SHORTLIVED")
        await fails("NOT_FOUND", w.service.get_registry(boss, "shortlived"))
        await fails("NOT_FOUND", w.service.delete_registry(boss, "shortlived"))

    play(world, case)


def test_concurrent_creates_of_one_name_give_one_registry(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        results = await asyncio.gather(
            *(
                w.service.create_registry(boss, name, "Basic")
                for name in ("raceREG", "racereg", "RACEREG") * 2
            ),
            return_exceptions=True,
        )
        made = [r for r in results if not isinstance(r, BaseException)]
        refused = [r for r in results if isinstance(r, HamnError)]
        assert len(made) == 1 and len(refused) == 5
        assert {e.code.code for e in refused} == {"ALREADY_EXISTS"}

    play(world, case)


def test_usage_counts_each_blob_once(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        made = await w.service.create_registry(boss, "usagereg", "Standard")
        digest = "sha256:" + "a" * 64
        other = "sha256:" + "b" * 64
        await w.store.link_blob(made.info.id, "one", digest, 1000)
        await w.store.link_blob(made.info.id, "two", digest, 1000)
        await w.store.link_blob(made.info.id, "two", other, 24)
        # Usage counts what manifests reference (each blob once), not bare uploads.
        for repo, blobs in (("one", [digest]), ("two", [digest, other])):
            body = f'{{"schemaVersion":2,"name":"{repo}"}}'.encode()
            await w.store.put_manifest(
                made.info.id, repo, digest="sha256:" + hashlib.sha256(body).hexdigest(),
                media_type="application/vnd.oci.image.manifest.v1+json", artifact_type=None,
                subject_digest=None, content=body, annotations=None, blobs=blobs, children=[],
                tag="v1",
            )  # fmt: skip
        await w.service.create_scope_map(
            boss, "usagereg", "pullers", ["repositories/one/content/read"]
        )
        await w.service.create_token(boss, "usagereg", "ci-token", "pullers", no_passwords=True)
        usage = {u.name: u for u in await w.service.usages(boss, "usagereg")}
        assert (usage["Size"].current_value, usage["Size"].limit) == (1024, 100 * 1024**3)
        assert usage["Size"].unit == "Bytes"
        assert (usage["Tokens"].current_value, usage["ScopeMaps"].current_value) == (1, 1)
        assert {"Webhooks", "Replications"} <= usage.keys()

    play(world, case)


# -- scope maps and tokens -----------------------------------------------------------------


def test_scope_maps(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        s = w.service
        await s.create_registry(boss, "mapsreg", "Basic")
        await fails(
            "BODY_INVALID", s.create_scope_map(boss, "mapsreg", "badmap", ["repositories/x/fly"])
        )
        await fails("BODY_INVALID", s.create_scope_map(boss, "mapsreg", "badmap", []))
        await fails(
            "NAME_INVALID",
            s.create_scope_map(boss, "mapsreg", "badmap", ["repositories/UP/content/read"]),
        )
        await fails(
            "NAME_INVALID",
            s.create_scope_map(boss, "mapsreg", "x", ["repositories/a/content/read"]),
        )
        made = await s.create_scope_map(
            boss, "mapsreg", "readers", ["repositories/samples/*/content/read"] * 2, "pull samples"
        )
        assert made.registry == "mapsreg"
        assert made.scope_map.actions == ("repositories/samples/*/content/read",)
        await fails(
            "ALREADY_EXISTS",
            s.create_scope_map(boss, "mapsreg", "READERS", ["repositories/a/content/read"]),
        )
        updated = (
            await s.update_scope_map(
                boss, "mapsreg", "readers", actions=["repositories/a/metadata/read"]
            )
        ).scope_map
        assert (
            updated.actions == ("repositories/a/metadata/read",)
            and updated.description == "pull samples"
        )
        assert (await s.get_scope_map(boss, "mapsreg", "readers")).scope_map == updated
        assert [m.scope_map.name for m in await s.list_scope_maps(boss, "mapsreg")] == ["readers"]
        await s.create_token(boss, "mapsreg", "user-one", "readers", no_passwords=True)
        err = await fails("IN_USE", s.delete_scope_map(boss, "mapsreg", "readers"))
        assert "user-one" in err.message
        await s.delete_token(boss, "mapsreg", "user-one")
        await s.delete_scope_map(boss, "mapsreg", "readers")
        await fails("NOT_FOUND", s.get_scope_map(boss, "mapsreg", "readers"))

    play(world, case)


def test_tokens(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        s = w.service
        await s.create_registry(boss, "tokenreg", "Basic")
        await s.create_scope_map(boss, "tokenreg", "pushers", ["repositories/app/content/write"])
        await fails("NOT_FOUND", s.create_token(boss, "tokenreg", "ci-token", "nosuchmap"))
        await fails("NAME_INVALID", s.create_token(boss, "tokenreg", "TokenReg", "pushers"))
        await fails("NAME_INVALID", s.create_token(boss, "tokenreg", "a:b:c:d", "pushers"))
        issued = await s.create_token(boss, "tokenreg", "ci-token", "pushers")
        assert set(issued.values) == {"password1", "password2"}
        for password in issued.token.passwords:
            assert verify_secret(password.secret_hash, issued.values[password.name])
        await fails("ALREADY_EXISTS", s.create_token(boss, "tokenreg", "CI-TOKEN", "pushers"))

        bare = await s.create_token(
            boss, "tokenreg", "bare-token", "pushers", no_passwords=True, status="disabled"
        )
        assert (bare.values, bare.token.passwords, bare.token.status) == ({}, (), "disabled")
        await fails(
            "BODY_INVALID",
            s.generate_token_password(
                boss, "tokenreg", "bare-token", "password1", datetime.now(UTC) - timedelta(days=1)
            ),
        )
        expiry = datetime.now(UTC) + timedelta(days=30)
        fresh = await s.generate_token_password(boss, "tokenreg", "bare-token", "password2", expiry)
        assert list(fresh.values) == ["password2"]
        assert fresh.token.passwords[0].expiry == expiry

        await s.delete_token_password(boss, "tokenreg", "bare-token", "password2")
        await fails(
            "NOT_FOUND", s.delete_token_password(boss, "tokenreg", "bare-token", "password2")
        )
        updated = await s.update_token(boss, "tokenreg", "bare-token", status="enabled")
        assert updated.token.status == "enabled"
        assert (await s.get_token(boss, "tokenreg", "ci-token")).values == {}
        assert [t.token.name for t in await s.list_tokens(boss, "tokenreg")] == [
            "bare-token",
            "ci-token",
        ]
        await s.delete_token(boss, "tokenreg", "bare-token")
        await fails("NOT_FOUND", s.get_token(boss, "tokenreg", "bare-token"))

    play(world, case)


# -- role assignments ----------------------------------------------------------------------


def test_role_assignments(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        s = w.service
        await s.create_registry(boss, "rolesreg", "Basic")
        await s.create_registry(boss, "hidden1", "Basic")
        sp = await s.create_service_principal(boss, "ci")
        await s.create_user(boss, "alice", "a-long-password")

        made = await s.create_role_assignment(boss, "acrpull", "alice", "/registries/RolesReg")
        assert (made.role, made.scope, made.principal_name) == (
            "AcrPull",
            "/registries/rolesreg",
            "alice",
        )
        await fails(
            "ALREADY_EXISTS",
            s.create_role_assignment(boss, "AcrPull", "ALICE", "/registries/rolesreg"),
        )
        by_app = await s.create_role_assignment(
            boss, "AcrPush", sp.principal.name, "/registries/hidden1/repositories/app"
        )
        assert by_app.principal_kind == "service_principal"
        await fails("BODY_INVALID", s.create_role_assignment(boss, "Overlord", "alice", "/"))
        await fails(
            "BODY_INVALID", s.create_role_assignment(boss, "Reader", "alice", "/subscriptions/x")
        )
        await fails("NOT_FOUND", s.create_role_assignment(boss, "Reader", "nobody", "/"))
        await fails(
            "NOT_FOUND", s.create_role_assignment(boss, "Reader", "alice", "/registries/absent1")
        )

        # A reader of one registry sees only the assignments there.
        viewer = await w.principal("viewer", ("Reader", "/registries/rolesreg"))
        seen = await s.list_role_assignments(viewer)
        assert {a.scope for a in seen} == {"/registries/rolesreg"}
        await fails("NOT_FOUND", s.list_role_assignments(viewer, scope="/registries/hidden1"))
        await fails("PARAMETER_INVALID", s.list_role_assignments(viewer, role="Overlord"))
        assert await s.list_role_assignments(boss, assignee="nobody") == []
        mine = await s.list_role_assignments(boss, assignee="alice", role="AcrPull")
        assert [a.id for a in mine] == [made.id]
        under = await s.list_role_assignments(boss, scope="/registries/hidden1")
        assert [a.id for a in under] == [by_app.id]

        await fails("NOT_FOUND", s.delete_role_assignment(viewer, by_app.id))
        await fails("DENIED", s.delete_role_assignment(viewer, made.id))
        await s.delete_role_assignment(boss, made.id)
        await fails("NOT_FOUND", s.delete_role_assignment(boss, made.id))

    play(world, case)


def test_the_last_owner_stays(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        s = w.service
        (assignment,) = await s.list_role_assignments(boss, assignee="owner")
        await fails("IN_USE", s.delete_role_assignment(boss, assignment.id))
        await fails("IN_USE", s.delete_principal(boss, "user", "owner"))
        await fails("IN_USE", s.update_user(boss, "owner", disabled=True))
        await s.create_user(boss, "second", "another-long-password")
        await s.create_role_assignment(boss, "Owner", "second", "/")
        await s.delete_role_assignment(boss, assignment.id)

    play(world, case)


# -- users and service principals ----------------------------------------------------------


def test_users(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        s = w.service
        await fails("BODY_INVALID", s.create_user(boss, "shorty", "elevenchars"))
        await fails("NAME_INVALID", s.create_user(boss, "bad:name", "twelve-chars"))
        chosen = await s.create_user(boss, "bob@example.test", "twelve-chars", "Bob")
        assert chosen.password is None and chosen.principal.display_name == "Bob"
        generated = await s.create_user(boss, "carol")
        assert generated.password and len(generated.password) >= 12
        assert verify_secret(generated.principal.secret_hash or "", generated.password)
        await fails("ALREADY_EXISTS", s.create_user(boss, "CAROL"))

        carol = await w.principal("carol2")
        # A user reads itself and changes its own password, nothing more.
        assert (await s.get_principal(carol, "user", "carol2")).name == "carol2"
        await fails("DENIED", s.get_principal(carol, "user", "carol"))
        await fails("DENIED", s.get_principal(carol, "user", "nobody"))
        changed = await s.update_user(carol, "carol2", password="a-new-password")
        assert verify_secret(changed.secret_hash or "", "a-new-password")
        await fails("DENIED", s.update_user(carol, "carol2", disabled=True))
        await fails("DENIED", s.update_user(carol, "carol", password="a-new-password"))

        disabled = await s.update_user(boss, "carol", disabled=True)
        assert disabled.disabled
        await fails("BODY_INVALID", s.update_user(boss, "carol", password="short"))
        await fails("NOT_FOUND", s.get_principal(boss, "user", "nobody"))
        assert {p.name for p in await s.list_principals(boss, "user")} >= {
            "carol",
            "bob@example.test",
        }
        await s.delete_principal(boss, "user", "carol")
        await fails("NOT_FOUND", s.delete_principal(boss, "user", "carol"))

    play(world, case)


def test_service_principals(world: World) -> None:
    async def case(w: World) -> None:
        boss = await owner(w)
        s = w.service
        made = await s.create_service_principal(boss, "deployer")
        app_id = made.principal.name
        assert len(app_id) == 36 and made.password
        assert verify_secret(made.principal.secret_hash or "", made.password)
        reset = await s.reset_credential(boss, app_id)
        assert reset.password and reset.password != made.password
        assert verify_secret(reset.principal.secret_hash or "", reset.password)
        # A user name is not a service principal, and the other way round.
        await fails("NOT_FOUND", s.get_principal(boss, "service_principal", "owner"))
        await fails("NOT_FOUND", s.get_principal(boss, "user", app_id))
        assert [p.name for p in await s.list_principals(boss, "service_principal")] == [app_id]
        await s.delete_principal(boss, "service_principal", app_id)
        await fails("NOT_FOUND", s.reset_credential(boss, app_id))

    play(world, case)


def test_me_and_roles(world: World) -> None:
    async def case(w: World) -> None:
        sp = await w.principal("00000000-1111-2222-3333-444444444444", kind="service_principal")
        me = await w.service.me(sp)
        assert (me.id, me.kind) == (sp.subject, "servicePrincipal")
        roles = {d.role.value for d in await w.service.role_definitions(sp)}
        assert {"Owner", "Contributor", "Reader", "AcrPull", "AcrPush"} <= roles

    play(world, case)
