"""The HTTP edge of authentication, without a server: the failure limiter and parsing."""

from __future__ import annotations

import base64

import pytest

from hamn.errors import TOOMANYREQUESTS, HamnError
from hamn.http.auth import FailureLimiter, _decode_basic


class Ticks:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_limiter_refuses_past_the_per_user_limit_with_retry_after() -> None:
    clock = Ticks()
    limiter = FailureLimiter(per_user=3, per_address=100, window=60, clock=clock)
    for _ in range(3):
        limiter.check("10.0.0.1", "alice")
        limiter.failed("10.0.0.1", "alice")
        clock.now += 1
    with pytest.raises(HamnError) as caught:
        limiter.check("10.0.0.1", "ALICE")  # usernames compare case-insensitively
    assert caught.value.code is TOOMANYREQUESTS
    assert caught.value.headers["Retry-After"] == "57"
    # The same user from elsewhere, and another user from here, are not locked out.
    limiter.check("10.0.0.2", "alice")
    limiter.check("10.0.0.1", "bob")
    # The window slides: the first failure ages out.
    clock.now += 58
    limiter.check("10.0.0.1", "alice")


def test_limiter_refuses_an_address_guessing_many_users() -> None:
    clock = Ticks()
    limiter = FailureLimiter(per_user=100, per_address=5, window=60, clock=clock)
    for i in range(5):
        limiter.failed("10.0.0.9", f"user{i}")
    with pytest.raises(HamnError):
        limiter.check("10.0.0.9", "someone-new")
    limiter.check("10.0.0.8", "someone-new")


def test_limiter_memory_is_bounded() -> None:
    limiter = FailureLimiter(per_user=1, per_address=1, max_keys=10)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}", "x")
    assert len(limiter._failures) <= 10


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
