"""The management plane's use cases (SPEC §5.1), one service per resource group:

* ``registries``: registries, their admin user's credentials, and usage;
* ``tokens``: scope maps and repository-scoped tokens;
* ``roles``: the built-in roles and role assignments;
* ``principals``: users, service principals, and who the caller is;
* ``checks``: what they all check the same way (who may do what, which registries the
  caller can see, store errors as protocol errors, the shared name rules).

Plain values in and out; every method takes the caller's :class:`Identity` first and
decides with the pure policy (``hamn.auth.policy``), never with rules of its own. Acts
that are not about one registry (creating registries, users, service principals, role
assignments at ``/``) need the permission at ``/``.

Secrets. New passwords come from :func:`~hamn.auth.secrets.new_secret` and are returned
once; only their argon2id hashes are stored, computed on a worker thread (~30 ms each by
design, which must not stall the event loop). Nothing here logs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from hamn.auth.secrets import hash_secret
from hamn.metadata.identities import IdentityStore
from hamn.metadata.store import MetadataStore
from hamn.services.management.checks import Hasher
from hamn.services.management.principals import PrincipalService
from hamn.services.management.registries import RegistryService
from hamn.services.management.roles import RoleService
from hamn.services.management.tokens import TokenService


@dataclass(frozen=True, slots=True)
class ManagementServices:
    """The management plane's services, built over the same stores."""

    registries: RegistryService
    tokens: TokenService
    roles: RoleService
    principals: PrincipalService

    @classmethod
    def build(
        cls,
        identities: IdentityStore,
        metadata: MetadataStore,
        *,
        secret_key: bytes,
        domain: str,
        hasher: Hasher = hash_secret,
        storage_quotas: Mapping[str, int] | None = None,
    ) -> ManagementServices:
        """Every service over the stores: the server key seals admin passwords, the domain
        makes login servers, and ``hasher`` hashes new secrets (tests pass a cheap one)."""
        return cls(
            RegistryService(
                identities,
                metadata,
                secret_key=secret_key,
                domain=domain,
                hasher=hasher,
                storage_quotas=storage_quotas,
            ),
            TokenService(identities, hasher=hasher),
            RoleService(identities),
            PrincipalService(identities, hasher=hasher),
        )
