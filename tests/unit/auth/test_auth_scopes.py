"""The Docker token scope grammar (hamn.auth.scopes)."""

from __future__ import annotations

import pytest

from hamn.auth.scopes import (
    CATALOG_SCOPE,
    MAX_SCOPES,
    Scope,
    ScopeError,
    format_scope,
    format_scopes,
    merge_scopes,
    parse_scope,
    parse_scopes,
)
from hamn.errors import DENIED


@pytest.mark.parametrize(
    ("text", "scope"),
    [
        ("repository:samples/hello:pull", Scope("repository", "samples/hello", ("pull",))),
        (
            "repository:samples/hello:pull,push",
            Scope("repository", "samples/hello", ("pull", "push")),
        ),
        ("repository:a:*", Scope("repository", "a", ("*",))),
        ("registry:catalog:*", CATALOG_SCOPE),
        (
            "repository:a/b:metadata_read,metadata_write,deleted_read,deleted_restore",
            Scope(
                "repository",
                "a/b",
                ("metadata_read", "metadata_write", "deleted_read", "deleted_restore"),
            ),
        ),
        ("artifact-repository:charts/x:pull", Scope("artifact-repository", "charts/x", ("pull",))),
        (
            "repository(plugin):vendor/x:pull",
            Scope("repository", "vendor/x", ("pull",), "plugin"),
        ),
        # The name is everything between the first and the last ':'.
        (
            "repository:localhost:5000/samples/hello:pull",
            Scope("repository", "localhost:5000/samples/hello", ("pull",)),
        ),
        ("repository:MyRegistry/app:pull", Scope("repository", "MyRegistry/app", ("pull",))),
        # Repeated actions are kept once.
        ("repository:a:pull,push,pull", Scope("repository", "a", ("pull", "push"))),
    ],
)
def test_good_scopes(text: str, scope: Scope) -> None:
    assert parse_scope(text) == scope
    assert parse_scope(format_scope(scope)) == scope


def test_format_round_trips_the_text() -> None:
    for text in (
        "repository:samples/hello:pull,push",
        "registry:catalog:*",
        "repository(plugin):x:pull",
        "repository:host:5000/a:pull",
    ):
        assert str(parse_scope(text)) == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "repository",
        "repository:name",
        "repository::pull",
        ":name:pull",
        "repository:name:",
        "repository:name:pull,",
        "repository:name:,pull",
        "repository:name:pull,,push",
        "repository:name:Pull",
        "repository:name:pu ll",
        "Repository:name:pull",
        "repo sitory:name:pull",
        "repository(:name:pull",
        "repository():name:pull",
        "repository(a)(b):name:pull",
        "repository:/abs:pull",
        "repository:na me:pull",
        "repository:name\n:pull",
        "repository:na,me:pull",
        "repository:" + "a" * 2000 + ":pull",
    ],
)
def test_malformed_scopes(text: str) -> None:
    with pytest.raises(ScopeError) as err:
        parse_scope(text)
    assert err.value.code is DENIED
    assert err.value.status == 403
    assert "malformed scope" in err.value.message
    assert err.value.detail == {"scope": text[:1024]}


def test_several_scopes_are_parsed_and_merged() -> None:
    scopes = parse_scopes(
        [
            "repository:a:pull",
            "repository:b:push repository:a:push,pull",
            "  registry:catalog:*  ",
            "repository(plugin):a:delete",
        ]
    )
    assert scopes == (
        Scope("repository", "a", ("pull", "push")),
        Scope("repository", "b", ("push",)),
        CATALOG_SCOPE,
        Scope("repository", "a", ("delete",), "plugin"),
    )
    assert parse_scopes([]) == ()
    assert parse_scopes(["", "   "]) == ()
    assert (
        format_scopes(scopes)
        == "repository:a:pull,push repository:b:push registry:catalog:* repository(plugin):a:delete"
    )


def test_one_bad_scope_spoils_the_request() -> None:
    with pytest.raises(ScopeError):
        parse_scopes(["repository:a:pull", "repository:b"])


def test_too_many_scopes() -> None:
    parse_scopes([f"repository:r{i}:pull" for i in range(MAX_SCOPES)])
    with pytest.raises(ScopeError, match="more than"):
        parse_scopes([" ".join(f"repository:r{i}:pull" for i in range(MAX_SCOPES + 1))])


def test_merge_keeps_order() -> None:
    merged = merge_scopes(
        [parse_scope("repository:b:push"), parse_scope("repository:a:pull"),
         parse_scope("repository:b:pull,push")]
    )  # fmt: skip
    assert [str(s) for s in merged] == ["repository:b:push,pull", "repository:a:pull"]


@pytest.mark.parametrize(
    "scope",
    [
        Scope("repository", "a/b", ("pull", "push")),
        CATALOG_SCOPE,
        Scope("repository", "a", ("pull",), "plugin"),
        Scope("repository", "host:5000/a", ("pull",)),
        Scope("repository", "a", ()),
    ],
)
def test_token_claim_round_trip(scope: Scope) -> None:
    claim = scope.to_claim()
    assert set(claim) >= {"type", "name", "actions"}
    assert Scope.from_claim(claim) == scope


@pytest.mark.parametrize(
    "claim",
    [
        "repository:a:pull",
        {"type": "repository", "name": "a"},
        {"type": "repository", "name": "a", "actions": "pull"},
        {"type": "repository", "name": "a", "actions": [1]},
        {"type": 1, "name": "a", "actions": ["pull"]},
        {"type": "repository", "name": "", "actions": []},
        {"type": "repository", "name": "a", "actions": ["PULL"]},
        {"type": "repository", "name": "a", "actions": ["pull"], "class": 3},
    ],
)
def test_malformed_token_claims(claim: object) -> None:
    with pytest.raises(ScopeError):
        Scope.from_claim(claim)
