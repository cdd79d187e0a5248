"""AuthService on a real SQLite metadata store: credentials to identities, grants, keys.

Each test builds its own store in a temporary directory; argon2 runs for real, so
these tests are about behaviour, with as few password checks as each needs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import pytest

from hamn.auth import secrets as auth_secrets
from hamn.auth import tokens
from hamn.auth.policy import Action
from hamn.auth.scopes import parse_scope
from hamn.metadata.identities import IdentityStore
from hamn.metadata.store import MetadataStore, create_metadata_engine, migrate
from hamn.services.auth import NULL_GUID, AuthService, load_server_key
from hamn.services.identity import ANONYMOUS, IdentityKind

T = TypeVar("T")
KEY = b"k" * 32


class Clock:
    def __init__(self) -> None:
        # The store stamps changes with the real time; tokens are issued on this clock.
        self.now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[AuthService, IdentityStore, Clock]]:
    engine = create_metadata_engine(f"sqlite:///{tmp_path / 'metadata.db'}")
    migrate(engine)
    store = MetadataStore(engine)
    identities = IdentityStore(store)
    clock = Clock()
    yield AuthService(identities, server_key=KEY, clock=clock), identities, clock
    store.close()


def run(make: Callable[[], Awaitable[T]]) -> T:
    return asyncio.run(make())  # type: ignore[arg-type]


async def _user(identities: IdentityStore, name: str, password: str, role: str, scope: str) -> str:
    principal = await identities.create_principal(
        "user", name, secret_hash=auth_secrets.hash_secret(password)
    )
    await identities.create_role_assignment(principal.id, role, scope)
    return principal.id


def test_server_key_file_is_made_once_with_mode_0600(tmp_path: Path) -> None:
    first = load_server_key("", tmp_path)
    assert len(first) == 32
    assert (tmp_path / "server.key").stat().st_mode & 0o777 == 0o600
    assert load_server_key("", tmp_path) == first


def test_configured_server_key_must_be_32_bytes_of_base64(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="32 bytes"):
        load_server_key("c2hvcnQ=", tmp_path)
    with pytest.raises(ValueError, match="32 bytes"):
        load_server_key("not base64!", tmp_path)


def test_bootstrap_owner_once_with_given_or_generated_password(world) -> None:  # type: ignore[no-untyped-def]
    auth, identities, _ = world

    async def go() -> None:
        assert await auth.bootstrap_owner("root", "a-long-password-1") is None
        assert await auth.bootstrap_owner("other", None) is None  # principals exist
        owner = await identities.get_principal_by_name("root")
        assert owner is not None
        roles = [(a.role, a.scope) for a in await identities.assignments_for(owner.id)]
        assert roles == [("Owner", "/")]
        version = await auth.version()
        identity = await auth.authenticate_basic("root", "a-long-password-1", version)
        assert identity is not None and identity.kind is IdentityKind.PRINCIPAL

    run(go)


def test_bootstrap_generates_a_password_and_refuses_short_ones(world) -> None:  # type: ignore[no-untyped-def]
    auth, _, _ = world

    async def go() -> None:
        with pytest.raises(ValueError, match="at least 12"):
            await auth.bootstrap_owner("root", "short")
        generated = await auth.bootstrap_owner("root", None)
        assert generated is not None and len(generated) >= 20
        version = await auth.version()
        assert await auth.authenticate_basic("root", generated, version) is not None

    run(go)


def test_wrong_empty_and_unknown_credentials_are_refused(world) -> None:  # type: ignore[no-untyped-def]
    auth, identities, _ = world

    async def go() -> None:
        await _user(identities, "alice", "alice-password-1", "AcrPull", "/")
        v = await auth.version()
        assert await auth.authenticate_basic("alice", "wrong-password", v) is None
        assert await auth.authenticate_basic("alice", "", v) is None
        assert await auth.authenticate_basic("", "alice-password-1", v) is None
        assert await auth.authenticate_basic("nobody", "alice-password-1", v) is None
        assert await auth.authenticate_basic(NULL_GUID, "not-a-token", v) is None

    run(go)


def test_a_cached_identity_is_dropped_when_anything_changes(world) -> None:  # type: ignore[no-untyped-def]
    auth, identities, _ = world

    async def go() -> None:
        pid = await _user(identities, "bob", "bob-password-12", "AcrPush", "/registries/local")
        v = await auth.version()
        first = await auth.authenticate_basic("bob", "bob-password-12", v)
        assert first is not None and len(first.assignments) == 1
        await identities.set_principal_disabled(pid, True)
        v2 = await auth.version()
        assert v2 != v
        assert await auth.authenticate_basic("bob", "bob-password-12", v2) is None

    run(go)


def test_admin_user_and_repository_token_identities(world) -> None:  # type: ignore[no-untyped-def]
    auth, identities, clock = world

    async def go() -> None:
        await identities.create_registry("myregistry", "Standard", True)
        await identities.set_admin_passwords(
            "myregistry",
            auth_secrets.hash_secret("admin-pass-one"),
            auth_secrets.hash_secret("admin-pass-two"),
            "sealed",
        )
        await identities.create_registry("elsewhere", "Basic", False)
        await identities.create_scope_map(
            "myregistry", "pullers", ["repositories/app/*/content/read"]
        )
        await identities.create_token("myregistry", "ci", "pullers")
        await identities.set_token_password(
            "myregistry", "ci", "password1", auth_secrets.hash_secret("token-pass-1"),
            expiry=clock.now + timedelta(days=1),
        )  # fmt: skip
        v = await auth.version()
        admin = await auth.authenticate_basic("myregistry", "admin-pass-two", v)
        assert admin is not None and admin.kind is IdentityKind.ADMIN
        token = await auth.authenticate_basic("ci", "token-pass-1", v)
        assert token is not None and token.kind is IdentityKind.TOKEN
        assert token.registry == "myregistry"
        mine = await auth.registry_settings("myregistry", v)
        other = await auth.registry_settings("elsewhere", v)
        assert mine is not None and other is not None
        assert Action.PUSH in auth.actions(admin, mine, "anything")
        assert auth.actions(admin, other, "anything") == frozenset()
        assert auth.actions(token, mine, "app/web") == {Action.PULL}
        assert auth.actions(token, mine, "other") == frozenset()
        assert auth.actions(token, mine, None) == frozenset()  # no catalog for tokens
        assert auth.actions(token, other, "app/web") == frozenset()
        # An expired token password no longer signs in.
        clock.now += timedelta(days=2)
        assert await auth.authenticate_basic("ci", "token-pass-1", v) is None

    run(go)


def test_anonymous_pull_needs_the_setting_and_a_standard_sku(world) -> None:  # type: ignore[no-untyped-def]
    auth, identities, _ = world

    async def go() -> None:
        await identities.create_registry("openone", "Standard", anonymous_pull_enabled=True)
        await identities.create_registry("closedone", "Standard")
        v = await auth.version()
        open_info = await auth.registry_settings("openone", v)
        closed_info = await auth.registry_settings("closedone", v)
        assert open_info is not None and closed_info is not None
        assert auth.actions(ANONYMOUS, open_info, "x") == {Action.PULL}
        assert auth.actions(ANONYMOUS, open_info, None) == frozenset()
        assert auth.actions(ANONYMOUS, closed_info, "x") == frozenset()

    run(go)


def test_refresh_tokens_follow_their_principal(world) -> None:  # type: ignore[no-untyped-def]
    auth, identities, clock = world

    async def go() -> None:
        pid = await _user(identities, "carol", "carol-password-1", "AcrPull", "/")
        v = await auth.version()
        carol = await auth.authenticate_basic("carol", "carol-password-1", v)
        assert carol is not None
        # Issued now: the principal's last change (its creation) is not after it.
        clock.now = datetime.now(UTC) + timedelta(seconds=1)
        refresh = await auth.issue(
            carol, tokens.GrantType.REFRESH, audience="svc", registry="*", version=v
        )
        assert await auth.authenticate_basic(NULL_GUID, refresh.token, v) == carol
        # A refresh token is not an access token, and the other way round.
        with pytest.raises(tokens.TokenError):
            await auth.verify(refresh.token, tokens.GrantType.ACCESS, audience="svc")
        # Changing the password after the second of issue revokes refresh tokens.
        await asyncio.sleep(2.1)
        await identities.set_principal_secret(pid, auth_secrets.hash_secret("new-password-12"))
        v2 = await auth.version()
        assert await auth.authenticate_basic(NULL_GUID, refresh.token, v2) is None
        # An expired one is refused whatever happened.
        clock.now = datetime.now(UTC) + timedelta(seconds=1)
        later = await auth.issue(
            carol, tokens.GrantType.REFRESH, audience="svc", registry="*", version=v2
        )
        assert await auth.authenticate_basic(NULL_GUID, later.token, v2) is not None
        clock.now += timedelta(hours=25)
        assert await auth.authenticate_basic(NULL_GUID, later.token, v2) is None

    run(go)


def test_access_tokens_carry_access_and_check_audience(world) -> None:  # type: ignore[no-untyped-def]
    auth, identities, _ = world

    async def go() -> None:
        await _user(identities, "dave", "dave-password-12", "AcrPush", "/")
        v = await auth.version()
        dave = await auth.authenticate_basic("dave", "dave-password-12", v)
        assert dave is not None
        scope = parse_scope("repository:app:pull,push")
        issued = await auth.issue(
            dave, tokens.GrantType.ACCESS, audience="a:5000", registry="*", version=v,
            access=[scope],
        )  # fmt: skip
        claims = await auth.verify(issued.token, tokens.GrantType.ACCESS, audience="a:5000")
        assert claims.access == (scope,)
        assert issued.expires_in == 300
        with pytest.raises(tokens.TokenError):
            await auth.verify(issued.token, tokens.GrantType.ACCESS, audience="b:5000")
        assert await auth.identity_for_subject(claims.subject, v) == dave

    run(go)


def test_signing_keys_rotate_and_old_tokens_keep_verifying(world) -> None:  # type: ignore[no-untyped-def]
    auth, identities, clock = world

    async def go() -> None:
        await _user(identities, "erin", "erin-password-12", "AcrPull", "/")
        v = await auth.version()
        erin = await auth.authenticate_basic("erin", "erin-password-12", v)
        assert erin is not None
        old = await auth.issue(
            erin, tokens.GrantType.REFRESH, audience="s", registry="*", version=v
        )
        first_kid = (await auth.keyring()).current.kid
        # Near the end of the signing period a new key takes over.
        clock.now += timedelta(days=29)
        ring = await auth.keyring(refresh=True)
        assert ring.current.kid != first_kid
        assert len(await identities.list_signing_keys()) == 2
        # The private key is sealed at rest, never stored in the clear.
        for record in await identities.list_signing_keys():
            assert "PRIVATE KEY" not in record.private_key
        # A token signed with the old key verifies while the old key does.
        clock.now = clock.now - timedelta(days=29) + timedelta(hours=1)
        await auth.verify(old.token, tokens.GrantType.REFRESH, audience=None)

    run(go)
