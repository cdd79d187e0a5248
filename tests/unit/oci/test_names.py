"""Repository names, tags and registry names (hamn.oci.names)."""

from __future__ import annotations

import pytest

from hamn.errors import NAME_INVALID, TAG_INVALID, HamnError
from hamn.oci.names import (
    MAX_NAME_LENGTH,
    is_valid_registry_name,
    validate_repository_name,
    validate_tag,
)


@pytest.mark.parametrize(
    "name",
    [
        "a",
        "0",
        "ubuntu",
        "library/ubuntu",
        "a/b/c/d/e",
        "my-app",
        "my--app",
        "my_app",
        "my__app",
        "my.app",
        "a.b_c__d-e---f",
        "team1/project.v2/app-3",
        "a" * MAX_NAME_LENGTH,
        "/".join(["ab"] * 85),  # 254 characters
    ],
)
def test_valid_repository_names(name: str) -> None:
    assert validate_repository_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "Ubuntu",
        "library/Ubuntu",
        "a//b",
        "/a",
        "a/",
        "a..b",
        "a___b",  # one or two underscores separate, three do not
        "a_-b",
        "-a",
        "a-",
        ".a",
        "a.",
        "_a",
        "a b",
        "a:b",
        "a@b",
        "a/../b",
        "..",
        "a/./b",
        "ünïcode",
        "a\tb",
    ],
)
def test_invalid_repository_names(name: str) -> None:
    with pytest.raises(HamnError) as exc:
        validate_repository_name(name)
    assert exc.value.code is NAME_INVALID
    assert exc.value.status == 400
    assert exc.value.detail == {"name": name}


def test_repository_name_length_limit() -> None:
    name = "a" * (MAX_NAME_LENGTH + 1)
    with pytest.raises(HamnError) as exc:
        validate_repository_name(name)
    assert exc.value.code is NAME_INVALID
    assert str(MAX_NAME_LENGTH) in exc.value.message


def test_repository_name_detail_is_truncated() -> None:
    with pytest.raises(HamnError) as exc:
        validate_repository_name("A" * 1000)
    assert exc.value.detail == {"name": "A" * 300}


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_repository_name_with_trailing_newline_is_invalid(newline: str) -> None:
    # ``$`` in a Python regex also matches before a final "\n": the name must be the whole string.
    with pytest.raises(HamnError) as exc:
        validate_repository_name(f"library/ubuntu{newline}")
    assert exc.value.code is NAME_INVALID


@pytest.mark.parametrize(
    "tag",
    ["latest", "v1", "v1.0.0", "1.0", "_private", "A", "a-b.c_d", "RC-1", "x" * 128, "0" * 128],
)
def test_valid_tags(tag: str) -> None:
    assert validate_tag(tag) == tag


@pytest.mark.parametrize(
    "tag",
    ["", ".hidden", "-flag", "x" * 129, "a/b", "a:b", "a@b", "a b", "a+b", "ü", "sha256:abc"],
)
def test_invalid_tags(tag: str) -> None:
    with pytest.raises(HamnError) as exc:
        validate_tag(tag)
    assert exc.value.code is TAG_INVALID
    assert exc.value.status == 400
    assert exc.value.detail == {"tag": tag}


def test_tag_with_trailing_newline_is_invalid() -> None:
    # A tag such as "latest\n" reaches validate_tag from a URL ending in %0A.
    with pytest.raises(HamnError) as exc:
        validate_tag("latest\n")
    assert exc.value.code is TAG_INVALID


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("local", True),
        ("MyRegistry1", True),
        ("abcde", True),
        ("a" * 50, True),
        ("12345", True),
        ("abcd", False),
        ("a" * 51, False),
        ("my-registry", False),
        ("my_registry", False),
        ("my.registry", False),
        ("", False),
        ("régistry", False),
        ("local\n", False),
    ],
)
def test_registry_names(name: str, valid: bool) -> None:
    assert is_valid_registry_name(name) is valid
