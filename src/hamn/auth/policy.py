"""The access policy: who may do what, and what each request needs. Pure data and functions.

Three questions are answered here and nowhere else:

1. **What does a principal hold?** A set of :class:`Action` on one repository
   (or on the registry, for the catalog), computed from
   - role assignments (:func:`granted_actions`, the table of SPEC §2 in :data:`ROLES`),
   - the admin user (:func:`admin_actions`),
   - a repository-scoped token's scope map (:func:`scope_map_actions`),
   - anonymous pull (:func:`anonymous_actions`);
   and, for the management plane, a set of :class:`ManagementPermission`
   (:func:`management_permissions`, :func:`can_see_registry`).
2. **What does a request need?** :func:`required_access` derives it from the
   method, the route and ``from=`` in one place, as CNCF Distribution's
   ``appendAccessRecords`` does, so no route carries its own permission rule.
3. **Is it allowed?** :func:`decide` compares the two and says exactly what is
   missing, so "push works, pull says unauthorized" explains itself.

Role scopes (SPEC §2). An assignment at ``/`` covers every registry; at
``/registries/<r>`` (registry names compare case-insensitively) it covers that
registry and all its repositories; at ``/registries/<r>/repositories/<repo>``
it covers that one repository (exact name, no wildcards), for repository
actions only: it never grants the catalog nor any management permission.

Two-phase checks. Quarantine and signatures depend on content the route does
not know before the service looks at it, so :func:`required_access` takes
``quarantined`` and ``signature``. ``None`` means "not known yet": the route
check lets through anyone who *could* be allowed (a quarantine reader may fetch
a manifest that might be quarantined; a signer may upload and put a manifest
that might be a signature), and the service must check again once it knows,
with ``True`` or ``False``. The defaults (``False``) are the strict answers.
A push of any kind also needs pull (as in Distribution), so AcrImageSigner is
meant to be held together with AcrPull: a signer reads what it signs.

Tokens and role changes. A bearer token's ``access`` claim only ever *narrows*
what the principal holds now (:func:`token_allows`): the data plane computes the
principal's actions from its current assignments on every request and
intersects, so a role change takes effect at once (SPEC §2), even for tokens
already issued. The token server grants the intersection of what was asked and
what is held (:func:`grant_scope`), never an error for a partial grant.

Decisions where SPEC §2 is silent are listed in :data:`ROLES`' comments and in
the docstrings of the functions they concern.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from types import MappingProxyType

from hamn.auth.scopes import (
    CATALOG,
    REGISTRY,
    REPOSITORY,
    WILDCARD,
    Scope,
    format_scopes,
    merge_scopes,
)
from hamn.errors import NAME_INVALID, NOT_FOUND, UNSUPPORTED, HamnError
from hamn.oci.names import is_valid_registry_name, validate_repository_name


class Action(StrEnum):
    """A data-plane permission. Values are hamn's scope action words."""

    PULL = "pull"
    PUSH = "push"
    DELETE = "delete"
    METADATA_READ = "metadata_read"
    METADATA_WRITE = "metadata_write"
    #: List the registry's repositories (``registry:catalog:*``); registry-level only.
    CATALOG = "catalog"
    #: Push signature artifacts (referrers that are signatures).
    SIGN = "sign"
    #: Pull content that is quarantined.
    QUARANTINE_READ = "quarantine_read"
    #: Set a manifest's quarantine state.
    QUARANTINE_WRITE = "quarantine_write"
    #: List soft-deleted manifests and tags (ACR ``deleted_read``).
    DELETED_READ = "deleted_read"
    #: Restore soft-deleted content (ACR ``deleted_restore``).
    DELETED_RESTORE = "deleted_restore"


#: Every action that concerns a repository (all but the catalog).
REPOSITORY_ACTIONS: frozenset[Action] = frozenset(Action) - {Action.CATALOG}


class ManagementPermission(StrEnum):
    """A management-plane permission on a registry (or, at ``/``, on all of them)."""

    #: show, list, show-usage, and reading policies, credentials' names, etc.
    READ = "read"
    #: create, update, delete, credential renew, policies, tokens, scope maps...
    WRITE = "write"
    #: create and delete role assignments.
    ROLE_ASSIGNMENT_WRITE = "roleAssignments/write"


class Role(StrEnum):
    """The built-in roles of SPEC §2 (ACR's names)."""

    OWNER = "Owner"
    CONTRIBUTOR = "Contributor"
    READER = "Reader"
    ACR_PUSH = "AcrPush"
    ACR_PULL = "AcrPull"
    ACR_DELETE = "AcrDelete"
    ACR_IMAGE_SIGNER = "AcrImageSigner"
    ACR_QUARANTINE_READER = "AcrQuarantineReader"
    ACR_QUARANTINE_WRITER = "AcrQuarantineWriter"


@dataclass(frozen=True, slots=True)
class RoleDefinition:
    """What one role grants on the data plane and on the management plane."""

    role: Role
    data_actions: frozenset[Action]
    management: frozenset[ManagementPermission]


def _role(
    role: Role, data: Iterable[Action], management: Iterable[ManagementPermission]
) -> RoleDefinition:
    return RoleDefinition(role, frozenset(data), frozenset(management))


_A = Action
_M = ManagementPermission
# Whoever may pull may also read the metadata of what they pull (ACR's /acr/v1
# GETs, `az acr repository show-tags`) and, at registry scope, list the catalog
# (`az acr repository list`), as ACR's non-ABAC roles allow. Whoever may push
# may change the locks of what they push (metadata_write). Owner and
# Contributor also read and restore soft-deleted content. The quarantine writer
# reads metadata because reading the quarantine state it sets is part of its
# job (ACR: "read and write quarantine state"). Quarantine is for the
# quarantine roles only (SPEC §8.1), not even for Owner.
_CONTENT_ADMIN = (
    _A.PULL, _A.PUSH, _A.DELETE, _A.SIGN, _A.METADATA_READ, _A.METADATA_WRITE,
    _A.CATALOG, _A.DELETED_READ, _A.DELETED_RESTORE,
)  # fmt: skip

#: The built-in roles exactly as SPEC §2's table has them (plus the decisions above).
ROLES: Mapping[Role, RoleDefinition] = MappingProxyType(
    {
        d.role: d
        for d in (
            _role(Role.OWNER, _CONTENT_ADMIN, (_M.READ, _M.WRITE, _M.ROLE_ASSIGNMENT_WRITE)),
            _role(Role.CONTRIBUTOR, _CONTENT_ADMIN, (_M.READ, _M.WRITE)),
            _role(Role.READER, (_A.PULL, _A.METADATA_READ, _A.CATALOG), (_M.READ,)),
            _role(
                Role.ACR_PUSH,
                (_A.PULL, _A.PUSH, _A.METADATA_READ, _A.METADATA_WRITE, _A.CATALOG),
                (),
            ),
            _role(Role.ACR_PULL, (_A.PULL, _A.METADATA_READ, _A.CATALOG), ()),
            _role(Role.ACR_DELETE, (_A.DELETE,), ()),
            _role(Role.ACR_IMAGE_SIGNER, (_A.SIGN,), ()),
            _role(Role.ACR_QUARANTINE_READER, (_A.QUARANTINE_READ,), ()),
            _role(
                Role.ACR_QUARANTINE_WRITER,
                (_A.QUARANTINE_READ, _A.QUARANTINE_WRITE, _A.METADATA_READ),
                (),
            ),
        )
    }
)


def parse_role(name: str) -> Role:
    """The built-in role called ``name`` (case-insensitive, as ``az`` accepts it).

    Raises ``NOT_FOUND`` for a name that is not a built-in role.
    """
    for role in Role:
        if role.value.lower() == name.lower():
            return role
    raise HamnError(
        NOT_FOUND,
        f"role {name[:100]!r} does not exist; built-in roles are "
        + ", ".join(r.value for r in Role),
        detail={"role": name[:100]},
    )


# -- resource scopes -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ResourceScope:
    """Where a role assignment applies: ``/``, a registry, or one repository."""

    registry: str | None = None
    repository: str | None = None

    def __post_init__(self) -> None:
        if self.repository is not None and self.registry is None:
            raise ValueError("a repository scope names its registry")

    def __str__(self) -> str:
        if self.registry is None:
            return "/"
        if self.repository is None:
            return f"/registries/{self.registry}"
        return f"/registries/{self.registry}/repositories/{self.repository}"

    def covers_registry(self, registry: str) -> bool:
        """Whether the scope covers the whole of ``registry`` (``/`` or that registry)."""
        return self.repository is None and (
            self.registry is None or self.registry.lower() == registry.lower()
        )

    def covers_repository(self, registry: str, repository: str) -> bool:
        """Whether the scope covers ``repository`` in ``registry``."""
        if self.covers_registry(registry):
            return True
        return (
            self.registry is not None
            and self.registry.lower() == registry.lower()
            and self.repository == repository
        )


#: The scope that covers everything.
ROOT_SCOPE = ResourceScope()


def parse_resource_scope(text: str) -> ResourceScope:
    """Parse ``/``, ``/registries/<r>`` or ``/registries/<r>/repositories/<repo>``.

    The words ``registries`` and ``repositories`` are case-insensitive, as in
    ARM ids, and one trailing ``/`` is ignored. The registry name must be a
    valid registry name and the repository a valid repository name
    (``NAME_INVALID``); any other shape is ``NOT_FOUND`` (no such scope).
    """
    if text == "/":
        return ROOT_SCOPE
    path = text[:-1] if text.endswith("/") else text
    parts = path.split("/", 4)
    if len(parts) < 3 or parts[0] != "" or parts[1].lower() != "registries":
        raise HamnError(
            NOT_FOUND,
            f"scope {text[:200]!r} is not '/', '/registries/<registry>' or "
            "'/registries/<registry>/repositories/<repository>'",
            detail={"scope": text[:300]},
        )
    registry = parts[2]
    if not is_valid_registry_name(registry):
        raise HamnError(
            NAME_INVALID,
            f"scope {text[:200]!r}: registry names are 5-50 letters and digits",
            detail={"scope": text[:300]},
        )
    if len(parts) == 3:
        return ResourceScope(registry)
    if len(parts) < 5 or parts[3].lower() != "repositories" or not parts[4]:
        raise HamnError(
            NOT_FOUND,
            f"scope {text[:200]!r}: below a registry only '/repositories/<repository>' is a scope",
            detail={"scope": text[:300]},
        )
    return ResourceScope(registry, validate_repository_name(parts[4]))


@dataclass(frozen=True, slots=True)
class RoleAssignment:
    """One of a principal's role assignments (the assignee is whoever holds the list)."""

    role: Role
    scope: ResourceScope = ROOT_SCOPE

    @classmethod
    def parse(cls, role: str, scope: str) -> RoleAssignment:
        """Build from the text forms, e.g. ``("AcrPull", "/registries/myreg")``."""
        return cls(parse_role(role), parse_resource_scope(scope))


# -- what a principal holds --------------------------------------------------------


def granted_actions(
    assignments: Iterable[RoleAssignment], registry: str, repository: str | None = None
) -> frozenset[Action]:
    """The data-plane actions ``assignments`` grant in ``registry``.

    With ``repository``, the actions on that repository; without, those on the
    registry as a whole. ``CATALOG`` comes only from assignments that cover the
    whole registry; a repository-scope assignment counts only for its
    repository and never grants ``CATALOG``.
    """
    held: set[Action] = set()
    for assignment in assignments:
        definition = ROLES[assignment.role]
        if assignment.scope.covers_registry(registry):
            held |= definition.data_actions
        elif repository is not None and assignment.scope.covers_repository(registry, repository):
            held |= definition.data_actions & REPOSITORY_ACTIONS
    return frozenset(held)


def management_permissions(
    assignments: Iterable[RoleAssignment], registry: str | None
) -> frozenset[ManagementPermission]:
    """Management permissions on ``registry``; ``None`` asks about all of them.

    ``registry=None`` is for acts that are not about one existing registry
    (creating one, listing all): only assignments at ``/`` count. Repository
    scope assignments never grant management permissions.
    """
    held: set[ManagementPermission] = set()
    for assignment in assignments:
        scope = assignment.scope
        if scope == ROOT_SCOPE or (registry is not None and scope.covers_registry(registry)):
            held |= ROLES[assignment.role].management
    return frozenset(held)


def can_see_registry(assignments: Iterable[RoleAssignment], registry: str) -> bool:
    """Whether the registry appears in ``list`` and answers ``show`` for this principal.

    Only management ``READ`` (Reader, Contributor, Owner at ``/`` or at the
    registry) shows it; AcrPull, AcrPush and the other data-plane roles can log
    in, pull and push, but do not see the registry (SPEC §2).
    """
    return ManagementPermission.READ in management_permissions(assignments, registry)


#: What the registry's admin user holds on its own registry: all of the data
#: plane that Owner has (pull, push, delete, metadata, catalog, sign, soft
#: delete), but not quarantine (SPEC §8.1 keeps that to the quarantine roles)
#: and nothing on the management plane (as in ACR).
ADMIN_ACTIONS: frozenset[Action] = ROLES[Role.OWNER].data_actions


def admin_actions(admin_registry: str, registry: str) -> frozenset[Action]:
    """The admin user of ``admin_registry`` holds :data:`ADMIN_ACTIONS` there, nothing elsewhere."""
    return ADMIN_ACTIONS if admin_registry.lower() == registry.lower() else frozenset()


#: What anonymous pull grants: ``pull`` only. That covers manifests, blobs, the
#: tags list and referrers, which are all pull; it does not cover the catalog or
#: the ``/acr/v1`` metadata API (ACR lets anonymous clients pull, nothing more).
ANONYMOUS_PULL_ACTIONS: frozenset[Action] = frozenset({Action.PULL})


def anonymous_actions(anonymous_pull_enabled: bool) -> frozenset[Action]:
    """What an unauthenticated client holds in a registry (SPEC §4.3)."""
    return ANONYMOUS_PULL_ACTIONS if anonymous_pull_enabled else frozenset()


# -- repository-scoped tokens: scope maps ------------------------------------------

#: Scope map action words and what each grants on a matching repository.
#: ``content/write`` does not imply ``content/read``: as in ACR a token needs
#: both to push, because a push also needs pull (see :func:`required_access`).
SCOPE_MAP_ACTIONS: Mapping[str, frozenset[Action]] = MappingProxyType(
    {
        "content/read": frozenset({Action.PULL}),
        "content/write": frozenset({Action.PUSH}),
        "content/delete": frozenset({Action.DELETE}),
        "metadata/read": frozenset({Action.METADATA_READ}),
        "metadata/write": frozenset({Action.METADATA_WRITE}),
    }
)


@dataclass(frozen=True, slots=True)
class ScopeMapAction:
    """One scope map entry, ``repositories/<repository-or-pattern>/<action>``.

    The pattern is a repository name, ``<prefix>/*`` (every repository under
    ``<prefix>/``, at any depth, as ACR's ``samples/*``) or ``*`` (every
    repository). ``*`` is allowed only as the whole last path component.
    """

    repository: str
    action: str

    def __str__(self) -> str:
        return f"repositories/{self.repository}/{self.action}"

    def matches(self, repository: str) -> bool:
        """Whether this entry applies to ``repository``."""
        if self.repository == WILDCARD:
            return True
        if self.repository.endswith("/*"):
            return repository.startswith(self.repository[:-1])
        return repository == self.repository

    @property
    def grants(self) -> frozenset[Action]:
        """The actions this entry grants on a matching repository."""
        return SCOPE_MAP_ACTIONS[self.action]


def parse_scope_map_action(text: str) -> ScopeMapAction:
    """Parse ``repositories/<pattern>/<content|metadata>/<verb>``.

    Raises ``NOT_FOUND`` for an unknown action and ``NAME_INVALID`` for a bad
    repository or pattern.
    """
    prefix = "repositories/"
    action = next((a for a in SCOPE_MAP_ACTIONS if text.endswith("/" + a)), None)
    if not text.startswith(prefix) or action is None:
        raise HamnError(
            NOT_FOUND,
            f"scope map action {text[:200]!r} is not 'repositories/<repository>/<action>' "
            "with an action of " + ", ".join(SCOPE_MAP_ACTIONS),
            detail={"action": text[:300]},
        )
    pattern = text[len(prefix) : -len(action) - 1]
    base = pattern[:-2] if pattern.endswith("/*") else pattern
    if pattern != WILDCARD:
        if "*" in base:
            raise HamnError(
                NAME_INVALID,
                f"scope map action {text[:200]!r}: '*' may only end a repository pattern, "
                "as in 'samples/*'",
                detail={"action": text[:300]},
            )
        validate_repository_name(base)
    return ScopeMapAction(pattern, action)


def scope_map_actions(
    actions: Iterable[ScopeMapAction | str], repository: str | None
) -> frozenset[Action]:
    """What a token with these scope map entries holds on ``repository``.

    Tokens never list the catalog (ACR), so ``repository=None`` gives nothing.
    """
    if repository is None:
        return frozenset()
    held: set[Action] = set()
    for entry in actions:
        parsed = parse_scope_map_action(entry) if isinstance(entry, str) else entry
        if parsed.matches(repository):
            held |= parsed.grants
    return frozenset(held)


# -- bearer tokens' access claims -------------------------------------------------

#: What each repository action word in a token authorises. ``pull`` also
#: covers quarantined pulls and ``push`` signature pushes, because clients
#: (docker, notation, a scanner) only ever ask for ``pull``/``push``; whether
#: the principal really holds the quarantine or sign action is decided from its
#: current roles. Likewise ACR's quarantine API is reached with ``metadata_write``.
TOKEN_ACTIONS: Mapping[str, frozenset[Action]] = MappingProxyType(
    {
        "pull": frozenset({Action.PULL, Action.QUARANTINE_READ}),
        "push": frozenset({Action.PUSH, Action.SIGN}),
        "delete": frozenset({Action.DELETE}),
        "metadata_read": frozenset({Action.METADATA_READ}),
        "metadata_write": frozenset({Action.METADATA_WRITE, Action.QUARANTINE_WRITE}),
        "deleted_read": frozenset({Action.DELETED_READ}),
        "deleted_restore": frozenset({Action.DELETED_RESTORE}),
        "sign": frozenset({Action.SIGN}),
        "quarantine_read": frozenset({Action.QUARANTINE_READ}),
        "quarantine_write": frozenset({Action.QUARANTINE_WRITE}),
        WILDCARD: REPOSITORY_ACTIONS,
    }
)


def token_allows(access: Iterable[Scope], repository: str | None) -> frozenset[Action]:
    """What a token's ``access`` claim allows on ``repository`` (or the registry).

    Repository names are compared exactly as the HTTP layer wrote them in its
    challenge. The result only narrows: intersect it with what the principal
    holds now (:func:`narrow`).
    """
    allowed: set[Action] = set()
    for scope in access:
        if scope.resource_class is not None:
            continue
        if scope.type == REGISTRY and scope.name == CATALOG and WILDCARD in scope.actions:
            allowed.add(Action.CATALOG)
        elif scope.type == REPOSITORY and scope.name == repository:
            for action in scope.actions:
                allowed |= TOKEN_ACTIONS.get(action, frozenset())
    return frozenset(allowed)


def narrow(
    held: frozenset[Action], access: Iterable[Scope], repository: str | None
) -> frozenset[Action]:
    """What a bearer-token request may do: what the principal holds, within the token."""
    return held & token_allows(access, repository)


#: The order in which a requested ``*`` is spelled out in a granted token.
_TOKEN_ACTION_ORDER: tuple[str, ...] = tuple(a for a in TOKEN_ACTIONS if a != WILDCARD)


def grant_scope(held: frozenset[Action], requested: Scope) -> Scope | None:
    """The token server's answer to one requested scope: the intersection.

    Each requested action is granted if the principal holds anything it
    authorises (:data:`TOKEN_ACTIONS`); a repository ``*`` is spelled out as
    the actions held. ``registry:catalog:*`` is granted whole or not at all.
    Unknown types, classes and actions are simply not granted. Returns
    ``None`` when nothing is granted.
    """
    if requested.resource_class is not None:
        return None
    if requested.type == REGISTRY:
        if requested.name == CATALOG and WILDCARD in requested.actions and Action.CATALOG in held:
            return Scope(REGISTRY, CATALOG, (WILDCARD,))
        return None
    if requested.type != REPOSITORY:
        return None
    granted: list[str] = []
    for action in requested.actions:
        words = _TOKEN_ACTION_ORDER if action == WILDCARD else (action,)
        for word in words:
            if word not in granted and held & TOKEN_ACTIONS.get(word, frozenset()):
                granted.append(word)
    return Scope(REPOSITORY, requested.name, tuple(granted)) if granted else None


# -- what a request needs ---------------------------------------------------------


class RouteKind(StrEnum):
    """The kinds of data-plane routes, as the HTTP layer classifies a path."""

    BASE = "base"  # /v2/
    CATALOG = "catalog"  # /v2/_catalog
    MANIFEST = "manifest"  # /v2/<name>/manifests/<reference>
    BLOB = "blob"  # /v2/<name>/blobs/<digest>
    UPLOADS = "uploads"  # /v2/<name>/blobs/uploads/
    UPLOAD = "upload"  # /v2/<name>/blobs/uploads/<id>
    TAGS = "tags"  # /v2/<name>/tags/list
    REFERRERS = "referrers"  # /v2/<name>/referrers/<digest>
    ACR_METADATA = "acr_metadata"  # /acr/v1/<name>[/_tags|_manifests...], /acr/v1/_catalog
    ACR_DELETED = "acr_deleted"  # /acr/v1/_deleted/<name>/...


@dataclass(frozen=True, slots=True)
class Requirement:
    """One piece of access a request needs: ``(type, name, action)`` and what satisfies it.

    ``type``, ``name`` and ``action`` are in the scope vocabulary; they are what
    a ``WWW-Authenticate`` challenge asks for. ``satisfied_by`` lists the
    :class:`Action` values any one of which is enough.
    """

    type: str
    name: str
    action: str
    satisfied_by: frozenset[Action]

    @property
    def scope(self) -> Scope:
        """The scope a client asks the token server for."""
        return Scope(self.type, self.name, (self.action,))

    def satisfied(self, held: frozenset[Action]) -> bool:
        """Whether ``held`` meets this requirement."""
        return bool(held & self.satisfied_by)


def _repo(name: str, action: str, *satisfied_by: Action) -> Requirement:
    return Requirement(REPOSITORY, name, action, frozenset(satisfied_by))


_CATALOG_REQUIREMENT = Requirement(REGISTRY, CATALOG, WILDCARD, frozenset({Action.CATALOG}))


def _pull(name: str, quarantined: bool | None) -> Requirement:
    if quarantined is None:
        return _repo(name, "pull", Action.PULL, Action.QUARANTINE_READ)
    return _repo(name, "pull", Action.QUARANTINE_READ if quarantined else Action.PULL)


def _push(name: str, signature: bool | None) -> list[Requirement]:
    # A push needs pull too, as in Distribution (clients read back what they write).
    writers = (Action.PUSH,) if signature is False else (Action.PUSH, Action.SIGN)
    return [_repo(name, "pull", Action.PULL), _repo(name, "push", *writers)]


def required_access(
    method: str,
    route_kind: RouteKind | str,
    repository: str | None,
    mount_from: str | None = None,
    *,
    quarantined: bool | None = False,
    signature: bool | None = False,
    changes_attributes: bool = True,
    changes_quarantine: bool = False,
) -> list[Requirement]:
    """The access a data-plane request needs. The one place this is decided.

    ======================= ================= ==================================
    route                   method            needs
    ======================= ================= ==================================
    base ``/v2/``           any               nothing (an authenticated caller)
    catalog                 GET               ``registry:catalog:*``
    manifest                GET, HEAD         pull
    manifest                PUT               pull, push (sign suffices for a
                                              signature)
    manifest, blob          DELETE            delete
    blob                    GET, HEAD         pull (quarantine_read suffices)
    uploads                 POST              pull, push (sign suffices); with
                                              ``from=``: pull on that repository
    upload                  GET, PATCH, PUT,  pull, push (sign suffices)
                            DELETE
    tags, referrers         GET               pull
    acr_metadata            GET               metadata_read (the catalog
                                              without a repository)
    acr_metadata            PATCH             metadata_write (attributes),
                                              quarantine_write (quarantine state)
    acr_metadata            DELETE            delete
    acr_deleted             GET               deleted_read
    acr_deleted             POST              deleted_restore
    ======================= ================= ==================================

    Unlike Distribution, which looks only at the method, every request on an
    upload session needs push: checking or cancelling one's own upload is part
    of pushing (Distribution asks delete to cancel, which AcrPush lacks).

    ``mount_from`` is the ``from=`` of a cross-repository mount; pass it only
    when the mount will be attempted. If only the pull on it is missing, the
    HTTP layer may retry without it and start a plain upload, as the OCI spec
    prefers to refusing.

    ``quarantined`` (manifest GET/HEAD) and ``signature`` (manifest PUT) take
    ``None`` for "not known yet" (see the module docstring): the result admits
    anyone who might be allowed, and the service checks again with the answer.
    ``changes_attributes`` and ``changes_quarantine`` say what an ACR metadata
    PATCH changes. Raises ``UNSUPPORTED`` for a method the route does not have.
    """
    kind = RouteKind(route_kind)
    method = method.upper()
    if kind is RouteKind.BASE:
        return []
    if kind is RouteKind.CATALOG or (kind is RouteKind.ACR_METADATA and repository is None):
        if method in ("GET", "HEAD"):
            return [_CATALOG_REQUIREMENT]
        raise _unsupported(method, kind)
    if repository is None:
        raise ValueError(f"a {kind} route names a repository")
    if mount_from is not None and (kind, method) != (RouteKind.UPLOADS, "POST"):
        raise ValueError("from= belongs to POST on blobs/uploads/ only")
    read = method in ("GET", "HEAD")
    needs: list[Requirement]
    match kind:
        case RouteKind.MANIFEST if read:
            needs = [_pull(repository, quarantined)]
        case RouteKind.MANIFEST if method == "PUT":
            needs = _push(repository, signature)
        case RouteKind.BLOB if read:
            needs = [_pull(repository, None)]
        case RouteKind.MANIFEST | RouteKind.BLOB if method == "DELETE":
            needs = [_repo(repository, "delete", Action.DELETE)]
        case RouteKind.UPLOADS if method == "POST":
            needs = _push(repository, None)
            if mount_from is not None and mount_from != repository:
                needs.append(_repo(mount_from, "pull", Action.PULL))
        case RouteKind.UPLOAD if method in ("GET", "PATCH", "PUT", "DELETE"):
            needs = _push(repository, None)
        case RouteKind.TAGS | RouteKind.REFERRERS if read:
            needs = [_repo(repository, "pull", Action.PULL)]
        case RouteKind.ACR_METADATA if read:
            needs = [_repo(repository, "metadata_read", Action.METADATA_READ)]
        case RouteKind.ACR_METADATA if method == "PATCH":
            needs = []
            if changes_attributes or not changes_quarantine:
                needs.append(_repo(repository, "metadata_write", Action.METADATA_WRITE))
            if changes_quarantine:
                needs.append(_repo(repository, "quarantine_write", Action.QUARANTINE_WRITE))
        case RouteKind.ACR_METADATA if method == "DELETE":
            needs = [_repo(repository, "delete", Action.DELETE)]
        case RouteKind.ACR_DELETED if read:
            needs = [_repo(repository, "deleted_read", Action.DELETED_READ)]
        case RouteKind.ACR_DELETED if method == "POST":
            needs = [_repo(repository, "deleted_restore", Action.DELETED_RESTORE)]
        case _:
            raise _unsupported(method, kind)
    return needs


def _unsupported(method: str, kind: RouteKind) -> HamnError:
    return HamnError(UNSUPPORTED, f"{method} is not supported on this endpoint ({kind})")


# -- deciding ----------------------------------------------------------------------

# Why an action may be missing, in the words of the roles and scope maps that grant it.
_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "pull": "pull is granted by AcrPull, AcrPush, Reader, Contributor, Owner or a token's "
        "content/read",
        "push": "push is granted by AcrPush, Contributor, Owner or a token's content/write "
        "(a token needs content/read too, since a push also pulls)",
        "delete": "delete is granted by AcrDelete, Contributor, Owner or a token's content/delete",
        "metadata_read": "metadata_read is granted by AcrPull, AcrPush, Reader, Contributor, Owner "
        "or a token's metadata/read",
        "metadata_write": "metadata_write is granted by AcrPush, Contributor, Owner or a token's "
        "metadata/write",
        "quarantine_write": "changing the quarantine state needs AcrQuarantineWriter",
        "deleted_read": "soft-deleted content is visible to Contributor and Owner",
        "deleted_restore": "soft-deleted content is restored by Contributor and Owner",
        WILDCARD: "listing the catalog needs AcrPull, AcrPush, Reader, Contributor or Owner on the "
        "whole registry; repository-scoped roles and tokens can never list it",
    }
)


#: What a principal holds, for :func:`decide`: one set for every resource, or a
#: function of the repository name (``None`` for the registry-level catalog),
#: needed when a request touches two repositories (a mount's ``from=``).
Holdings = frozenset[Action] | Callable[[str | None], frozenset[Action]]


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of :func:`decide`: allowed or not, and exactly what is missing.

    ``held`` maps each resource the request touches (a repository name, or
    ``None`` for the registry) to what the principal holds there.
    """

    allowed: bool
    required: tuple[Requirement, ...]
    missing: tuple[Requirement, ...]
    held: Mapping[str | None, frozenset[Action]] = field(default_factory=dict)

    @property
    def challenge_scope(self) -> str:
        """Every scope the request needs, for ``WWW-Authenticate: Bearer ... scope="..."``."""
        return format_scopes(merge_scopes(r.scope for r in self.required))

    def detail(self) -> list[dict[str, str]]:
        """The error body's ``detail``: ``[{"Type", "Name", "Action"}]`` per missing piece."""
        return [{"Type": r.type, "Name": r.name, "Action": r.action} for r in self.missing]

    @property
    def message(self) -> str:
        """A sentence for the error body that says what is missing and who grants it."""
        if self.allowed:
            return "access granted"
        pushing = any(r.action == "push" for r in self.required)
        parts = []
        for r in self.missing:
            resource = _resource_of(r)
            held = ", ".join(sorted(a.value for a in self.held.get(resource, ()))) or "nothing"
            if resource is None:
                what, where = "listing the catalog", "on the registry"
            else:
                what, where = f"{r.action} on repository {resource!r}", "there"
            hints = [f"held {where}: {held}"]
            mine = self.held.get(resource, frozenset())
            if r.satisfied_by == {Action.QUARANTINE_READ}:
                hints.append(
                    "the content is quarantined: only AcrQuarantineReader or "
                    "AcrQuarantineWriter may pull it"
                )
            elif r.action == "pull" and pushing and resource != _push_target(self.required):
                hints.append("needed to mount blobs from it")
            elif r.action == "pull" and pushing:
                hints.append("a push needs pull as well as push")
            elif r.action == "pull" and Action.PUSH in mine:
                hints.append("this identity may push here but not pull")
            elif r.action == "push" and Action.SIGN in mine:
                hints.append("this identity may push signatures only")
            if r.action in _HINTS and r.satisfied_by != {Action.QUARANTINE_READ}:
                hints.append(_HINTS[r.action])
            parts.append(f"{what} is not granted ({'; '.join(hints)})")
        return "access denied: " + "; ".join(parts)


def _resource_of(requirement: Requirement) -> str | None:
    return requirement.name if requirement.type == REPOSITORY else None


def _push_target(required: Iterable[Requirement]) -> str | None:
    return next((r.name for r in required if r.action == "push"), None)


def decide(held: Holdings, required: Iterable[Requirement]) -> Decision:
    """Allow a request iff every requirement is satisfied; else say what is missing.

    ``held`` is what the principal holds (already narrowed by its token, if it
    used one): a single set when the request touches one repository, or a
    function of the repository name. An empty requirement list (the base
    route) is allowed.
    """
    needs = tuple(required)
    holdings: dict[str | None, frozenset[Action]] = {}
    for r in needs:
        resource = _resource_of(r)
        if resource not in holdings:
            holdings[resource] = held if isinstance(held, frozenset) else held(resource)
    missing = tuple(r for r in needs if not r.satisfied(holdings[_resource_of(r)]))
    return Decision(not missing, needs, missing, holdings)
