"""A management service over a real IdentityStore on a temporary SQLite database, and
identities with chosen role assignments (shared by the service and route tests)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from hamn.auth.policy import RoleAssignment
from hamn.auth.secrets import HashParameters, hash_secret
from hamn.metadata.identities import IdentityStore
from hamn.metadata.store import MetadataStore, create_metadata_engine, migrate
from hamn.services.identity import Identity, IdentityKind
from hamn.services.management import ManagementServices

T = TypeVar("T")

#: Cheap argon2id parameters: the service's hashing, not its cost, is under test.
FAST = HashParameters(time_cost=1, memory_cost=8, parallelism=1)
KEY = bytes(range(32))
DOMAIN = "example.test"

ADMIN = Identity(IdentityKind.ADMIN, "admin:myregistry", "myregistry", registry="myregistry")
TOKEN = Identity(IdentityKind.TOKEN, "token:1", "ci-token", registry="myregistry")
ANONYMOUS = Identity(IdentityKind.ANONYMOUS, "anonymous", "anonymous")


def fast_hash(secret: str) -> str:
    return hash_secret(secret, FAST)


def run(awaitable: Awaitable[T]) -> T:
    """Await one call from a plain test."""

    async def main() -> T:
        return await awaitable

    return asyncio.run(main())


class AnyService:
    """Every management use case on one object, so a test names the operation, not the
    service that holds it (no two services share a method name)."""

    def __init__(self, services: ManagementServices) -> None:
        self._parts = (services.registries, services.tokens, services.roles, services.principals)

    def __getattr__(self, name: str) -> Any:
        for part in self._parts:
            if not name.startswith("_") and hasattr(part, name):
                return getattr(part, name)
        raise AttributeError(name)


class World:
    """The services, their stores, and a way to make principals holding roles."""

    def __init__(self, tmp_path: Path) -> None:
        engine = create_metadata_engine(f"sqlite:///{tmp_path / 'metadata.db'}")
        migrate(engine)
        self.store = MetadataStore(engine)
        self.identities = IdentityStore(self.store)
        self.services = ManagementServices.build(
            self.identities, self.store, secret_key=KEY, domain=DOMAIN, hasher=fast_hash
        )
        self.service = AnyService(self.services)

    async def principal(self, name: str, *grants: tuple[str, str], kind: str = "user") -> Identity:
        """A stored principal holding ``grants`` ((role, scope) pairs), as its Identity."""
        stored = await self.identities.create_principal(kind, name, secret_hash=fast_hash("x" * 12))
        for role, scope in grants:
            await self.identities.create_role_assignment(stored.id, role, scope)
        return Identity(
            IdentityKind.PRINCIPAL,
            stored.id,
            name,
            principal_kind="user" if kind == "user" else "servicePrincipal",
            assignments=tuple(RoleAssignment.parse(r, s) for r, s in grants),
        )

    def close(self) -> None:
        self.store.close()
