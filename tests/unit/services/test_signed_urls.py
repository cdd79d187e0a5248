"""hamn's own blob URL signatures: what they cover, their expiry, key rotation."""

from __future__ import annotations

import dataclasses

import pytest

from hamn.logs import redact_query
from hamn.services.signed_urls import BlobGrant, UrlSigner, url_signing_key

SERVER_KEY = bytes(range(32))
GRANT = BlobGrant("local", "team/app", "sha256:" + "ab" * 32, 1_800_000_000)


def test_a_signature_covers_every_part_of_the_grant() -> None:
    signer = UrlSigner(url_signing_key(SERVER_KEY))
    sig = signer.sign(GRANT)
    assert signer.valid(GRANT, sig)
    for change in (
        {"registry": "other"},
        {"repository": "team/app2"},
        {"digest": "sha256:" + "cd" * 32},
        {"expires": GRANT.expires + 1},
    ):
        assert not signer.valid(dataclasses.replace(GRANT, **change), sig), change


def test_fields_cannot_be_shifted_into_one_another() -> None:
    signer = UrlSigner(url_signing_key(SERVER_KEY))
    grant = BlobGrant("local", "team\napp", GRANT.digest, GRANT.expires)
    shifted = BlobGrant("local\nteam", "app", GRANT.digest, GRANT.expires)
    assert shifted.message() != grant.message()
    assert not signer.valid(shifted, signer.sign(grant))


@pytest.mark.parametrize("bad", ["", "x", "é" * 43, "A" * 43, "not base64 at all!"])
def test_anything_but_the_signature_is_refused(bad: str) -> None:
    assert not UrlSigner(url_signing_key(SERVER_KEY)).valid(GRANT, bad)


def test_the_url_key_is_not_the_server_key_and_depends_on_it() -> None:
    key = url_signing_key(SERVER_KEY)
    assert key != SERVER_KEY and len(key) == 32
    assert url_signing_key(bytes(32)) != key
    other = UrlSigner(url_signing_key(bytes(32)))
    assert not other.valid(GRANT, UrlSigner(key).sign(GRANT))


def test_the_signature_is_redacted_from_logged_queries() -> None:
    sig = UrlSigner(url_signing_key(SERVER_KEY)).sign(GRANT)
    logged = redact_query(f"registry=local&se=1&sig={sig}&X-Amz-Signature=abc123")
    assert sig not in logged and "abc123" not in logged and "registry=local" in logged
