"""The registry operations of ``/api``: registries, checkNameAvailability, the admin
user's credentials, and usage, over :class:`RegistryService`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from hamn.http.management import models as m
from hamn.http.management.dispatch import json_response, no_content, values_response
from hamn.http.management.operation import (
    ANY_PRINCIPAL,
    READ_REGISTRY,
    REGISTRY_PATH,
    WRITE_REGISTRY,
    Operation,
)
from hamn.services.identity import Identity
from hamn.services.management.registries import (
    AdminPasswords,
    ManagedRegistry,
    RegistryService,
    retention_of,
    soft_delete_of,
)
from hamn.services.retention import RetentionPolicy
from hamn.services.soft_delete_policy import SoftDeletePolicy


def _status(stored: Any, default: str) -> str:
    return stored if stored in ("enabled", "disabled") else default


def _registry(managed: ManagedRegistry) -> m.Registry:
    info = managed.info
    stored: dict[str, Any] = info.policies or {}

    def policy(key: str) -> dict[str, Any]:
        value = stored.get(key)
        return value if isinstance(value, dict) else {}

    return m.Registry(
        id=f"/registries/{info.name}",
        name=info.name,
        loginServer=managed.login_server,
        sku=m.Sku(name=info.sku, tier=info.sku),
        adminUserEnabled=info.admin_user_enabled,
        anonymousPullEnabled=info.anonymous_pull_enabled,
        creationDate=info.created_at,
        provisioningState=info.provisioning_state,
        policies=m.Policies(
            quarantinePolicy=m.StatusPolicy(
                status=_status(policy("quarantinePolicy").get("status"), "disabled")
            ),
            trustPolicy=m.TrustPolicy(
                status=_status(policy("trustPolicy").get("status"), "disabled")
            ),
            retentionPolicy=_retention(retention_of(info)),
            softDeletePolicy=_soft_delete(soft_delete_of(info)),
            exportPolicy=m.StatusPolicy(
                status=_status(policy("exportPolicy").get("status"), "enabled")
            ),
        ),
    )


def _retention(policy: RetentionPolicy) -> m.RetentionPolicy:
    return m.RetentionPolicy(
        days=policy.days,
        status=_status(policy.status, "disabled"),
        lastUpdatedTime=policy.last_updated or datetime.now(UTC),
    )


def _soft_delete(policy: SoftDeletePolicy) -> m.SoftDeletePolicy:
    return m.SoftDeletePolicy(
        retentionDays=policy.retention_days,
        status=_status(policy.status, "disabled"),
        lastUpdatedTime=policy.last_updated or datetime.now(UTC),
    )


def _admin(passwords: AdminPasswords) -> m.AdminCredentials:
    return m.AdminCredentials(
        username=passwords.username,
        passwords=[
            m.AdminPassword(name="password", value=passwords.password),
            m.AdminPassword(name="password2", value=passwords.password2),
        ],
    )


class RegistriesApi:
    """``/api/registries``, ``/api/checkNameAvailability``, and a registry's admin
    credentials and usages."""

    def __init__(self, service: RegistryService) -> None:
        self.service = service

    def operations(self) -> list[Operation]:
        """This group's rows of the operations table."""
        r, read, write = REGISTRY_PATH, READ_REGISTRY, WRITE_REGISTRY
        any_principal = ANY_PRINCIPAL
        o = Operation
        return [
            o("GET", "/api/registries", "listRegistries", self.list_registries,
              "The registries the caller can see", any_principal,
              answer=m.ValueList[m.Registry]),
            o("POST", "/api/registries", "createRegistry", self.create_registry,
              "Create a registry", "write at /", m.RegistryCreate, m.Registry, 201,
              creates=("registry", "/name")),
            o("POST", "/api/checkNameAvailability", "checkNameAvailability", self.check_name,
              "Whether a registry name is free and valid", any_principal, m.NameCheck,
              m.NameAvailability),
            o("GET", r, "getRegistry", self.get_registry, "One registry", read,
              answer=m.Registry),
            o("PATCH", r, "updateRegistry", self.update_registry,
              "Change a registry's SKU, admin user or anonymous pull", write, m.RegistryUpdate,
              m.Registry),
            o("DELETE", r, "deleteRegistry", self.delete_registry,
              "Delete a registry and everything in it", write, status=204),
            o("POST", f"{r}/listCredentials", "listCredentials", self.list_credentials,
              "The admin user's name and passwords", write, answer=m.AdminCredentials),
            o("POST", f"{r}/regenerateCredential", "regenerateCredential",
              self.regenerate_credential, "Renew one admin password", write,
              m.CredentialName, m.AdminCredentials),
            o("GET", f"{r}/usages", "listUsages", self.usages,
              "Storage and counts against the SKU's limits", read,
              answer=m.ValueList[m.Usage]),
            o("GET", f"{r}/policies/retention", "getRetentionPolicy", self.get_retention,
              "The untagged-manifest retention policy", read, answer=m.RetentionPolicy),
            o("PATCH", f"{r}/policies/retention", "updateRetentionPolicy",
              self.update_retention,
              "Enable, disable or change the retention policy (409 while soft delete is enabled)",
              write, m.RetentionUpdate, m.RetentionPolicy),
            o("GET", f"{r}/policies/softdelete", "getSoftDeletePolicy", self.get_soft_delete,
              "The soft delete policy", read, answer=m.SoftDeletePolicy),
            o("PATCH", f"{r}/policies/softdelete", "updateSoftDeletePolicy",
              self.update_soft_delete,
              "Enable, disable or change soft delete (409 while retention is enabled)", write,
              m.SoftDeleteUpdate, m.SoftDeletePolicy),
        ]  # fmt: skip

    async def list_registries(self, _: Request, caller: Identity, __: None) -> Response:
        """``GET /api/registries``."""
        return values_response([_registry(r) for r in await self.service.list_registries(caller)])

    async def create_registry(
        self, _: Request, caller: Identity, body: m.RegistryCreate
    ) -> Response:
        """``POST /api/registries``."""
        created = await self.service.create_registry(
            caller,
            body.name,
            body.sku,
            admin_user_enabled=body.adminUserEnabled,
            anonymous_pull_enabled=body.anonymousPullEnabled,
        )
        return json_response(_registry(created), 201)

    async def check_name(self, _: Request, caller: Identity, body: m.NameCheck) -> Response:
        """``POST /api/checkNameAvailability``."""
        answer = await self.service.check_name(caller, body.name)
        return json_response(
            m.NameAvailability(
                nameAvailable=answer.available,
                reason=answer.reason,
                message=answer.message,
            )
        )

    async def get_registry(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/registries/{registry}``."""
        registry = request.path_params["registry"]
        return json_response(_registry(await self.service.get_registry(caller, registry)))

    async def update_registry(
        self, request: Request, caller: Identity, body: m.RegistryUpdate
    ) -> Response:
        """``PATCH /api/registries/{registry}``."""
        updated = await self.service.update_registry(
            caller,
            request.path_params["registry"],
            sku=body.sku,
            admin_user_enabled=body.adminUserEnabled,
            anonymous_pull_enabled=body.anonymousPullEnabled,
        )
        return json_response(_registry(updated))

    async def delete_registry(self, request: Request, caller: Identity, _: None) -> Response:
        """``DELETE /api/registries/{registry}``."""
        await self.service.delete_registry(caller, request.path_params["registry"])
        return no_content()

    async def list_credentials(self, request: Request, caller: Identity, _: None) -> Response:
        """``POST /api/registries/{registry}/listCredentials``."""
        passwords = await self.service.list_credentials(caller, request.path_params["registry"])
        return json_response(_admin(passwords))

    async def regenerate_credential(
        self, request: Request, caller: Identity, body: m.CredentialName
    ) -> Response:
        """``POST /api/registries/{registry}/regenerateCredential``."""
        passwords = await self.service.regenerate_credential(
            caller, request.path_params["registry"], body.name
        )
        return json_response(_admin(passwords))

    async def get_retention(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/registries/{registry}/policies/retention``."""
        policy = await self.service.get_retention(caller, request.path_params["registry"])
        return json_response(_retention(policy))

    async def update_retention(
        self, request: Request, caller: Identity, body: m.RetentionUpdate
    ) -> Response:
        """``PATCH /api/registries/{registry}/policies/retention``."""
        policy = await self.service.update_retention(
            caller, request.path_params["registry"], status=body.status, days=body.days
        )
        return json_response(_retention(policy))

    async def get_soft_delete(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/registries/{registry}/policies/softdelete``."""
        policy = await self.service.get_soft_delete(caller, request.path_params["registry"])
        return json_response(_soft_delete(policy))

    async def update_soft_delete(
        self, request: Request, caller: Identity, body: m.SoftDeleteUpdate
    ) -> Response:
        """``PATCH /api/registries/{registry}/policies/softdelete``."""
        policy = await self.service.update_soft_delete(
            caller, request.path_params["registry"], status=body.status, days=body.days
        )
        return json_response(_soft_delete(policy))

    async def usages(self, request: Request, caller: Identity, _: None) -> Response:
        """``GET /api/registries/{registry}/usages``."""
        usages = await self.service.usages(caller, request.path_params["registry"])
        return values_response(
            [
                m.Usage(
                    name=u.name,
                    limit=u.limit,
                    currentValue=u.current_value,
                    unit=u.unit,
                )
                for u in usages
            ]
        )
