"""Access-code KDF: deterministic, salted, parameterised, and strict about what it reads back."""

from __future__ import annotations

import pytest

from bastion.crypto import kdf
from bastion.errors import CryptoError, Invalid

SCRYPT_FAST = kdf.KdfParams("scrypt", n=16, r=1, p=1)


@pytest.mark.parametrize("params", [kdf.FAST_TEST_PARAMS, SCRYPT_FAST], ids=["argon2id", "scrypt"])
def test_derivation_is_deterministic_and_depends_on_code_and_salt(params: kdf.KdfParams) -> None:
    salt, other_salt = kdf.new_salt(), kdf.new_salt()
    key = kdf.derive_key("open sesame", salt, params)
    assert len(key) == 32
    assert key == kdf.derive_key("open sesame", salt, params)
    assert key != kdf.derive_key("open sesame!", salt, params)
    assert key != kdf.derive_key("open sesame", other_salt, params)


def test_algorithms_give_different_keys() -> None:
    salt = kdf.new_salt()
    assert kdf.derive_key("c", salt, kdf.FAST_TEST_PARAMS) != kdf.derive_key("c", salt, SCRYPT_FAST)


def test_unicode_codes_are_normalised() -> None:
    salt = kdf.new_salt()
    composed, decomposed = "caf\u00e9", "cafe\u0301"
    assert kdf.derive_key(composed, salt, kdf.FAST_TEST_PARAMS) == kdf.derive_key(
        decomposed, salt, kdf.FAST_TEST_PARAMS
    )


@pytest.mark.parametrize("code", ["", b"", "x" * 2000])
def test_empty_or_huge_codes_are_invalid(code: str | bytes) -> None:
    with pytest.raises(Invalid):
        kdf.derive_key(code, kdf.new_salt(), kdf.FAST_TEST_PARAMS)


def test_params_round_trip_and_strict_parsing() -> None:
    for params in (kdf.DEFAULT_PARAMS, kdf.FAST_TEST_PARAMS, SCRYPT_FAST):
        assert kdf.KdfParams.from_dict(params.to_dict()) == params
    bad = [
        {"alg": "argon2id", "t": 1, "m": 8},
        {"alg": "argon2id", "t": 1, "m": 8, "p": 1, "x": 1},
        {"alg": "md5"},
        {"alg": "scrypt", "n": 15, "r": 1, "p": 1},
        {"alg": "scrypt", "n": 2**22, "r": 32, "p": 1},
        {"alg": "argon2id", "t": 0, "m": 8, "p": 1},
        {"alg": "argon2id", "t": True, "m": 8, "p": 1},
        "argon2id",
        None,
    ]
    for doc in bad:
        with pytest.raises(CryptoError):
            kdf.KdfParams.from_dict(doc)


def test_default_is_memory_hard() -> None:
    assert kdf.DEFAULT_PARAMS.algorithm == "argon2id"
    assert kdf.DEFAULT_PARAMS.memory_kib >= 19 * 1024
