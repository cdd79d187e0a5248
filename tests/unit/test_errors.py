"""The error-code registry and HamnError (hamn.errors)."""

from __future__ import annotations

import re

import pytest

from hamn import errors
from hamn.errors import CODES, ErrorCode, HamnError

#: Every module-level ErrorCode constant, by its Python name.
CONSTANTS = {name: v for name, v in vars(errors).items() if isinstance(v, ErrorCode)}

#: The codes the OCI Distribution Spec v1.1 defines; a registry must use exactly these strings.
OCI_SPEC_CODES = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
}


def test_every_constant_is_the_registered_code() -> None:
    assert CONSTANTS
    for name, code in CONSTANTS.items():
        assert CODES[code.code] is code, name


def test_every_registered_code_has_a_constant() -> None:
    assert {c.code for c in CONSTANTS.values()} == set(CODES)


def test_no_code_string_is_registered_twice() -> None:
    strings = [c.code for c in CONSTANTS.values()]
    assert len(strings) == len(set(strings))
    assert all(key == code.code for key, code in CODES.items())


def test_registering_a_code_twice_fails_and_changes_nothing() -> None:
    before = dict(CODES)
    with pytest.raises(ValueError, match="BLOB_UNKNOWN"):
        errors._register("BLOB_UNKNOWN", "another message", 500)
    assert before == CODES
    assert CODES["BLOB_UNKNOWN"].status == 404


def test_error_codes_are_frozen() -> None:
    with pytest.raises(AttributeError):
        errors.BLOB_UNKNOWN.status = 500  # type: ignore[misc]


def test_oci_spec_codes_are_all_registered() -> None:
    assert set(CODES) >= OCI_SPEC_CODES


@pytest.mark.parametrize("code", sorted(CODES))
def test_code_strings_and_messages_are_well_formed(code: str) -> None:
    entry = CODES[code]
    assert re.fullmatch(r"[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*", code)
    assert entry.message and entry.message == entry.message.strip()
    assert not entry.message.endswith(".")  # messages are clauses the renderer may extend
    assert entry.message[0].islower()


@pytest.mark.parametrize("code", sorted(CODES))
def test_every_status_is_a_client_or_server_error(code: str) -> None:
    assert 400 <= CODES[code].status <= 599


_UNKNOWN_CODES = sorted(c for c in CODES if c.endswith("_UNKNOWN") or c == "NOT_FOUND")


@pytest.mark.parametrize("code", _UNKNOWN_CODES)
def test_unknown_things_are_404(code: str) -> None:
    # MANIFEST_BLOB_UNKNOWN describes the pushed manifest, not the URL: it is the exception.
    expected = 400 if code == "MANIFEST_BLOB_UNKNOWN" else 404
    assert CODES[code].status == expected


@pytest.mark.parametrize("code", sorted(c for c in CODES if "_INVALID" in c))
def test_invalid_input_is_a_4xx(code: str) -> None:
    # Plain 400, except a chunk out of order, for which the spec says 416.
    expected = 416 if code == "BLOB_UPLOAD_INVALID_RANGE" else 400
    assert CODES[code].status == expected


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("UNAUTHORIZED", 401),
        ("DENIED", 403),
        ("TOOMANYREQUESTS", 429),
        ("UNKNOWN", 500),
        ("UNAVAILABLE", 503),
        ("MANIFEST_TOO_LARGE", 413),
        ("BLOB_UPLOAD_BUSY", 409),
        ("QUOTA_EXCEEDED", 403),
        ("QUARANTINED", 403),
    ],
)
def test_statuses_with_a_fixed_meaning(code: str, status: int) -> None:
    assert CODES[code].status == status


def test_only_unknown_and_unavailable_are_server_errors() -> None:
    assert {c for c, e in CODES.items() if e.status >= 500} == {"UNKNOWN", "UNAVAILABLE"}


def test_hamn_error_defaults_to_the_code_message() -> None:
    err = HamnError(errors.BLOB_UNKNOWN)
    assert err.code is errors.BLOB_UNKNOWN
    assert err.message == str(err) == "blob unknown to registry"
    assert err.status == 404
    assert err.detail is None
    assert err.headers == {}


def test_hamn_error_with_message_detail_and_headers() -> None:
    err = HamnError(
        errors.TOOMANYREQUESTS,
        "slow down",
        detail={"retry": 5},
        headers={"Retry-After": "5"},
    )
    assert err.message == str(err) == "slow down"
    assert err.detail == {"retry": 5}
    assert err.headers == {"Retry-After": "5"}
    assert err.status == 429


def test_hamn_errors_do_not_share_header_dicts() -> None:
    a, b = HamnError(errors.UNKNOWN), HamnError(errors.UNKNOWN)
    a.headers["X"] = "1"
    assert b.headers == {}


def test_hamn_error_is_an_exception() -> None:
    with pytest.raises(HamnError) as exc:
        raise HamnError(errors.DENIED)
    assert exc.value.status == 403
