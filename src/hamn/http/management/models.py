"""The management API's bodies (pydantic v2): what ``/api`` validates and what it answers.

These classes are the single description of the wire format: request bodies are
validated with them, answers are rendered through them, and the OpenAPI document
(``GET /api/openapi.json``) is generated from them. Keys are camelCase, as ACR's.

Request bodies are strict: unknown keys, wrong JSON types (``"true"`` for a boolean, a
number for a string) and overlong strings are refused, never coerced. Names and other
domain rules (registry names, scope map actions, roles, scopes) are checked by the
service, which says which rule was broken.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, SecretStr

T = TypeVar("T")

# No NUL: PostgreSQL text cannot hold it. Lengths are the store's.
_Text = Annotated[str, Field(max_length=1024, pattern=r"^[^\x00]*$")]
_Name = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]
_DisplayName = Annotated[str, Field(min_length=1, max_length=255, pattern=r"^[^\x00]*$")]
_Secret = Annotated[SecretStr, Field(max_length=1024)]


class Request(BaseModel):
    """A request body: strict types, unknown keys refused."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class Answer(BaseModel):
    """A response body."""

    model_config = ConfigDict(frozen=True)


# -- requests ----------------------------------------------------------------------------------


class RegistryCreate(Request):
    """``POST /api/registries``. The name's rule is checked by the service (NAME_INVALID
    stating it); the document shows it, and the SKU's canonical spellings."""

    name: Annotated[_Name, Field(json_schema_extra={"pattern": "^[a-zA-Z0-9]{5,50}$"})]
    sku: Annotated[_Name, Field(json_schema_extra={"enum": ["Basic", "Standard", "Premium"]})]
    adminUserEnabled: bool = False
    anonymousPullEnabled: bool = False


class RegistryUpdate(Request):
    """``PATCH /api/registries/{registry}``: what is absent (or null) stays as it is."""

    sku: _Name | None = None
    adminUserEnabled: bool | None = None
    anonymousPullEnabled: bool | None = None


class RetentionUpdate(Request):
    """``PATCH /api/registries/{registry}/policies/retention`` (``az acr config retention
    update``): what is absent (or null) stays as it is. ``type`` is accepted as az sends it."""

    status: Literal["enabled", "disabled"] | None = None
    days: Annotated[int, Field(ge=0, le=365)] | None = None
    type: Literal["UntaggedManifests"] | None = None


class SoftDeleteUpdate(Request):
    """``PATCH /api/registries/{registry}/policies/softdelete`` (``az acr config soft-delete
    update``): what is absent (or null) stays as it is. ``days`` is how long deleted
    manifests and tags stay restorable."""

    status: Literal["enabled", "disabled"] | None = None
    days: Annotated[int, Field(ge=1, le=90)] | None = None


class NameCheck(Request):
    """``POST /api/checkNameAvailability`` (``type`` is accepted as ``az`` sends it)."""

    name: _Name
    type: Literal["Microsoft.ContainerRegistry/registries"] | None = None


class CredentialName(Request):
    """``POST /api/registries/{registry}/regenerateCredential``."""

    name: Literal["password", "password2"]


class ScopeMapCreate(Request):
    """``POST /api/registries/{registry}/scopeMaps``: ``repositories/<repo>/<action>`` entries."""

    name: _Name
    actions: Annotated[list[_Text], Field(max_length=500)]
    description: _Text | None = None


class ScopeMapUpdate(Request):
    """``PATCH /api/registries/{registry}/scopeMaps/{scopeMap}``: the actions are replaced."""

    actions: Annotated[list[_Text], Field(max_length=500)] | None = None
    description: _Text | None = None


class TokenCreate(Request):
    """``POST /api/registries/{registry}/tokens``."""

    name: _Name
    scopeMap: _Name
    status: Literal["enabled", "disabled"] = "enabled"
    noPasswords: bool = False


class TokenUpdate(Request):
    """``PATCH /api/registries/{registry}/tokens/{token}``."""

    scopeMap: _Name | None = None
    status: Literal["enabled", "disabled"] | None = None


class TokenCredentialCreate(Request):
    """``POST /api/registries/{registry}/tokens/{token}/generateCredentials``."""

    name: Literal["password1", "password2"]
    expiry: AwareDatetime | None = None


class RoleAssignmentCreate(Request):
    """``POST /api/roleAssignments``: assignee is a user's name or a service principal's appId."""

    role: _Name
    assignee: _Name
    scope: _Text


class UserCreate(Request):
    """``POST /api/users``: without a password, one is generated and returned once."""

    name: _Name
    password: _Secret | None = None
    displayName: _DisplayName | None = None


class UserUpdate(Request):
    """``PATCH /api/users/{name}``."""

    password: _Secret | None = None
    disabled: bool | None = None
    displayName: _DisplayName | None = None


class ServicePrincipalCreate(Request):
    """``POST /api/servicePrincipals``."""

    displayName: _DisplayName


# -- answers -----------------------------------------------------------------------------------


class ValueList(Answer, Generic[T]):
    """A list answer, ``{"value": [...]}`` as ARM's."""

    value: list[T]


class ErrorEntry(Answer):
    """One error: a registered code, a sentence saying what to do, and what was wrong."""

    code: str
    message: str
    detail: Any = None


class ErrorBody(Answer):
    """Every error answer: ``{"errors": [...]}``."""

    errors: list[ErrorEntry]


class Me(Answer):
    """``GET /api/me``."""

    id: str
    name: str
    kind: Literal["user", "servicePrincipal"]


class Sku(Answer):
    """A registry's SKU."""

    name: Literal["Basic", "Standard", "Premium"]
    tier: Literal["Basic", "Standard", "Premium"]


class StatusPolicy(Answer):
    """A policy that is on or off."""

    status: Literal["enabled", "disabled"]


class TrustPolicy(Answer):
    """Content trust."""

    type: Literal["Notary"] = "Notary"
    status: Literal["enabled", "disabled"]


class RetentionPolicy(Answer):
    """Retention of untagged manifests: those untagged for ``days`` after it was enabled
    are deleted by garbage collection."""

    days: int
    status: Literal["enabled", "disabled"]
    lastUpdatedTime: datetime


class SoftDeletePolicy(Answer):
    """Soft delete: deleted manifests and their tags stay listed and restorable for
    ``retentionDays``, counting toward usage, until the collector purges them."""

    retentionDays: int
    status: Literal["enabled", "disabled"]
    lastUpdatedTime: datetime


class Policies(Answer):
    """A registry's policies."""

    quarantinePolicy: StatusPolicy
    trustPolicy: TrustPolicy
    retentionPolicy: RetentionPolicy
    softDeletePolicy: SoftDeletePolicy
    exportPolicy: StatusPolicy


class Registry(Answer):
    """A registry, in ACR's (flattened) shape."""

    id: str
    name: str
    type: Literal["Microsoft.ContainerRegistry/registries"] = (
        "Microsoft.ContainerRegistry/registries"
    )
    location: str = "local"
    loginServer: str
    sku: Sku
    adminUserEnabled: bool
    anonymousPullEnabled: bool
    creationDate: datetime
    provisioningState: str
    policies: Policies


class NameAvailability(Answer):
    """``POST /api/checkNameAvailability``."""

    nameAvailable: bool
    reason: Literal["Invalid", "AlreadyExists"] | None
    message: str | None


class AdminPassword(Answer):
    """One of the admin user's passwords."""

    name: Literal["password", "password2"]
    value: str


class AdminCredentials(Answer):
    """``listCredentials`` and ``regenerateCredential``."""

    username: str
    passwords: list[AdminPassword]


class Usage(Answer):
    """One line of ``show-usage``."""

    name: str
    limit: int
    currentValue: int
    unit: Literal["Bytes", "Count"]


class ScopeMap(Answer):
    """A scope map."""

    id: str
    name: str
    type: Literal["Microsoft.ContainerRegistry/registries/scopeMaps"] = (
        "Microsoft.ContainerRegistry/registries/scopeMaps"
    )
    scopeMapType: Literal["UserDefined"] = "UserDefined"
    description: str | None
    actions: list[str]
    creationDate: datetime
    provisioningState: str = "Succeeded"


class TokenPassword(Answer):
    """One of a token's passwords; ``value`` only in the answer that made it."""

    name: Literal["password1", "password2"]
    creationTime: datetime
    expiry: datetime | None
    value: str | None = Field(default=None, exclude_if=lambda v: v is None)


class TokenCredentials(Answer):
    """A token's username and passwords (also ``generateCredentials``' answer)."""

    username: str
    passwords: list[TokenPassword]


class Token(Answer):
    """A repository-scoped token."""

    id: str
    name: str
    type: Literal["Microsoft.ContainerRegistry/registries/tokens"] = (
        "Microsoft.ContainerRegistry/registries/tokens"
    )
    scopeMapId: str
    status: Literal["enabled", "disabled"]
    creationDate: datetime
    provisioningState: str = "Succeeded"
    credentials: TokenCredentials


class RoleDefinition(Answer):
    """A built-in role."""

    roleName: str
    dataActions: list[str]
    managementPermissions: list[str]


class RoleAssignment(Answer):
    """A role assignment."""

    id: str
    principalId: str
    principalName: str
    principalType: Literal["User", "ServicePrincipal"]
    roleDefinitionName: str
    scope: str
    createdOn: datetime


class User(Answer):
    """A user; ``password`` only in the answer that generated it."""

    id: str
    name: str
    displayName: str | None
    disabled: bool
    createdOn: datetime
    password: str | None = Field(default=None, exclude_if=lambda v: v is None)


class ServicePrincipal(Answer):
    """A service principal; ``password`` only in the answers that made it."""

    id: str
    appId: str
    displayName: str | None
    disabled: bool
    createdOn: datetime
    password: str | None = Field(default=None, exclude_if=lambda v: v is None)
