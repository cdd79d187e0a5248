"""The CLI's pure parts (hamn.cli): above all az's output formats and ``--query``.

Also the small pure pieces the commands lean on: table transformers, names on
the command line, the HTTP client's paging, retries and redaction (over a mock
transport, no network), and argument errors (click's runner, no server).
"""

from __future__ import annotations

import json
import logging
import re
from collections import OrderedDict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import click
import httpx
import pytest
import yaml  # type: ignore[import-untyped]
from click.testing import CliRunner

from hamn.cli.client import (
    Credentials,
    RegistryClient,
    RegistryError,
    ServerUnreachable,
    next_link,
    normalize_server,
    retry_after_seconds,
)
from hamn.cli.context import QueryType
from hamn.cli.main import cli
from hamn.cli.output import (
    OUTPUT_FORMATS,
    OutputError,
    apply_query,
    colorize_json,
    colorize_yaml,
    compile_query,
    format_json,
    format_table,
    format_tsv,
    format_yaml,
    render,
    render_table,
)
from hamn.cli.references import Image, parse_image, parse_repository_id, repository_name
from hamn.cli.tables import CREDENTIAL, REGISTRY, USAGE, columns, field, timestamp

ANSI = re.compile(r"\x1b\[[0-9;]*m")

D1 = "sha256:" + "1" * 64
D2 = "sha256:" + "2" * 64
D3 = "sha256:" + "3" * 64

#: show-manifests output for a repository with one untagged manifest (az's shape).
MANIFESTS = [
    {"digest": D1, "tags": ["latest", "v1"], "timestamp": "2026-01-01T00:00:00.0000000Z"},
    {"digest": D2, "tags": [], "timestamp": "2026-01-02T00:00:00.0000000Z"},
    {"digest": D3, "tags": ["v2"], "timestamp": "2026-01-03T00:00:00.0000000Z"},
]


def query(expression: str, result: Any) -> Any:
    return apply_query(compile_query(expression), result)


# ======================================================================== json


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("hello", '"hello"\n'),
        (42, "42\n"),
        (1.5, "1.5\n"),
        (True, "true\n"),
        (False, "false\n"),
        ([], "[]\n"),
        ({}, "{}\n"),
        (["a", "b"], '[\n  "a",\n  "b"\n]\n'),
    ],
)
def test_json_scalars_and_lists(value: Any, text: str) -> None:
    assert format_json(value) == text
    assert render(value, "json") == text


def test_json_sorts_keys_indents_two_and_keeps_unicode() -> None:
    value = {"b": {"z": 1, "a": [True, None]}, "a": "ångström ✓ 日本"}
    assert format_json(value) == (
        "{\n"
        '  "a": "ångström ✓ 日本",\n'
        '  "b": {\n'
        '    "a": [\n'
        "      true,\n"
        "      null\n"
        "    ],\n"
        '    "z": 1\n'
        "  }\n"
        "}\n"
    )


def test_json_sorts_keys_a_query_ordered_too() -> None:
    # az sorts in -o json even the objects a --query built in its own order.
    assert format_json(OrderedDict([("z", 1), ("a", 2)])) == '{\n  "a": 2,\n  "z": 1\n}\n'


def test_none_prints_nothing_in_every_format() -> None:
    for output in OUTPUT_FORMATS:
        assert render(None, output) == ""


def test_output_none_prints_nothing() -> None:
    assert render({"a": 1}, "none") == ""
    assert render([1, 2], "none") == ""


def test_unknown_output_format_is_an_error() -> None:
    with pytest.raises(OutputError, match="choose one of"):
        render({"a": 1}, "xml")


def test_bytes_are_written_as_text() -> None:
    assert format_json({"b": b"raw"}) == '{\n  "b": "raw"\n}\n'


# ======================================================================== jsonc / yamlc


def test_jsonc_is_colored_only_when_asked() -> None:
    value = {"name": "x", "n": 3, "ok": True, "none": None, "list": ["s", -1.5e3]}
    plain = render(value, "jsonc", color=False)
    assert plain == format_json(value)
    colored = render(value, "jsonc", color=True)
    assert "\x1b[" in colored
    assert ANSI.sub("", colored) == plain
    # Keys and string values get different colours.
    assert '\x1b[94m"name"\x1b[0m:' in colored
    assert '\x1b[32m"x"\x1b[0m' in colored


def test_colorize_json_handles_escaped_quotes_and_colons_in_strings() -> None:
    text = format_json({"k": 'a "quoted": value', "url": "http://h:1/x"})
    assert ANSI.sub("", colorize_json(text)) == text


def test_yamlc_is_colored_only_when_asked() -> None:
    value = {"registry": "local", "tags": [{"name": "v1"}], "n": 1}
    plain = render(value, "yamlc", color=False)
    assert plain == format_yaml(value)
    colored = render(value, "yamlc", color=True)
    assert "\x1b[" in colored
    assert ANSI.sub("", colorize_yaml(plain)) == plain
    assert ANSI.sub("", colored) == plain


# ======================================================================== yaml


def test_yaml_block_style_sorted_keys_unicode() -> None:
    value = {"b": [1, {"x": None, "a": True}], "a": "é 日本"}
    text = format_yaml(value)
    assert text == "a: é 日本\nb:\n- 1\n- a: true\n  x: null\n"
    assert yaml.safe_load(text) == value


def test_yaml_of_query_results_and_scalars() -> None:
    assert format_yaml(OrderedDict([("z", 1), ("a", [OrderedDict([("k", "v")])])])) == (
        "a:\n- k: v\nz: 1\n"
    )
    assert yaml.safe_load(format_yaml("text")) == "text"
    assert format_yaml(["a", "b"]) == "- a\n- b\n"
    assert format_yaml(True) == "true\n...\n"


# ======================================================================== tsv


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("hello", "hello\n"),
        ("", "\n"),
        (42, "42\n"),
        (2.5, "2.5\n"),
        # A boolean that is a whole line is lowercase (az: str(value).lower())...
        (True, "true\n"),
        (False, "false\n"),
        ([True, False], "true\nfalse\n"),
        (["a", "b", "c"], "a\nb\nc\n"),
        ([], ""),
        ("日本 ✓", "日本 ✓\n"),
    ],
)
def test_tsv_scalars_and_lists_of_scalars(value: Any, text: str) -> None:
    assert format_tsv(value) == text
    assert render(value, "tsv") == text


def test_tsv_object_values_in_key_order() -> None:
    assert format_tsv({"name": "v1", "digest": D1, "signed": False}) == f"{D1}\tv1\tFalse\n"


def test_tsv_list_of_objects_one_line_each() -> None:
    rows = [{"b": 1, "a": "x"}, {"a": "y", "b": 2}]
    assert format_tsv(rows) == "x\t1\ny\t2\n"


def test_tsv_nested_values_as_az_writes_them() -> None:
    # ...while inside an object: True/False, None, a list's length, an object as an empty field.
    row = {"a": True, "b": None, "c": [1, 2, 3], "d": {"x": 1}, "e": "é"}
    assert format_tsv(row) == "True\tNone\t3\t\té\n"


def test_tsv_keeps_the_order_a_query_built() -> None:
    result = query("[].{Tag: name, Digest: digest}", [{"name": "v1", "digest": D1}])
    assert format_tsv(result) == f"v1\t{D1}\n"
    # Without a query the same keys come sorted.
    assert format_tsv([{"Tag": "v1", "Digest": D1}]) == f"{D1}\tv1\n"


def test_tsv_list_rows() -> None:
    assert format_tsv([["a", 1, None], ["b", [1], {}]]) == "a\t1\tNone\nb\t1\t\n"


def test_tsv_top_level_none_prints_nothing() -> None:
    assert render(None, "tsv") == ""


# ======================================================================== table


def test_table_generic_columns() -> None:
    rows = [
        {"name": "a", "n": 1, "ok": True, "id": "/x", "type": "t", "etag": "e", "tags": ["x"]},
        {"name": "bb", "extra": "z", "cfg": {"k": 1}, "none": None},
    ]
    assert format_table(rows) == (
        "N  Name  Ok    Extra\n-  ----  ----  -----\n1  a     True\n   bb          z\n"
    )


def test_table_list_of_strings_is_a_result_column() -> None:
    assert format_table(["hello", "team/app"]) == "Result\n--------\nhello\nteam/app\n"


def test_table_scalar_and_list_rows() -> None:
    assert format_table("one") == "Result\n------\none\n"
    assert format_table([["a", 1], ["bb", 22]]) == (
        "Column1  Column2\n-------  -------\na        1\nbb       22\n"
    )


def test_table_of_show_manifests_leaves_out_the_tag_list() -> None:
    text = format_table(MANIFESTS)
    lines = text.splitlines()
    assert lines[0].split() == ["Digest", "Timestamp"]
    assert lines[2].split() == [D1, "2026-01-01T00:00:00.0000000Z"]
    assert len(lines) == 2 + len(MANIFESTS)


def test_table_empty_list_is_an_empty_line() -> None:
    assert format_table([]) == "\n"


def test_table_without_simple_fields_says_what_to_do() -> None:
    with pytest.raises(OutputError, match="--query"):
        format_table([{"tags": ["a"], "attrs": {"x": 1}}])


def test_table_aligns_wide_characters() -> None:
    text = render_table([{"Name": "日本", "X": "1"}, {"Name": "abcde", "X": "2"}])
    lines = text.splitlines()
    # "日本" is four columns wide, like "abcd".
    assert lines[2] == "日本   1"
    assert lines[3] == "abcde  2"


def test_table_multiline_cells() -> None:
    text = render_table([{"A": "x\nyy", "B": "1"}])
    assert text == "A   B\n--  -\nx   1\nyy\n"


def test_table_uses_the_transformer_unless_a_query_is_active() -> None:
    result = {"username": "myreg", "passwords": [{"name": "password", "value": "p1"}]}
    text = format_table(result, transformer=CREDENTIAL)
    assert text.splitlines()[0].split() == ["USERNAME", "PASSWORD", "PASSWORD2"]
    assert text.splitlines()[2].split() == ["myreg", "p1"]
    # With --query the transformer is skipped and the query's order kept.
    queried = query("{User: username, Count: length(passwords)}", result)
    assert format_table(queried, query_active=True, transformer=CREDENTIAL) == (
        "User   Count\n-----  -----\nmyreg  1\n"
    )


def test_render_table_passes_through() -> None:
    assert render(["a"], "table") == "Result\n------\na\n"


# ======================================================================== tables.py


def test_field_is_a_blank_when_missing_or_empty() -> None:
    item = {"a": {"b": [0, "x"]}, "f": False, "z": 0, "s": "", "n": None, "l": []}
    assert field(item, "a", "b", 1) == "x"
    for path in (("s",), ("n",), ("l",), ("missing",), ("a", "b", 5)):
        assert field(item, *path) == " "
    assert field("text", "x") == " "
    # Unlike az, a zero and a false are information, not blanks.
    assert (field(item, "a", "b", 0), field(item, "z"), field(item, "f")) == ("0", "0", "False")


def test_timestamp_format() -> None:
    assert timestamp("2026-01-31T12:34:56.1234567Z") == "2026-01-31T12:34:56Z"
    assert timestamp("2026-01-31T12:34:56+02:00") == "2026-01-31T12:34:56Z"
    assert timestamp("not a time") == "not a time"
    assert timestamp(" ") == " "


def test_usage_transformer_unwraps_value() -> None:
    result = {
        "value": [
            {"name": "Size", "limit": 10737418240, "currentValue": 123, "unit": "Bytes"},
            {"name": "Webhooks", "limit": 2, "currentValue": 0, "unit": "Count"},
        ]
    }
    text = format_table(result, transformer=USAGE)
    lines = text.splitlines()
    assert lines[0] == "NAME      LIMIT        CURRENT VALUE  UNIT"
    assert lines[2].split() == ["Size", "10737418240", "123", "Bytes"]
    assert lines[3].split() == ["Webhooks", "2", "0", "Count"]  # az would show a blank


def test_registry_transformer() -> None:
    registry = {
        "name": "myreg",
        "location": "local",
        "sku": {"name": "Basic"},
        "loginServer": "myreg.localhost",
        "creationDate": "2026-01-31T12:34:56.789+00:00",
        "adminUserEnabled": True,
    }
    rows = REGISTRY([registry])
    assert list(rows[0]) == [
        "NAME",
        "LOCATION",
        "SKU",
        "LOGIN SERVER",
        "CREATION DATE",
        "ADMIN ENABLED",
    ]
    assert rows[0]["CREATION DATE"] == "2026-01-31T12:34:56Z"
    assert rows[0]["SKU"] == "Basic"


def test_columns_helper_formats() -> None:
    transform = columns(("A", ("a",)), ("B", ("b",), str.upper))
    assert transform({"a": 1, "b": "x"}) == [OrderedDict([("A", "1"), ("B", "X")])]


# ======================================================================== --query


def test_seed_query_selects_untagged_digests() -> None:
    result = query("[?tags[0]==null].digest", MANIFESTS)
    assert result == [D2]
    assert render(result, "tsv") == f"{D2}\n"


def test_seed_query_when_the_server_leaves_tags_out() -> None:
    # ACR omits "tags" on untagged manifests in list-metadata.
    entries = [{"digest": D1, "tags": ["v1"]}, {"digest": D2}]
    assert query("[?tags[0]==null].digest", entries) == [D2]
    assert query("[?tags==null].digest", entries) == [D2]


def test_query_projection_scalar_and_missing() -> None:
    assert query("[0].digest", MANIFESTS) == D1
    assert render(query("[0].digest", MANIFESTS), "tsv") == f"{D1}\n"
    assert query("[0].nothing", MANIFESTS) is None
    assert render(query("[0].nothing", MANIFESTS), "json") == ""
    assert query("length(@)", MANIFESTS) == 3
    assert query("contains(@, 'v1')", ["v1", "v2"]) is True
    assert render(query("contains(@, 'v1')", ["v1", "v2"]), "tsv") == "true\n"


def test_query_multiselect_keeps_its_key_order() -> None:
    result = query("[].{z: digest, a: timestamp}", MANIFESTS)
    assert list(result[0]) == ["z", "a"]
    assert isinstance(result[0], OrderedDict)


def test_query_on_list_of_lists() -> None:
    result = query("[].[digest, tags[0]]", MANIFESTS)
    assert format_tsv(result).splitlines()[1] == f"{D2}\tNone"


def test_bad_query_is_reported() -> None:
    with pytest.raises(ValueError, match="invalid JMESPath query"):
        compile_query("[?")


# ======================================================================== names


@pytest.mark.parametrize(
    ("text", "image"),
    [
        ("hello:v1", Image("hello", tag="v1")),
        ("Team/App:V1", Image("team/app", tag="V1")),
        ("hello", Image("hello", tag="latest")),
        (f"myRepository@{D1}", Image("myrepository", digest=D1)),
    ],
)
def test_parse_image(text: str, image: Image) -> None:
    assert parse_image(text) == image


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a:b:c", "is not an image"),
        ("a@sha256:xyz", "is not a digest"),
        ("@" + D1, "is not an image"),
        ("a:.bad", "is not a tag"),
        ("Bad Name:v1", "is not a repository name"),
    ],
)
def test_parse_image_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_image(text)


def test_parse_image_without_digests() -> None:
    with pytest.raises(ValueError, match="give a tag"):
        parse_image(f"a@{D1}", allow_digest=False)


def test_repository_names_are_lowercased() -> None:
    assert repository_name(" myRepository ") == "myrepository"
    with pytest.raises(ValueError):
        repository_name("a//b")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("myregistry.localhost/hello-world", ("myregistry", "hello-world")),
        ("https://MyRegistry.example.com:5000/team/app", ("MyRegistry", "team/app")),
        ("localhost:5000/local/team/app", ("local", "team/app")),
        ("127.0.0.1:5000/local/hello", ("local", "hello")),
        ("[::1]:5000/local/hello", ("local", "hello")),
    ],
)
def test_parse_repository_id(text: str, expected: tuple[str, str]) -> None:
    assert parse_repository_id(text) == expected


@pytest.mark.parametrize(
    "text",
    ["hello", "myregistry.localhost/", "localhost:5000/local", "ab.localhost/x", "r.x/y:tag"],
)
def test_parse_repository_id_errors(text: str) -> None:
    with pytest.raises(ValueError):
        parse_repository_id(text)


# ======================================================================== client


def test_normalize_server() -> None:
    assert normalize_server("http://h:1/") == "http://h:1"
    assert normalize_server("127.0.0.1:5000") == "http://127.0.0.1:5000"
    assert normalize_server("localhost:5000") == "http://localhost:5000"
    assert normalize_server("registry.example.com") == "https://registry.example.com"
    assert normalize_server("") == "http://127.0.0.1:5000"


def test_retry_after() -> None:
    now = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("3") == 3.0
    assert retry_after_seconds("Thu, 01 Jan 2026 12:00:05 GMT", now=now) == 5.0
    assert retry_after_seconds("Thu, 01 Jan 2026 11:00:00 GMT", now=now) == 0.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_next_link() -> None:
    assert next_link('</v2/_catalog?last=a&n=1>; rel="next"') == "/v2/_catalog?last=a&n=1"
    assert next_link('<http://x/1>; rel="prev", </2>; rel=next') == "/2"
    assert next_link('</1>; rel="prev"') is None
    assert next_link(None) is None


def test_basic_credentials() -> None:
    assert Credentials("user", "pässword").authorization() == "Basic dXNlcjpww6Rzc3dvcmQ="


Handler = Callable[[httpx.Request], httpx.Response]


def client_for(handler: Handler, registry: str = "local", **kwargs: Any) -> RegistryClient:
    server = kwargs.pop("server", "http://hamn.test:5000")
    return RegistryClient(
        server,
        registry,
        transport=httpx.MockTransport(handler),
        sleep=lambda _: None,
        **kwargs,
    )


def test_paths_name_the_registry_unless_the_server_is_its_login_server() -> None:
    c = client_for(lambda r: httpx.Response(200))
    assert c.v2_path("team/app", "manifests", D1) == f"/v2/local/team/app/manifests/{D1}"
    assert c.acr_path("hello", "_tags", "v1") == "/acr/v1/local/hello/_tags/v1"
    login = client_for(lambda r: httpx.Response(200), server="https://local.hamn.test")
    assert login.host_routed
    assert login.acr_path("hello") == "/acr/v1/hello"


def test_list_all_follows_links_and_stops_at_top() -> None:
    names = [f"r{i:03d}" for i in range(250)]
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(str(request.url))
        n = int(request.url.params["n"])
        last = request.url.params.get("last")
        start = names.index(last) + 1 if last else 0
        page = names[start : start + n]
        headers = {}
        if start + n < len(names):
            headers["Link"] = f'</v2/_catalog?last={page[-1]}&n={n}>; rel="next"'
        return httpx.Response(200, json={"repositories": page}, headers=headers)

    assert client_for(handler).list_all("/v2/_catalog", "repositories") == names
    assert len(seen) == 3 and "n=100" in seen[0]
    seen.clear()
    assert client_for(handler).list_all("/v2/_catalog", "repositories", top=150) == names[:150]
    assert [httpx.URL(u).params["n"] for u in seen] == ["100", "50"]
    seen.clear()
    assert client_for(handler).list_all("/v2/_catalog", "repositories", top=0) == []
    assert seen == []


def test_list_all_passes_orderby_and_keeps_link_parameters() -> None:
    calls: list[httpx.URL] = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request.url)
        if "last" not in request.url.params:
            link = '</acr/v1/local/x/_tags?last=b&n=2&orderby=timedesc>; rel="next"'
            return httpx.Response(200, json={"tags": [{"name": "a"}]}, headers={"Link": link})
        return httpx.Response(200, json={"tags": [{"name": "b"}]})

    c = client_for(handler)
    tags = c.list_all("/acr/v1/local/x/_tags", "tags", params={"orderby": "timedesc"})
    assert [t["name"] for t in tags] == ["a", "b"]
    assert calls[0].params["orderby"] == "timedesc"
    assert calls[1].path == "/acr/v1/local/x/_tags"
    assert dict(calls[1].params) == {"last": "b", "n": "2", "orderby": "timedesc"}


def test_list_all_refuses_links_to_other_servers() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        link = '<https://evil.test/v2/_catalog?last=a>; rel="next"'
        return httpx.Response(200, json={"repositories": ["a"]}, headers={"Link": link})

    with pytest.raises(RegistryError, match="leaves the server"):
        client = client_for(handler, credentials=Credentials("u", "p"))
        client.list_all("/v2/_catalog", "repositories")


def test_list_all_stops_on_a_repeated_link() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        link = '</v2/_catalog?last=a&n=100>; rel="next"'
        return httpx.Response(200, json={"repositories": ["a"]}, headers={"Link": link})

    assert client_for(handler).list_all("/v2/_catalog", "repositories") == ["a", "a"]


def test_errors_envelope_is_parsed() -> None:
    body = {"errors": [{"code": "NAME_UNKNOWN", "message": "no such repo", "detail": {"n": 1}}]}
    c = client_for(lambda r: httpx.Response(404, json=body))
    with pytest.raises(RegistryError) as info:
        c.get_json("/acr/v1/local/x")
    err = info.value
    assert (err.status, err.code, err.message, err.detail) == (
        404,
        "NAME_UNKNOWN",
        "no such repo",
        {"n": 1},
    )
    assert str(err) == "no such repo (NAME_UNKNOWN)"


def test_error_without_envelope_names_the_status() -> None:
    c = client_for(lambda r: httpx.Response(502, text="<html>bad gateway</html>"))
    with pytest.raises(RegistryError, match="HTTP 502 Bad Gateway"):
        c.get_json("/x")


def test_idempotent_requests_retry_on_429_and_503_with_retry_after() -> None:
    answers = iter(
        [
            httpx.Response(429, headers={"Retry-After": "2"}),
            httpx.Response(503, headers={"Retry-After": "9999"}),
            httpx.Response(200, json={"ok": True}),
        ]
    )
    waits: list[float] = []
    c = RegistryClient(
        "http://hamn.test",
        "local",
        transport=httpx.MockTransport(lambda r: next(answers)),
        sleep=waits.append,
    )
    assert c.get_json("/x") == {"ok": True}
    assert waits == [2.0, 30.0]  # Retry-After is honoured, within a bound


def test_retries_are_bounded() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(503)

    with pytest.raises(RegistryError) as info:
        client_for(handler).get_json("/x")
    assert info.value.status == 503
    assert len(calls) == 4


def test_post_is_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        return httpx.Response(429)

    with pytest.raises(RegistryError):
        client_for(handler).request("POST", "/x")
    assert len(calls) == 1


def test_unreachable_server_is_retried_then_reported() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ConnectError("connection refused")

    with pytest.raises(ServerUnreachable, match="Cannot reach the hamn server"):
        client_for(handler).get_json("/x")
    assert len(calls) == 4


def test_credentials_are_sent_as_basic() -> None:
    seen: list[str | None] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("Authorization"))
        return httpx.Response(200, json={})

    client_for(handler, credentials=Credentials("u", "p")).get_json("/x")
    client_for(handler).get_json("/x")
    assert seen == ["Basic dTpw", None]


@pytest.fixture
def debug_log() -> Iterator[list[str]]:
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    logger = logging.getLogger("hamn.cli.http")
    handler = Collect()
    logger.addHandler(handler)
    old = logger.level
    logger.setLevel(logging.DEBUG)
    yield lines
    logger.removeHandler(handler)
    logger.setLevel(old)


def test_debug_log_redacts_credentials_and_tokens(debug_log: list[str]) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            200,
            json={"access_token": "tok-secret", "passwords": [{"name": "p", "value": "pw-secret"}]},
            headers={"Set-Cookie": "session=cookie-secret"},
        )

    client_for(handler, credentials=Credentials("alice", "hunter2")).get_json("/x")
    text = "\n".join(debug_log)
    assert "Request URL: 'http://hamn.test:5000/x'" in text
    assert "'authorization': 'REDACTED'" in text
    for secret in ("hunter2", "YWxpY2U6aHVudGVyMg==", "tok-secret", "pw-secret", "cookie-secret"):
        assert secret not in text
    assert "Response status: 200" in text


# ======================================================================== arguments


@pytest.fixture
def run_cli(monkeypatch: pytest.MonkeyPatch) -> Callable[..., Any]:
    for key in ("HAMN_OUTPUT", "HAMN_SERVER", "HAMN_REGISTRY", "HAMN_USERNAME", "HAMN_PASSWORD"):
        monkeypatch.delenv(key, raising=False)

    def run(*args: str, env: dict[str, str] | None = None) -> Any:
        return CliRunner().invoke(cli, list(args), env=env, prog_name="hamn")

    return run


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["repository", "list"], "the following arguments are required: --name/-n"),
        (["repository", "list", "-n", "ab"], "'ab' is not a registry name"),
        (["repository", "list", "-n", "local", "-o", "xml"], "'xml' is not one of"),
        (["repository", "list", "-n", "local", "--query", "[?"], "invalid JMESPath query"),
        (["repository", "list", "-n", "local", "--top", "-1"], "--top"),
        (["repository", "show-tags", "-n", "local"], "required: --repository"),
        (["repository", "show", "-n", "local"], "exactly one of --image"),
        (
            ["repository", "show", "-n", "local", "--repository", "a", "-t", "a:b"],
            "exactly one of --image",
        ),
        (["repository", "delete", "-n", "local", "-t", "a@sha256:1"], "is not a digest"),
        (["repository", "untag", "-n", "local"], "required: --image/-t"),
        (["repository", "untag", "-n", "local", "-t", f"a@{D1}"], "give a tag"),
        (["repository", "nope"], "No such command 'nope'"),
        (["manifest", "list-metadata", "-r", "local"], "fully qualified repository"),
        (["manifest", "list-metadata", "x.localhost/a", "-n", "a"], "fully qualified repository"),
        (["manifest", "list-metadata", "hello"], "fully qualified repository"),
        (["repository", "list", "-n", "local", "-p", "secret"], "--password needs --username"),
    ],
)
def test_usage_errors_exit_2_with_an_error_line(
    run_cli: Callable[..., Any], args: list[str], message: str
) -> None:
    result = run_cli(*args)
    assert result.exit_code == 2, result.output
    first = result.stderr.splitlines()[0]
    assert first.startswith("ERROR: ") and message in result.stderr, result.stderr
    assert "Try 'hamn " in result.stderr
    assert result.stdout == ""


def test_bad_output_from_the_environment(run_cli: Callable[..., Any]) -> None:
    result = run_cli("repository", "list", "-n", "local", env={"HAMN_OUTPUT": "xml"})
    assert result.exit_code == 2
    assert "'xml' is not one of" in result.stderr


def test_help_lists_global_arguments_apart(run_cli: Callable[..., Any]) -> None:
    result = run_cli("repository", "show-manifests", "-h")
    assert result.exit_code == 0
    text = result.stdout
    arguments, global_arguments = text.split("Global Arguments:")
    for flag in ("--repository", "--top", "--orderby", "--detail", "--server", "--username"):
        assert flag in arguments
    for flag in ("--query", "--output", "--debug", "--verbose", "--only-show-errors", "--help"):
        assert flag in global_arguments


def test_login_server_for_a_registry_name_warns_and_uses_the_name(
    run_cli: Callable[..., Any],
) -> None:
    # Nothing listens on port 9 of 127.0.0.1: the error proves the name was accepted.
    result = run_cli(
        "repository", "list", "-n", "myreg.localhost:5000", "--server", "http://127.0.0.1:9"
    )
    assert result.exit_code == 1
    assert (
        "WARNING: 'myreg.localhost:5000' is a login server; using its registry name 'myreg'."
        in (result.stderr)
    )
    assert "ERROR: Cannot reach the hamn server at http://127.0.0.1:9" in result.stderr
    assert "hamn serve" in result.stderr


def test_only_show_errors_hides_warnings(run_cli: Callable[..., Any]) -> None:
    result = run_cli(
        "repository",
        "list",
        "-n",
        "myreg.x",
        "--server",
        "http://127.0.0.1:9",
        "--only-show-errors",
    )
    assert "WARNING" not in result.stderr
    assert result.stderr.startswith("ERROR: ")


def test_version_still_works(run_cli: Callable[..., Any]) -> None:
    result = run_cli("--version")
    assert result.exit_code == 0 and "hamn" in result.stdout


def test_query_type_compiles_at_parse_time() -> None:
    # A bad --query fails before any request is made (click's BadParameter -> exit 2).
    @click.command()
    @click.option("--q", type=QueryType())
    def c(q: Any) -> None:
        click.echo(json.dumps(q.search({"a": 1})))

    assert CliRunner().invoke(c, ["--q", "a"]).stdout == "1\n"


def test_read_timeouts_are_not_retried() -> None:
    calls = []

    def handler(request: httpx.Request) -> httpx.Response:
        calls.append(request)
        raise httpx.ReadTimeout("slow")

    with pytest.raises(ServerUnreachable, match="slow"):
        client_for(handler).get_json("/x")
    assert len(calls) == 1
