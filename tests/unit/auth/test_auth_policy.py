"""Roles, scopes and what principals hold (hamn.auth.policy): SPEC §2's matrix, table-driven."""

from __future__ import annotations

import pytest

from hamn.auth.policy import (
    ADMIN_ACTIONS,
    Action,
    ManagementPermission,
    Requirement,
    ResourceScope,
    Role,
    RoleAssignment,
    admin_actions,
    anonymous_actions,
    can_see_registry,
    decide,
    grant_scope,
    granted_actions,
    management_permissions,
    narrow,
    parse_resource_scope,
    parse_role,
    parse_scope_map_action,
    required_access,
    scope_map_actions,
    token_allows,
)
from hamn.auth.scopes import CATALOG_SCOPE, Scope, parse_scope
from hamn.errors import NAME_INVALID, NOT_FOUND, HamnError

REGISTRY = "myRegistry1"
REPO = "team/app"

# SPEC §2's table, with the decisions hamn made where it is silent (see the
# policy module): pull brings metadata_read and, at registry scope, the catalog;
# push brings metadata_write; Owner/Contributor also handle soft-deleted content;
# the quarantine writer reads metadata. Written out here, not derived from ROLES.
EXPECTED_ACTIONS: dict[str, set[str]] = {
    "Owner": {"pull", "push", "delete", "sign", "metadata_read", "metadata_write", "catalog",
              "deleted_read", "deleted_restore"},
    "Contributor": {"pull", "push", "delete", "sign", "metadata_read", "metadata_write",
                    "catalog", "deleted_read", "deleted_restore"},
    "Reader": {"pull", "metadata_read", "catalog"},
    "AcrPush": {"pull", "push", "metadata_read", "metadata_write", "catalog"},
    "AcrPull": {"pull", "metadata_read", "catalog"},
    "AcrDelete": {"delete"},
    "AcrImageSigner": {"sign"},
    "AcrQuarantineReader": {"quarantine_read"},
    "AcrQuarantineWriter": {"quarantine_read", "quarantine_write", "metadata_read"},
}  # fmt: skip

EXPECTED_MANAGEMENT: dict[str, set[str]] = {
    "Owner": {"read", "write", "roleAssignments/write"},
    "Contributor": {"read", "write"},
    "Reader": {"read"},
    "AcrPush": set(),
    "AcrPull": set(),
    "AcrDelete": set(),
    "AcrImageSigner": set(),
    "AcrQuarantineReader": set(),
    "AcrQuarantineWriter": set(),
}

# Scope variants: (assignment scope, covers the whole registry, covers REPO).
SCOPES: dict[str, tuple[str, bool, bool]] = {
    "root": ("/", True, True),
    "registry": ("/registries/myregistry1", True, True),
    "registry-other-case": ("/REGISTRIES/MyRegistry1/", True, True),
    "other-registry": ("/registries/otherregistry", False, False),
    "repository": ("/registries/MYREGISTRY1/repositories/team/app", False, True),
    "other-repository": ("/registries/myregistry1/repositories/team/other", False, False),
    "parent-path": ("/registries/myregistry1/repositories/team", False, False),
    "repo-other-registry": ("/registries/otherregistry/repositories/team/app", False, False),
}  # fmt: skip


def test_the_table_names_every_role_and_action() -> None:
    assert set(EXPECTED_ACTIONS) == {r.value for r in Role}
    assert set().union(*EXPECTED_ACTIONS.values()) == {a.value for a in Action}


@pytest.mark.parametrize("scope_name", list(SCOPES))
@pytest.mark.parametrize("role", list(EXPECTED_ACTIONS))
def test_role_scope_action_matrix(role: str, scope_name: str) -> None:
    scope, whole_registry, this_repository = SCOPES[scope_name]
    assignments = [RoleAssignment.parse(role, scope)]
    on_repository = granted_actions(assignments, REGISTRY, REPO)
    on_registry = granted_actions(assignments, REGISTRY)
    actual, expected = {}, {}
    for action in Action:
        in_role = action.value in EXPECTED_ACTIONS[role]
        # The catalog is registry-level: only a scope covering the whole registry grants it.
        covered = whole_registry if action is Action.CATALOG else this_repository
        expected[action.value] = (covered and in_role, whole_registry and in_role)
        # (on the repository, on the registry as a whole): registry-level questions
        # never count repository-scope assignments.
        actual[action.value] = (action in on_repository, action in on_registry)
    assert actual == expected


@pytest.mark.parametrize("scope_name", list(SCOPES))
@pytest.mark.parametrize("role", list(EXPECTED_MANAGEMENT))
def test_role_scope_management_matrix(role: str, scope_name: str) -> None:
    scope, whole_registry, _ = SCOPES[scope_name]
    assignments = [RoleAssignment.parse(role, scope)]
    on_registry = management_permissions(assignments, REGISTRY)
    # Acts on no one registry (create, list all) need the assignment at '/'.
    on_all = management_permissions(assignments, None)
    actual, expected = {}, {}
    for permission in ManagementPermission:
        in_role = permission.value in EXPECTED_MANAGEMENT[role]
        expected[permission.value] = (whole_registry and in_role, scope == "/" and in_role)
        actual[permission.value] = (permission in on_registry, permission in on_all)
    assert actual == expected
    assert can_see_registry(assignments, REGISTRY) is (
        whole_registry and "read" in EXPECTED_MANAGEMENT[role]
    )


# Requests as the data plane sees them: (method, route kind, repository, keywords).
OPERATIONS: dict[str, tuple[str, str, str | None, dict[str, bool]]] = {
    "pull manifest": ("GET", "manifest", REPO, {}),
    "head manifest": ("HEAD", "manifest", REPO, {}),
    "pull blob": ("GET", "blob", REPO, {}),
    "push manifest": ("PUT", "manifest", REPO, {}),
    "start upload": ("POST", "uploads", REPO, {}),
    "finish upload": ("PUT", "upload", REPO, {}),
    "delete manifest": ("DELETE", "manifest", REPO, {}),
    "delete blob": ("DELETE", "blob", REPO, {}),
    "list tags": ("GET", "tags", REPO, {}),
    "referrers": ("GET", "referrers", REPO, {}),
    "catalog": ("GET", "catalog", None, {}),
    "metadata read": ("GET", "acr_metadata", REPO, {}),
    "metadata write": ("PATCH", "acr_metadata", REPO, {}),
    "metadata delete": ("DELETE", "acr_metadata", REPO, {}),
    "push signature": ("PUT", "manifest", REPO, {"signature": True}),
    "pull quarantined": ("GET", "manifest", REPO, {"quarantined": True}),
    "set quarantine": (
        "PATCH", "acr_metadata", REPO, {"changes_attributes": False, "changes_quarantine": True},
    ),
    "list deleted": ("GET", "acr_deleted", REPO, {}),
    "restore deleted": ("POST", "acr_deleted", REPO, {}),
}  # fmt: skip

_READ_OPS = {"pull manifest", "head manifest", "pull blob", "list tags", "referrers", "catalog",
             "metadata read"}  # fmt: skip
_ALL_BUT_QUARANTINE = set(OPERATIONS) - {"pull quarantined", "set quarantine"}
EXPECTED_OPERATIONS: dict[str, set[str]] = {
    "Owner": _ALL_BUT_QUARANTINE,
    "Contributor": _ALL_BUT_QUARANTINE,
    "Reader": _READ_OPS,
    "AcrPush": _READ_OPS | {"push manifest", "start upload", "finish upload", "metadata write",
                            "push signature"},
    "AcrPull": _READ_OPS,
    "AcrDelete": {"delete manifest", "delete blob", "metadata delete"},
    # A signer reads what it signs: alone it can do nothing (see the pairing test).
    "AcrImageSigner": set(),
    "AcrQuarantineReader": {"pull quarantined", "pull blob"},
    "AcrQuarantineWriter": {"pull quarantined", "pull blob", "set quarantine", "metadata read"},
}  # fmt: skip


def _needs(operation: str) -> list[Requirement]:
    method, kind, repo, kw = OPERATIONS[operation]
    return required_access(
        method,
        kind,
        repo,
        quarantined=kw.get("quarantined", False),
        signature=kw.get("signature", False),
        changes_attributes=kw.get("changes_attributes", True),
        changes_quarantine=kw.get("changes_quarantine", False),
    )


def _allowed(assignments: list[RoleAssignment], operation: str) -> bool:
    repo = OPERATIONS[operation][2]
    held = granted_actions(assignments, REGISTRY, repo)
    return decide(held, _needs(operation)).allowed


@pytest.mark.parametrize("scope_name", list(SCOPES))
@pytest.mark.parametrize("role", list(EXPECTED_OPERATIONS))
def test_role_scope_request_matrix(role: str, scope_name: str) -> None:
    scope, whole_registry, this_repository = SCOPES[scope_name]
    assignments = [RoleAssignment.parse(role, scope)]
    actual, expected = {}, {}
    for operation in OPERATIONS:
        covered = whole_registry if operation == "catalog" else this_repository
        expected[operation] = covered and operation in EXPECTED_OPERATIONS[role]
        actual[operation] = _allowed(assignments, operation)
    assert actual == expected


def test_signer_with_acrpull_pushes_signatures_but_not_images() -> None:
    assignments = [
        RoleAssignment.parse("AcrImageSigner", "/registries/myregistry1"),
        RoleAssignment.parse("AcrPull", "/registries/myregistry1"),
    ]
    assert _allowed(assignments, "push signature")
    assert _allowed(assignments, "start upload")  # the signature envelope is a blob
    assert not _allowed(assignments, "push manifest")


def test_assignments_add_up_across_scopes() -> None:
    assignments = [
        RoleAssignment.parse("AcrPull", "/registries/myregistry1"),
        RoleAssignment.parse("AcrPush", "/registries/myregistry1/repositories/team/app"),
    ]
    assert Action.PUSH in granted_actions(assignments, REGISTRY, REPO)
    assert Action.PUSH not in granted_actions(assignments, REGISTRY, "team/other")
    assert Action.PULL in granted_actions(assignments, REGISTRY, "team/other")
    assert granted_actions([], REGISTRY, REPO) == frozenset()


def test_data_plane_roles_cannot_see_the_registry() -> None:
    for role in ("AcrPull", "AcrPush", "AcrDelete", "AcrImageSigner"):
        assignments = [RoleAssignment.parse(role, "/")]
        assert not can_see_registry(assignments, REGISTRY)
        assert _allowed(assignments, "pull manifest") is (role in ("AcrPull", "AcrPush"))


# -- roles and resource scopes as text ----------------------------------------------


@pytest.mark.parametrize("name", ["AcrPull", "acrpull", "ACRPULL", "AcRpUlL"])
def test_role_names_are_case_insensitive(name: str) -> None:
    assert parse_role(name) is Role.ACR_PULL


@pytest.mark.parametrize("name", ["", "AcrPuller", "Admin", "Owner "])
def test_unknown_roles(name: str) -> None:
    with pytest.raises(HamnError) as err:
        parse_role(name)
    assert err.value.code is NOT_FOUND
    assert "AcrPull" in err.value.message


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("/", ResourceScope()),
        ("/registries/myregistry1", ResourceScope("myregistry1")),
        ("/registries/myregistry1/", ResourceScope("myregistry1")),
        ("/Registries/MyRegistry1", ResourceScope("MyRegistry1")),
        (
            "/registries/myregistry1/repositories/a/b/c",
            ResourceScope("myregistry1", "a/b/c"),
        ),
        (
            "/registries/myregistry1/REPOSITORIES/a",
            ResourceScope("myregistry1", "a"),
        ),
    ],
)
def test_resource_scopes(text: str, scope: ResourceScope) -> None:
    parsed = parse_resource_scope(text)
    assert parsed == scope
    assert parse_resource_scope(str(parsed)) == parsed


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("", NOT_FOUND),
        ("//", NOT_FOUND),
        ("registries/myregistry1", NOT_FOUND),
        ("/registries", NOT_FOUND),
        ("/subscriptions/x", NOT_FOUND),
        ("/registries/myregistry1/tokens/t", NOT_FOUND),
        ("/registries/myregistry1/repositories", NOT_FOUND),
        ("/registries/myregistry1/repositories/", NOT_FOUND),
        ("/registries/my-registry", NAME_INVALID),
        ("/registries/abc", NAME_INVALID),
        ("/registries/myregistry1/repositories/Team/App", NAME_INVALID),
        ("/registries/myregistry1/repositories/a//b", NAME_INVALID),
    ],
)
def test_malformed_resource_scopes(text: str, code: object) -> None:
    with pytest.raises(HamnError) as err:
        parse_resource_scope(text)
    assert err.value.code is code


def test_repository_scope_needs_a_registry() -> None:
    with pytest.raises(ValueError, match="names its registry"):
        ResourceScope(None, "a")


# -- admin user and anonymous pull --------------------------------------------------


def test_admin_user_holds_everything_but_quarantine_on_its_registry_only() -> None:
    assert admin_actions("myregistry1", REGISTRY) == ADMIN_ACTIONS
    assert {a.value for a in ADMIN_ACTIONS} == EXPECTED_ACTIONS["Owner"]
    assert admin_actions("otherregistry", REGISTRY) == frozenset()
    held = admin_actions("MYREGISTRY1", REGISTRY)
    for operation in OPERATIONS:
        expected = operation in _ALL_BUT_QUARANTINE
        assert decide(held, _needs(operation)).allowed is expected


def test_anonymous_pull_is_pull_only() -> None:
    assert anonymous_actions(False) == frozenset()
    held = anonymous_actions(True)
    assert held == {Action.PULL}
    allowed = {op for op in OPERATIONS if decide(held, _needs(op)).allowed}
    assert allowed == {"pull manifest", "head manifest", "pull blob", "list tags", "referrers"}


# -- scope maps (repository-scoped tokens) ------------------------------------------


@pytest.mark.parametrize(
    ("entries", "repository", "expected"),
    [
        (["repositories/team/app/content/read"], "team/app", {"pull"}),
        (["repositories/team/app/content/read"], "team/app2", set()),
        (["repositories/team/app/content/read"], "team", set()),
        (["repositories/team/app/content/write"], "team/app", {"push"}),
        (["repositories/team/app/content/delete"], "team/app", {"delete"}),
        (["repositories/team/app/metadata/read"], "team/app", {"metadata_read"}),
        (["repositories/team/app/metadata/write"], "team/app", {"metadata_write"}),
        (
            ["repositories/team/app/content/read", "repositories/team/app/content/write"],
            "team/app",
            {"pull", "push"},
        ),
        (["repositories/team/*/content/read"], "team/app", {"pull"}),
        (["repositories/team/*/content/read"], "team/app/nested", {"pull"}),
        (["repositories/team/*/content/read"], "team", set()),
        (["repositories/team/*/content/read"], "teamx/app", set()),
        (["repositories/team/*/content/read"], "other/team/app", set()),
        (["repositories/*/content/read"], "anything/at/all", {"pull"}),
        (
            ["repositories/*/content/read", "repositories/team/app/content/delete"],
            "team/app",
            {"pull", "delete"},
        ),
        ([], "team/app", set()),
    ],
)
def test_scope_map_actions(entries: list[str], repository: str, expected: set[str]) -> None:
    assert {a.value for a in scope_map_actions(entries, repository)} == expected
    parsed = [parse_scope_map_action(e) for e in entries]
    assert scope_map_actions(parsed, repository) == scope_map_actions(entries, repository)
    assert [str(p) for p in parsed] == entries


def test_tokens_never_list_the_catalog() -> None:
    assert scope_map_actions(["repositories/*/content/read"], None) == frozenset()
    held = scope_map_actions(["repositories/*/content/read"], None)
    assert not decide(held, required_access("GET", "catalog", None)).allowed


def test_content_write_alone_cannot_push() -> None:
    held = scope_map_actions(["repositories/team/app/content/write"], REPO)
    decision = decide(held, required_access("PUT", "manifest", REPO))
    assert not decision.allowed
    assert [r.action for r in decision.missing] == ["pull"]
    assert "content/read" in decision.message
    held |= scope_map_actions(["repositories/team/app/content/read"], REPO)
    assert decide(held, required_access("PUT", "manifest", REPO)).allowed


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("repositories/team/app/content/execute", NOT_FOUND),
        ("team/app/content/read", NOT_FOUND),
        ("repositories/team/app", NOT_FOUND),
        ("repositories/content/read", NAME_INVALID),
        ("repositories//content/read", NAME_INVALID),
        ("repositories/Team/content/read", NAME_INVALID),
        ("repositories/team*/content/read", NAME_INVALID),
        ("repositories/*/app/content/read", NAME_INVALID),
        ("repositories/team/*/*/content/read", NAME_INVALID),
        ("repositories/te*m/app/content/read", NAME_INVALID),
    ],
)
def test_malformed_scope_map_actions(text: str, code: object) -> None:
    with pytest.raises(HamnError) as err:
        parse_scope_map_action(text)
    assert err.value.code is code


# -- bearer tokens: granting and narrowing ------------------------------------------


@pytest.mark.parametrize(
    ("held", "requested", "granted"),
    [
        ({"pull"}, "repository:team/app:pull,push", "repository:team/app:pull"),
        ({"pull", "push"}, "repository:team/app:push,pull", "repository:team/app:push,pull"),
        ({"push"}, "repository:team/app:pull", None),
        ({"sign", "pull"}, "repository:team/app:pull,push", "repository:team/app:pull,push"),
        ({"quarantine_read"}, "repository:team/app:pull", "repository:team/app:pull"),
        ({"quarantine_write"}, "repository:team/app:metadata_write",
         "repository:team/app:metadata_write"),
        ({"pull", "delete", "metadata_read"}, "repository:team/app:*",
         "repository:team/app:pull,delete,metadata_read"),
        ({"pull"}, "repository:team/app:fly", None),
        ({"catalog"}, "registry:catalog:*", "registry:catalog:*"),
        ({"pull"}, "registry:catalog:*", None),
        ({"catalog"}, "registry:catalog:pull", None),
        ({"pull"}, "artifact-repository:team/app:pull", None),
        ({"pull"}, "repository(plugin):team/app:pull", None),
    ],
)  # fmt: skip
def test_grant_scope_is_the_intersection(
    held: set[str], requested: str, granted: str | None
) -> None:
    result = grant_scope(frozenset(Action(a) for a in held), parse_scope(requested))
    assert (str(result) if result else None) == granted


def test_a_token_only_narrows_what_the_principal_holds_now() -> None:
    access = [parse_scope("repository:team/app:pull,push"), CATALOG_SCOPE]
    assert token_allows(access, REPO) >= {Action.PULL, Action.PUSH, Action.CATALOG}
    assert Action.DELETE not in token_allows(access, REPO)
    assert token_allows(access, "team/other") == {Action.CATALOG}
    # The role was reduced to AcrPull after the token was issued: push is gone at once.
    held_now = granted_actions([RoleAssignment.parse("AcrPull", "/")], REGISTRY, REPO)
    effective = narrow(held_now, access, REPO)
    assert Action.PULL in effective
    assert Action.PUSH not in effective
    assert not decide(effective, required_access("PUT", "manifest", REPO)).allowed
    assert decide(effective, required_access("GET", "manifest", REPO)).allowed


def test_token_wildcard_and_unknown_entries() -> None:
    assert token_allows([parse_scope("repository:team/app:*")], REPO) == frozenset(Action) - {
        Action.CATALOG
    }
    assert token_allows([Scope("repository", REPO, ("pull",), "plugin")], REPO) == frozenset()
    assert token_allows([parse_scope("registry:catalog:pull")], None) == frozenset()
