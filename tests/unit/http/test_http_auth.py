"""The HTTP edge of authentication, without a server: parsing Basic credentials.

The limit on failed sign-ins is tested on both databases in
tests/contract/test_shared_coordination.py and over HTTP in tests/api/test_auth.py."""

from __future__ import annotations

import base64

import pytest

from hamn.http.auth import _decode_basic


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (base64.b64encode(b"user:pass").decode(), ("user", "pass")),
        (base64.b64encode(b"user:pa:ss").decode(), ("user", "pa:ss")),
        (base64.b64encode(b"user:").decode(), ("user", "")),
        (base64.b64encode(b"no-colon").decode(), None),
        ("!!not base64!!", None),
        (base64.b64encode(b"\xff\xfe:x").decode(), None),
    ],
)
def test_basic_credentials_are_decoded_strictly(header: str, expected: object) -> None:
    assert _decode_basic(header) == expected
