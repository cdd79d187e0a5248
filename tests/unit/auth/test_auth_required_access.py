"""What each data-plane request needs, and the decision (policy.required_access, decide)."""

from __future__ import annotations

import pytest

from hamn.auth.policy import Action, Requirement, RouteKind, decide, required_access
from hamn.errors import UNSUPPORTED, HamnError

REPO = "team/app"
P, Q, S = Action.PULL, Action.QUARANTINE_READ, Action.SIGN

# (method, route kind) -> [(type, name, action, satisfied by)], with the defaults.
TABLE: list[tuple[str, str, list[tuple[str, str, str, set[Action]]]]] = [
    ("GET", "base", []),
    ("HEAD", "base", []),
    ("GET", "catalog", [("registry", "catalog", "*", {Action.CATALOG})]),
    ("GET", "manifest", [("repository", REPO, "pull", {P})]),
    ("HEAD", "manifest", [("repository", REPO, "pull", {P})]),
    ("PUT", "manifest", [("repository", REPO, "pull", {P}),
                         ("repository", REPO, "push", {Action.PUSH})]),
    ("DELETE", "manifest", [("repository", REPO, "delete", {Action.DELETE})]),
    ("GET", "blob", [("repository", REPO, "pull", {P, Q})]),
    ("HEAD", "blob", [("repository", REPO, "pull", {P, Q})]),
    ("DELETE", "blob", [("repository", REPO, "delete", {Action.DELETE})]),
    ("POST", "uploads", [("repository", REPO, "pull", {P}),
                         ("repository", REPO, "push", {Action.PUSH, S})]),
    ("GET", "upload", [("repository", REPO, "pull", {P}),
                       ("repository", REPO, "push", {Action.PUSH, S})]),
    ("PATCH", "upload", [("repository", REPO, "pull", {P}),
                         ("repository", REPO, "push", {Action.PUSH, S})]),
    ("PUT", "upload", [("repository", REPO, "pull", {P}),
                       ("repository", REPO, "push", {Action.PUSH, S})]),
    ("DELETE", "upload", [("repository", REPO, "pull", {P}),
                          ("repository", REPO, "push", {Action.PUSH, S})]),
    ("GET", "tags", [("repository", REPO, "pull", {P})]),
    ("GET", "referrers", [("repository", REPO, "pull", {P})]),
    ("GET", "acr_metadata", [("repository", REPO, "metadata_read", {Action.METADATA_READ})]),
    ("PATCH", "acr_metadata", [("repository", REPO, "metadata_write",
                                {Action.METADATA_WRITE})]),
    ("DELETE", "acr_metadata", [("repository", REPO, "delete", {Action.DELETE})]),
    ("GET", "acr_deleted", [("repository", REPO, "deleted_read", {Action.DELETED_READ})]),
    ("POST", "acr_deleted", [("repository", REPO, "deleted_restore",
                              {Action.DELETED_RESTORE})]),
]  # fmt: skip


def _rows(requirements: list[Requirement]) -> list[tuple[str, str, str, set[Action]]]:
    return [(r.type, r.name, r.action, set(r.satisfied_by)) for r in requirements]


@pytest.mark.parametrize(("method", "kind", "expected"), TABLE)
def test_required_access(
    method: str, kind: str, expected: list[tuple[str, str, str, set[Action]]]
) -> None:
    repo = None if kind in ("base", "catalog") else REPO
    assert _rows(required_access(method, kind, repo)) == expected
    assert _rows(required_access(method.lower(), RouteKind(kind), repo)) == expected


def test_every_route_kind_is_covered() -> None:
    assert {kind for _, kind, _ in TABLE} == {k.value for k in RouteKind}


@pytest.mark.parametrize(
    ("method", "kind"),
    [
        ("POST", "catalog"),
        ("DELETE", "catalog"),
        ("POST", "manifest"),
        ("PATCH", "manifest"),
        ("PUT", "blob"),
        ("POST", "blob"),
        ("GET", "uploads"),
        ("PUT", "uploads"),
        ("POST", "upload"),
        ("DELETE", "tags"),
        ("PUT", "referrers"),
        ("PUT", "acr_metadata"),
        ("DELETE", "acr_deleted"),
        ("OPTIONS", "manifest"),
    ],
)
def test_methods_a_route_does_not_have(method: str, kind: str) -> None:
    repo = None if kind == "catalog" else REPO
    with pytest.raises(HamnError) as err:
        required_access(method, kind, repo)
    assert err.value.code is UNSUPPORTED


def test_acr_catalog_without_a_repository() -> None:
    assert _rows(required_access("GET", "acr_metadata", None)) == [
        ("registry", "catalog", "*", {Action.CATALOG})
    ]


def test_programming_errors() -> None:
    with pytest.raises(ValueError, match="names a repository"):
        required_access("GET", "manifest", None)
    with pytest.raises(ValueError, match="from="):
        required_access("PUT", "upload", REPO, "other/repo")
    with pytest.raises(ValueError):
        required_access("GET", "nonsense", REPO)


def test_mount_needs_pull_on_the_source() -> None:
    rows = _rows(required_access("POST", "uploads", REPO, "library/base"))
    assert rows == [
        ("repository", REPO, "pull", {P}),
        ("repository", REPO, "push", {Action.PUSH, S}),
        ("repository", "library/base", "pull", {P}),
    ]
    # Mounting from the same repository needs nothing more.
    assert len(required_access("POST", "uploads", REPO, REPO)) == 2


def test_mount_decided_per_repository() -> None:
    needs = required_access("POST", "uploads", REPO, "library/base")
    pusher = frozenset({Action.PULL, Action.PUSH})

    def only_target(repository: str | None) -> frozenset[Action]:
        return pusher if repository == REPO else frozenset()

    decision = decide(only_target, needs)
    assert not decision.allowed
    assert decision.detail() == [{"Type": "repository", "Name": "library/base", "Action": "pull"}]
    assert "mount" in decision.message
    assert decision.challenge_scope == "repository:team/app:pull,push repository:library/base:pull"
    assert decide(lambda _: pusher, needs).allowed
    # Without from= the same principal may upload.
    assert decide(only_target, required_access("POST", "uploads", REPO)).allowed


@pytest.mark.parametrize(
    ("quarantined", "satisfied_by"),
    [(False, {P}), (True, {Q}), (None, {P, Q})],
)
def test_manifest_pull_and_quarantine(quarantined: bool | None, satisfied_by: set[Action]) -> None:
    assert _rows(required_access("GET", "manifest", REPO, quarantined=quarantined)) == [
        ("repository", REPO, "pull", satisfied_by)
    ]


def test_quarantine_is_a_two_phase_check() -> None:
    reader = frozenset({Action.QUARANTINE_READ})
    puller = frozenset({Action.PULL})
    # Before the service knows, both may go on...
    assert decide(reader, required_access("GET", "manifest", REPO, quarantined=None)).allowed
    assert decide(puller, required_access("GET", "manifest", REPO, quarantined=None)).allowed
    # ...and once it knows, each only to what is theirs.
    assert not decide(reader, required_access("GET", "manifest", REPO, quarantined=False)).allowed
    assert decide(reader, required_access("GET", "manifest", REPO, quarantined=True)).allowed
    denied = decide(puller, required_access("GET", "manifest", REPO, quarantined=True))
    assert not denied.allowed
    assert "quarantined" in denied.message


@pytest.mark.parametrize(
    ("signature", "writers"),
    [(False, {Action.PUSH}), (True, {Action.PUSH, S}), (None, {Action.PUSH, S})],
)
def test_manifest_push_and_signatures(signature: bool | None, writers: set[Action]) -> None:
    assert _rows(required_access("PUT", "manifest", REPO, signature=signature)) == [
        ("repository", REPO, "pull", {P}),
        ("repository", REPO, "push", writers),
    ]


def test_signer_pushing_an_image_is_told_so() -> None:
    signer = frozenset({Action.PULL, Action.SIGN})
    decision = decide(signer, required_access("PUT", "manifest", REPO, signature=False))
    assert not decision.allowed
    assert "signatures only" in decision.message


@pytest.mark.parametrize(
    ("attributes", "quarantine", "actions"),
    [
        (True, False, ["metadata_write"]),
        (False, True, ["quarantine_write"]),
        (True, True, ["metadata_write", "quarantine_write"]),
        (False, False, ["metadata_write"]),
    ],
)
def test_metadata_patch(attributes: bool, quarantine: bool, actions: list[str]) -> None:
    needs = required_access(
        "PATCH",
        "acr_metadata",
        REPO,
        changes_attributes=attributes,
        changes_quarantine=quarantine,
    )
    assert [r.action for r in needs] == actions


def test_push_works_pull_says_unauthorized_is_explained() -> None:
    pusher_only = frozenset({Action.PUSH})
    decision = decide(pusher_only, required_access("GET", "manifest", REPO))
    assert not decision.allowed
    assert decision.detail() == [{"Type": "repository", "Name": REPO, "Action": "pull"}]
    assert "may push here but not pull" in decision.message
    assert "AcrPull" in decision.message
    assert decision.challenge_scope == "repository:team/app:pull"
    pushing = decide(pusher_only, required_access("PUT", "manifest", REPO))
    assert "a push needs pull as well as push" in pushing.message


def test_catalog_denial_says_who_may_list() -> None:
    decision = decide(frozenset({Action.PULL}), required_access("GET", "catalog", None))
    assert not decision.allowed
    assert decision.detail() == [{"Type": "registry", "Name": "catalog", "Action": "*"}]
    assert "listing the catalog" in decision.message
    assert "tokens can never list it" in decision.message
    assert decision.challenge_scope == "registry:catalog:*"


def test_allowed_decisions() -> None:
    decision = decide(frozenset({Action.PULL, Action.PUSH}), required_access("PUT", "upload", REPO))
    assert decision.allowed
    assert decision.missing == ()
    assert decision.detail() == []
    assert decision.message == "access granted"
    base = decide(frozenset(), required_access("GET", "base", None))
    assert base.allowed
    assert base.challenge_scope == ""
