"""API key format, password hashing and JWT validation, independent of HTTP."""

from __future__ import annotations

from datetime import timedelta

import jwt
import pytest

from bastion.auth import apikeys
from bastion.auth.passwords import hash_password, verify_password
from bastion.auth.tokens import TokenService
from bastion.errors import Invalid, Unauthorized

SECRET = b"s" * 48


def tokens(**kw: object) -> TokenService:
    args: dict[str, object] = {
        "issuer": "bastion",
        "audience": "bastion-api",
        "access_ttl": timedelta(minutes=5),
        "refresh_ttl": timedelta(days=1),
    }
    args.update(kw)
    return TokenService(SECRET, **args)  # type: ignore[arg-type]


def test_api_keys_are_prefixed_unique_and_checksummed() -> None:
    keys = {apikeys.generate() for _ in range(200)}
    assert len(keys) == 200
    for key in keys:
        assert key.startswith("bst_") and apikeys.well_formed(key)
    key = next(iter(keys))
    flipped = key[:10] + ("A" if key[10] != "A" else "B") + key[11:]
    assert not apikeys.well_formed(flipped), "a one-character typo must fail the checksum"
    assert not apikeys.well_formed(key[:-1])
    assert not apikeys.well_formed("dmk_" + key[4:])


def test_only_a_hash_of_the_key_is_kept() -> None:
    key = apikeys.generate()
    assert key not in apikeys.digest(key) and len(apikeys.digest(key)) == 64
    assert apikeys.display_prefix(key) != key and key.startswith(apikeys.display_prefix(key))


def test_passwords_use_argon2id_and_verify() -> None:
    stored = hash_password("correct horse battery")
    assert stored.startswith("$argon2id$")
    assert verify_password(stored, "correct horse battery")
    assert not verify_password(stored, "wrong horse battery")
    assert not verify_password(None, "anything at all")
    with pytest.raises(Invalid):
        hash_password("short")


def test_access_token_round_trip() -> None:
    svc = tokens()
    claims = svc.verify(svc.issue("user-1", "sess-1", "access"), "access")
    assert (claims.subject, claims.session_id, claims.type) == ("user-1", "sess-1", "access")
    assert jwt.get_unverified_header(svc.issue("u", "s", "access"))["typ"] == "at+jwt"


def test_refresh_token_cannot_be_used_as_access_token() -> None:
    svc = tokens()
    with pytest.raises(Unauthorized) as err:
        svc.verify(svc.issue("u", "s", "refresh"), "access")
    assert err.value.code == "wrong_token_type"


def test_tampered_token_is_rejected() -> None:
    svc = tokens()
    token = svc.issue("u", "s", "access")
    header, payload, sig = token.split(".")
    forged = jwt.encode(
        {**jwt.decode(token, options={"verify_signature": False}), "sub": "admin"},
        b"x" * 48,
        algorithm="HS256",
    )
    for bad in (f"{header}.{payload}.{sig[:-2]}AA", f"{header}.{forged.split('.')[1]}.{sig}", forged):
        with pytest.raises(Unauthorized):
            svc.verify(bad, "access")


def test_alg_none_is_rejected() -> None:
    svc = tokens()
    claims = jwt.decode(svc.issue("u", "s", "access"), options={"verify_signature": False})
    unsigned = jwt.encode(claims, key=None, algorithm="none")
    with pytest.raises(Unauthorized):
        svc.verify(unsigned, "access")


def test_wrong_audience_and_issuer_are_rejected() -> None:
    for other in (tokens(audience="someone-else"), tokens(issuer="evil")):
        with pytest.raises(Unauthorized):
            tokens().verify(other.issue("u", "s", "access"), "access")


def test_expired_token_is_rejected() -> None:
    svc = tokens(access_ttl=timedelta(seconds=-60))
    with pytest.raises(Unauthorized) as err:
        svc.verify(svc.issue("u", "s", "access"), "access")
    assert err.value.code == "token_expired"


def test_missing_claims_are_rejected() -> None:
    token = jwt.encode({"sub": "u", "typ": "access"}, SECRET, algorithm="HS256")
    with pytest.raises(Unauthorized):
        tokens().verify(token, "access")
