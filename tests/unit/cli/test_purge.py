"""``hamn purge``: the ``--ago`` and ``--filter`` grammars, what is selected (pure rules
in hamn.cli.purge_rules), and the requests the command sends (a scripted server)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cli_mock_server import MockServer, assert_error, mock_server, run_hamn

from hamn.cli.purge_rules import (
    MAX_AGO,
    ManifestEntry,
    RuleError,
    TagEntry,
    parse_ago,
    parse_filter,
    plan_manifests,
    plan_tags,
    select_repositories,
)

__all__ = ["mock_server", "run_hamn"]

NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"


def ago(**delta: float) -> datetime:
    return NOW - timedelta(**delta)


def digest(n: int) -> str:
    return "sha256:" + f"{n:064x}"


# ------------------------------------------------------------------ --ago


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("15m", timedelta(minutes=15)),
        ("1d1h3m", timedelta(hours=25, minutes=3)),
        ("2d3h6m", timedelta(days=2, hours=3, minutes=6)),
        ("3d", timedelta(days=3)),
        ("0", timedelta(0)),
        ("0m", timedelta(0)),
        ("0d", timedelta(0)),
        ("1.5h", timedelta(minutes=90)),
        ("90s", timedelta(seconds=90)),
        ("500ms", timedelta(milliseconds=500)),
        ("1h30m10s", timedelta(hours=1, minutes=30, seconds=10)),
        (" 7d ", timedelta(days=7)),
    ],
)
def test_ago_reads_days_and_go_durations(text: str, expected: timedelta) -> None:
    parsed = parse_ago(text)
    assert parsed.duration == expected and not parsed.capped


@pytest.mark.parametrize("text", ["999999d", "999999999h", "9999999d999999999h"])
def test_ago_is_capped_at_150_years_as_acr_cli_caps_it(text: str) -> None:
    assert parse_ago(text) == type(parse_ago("0"))(MAX_AGO, capped=True)


@pytest.mark.parametrize(
    "text",
    # acr-cli reads 1.5d and 3h2d as zero ("everything"); "" and 15 are its errors too.
    ["", "15", "15p", "1.5d", "3h2d", "d", "-1d", "+2h", "2 d", "1d1d", "h"],
)
def test_bad_ago_is_an_error_not_everything(text: str) -> None:
    with pytest.raises(RuleError, match="--ago"):
        parse_ago(text)


# ------------------------------------------------------------------ --filter


def test_filter_splits_at_the_one_colon_and_anchors_the_repository() -> None:
    f = parse_filter("hello-world:^v1\\..*")
    assert f.matches_repository("hello-world")
    assert not f.matches_repository("hello-world2") and not f.matches_repository("my/hello-world")
    assert f.matches_tag("v1.2") and not f.matches_tag("v10")


def test_tag_regex_is_found_anywhere_as_acr_cli_matches_it() -> None:
    f = parse_filter("app:hello")
    assert f.matches_tag("say-hello-2") and not f.matches_tag("bye")
    assert parse_filter("app:^$").matches_tag("v1") is False


def test_repository_alternation_matches_whole_names_only() -> None:
    # acr-cli builds "^app|web$", which also matches "apps" and "oldweb".
    f = parse_filter("app|web:.*")
    assert [n for n in ("app", "web", "apps", "oldweb") if f.matches_repository(n)] == [
        "app",
        "web",
    ]


@pytest.mark.parametrize(
    ("text", "repo", "tag"),
    [
        ("(?i:HELLO):.*", "hello", "x"),
        ("hello:(?:v1|v2)", "hello", "v2"),
        ("hello:[:a-z]+", "hello", "abc"),
        ("hello:v\\:1|v1", "hello", "v1"),
        ("team/.*:^dev-", "team/api", "dev-1"),
    ],
)
def test_colons_in_groups_classes_and_escapes_do_not_split(text: str, repo: str, tag: str) -> None:
    f = parse_filter(text)
    assert f.matches_repository(repo) and f.matches_tag(tag)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("hello", "has no ':'"),
        ("a:b:c", "more than one ':'"),
        (":v1", "no repository regex"),
        ("hello:", "no tag regex"),
        ("hello:v[1", "tag regex 'v[1' is not a valid regular expression"),
        ("hel(lo:.*", "repository regex 'hel(lo' is not a valid"),
    ],
)
def test_bad_filters_say_what_is_wrong(text: str, fragment: str) -> None:
    with pytest.raises(RuleError, match="--filter") as info:
        parse_filter(text)
    assert fragment in str(info.value)


def test_several_filters_select_each_repository_once_sorted() -> None:
    filters = [parse_filter("b.*:^v1$"), parse_filter("a:.*"), parse_filter("b1:^v2$")]
    chosen = select_repositories(["b1", "a", "c", "b2", "a"], filters)
    assert list(chosen) == ["a", "b1", "b2"]
    assert [f.text for f in chosen["b1"]] == ["b.*:^v1$", "b1:^v2$"]


# ------------------------------------------------------------------ tags


def tags(*spec: tuple[str, float] | tuple[str, float, bool]) -> list[TagEntry]:
    """(name, hours ago[, locked])."""
    return [
        TagEntry(s[0], digest(i), ago(hours=s[1]), bool(s[2]) if len(s) > 2 else False)  # type: ignore[misc]
        for i, s in enumerate(spec)
    ]


def names(entries: Any) -> list[str]:
    return [e.name for e in entries]


def test_tags_older_than_ago_that_match_go_newest_first() -> None:
    every = tags(("v1", 50), ("v2", 30), ("v3", 1), ("latest", 40))
    plan = plan_tags(every, [parse_filter("r:^v")], ago(hours=24))
    assert names(plan.delete) == ["v2", "v1"]


def test_ago_zero_selects_everything_before_now() -> None:
    plan = plan_tags(tags(("v1", 0.001), ("v2", 5)), [parse_filter("r:.*")], NOW)
    assert names(plan.delete) == ["v1", "v2"]
    future = [TagEntry("new", digest(9), NOW + timedelta(seconds=1))]
    assert plan_tags(future, [parse_filter("r:.*")], NOW).delete == ()


def test_keep_keeps_the_most_recent_eligible_tags() -> None:
    every = tags(("v1", 50), ("v2", 40), ("v3", 30), ("v4", 1), ("old-locked", 60, True))
    plan = plan_tags(every, [parse_filter("r:.*")], ago(hours=24), keep=2)
    # v4 is too new and old-locked is locked: neither uses up a place.
    assert names(plan.kept) == ["v3", "v2"] and names(plan.delete) == ["v1"]
    assert names(plan.locked) == ["old-locked"]
    everything = plan_tags(every, [parse_filter("r:.*")], ago(hours=24), keep=10)
    assert everything.delete == ()


def test_locked_tags_are_skipped_unless_include_locked() -> None:
    every = tags(("v1", 50, True), ("v2", 50))
    plan = plan_tags(every, [parse_filter("r:.*")], NOW)
    assert names(plan.delete) == ["v2"] and names(plan.locked) == ["v1"]
    plan = plan_tags(every, [parse_filter("r:.*")], NOW, include_locked=True)
    assert names(plan.delete) == ["v1", "v2"] and plan.locked == ()


def test_any_of_several_filters_selects_a_tag() -> None:
    every = tags(("v1", 5), ("dev-1", 5), ("prod", 5))
    plan = plan_tags(every, [parse_filter("r:^v"), parse_filter("r:^dev-")], NOW)
    assert sorted(names(plan.delete)) == ["dev-1", "v1"]


# ------------------------------------------------------------------ manifests


def manifest(
    n: int,
    hours: float = 48,
    *tags_: str,
    refs: tuple[int, ...] = (),
    subject: int | None = None,
    locked: bool = False,
) -> ManifestEntry:
    return ManifestEntry(
        digest(n),
        tags_,
        ago(hours=hours),
        OCI_INDEX if refs else OCI_MANIFEST,
        locked,
        tuple(digest(r) for r in refs),
        digest(subject) if subject is not None else None,
    )


def doomed(plan: Any) -> set[str]:
    return set(plan.delete)


def test_untagged_manifests_older_than_the_cutoff_go() -> None:
    ms = [manifest(1, 48, "v1"), manifest(2, 48), manifest(3, 1)]
    plan = plan_manifests(ms, [], ago(hours=24))
    assert doomed(plan) == {digest(2)}


def test_manifests_untagged_by_the_tag_pass_go_too() -> None:
    ms = [manifest(1, 48, "v1", "v2"), manifest(2, 48, "v3")]
    plan = plan_manifests(ms, ["v1", "v2"], NOW)
    assert doomed(plan) == {digest(1)}


def test_children_of_a_tagged_index_are_kept_at_any_depth() -> None:
    ms = [
        manifest(1, 48, "multi", refs=(2, 3)),
        manifest(2),
        manifest(3, refs=(4,)),  # a nested index
        manifest(4),
        manifest(5),  # a plain untagged image
    ]
    assert doomed(plan_manifests(ms, [], NOW)) == {digest(5)}


def test_an_untagged_index_goes_before_its_children() -> None:
    ms = [manifest(1, refs=(2, 3)), manifest(2), manifest(3)]
    plan = plan_manifests(ms, [], NOW)
    assert plan.waves == ((digest(1),), (digest(2), digest(3)))
    assert plan.after[digest(2)] == {digest(1)}


def test_a_recent_untagged_index_keeps_its_old_children() -> None:
    ms = [manifest(1, 1, refs=(2,)), manifest(2, 48)]
    assert doomed(plan_manifests(ms, [], ago(hours=24))) == set()


def test_a_locked_index_keeps_its_children() -> None:
    # acr-cli skips a locked index before looking at its children, which then go.
    ms = [manifest(1, refs=(2,), locked=True), manifest(2)]
    plan = plan_manifests(ms, [], NOW)
    assert doomed(plan) == set() and plan.locked == (digest(1),)
    assert doomed(plan_manifests(ms, [], NOW, include_locked=True)) == {digest(1), digest(2)}


def test_keep_applies_to_untagged_manifests_and_a_kept_index_keeps_its_children() -> None:
    ms = [manifest(1, 10, refs=(2,)), manifest(2, 50), manifest(3, 30), manifest(4, 40)]
    plan = plan_manifests(ms, [], NOW, keep=1)
    # The newest candidate (the index) is kept, and with it its child.
    assert plan.kept == (digest(1),)
    assert doomed(plan) == {digest(3), digest(4)}


def test_referrers_follow_their_subject() -> None:
    ms = [
        manifest(1, 48, "v1"),
        manifest(2, 48, subject=1),  # signature of a tagged image: stays
        manifest(3, 48),  # untagged image
        manifest(4, 1, subject=3),  # a new SBOM of it: goes with it
        manifest(5, 48, subject=4),  # a signature of the SBOM: goes too, after it
        manifest(6, 48, subject=99),  # subject gone from the repository: an orphan
    ]
    plan = plan_manifests(ms, [], ago(hours=24))
    assert doomed(plan) == {digest(3), digest(4), digest(5), digest(6)}
    assert plan.waves[0] == (digest(3), digest(6))
    assert plan.after[digest(5)] == {digest(4)}


def test_a_tagged_or_locked_referrer_stays() -> None:
    ms = [manifest(1), manifest(2, 48, "sig", subject=1), manifest(3, subject=1, locked=True)]
    plan = plan_manifests(ms, [], NOW)
    assert doomed(plan) == {digest(1)} and plan.locked == (digest(3),)


def test_an_unreadable_manifest_stays_and_keeps_its_children() -> None:
    ms = [
        ManifestEntry(digest(1), (), ago(hours=48), OCI_INDEX, references=(digest(2),),
                      subject_known=False),
        manifest(2),
    ]  # fmt: skip
    assert doomed(plan_manifests(ms, [], NOW)) == set()


def test_manifests_with_unknown_times_stay() -> None:
    ms = [ManifestEntry(digest(1), (), None, OCI_MANIFEST)]
    assert doomed(plan_manifests(ms, [], NOW)) == set()


# ------------------------------------------------------------------ requests


REG = "myRegistry"
V2 = f"/v2/{REG}"
ACR = f"/acr/v1/{REG}/hello"
ATTRS = {"deleteEnabled": True, "writeEnabled": True, "readEnabled": True, "listEnabled": True}
LOCKED = {**ATTRS, "deleteEnabled": False}


def stamp(hours: float) -> str:
    when = datetime.now(UTC) - timedelta(hours=hours)
    return when.replace(tzinfo=None).isoformat(timespec="microseconds") + "0Z"


def tag_json(name: str, n: int, hours: float, attrs: dict[str, bool] = ATTRS) -> dict[str, Any]:
    when = stamp(hours)
    return {"name": name, "digest": digest(n), "lastUpdateTime": when, "createdTime": when,
            "signed": False, "changeableAttributes": attrs}  # fmt: skip


def manifest_json(n: int, hours: float, *tag_names: str, **extra: Any) -> dict[str, Any]:
    return {"digest": digest(n), "tags": list(tag_names), "lastUpdateTime": stamp(hours),
            "mediaType": OCI_MANIFEST, "changeableAttributes": ATTRS, **extra}  # fmt: skip


def script(server: MockServer, tags_: list[Any], manifests: list[Any] | None = None) -> None:
    server.on("GET", f"{V2}/_catalog", body={"repositories": ["hello", "other"]})
    server.on("GET", ACR, body={"imageName": "hello", "changeableAttributes": ATTRS})
    server.on("GET", f"{ACR}/_tags", body={"tags": tags_})
    if manifests is not None:
        server.on("GET", f"{ACR}/_manifests", body={"manifests": manifests})


def test_purge_sends_acr_requests_and_prints_the_summary(
    mock_server: MockServer, run_hamn: Any
) -> None:
    script(mock_server, [tag_json("v2", 2, 30), tag_json("v1", 1, 50, LOCKED)])
    mock_server.on("DELETE", f"{ACR}/_tags/v2", 202)
    result = run_hamn("purge", "-r", REG, "--filter", "hello:.*", "--ago", "1d")
    assert result.exit_code == 0, result.stderr
    out = json.loads(result.stdout)
    assert out == [
        {
            "repository": "hello",
            "tagsDeleted": ["v2"],
            "manifestsDeleted": [],
            "skipped": [
                {
                    "image": "hello:v1",
                    "reason": "locked (deleteEnabled=false); --include-locked unlocks and "
                    "deletes it",
                }
            ],
            "dryRun": False,
        }
    ]
    listing = next(s for s in mock_server.sent if s.path == f"{ACR}/_tags")
    assert listing.params["orderby"] == "timedesc"
    assert ("DELETE", f"{ACR}/_tags/v1", None) not in mock_server.requests()
    assert "Deleted hello:v2" in result.stderr
    assert result.stderr.endswith("Number of deleted tags: 1\nNumber of deleted manifests: 0\n")


def test_include_locked_unlocks_with_patch_before_deleting(
    mock_server: MockServer, run_hamn: Any
) -> None:
    script(mock_server, [tag_json("v1", 1, 50, LOCKED)])
    mock_server.on("PATCH", f"{ACR}/_tags/v1", body={"tag": {}})
    mock_server.on("DELETE", f"{ACR}/_tags/v1", 202)
    result = run_hamn(
        "purge", "-r", REG, "-f", "hello:.*", "--ago", "0", "--include-locked", "--concurrency", "1"
    )
    assert result.exit_code == 0, result.stderr
    assert [(m, p, b) for m, p, b in mock_server.requests() if m != "GET"] == [
        ("PATCH", f"{ACR}/_tags/v1", {"deleteEnabled": True, "writeEnabled": True}),
        ("DELETE", f"{ACR}/_tags/v1", None),
    ]


def test_dry_run_sends_no_delete(mock_server: MockServer, run_hamn: Any) -> None:
    script(
        mock_server,
        [tag_json("v1", 1, 50)],
        [manifest_json(1, 50, "v1"), manifest_json(3, 50)],
    )
    mock_server.on("GET", f"{V2}/hello/manifests/{digest(1)}", body={"schemaVersion": 2})
    mock_server.on("GET", f"{V2}/hello/manifests/{digest(3)}", body={"schemaVersion": 2})
    result = run_hamn(
        "purge", "-r", REG, "-f", "hello:.*", "--ago", "1h", "--untagged", "--dry-run"
    )
    assert result.exit_code == 0, result.stderr
    assert {m for m, _, _ in mock_server.requests()} == {"GET"}
    out = json.loads(result.stdout)[0]
    assert out["dryRun"] and out["tagsDeleted"] == ["v1"]
    assert sorted(out["manifestsDeleted"]) == [digest(1), digest(3)]
    assert result.stderr.startswith("DRY RUN: The following output shows what WOULD be deleted")
    assert "Would delete: hello:v1" in result.stderr
    assert result.stderr.endswith(
        "Number of tags to be deleted: 1\nNumber of manifests to be deleted: 2\n"
    )


def test_untagged_deletes_by_digest_after_reading_it_again(
    mock_server: MockServer, run_hamn: Any
) -> None:
    script(mock_server, [], [manifest_json(3, 50)])
    mock_server.on("GET", f"{V2}/hello/manifests/{digest(3)}", body={"schemaVersion": 2})
    mock_server.on("GET", f"{ACR}/_manifests/{digest(3)}", body={"manifest": {"tags": []}})
    mock_server.on("DELETE", f"{ACR}/_manifests/{digest(3)}", 202)
    result = run_hamn("purge", "-r", REG, "-f", "hello:^$", "--ago", "0", "--untagged")
    assert result.exit_code == 0, result.stderr
    sent = mock_server.sent[-3:]
    assert [(s.method, s.path) for s in sent] == [
        ("GET", f"{V2}/hello/manifests/{digest(3)}"),
        ("GET", f"{ACR}/_manifests/{digest(3)}"),
        ("DELETE", f"{ACR}/_manifests/{digest(3)}"),
    ]
    assert OCI_INDEX in sent[0].headers["accept"]
    assert json.loads(result.stdout)[0]["manifestsDeleted"] == [digest(3)]


def test_a_manifest_tagged_since_the_listing_stays(mock_server: MockServer, run_hamn: Any) -> None:
    script(mock_server, [], [manifest_json(3, 50)])
    mock_server.on("GET", f"{V2}/hello/manifests/{digest(3)}", body={"schemaVersion": 2})
    mock_server.on("GET", f"{ACR}/_manifests/{digest(3)}", body={"manifest": {"tags": ["new"]}})
    result = run_hamn("purge", "-r", REG, "-f", "hello:^$", "--ago", "0", "--untagged")
    assert result.exit_code == 0, result.stderr
    assert all(s.method != "DELETE" for s in mock_server.sent)
    assert json.loads(result.stdout)[0]["skipped"][0]["reason"] == "tagged since the listing (new)"


def test_untagged_only_lists_every_repository_and_no_tags(
    mock_server: MockServer, run_hamn: Any
) -> None:
    mock_server.on("GET", f"{V2}/_catalog", body={"repositories": ["hello"]})
    mock_server.on("GET", ACR, body={"changeableAttributes": ATTRS})
    mock_server.on("GET", f"{ACR}/_manifests", body={"manifests": []})
    result = run_hamn(
        "purge", "-r", REG, "--untagged-only", "-o", "tsv", "--query", "[].repository"
    )
    assert (result.exit_code, result.stdout) == (0, "hello\n"), result.stderr
    assert all(not s.path.endswith("/_tags") for s in mock_server.sent)


def test_a_locked_repository_is_skipped(mock_server: MockServer, run_hamn: Any) -> None:
    mock_server.on("GET", f"{V2}/_catalog", body={"repositories": ["hello"]})
    mock_server.on("GET", ACR, body={"changeableAttributes": {**ATTRS, "writeEnabled": False}})
    result = run_hamn("purge", "-r", REG, "-f", "hello:.*", "--ago", "0", "--include-locked")
    assert result.exit_code == 0, result.stderr
    skipped = json.loads(result.stdout)[0]["skipped"]
    assert (
        "hamn repository update -n myRegistry --repository hello --write-enabled true"
        in (skipped[0]["reason"])
    )


def test_forbidden_names_the_roles_and_where_it_stopped(
    mock_server: MockServer, run_hamn: Any
) -> None:
    script(mock_server, [tag_json("v1", 1, 50)])
    mock_server.fail("DELETE", f"{ACR}/_tags/v1", 403, "DENIED", "delete is not granted")
    result = run_hamn("purge", "-r", REG, "-f", "hello:.*", "-f", "other:.*", "--ago", "0")
    assert_error(
        result,
        "delete is not granted (DENIED)",
        "AcrDelete, Contributor or Owner",
        "Purge stopped in repository 'hello'. Completed repositories: none. "
        "Not yet processed: other.",
    )


def test_unknown_registry(mock_server: MockServer, run_hamn: Any) -> None:
    mock_server.fail("GET", f"{V2}/_catalog", 404, "NAME_UNKNOWN", "no such registry")
    assert_error(
        run_hamn("purge", "-r", REG, "-f", "a:.*", "--ago", "1d"),
        "Registry 'myRegistry' was not found",
        "hamn list",
    )


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--ago", "1d"), "--filter is required when not using --untagged-only"),
        (("-f", "a:.*"), "--ago is required when not using --untagged-only"),
        (("-f", "a:.*", "--ago", "1.5d"), "--ago '1.5d' is not a duration"),
        (("-f", "a:[", "--ago", "1d"), "tag regex '[' is not a valid regular expression"),
        (("--untagged", "--untagged-only"), "exclude each other"),
        (("-f", "a:.*", "--ago", "1d", "--concurrency", "33"), "--concurrency"),
    ],
)
def test_usage_errors(
    mock_server: MockServer, run_hamn: Any, args: tuple[str, ...], fragment: str
) -> None:
    assert_error(run_hamn("purge", "-r", REG, *args), fragment, code=2)
    assert mock_server.sent == []


def test_table_output_counts_per_repository(mock_server: MockServer, run_hamn: Any) -> None:
    script(mock_server, [tag_json("v2", 2, 30), tag_json("v1", 1, 50, LOCKED)])
    result = run_hamn(
        "purge", "-r", REG, "-f", "hello:.*", "--ago", "1d", "--dry-run", "-o", "table"
    )
    assert result.exit_code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["REPOSITORY", "TAGS", "MANIFESTS", "SKIPPED"]
    assert lines[2].split() == ["hello", "1", "0", "1"]


def test_a_repository_gone_since_the_catalog_is_passed_over(
    mock_server: MockServer, run_hamn: Any
) -> None:
    mock_server.on("GET", f"{V2}/_catalog", body={"repositories": ["hello"]})
    mock_server.fail("GET", ACR, 404, "NAME_UNKNOWN", "repository not found")
    result = run_hamn("purge", "-r", REG, "-f", "hello:.*", "--ago", "0")
    assert result.exit_code == 0, result.stderr
    assert "hello repository not found" in result.stderr
    assert json.loads(result.stdout)[0]["tagsDeleted"] == []
