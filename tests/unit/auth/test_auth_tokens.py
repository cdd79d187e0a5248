"""Registry bearer tokens: issue, verify, refuse, rotate keys (hamn.auth.tokens)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hamn.auth.scopes import CATALOG_SCOPE, parse_scope
from hamn.auth.tokens import (
    ACCESS_TOKEN_LIFETIME,
    LEEWAY,
    REFRESH_TOKEN_LIFETIME,
    GrantType,
    KeyRing,
    SigningKey,
    TokenError,
    TokenRejection,
    VerificationKey,
    issue,
    key_id,
    new_signing_key,
    verify,
)
from hamn.errors import UNAUTHORIZED

NOW = datetime(2026, 5, 1, 12, 0, 0, tzinfo=UTC)
ISSUER = "hamn"
SERVICE = "myregistry1.hamn.example"
KEY = new_signing_key()
RING = KeyRing(KEY)
ACCESS = (parse_scope("repository:team/app:pull,push"), CATALOG_SCOPE)


def _access_token(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "key": KEY,
        "issuer": ISSUER,
        "audience": SERVICE,
        "subject": "user-1",
        "registry": "myRegistry1",
        "grant_type": GrantType.ACCESS,
        "authz_version": 7,
        "now": NOW,
        "access": ACCESS,
    }
    fields.update(overrides)
    return issue(**fields)


def _verify(token: str, **overrides: Any) -> Any:
    fields: dict[str, Any] = {
        "audience": SERVICE,
        "issuer": ISSUER,
        "grant_type": GrantType.ACCESS,
        "now": NOW,
    }
    fields.update(overrides)
    keyring = fields.pop("keyring", RING)
    return verify(token, keyring, **fields)


def _rejected(token: str, reason: TokenRejection, **overrides: Any) -> None:
    with pytest.raises(TokenError) as err:
        _verify(token, **overrides)
    assert err.value.reason is reason
    assert err.value.code is UNAUTHORIZED
    # The client never learns which check failed.
    assert err.value.message == "the bearer token is invalid or has expired"
    assert str(err.value) == err.value.message


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unb64(text: str) -> Any:
    return json.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))


def _parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    header, payload, _ = token.split(".")
    return _unb64(header), _unb64(payload)


def _hand_made(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    return f"{signing_input}.{_b64(signature)}"


def _signed(payload: dict[str, Any], key: SigningKey = KEY) -> str:
    return jwt.encode(payload, key.private_key, algorithm="EdDSA", headers={"kid": key.kid})


# -- round trips ------------------------------------------------------------------


def test_access_token_round_trip() -> None:
    token = _access_token()
    claims = _verify(token, registry="MYREGISTRY1")
    assert claims.issuer == ISSUER
    assert claims.audience == SERVICE
    assert claims.subject == "user-1"
    assert claims.registry == "myRegistry1"
    assert claims.grant_type is GrantType.ACCESS
    assert claims.access == ACCESS
    assert claims.authz_version == 7
    assert claims.issued_at == claims.not_before == NOW
    assert claims.expires_at == NOW + ACCESS_TOKEN_LIFETIME
    assert claims.lifetime == timedelta(minutes=5)
    assert claims.key_id == KEY.kid
    assert claims.jti


def test_claims_on_the_wire() -> None:
    header, payload = _parts(_access_token(jti="fixed"))
    assert header == {"alg": "EdDSA", "kid": KEY.kid, "typ": "JWT"}
    assert payload == {
        "iss": ISSUER,
        "sub": "user-1",
        "aud": SERVICE,
        "exp": int(NOW.timestamp()) + 300,
        "nbf": int(NOW.timestamp()),
        "iat": int(NOW.timestamp()),
        "jti": "fixed",
        "grant_type": "access_token",
        "registry": "myRegistry1",
        "authz_version": 7,
        "access": [
            {"type": "repository", "name": "team/app", "actions": ["pull", "push"]},
            {"type": "registry", "name": "catalog", "actions": ["*"]},
        ],
    }


def test_refresh_token_round_trip() -> None:
    token = _access_token(grant_type=GrantType.REFRESH, access=())
    claims = _verify(token, grant_type=GrantType.REFRESH)
    assert claims.grant_type is GrantType.REFRESH
    assert claims.access == ()
    assert claims.lifetime == REFRESH_TOKEN_LIFETIME == timedelta(hours=3)
    assert "access" not in _parts(token)[1]


def test_jti_is_unique() -> None:
    assert len({_verify(_access_token()).jti for _ in range(20)}) == 20


def test_issue_refuses_bad_requests() -> None:
    with pytest.raises(ValueError, match="60 seconds"):
        _access_token(lifetime=timedelta(seconds=59))
    _access_token(lifetime=timedelta(seconds=60))
    with pytest.raises(ValueError, match="no access"):
        _access_token(grant_type=GrantType.REFRESH)
    with pytest.raises(ValueError, match="positive"):
        _access_token(grant_type=GrantType.REFRESH, access=(), lifetime=timedelta(0))
    with pytest.raises(ValueError, match="timezone"):
        _access_token(now=datetime(2026, 5, 1, 12, 0, 0))
    with pytest.raises(ValueError, match="required"):
        _access_token(subject="")


# -- refusals ----------------------------------------------------------------------


def test_forged_signature() -> None:
    header, payload = _parts(_access_token())
    payload["access"] = [{"type": "repository", "name": "team/app", "actions": ["*"]}]
    original_signature = _access_token().split(".")[2]
    forged = _hand_made(header, payload) + original_signature
    _rejected(forged, TokenRejection.SIGNATURE)


def test_another_key_claiming_our_kid() -> None:
    impostor = SigningKey(KEY.kid, new_signing_key().private_key)
    token = _access_token(key=impostor)
    _rejected(token, TokenRejection.SIGNATURE)


def test_signature_bytes_flipped() -> None:
    token = _access_token()
    head, payload, signature = token.split(".")
    flipped = ("A" if signature[0] != "A" else "B") + signature[1:]
    _rejected(f"{head}.{payload}.{flipped}", TokenRejection.SIGNATURE)


@pytest.mark.parametrize("alg", ["none", "None", "NONE", ""])
def test_alg_none(alg: str) -> None:
    _, payload = _parts(_access_token())
    _rejected(
        _hand_made({"alg": alg, "kid": KEY.kid, "typ": "JWT"}, payload), TokenRejection.ALGORITHM
    )


def test_hs256_with_the_public_key_as_secret() -> None:
    _, payload = _parts(_access_token())
    header = {"alg": "HS256", "kid": KEY.kid, "typ": "JWT"}
    signing_input = f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(payload).encode())}"
    for secret in (
        RING.current.verification_key().to_pem(),
        RING.current.verification_key().to_pem().strip(),
    ):
        mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
        _rejected(f"{signing_input}.{_b64(mac)}", TokenRejection.ALGORITHM)


@pytest.mark.parametrize("alg", ["RS256", "ES256", "PS256", "HS512", "ES256K", "Ed25519"])
def test_other_algorithms(alg: str) -> None:
    _, payload = _parts(_access_token())
    _rejected(
        _hand_made({"alg": alg, "kid": KEY.kid}, payload, b"x" * 64), TokenRejection.ALGORITHM
    )


def test_expired() -> None:
    token = _access_token()
    expiry = NOW + ACCESS_TOKEN_LIFETIME
    _verify(token, now=expiry)  # still inside the leeway
    _verify(token, now=expiry + LEEWAY - timedelta(seconds=1))
    _rejected(token, TokenRejection.EXPIRED, now=expiry + LEEWAY)
    _rejected(token, TokenRejection.EXPIRED, now=expiry + timedelta(days=1))


def test_not_yet_valid() -> None:
    token = _access_token(now=NOW + timedelta(minutes=2))
    _verify(token, now=NOW + timedelta(minutes=2) - LEEWAY)  # within the clock skew
    _rejected(token, TokenRejection.NOT_YET_VALID, now=NOW)


def test_nbf_in_the_future_with_a_good_iat() -> None:
    _, payload = _parts(_access_token())
    payload["nbf"] = payload["iat"] + 3600
    _rejected(_signed(payload), TokenRejection.NOT_YET_VALID)


@pytest.mark.parametrize(
    "audience", ["otherregistry.hamn.example", "MYREGISTRY1.hamn.example", "", "hamn"]
)
def test_wrong_audience(audience: str) -> None:
    _rejected(_access_token(), TokenRejection.AUDIENCE, audience=audience)


def test_audience_as_a_list_is_refused() -> None:
    _, payload = _parts(_access_token())
    payload["aud"] = [SERVICE, "other"]
    _rejected(_signed(payload), TokenRejection.AUDIENCE)


def test_token_for_another_registry_behind_the_same_service() -> None:
    _rejected(_access_token(), TokenRejection.AUDIENCE, registry="otherregistry")


def test_wrong_issuer() -> None:
    _rejected(_access_token(issuer="someone-else"), TokenRejection.ISSUER)
    _rejected(_access_token(), TokenRejection.ISSUER, issuer="Hamn")


def test_grant_type_must_fit_its_use() -> None:
    refresh = _access_token(grant_type=GrantType.REFRESH, access=())
    _rejected(refresh, TokenRejection.GRANT_TYPE)  # a refresh token is no access token
    _rejected(_access_token(), TokenRejection.GRANT_TYPE, grant_type=GrantType.REFRESH)


def test_unknown_kid() -> None:
    other = new_signing_key()
    _rejected(_access_token(key=other), TokenRejection.UNKNOWN_KEY)
    _, payload = _parts(_access_token())
    no_kid = jwt.encode(payload, KEY.private_key, algorithm="EdDSA")
    _rejected(no_kid, TokenRejection.UNKNOWN_KEY)
    # PyJWT itself refuses a kid that is not a string while reading the header.
    numeric_kid = _hand_made({"alg": "EdDSA", "kid": 1}, payload, b"x" * 64)
    _rejected(numeric_kid, TokenRejection.MALFORMED)


@pytest.mark.parametrize(
    "token",
    ["", "abc", "a.b", "a.b.c", "a.b.c.d", "...", "x" * 20_000, "eyJhbGciOiJFZERTQSJ9.e30"],
)
def test_malformed(token: str) -> None:
    _rejected(token, TokenRejection.MALFORMED)


def test_payload_that_is_not_an_object() -> None:
    raw = jwt.PyJWS().encode(
        b"[1, 2]", KEY.private_key, algorithm="EdDSA", headers={"kid": KEY.kid}
    )
    _rejected(raw, TokenRejection.MALFORMED)
    raw = jwt.PyJWS().encode(
        b"not json", KEY.private_key, algorithm="EdDSA", headers={"kid": KEY.kid}
    )
    _rejected(raw, TokenRejection.MALFORMED)


@pytest.mark.parametrize(
    "change",
    [
        {"exp": None},
        {"exp": "1999999999"},
        {"nbf": None},
        {"iat": 1.5},
        {"authz_version": True},
        {"authz_version": None},
        {"sub": ""},
        {"sub": None},
        {"jti": 5},
        {"registry": None},
        {"access": None},
        {"access": "repository:a:pull"},
        {"access": [{"type": "repository", "name": "a", "actions": ["PULL"]}]},
        {"exp": 10**20},
    ],
)
def test_missing_or_mistyped_claims(change: dict[str, Any]) -> None:
    _, payload = _parts(_access_token())
    for name, value in change.items():
        if value is None:
            del payload[name]
        else:
            payload[name] = value
    _rejected(_signed(payload), TokenRejection.CLAIMS)


def test_refresh_token_with_access_is_refused() -> None:
    _, payload = _parts(_access_token(grant_type=GrantType.REFRESH, access=()))
    payload["access"] = [{"type": "repository", "name": "a", "actions": ["pull"]}]
    _rejected(_signed(payload), TokenRejection.CLAIMS, grant_type=GrantType.REFRESH)


def test_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone"):
        _verify(_access_token(), now=datetime(2026, 5, 1))


# -- keys and rotation ---------------------------------------------------------------


def test_key_rotation_keeps_old_tokens_within_the_overlap() -> None:
    old = new_signing_key()
    ring = KeyRing(old)
    token = _access_token(key=old, lifetime=timedelta(hours=2))
    rotated = ring.rotate(new_signing_key(), NOW, overlap=timedelta(hours=1))
    assert rotated.current.kid != old.kid
    _verify(token, keyring=rotated, now=NOW + timedelta(minutes=59))
    _verify(token, keyring=rotated, now=NOW + timedelta(hours=1))
    _rejected(
        token,
        TokenRejection.UNKNOWN_KEY,
        keyring=rotated,
        now=NOW + timedelta(hours=1, seconds=1),
    )
    # New tokens are signed with the new key and verify.
    fresh = _access_token(key=rotated.current)
    assert _verify(fresh, keyring=rotated).key_id == rotated.current.kid


def test_rotation_drops_keys_whose_time_is_up() -> None:
    first, second, third = new_signing_key(), new_signing_key(), new_signing_key()
    ring = KeyRing(first).rotate(second, NOW, overlap=timedelta(hours=1))
    ring = ring.rotate(third, NOW + timedelta(hours=2), overlap=timedelta(hours=1))
    assert [k.kid for k in ring.previous] == [second.kid]
    assert ring.verification_key(first.kid, NOW + timedelta(hours=2)) is None
    assert ring.verification_key(second.kid, NOW + timedelta(hours=2)) is not None
    assert ring.pruned(NOW + timedelta(hours=4)).previous == ()
    assert ring.pruned(NOW + timedelta(hours=2)).previous == ring.previous


def test_default_overlap_outlives_refresh_tokens() -> None:
    old = new_signing_key()
    refresh = _access_token(key=old, grant_type=GrantType.REFRESH, access=())
    ring = KeyRing(old).rotate(new_signing_key(), NOW)
    _verify(refresh, keyring=ring, grant_type=GrantType.REFRESH, now=NOW + REFRESH_TOKEN_LIFETIME)


def test_pem_round_trips() -> None:
    key = new_signing_key()
    loaded = SigningKey.from_pem(key.to_pem())
    assert loaded.kid == key.kid
    assert SigningKey.from_pem(key.to_pem().decode()).kid == key.kid
    token = _access_token(key=loaded)
    public = VerificationKey.from_pem(key.verification_key().to_pem().decode(), NOW)
    assert public.kid == key.kid
    assert public.verifies_until == NOW
    ring = KeyRing(new_signing_key(), (public,))
    _verify(token, keyring=ring, now=NOW)
    assert key.to_pem().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public.to_pem().startswith(b"-----BEGIN PUBLIC KEY-----")


def test_pem_of_other_key_types_is_refused() -> None:
    from cryptography.hazmat.primitives import serialization

    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ec_key = ec.generate_private_key(ec.SECP256R1())
    for private in (rsa_key, ec_key):
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(ValueError, match="Ed25519"):
            SigningKey.from_pem(pem)
        public_pem = private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        with pytest.raises(ValueError, match="Ed25519"):
            VerificationKey.from_pem(public_pem)
    with pytest.raises(ValueError):
        SigningKey.from_pem(b"not a pem")


def test_key_id_is_the_rfc7638_thumbprint() -> None:
    # RFC 8037 appendix A.3: the thumbprint of its example Ed25519 key.
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    x = base64.urlsafe_b64decode("11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo=")
    assert (
        key_id(Ed25519PublicKey.from_public_bytes(x))
        == "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k"
    )
