"""Property tests for the OCI rules: round trips, and no input that crashes a parser.

Kept apart from the example tests so that those still run where hypothesis is missing.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from hamn.errors import DIGEST_INVALID, MANIFEST_INVALID, NAME_INVALID, UNSUPPORTED, HamnError
from hamn.oci.digest import ALGORITHMS, digest_bytes, parse_digest
from hamn.oci.manifest import (
    INDEX_TYPES,
    MANIFEST_TYPES,
    SCHEMA1_TYPES,
    ParsedManifest,
    parse_manifest,
)
from hamn.oci.names import MAX_NAME_LENGTH, validate_repository_name

#: Characters that matter to the grammars under test; an explicit alphabet also spares
#: hypothesis building its Unicode tables, which costs seconds on a fresh checkout.
_CHARS = "abcdef0123456789ghijxyzABCDEF:./+_-=@ \t\n\x00é"
_TEXT = st.text(alphabet=_CHARS, max_size=12)

_ALNUM = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=6)
_SEPARATOR = st.sampled_from([".", "_", "__", "-", "--", "---"])


@st.composite
def _components(draw: st.DrawFn) -> str:
    parts = [draw(_ALNUM)]
    for _ in range(draw(st.integers(0, 3))):
        parts += [draw(_SEPARATOR), draw(_ALNUM)]
    return "".join(parts)


_NAMES = st.lists(_components(), min_size=1, max_size=5).map("/".join)


@given(st.binary(max_size=512), st.sampled_from(sorted(ALGORITHMS)))
def test_digest_of_any_bytes_round_trips(data: bytes, algorithm: str) -> None:
    value = digest_bytes(data, algorithm)
    assert str(parse_digest(value)) == value


@given(st.text(alphabet=_CHARS, max_size=150))
def test_parse_digest_accepts_or_refuses_cleanly(value: str) -> None:
    try:
        parsed = parse_digest(value)
    except HamnError as exc:
        assert exc.code in (DIGEST_INVALID, UNSUPPORTED)
    else:
        assert parsed.algorithm in ALGORITHMS
        assert len(parsed.hex) == ALGORITHMS[parsed.algorithm]


@given(_NAMES)
def test_names_built_from_the_grammar_are_valid(name: str) -> None:
    if len(name) <= MAX_NAME_LENGTH:
        assert validate_repository_name(name) == name


@given(_NAMES, st.sampled_from(["A", " ", ":", "@", "//", "..", "___", "\t", "é"]))
def test_names_with_a_foreign_character_are_invalid(name: str, bad: str) -> None:
    try:
        validate_repository_name(f"{name}{bad}x")
    except HamnError as exc:
        assert exc.code is NAME_INVALID
    else:
        raise AssertionError(f"{name}{bad}x was accepted")


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | _TEXT
#: Any JSON value, for documents that need not look like manifests at all.
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(_TEXT, inner, max_size=3),
    max_leaves=10,
)
#: A wrong-typed field value: scalars and flat containers (deep ones find nothing more).
_WRONG = _SCALARS | st.lists(_SCALARS, max_size=2) | st.dictionaries(_TEXT, _SCALARS, max_size=2)


def _mostly(good: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Usually a well-formed value, sometimes a wrong-typed one: to reach the deeper checks."""
    # (one_of would flatten _WRONG's many branches and pick those most of the time.)
    return st.sampled_from([True, True, True, False]).flatmap(lambda ok: good if ok else _WRONG)


_DIGESTS = st.sampled_from(
    [digest_bytes(b"a"), digest_bytes(b"a", "sha512"), "sha256:abc", "md5:00", "", "x"]
)
_DESCRIPTOR_LIKE = st.fixed_dictionaries(
    {
        "mediaType": _mostly(st.sampled_from(["application/octet-stream", "x", ""])),
        "digest": _mostly(_DIGESTS),
        "size": _mostly(st.integers(-2, 10)),
    },
    optional={
        "urls": _mostly(st.lists(_TEXT, max_size=2)),
        "annotations": _mostly(st.dictionaries(_TEXT, _TEXT, max_size=2)),
        "platform": _WRONG,
        "artifactType": _WRONG,
    },
)
_DESCRIPTORS = _mostly(st.lists(_mostly(_DESCRIPTOR_LIKE), max_size=3))
_CONTENT_TYPES = st.none() | st.sampled_from(
    [*sorted(MANIFEST_TYPES | SCHEMA1_TYPES), "application/json", "", "x; y"]
)
_MANIFEST_LIKE = st.fixed_dictionaries(
    {"schemaVersion": _mostly(st.sampled_from([2, 2, 2, 1, "2", True]))},
    optional={
        "mediaType": _mostly(st.sampled_from(sorted(MANIFEST_TYPES | SCHEMA1_TYPES))),
        "config": _mostly(_DESCRIPTOR_LIKE),
        "layers": _DESCRIPTORS,
        "manifests": _DESCRIPTORS,
        "blobs": _DESCRIPTORS,
        "subject": _mostly(_DESCRIPTOR_LIKE),
        "artifactType": _mostly(_TEXT),
        "annotations": _mostly(st.dictionaries(_TEXT, _TEXT, max_size=2)),
    },
)


def _check_parse(body: bytes, content_type: str | None) -> None:
    try:
        m = parse_manifest(body, content_type)
    except HamnError as exc:
        assert exc.code is MANIFEST_INVALID
    else:
        assert isinstance(m, ParsedManifest)
        assert m.media_type in MANIFEST_TYPES
        if m.media_type in INDEX_TYPES:
            assert m.blobs == ()


@given(_MANIFEST_LIKE, _CONTENT_TYPES)
def test_manifest_like_documents_never_crash_the_parser(
    doc: object, content_type: str | None
) -> None:
    _check_parse(json.dumps(doc).encode(), content_type)


@given(_JSON, _CONTENT_TYPES)
def test_arbitrary_json_never_crashes_the_parser(doc: object, content_type: str | None) -> None:
    _check_parse(json.dumps(doc).encode(), content_type)


@given(st.binary(max_size=200), _CONTENT_TYPES)
def test_arbitrary_bytes_never_crash_the_parser(body: bytes, content_type: str | None) -> None:
    _check_parse(body, content_type)
