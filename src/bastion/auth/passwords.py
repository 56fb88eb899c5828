"""argon2id password hashing (OWASP-recommended parameters via argon2-cffi's defaults)."""

from __future__ import annotations

from functools import lru_cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from bastion.errors import Invalid

MIN_PASSWORD_CHARS = 12
# A fixed hash to verify against when the account does not exist, so timing does not reveal it.
_DUMMY = "$argon2id$v=19$m=65536,t=3,p=4$c29tZXNhbHRzb21lc2FsdA$AXmwvIK3vlnn8ZfeGhQwLo7+9y3nYtPtHnVmJ2SXc5k"


@lru_cache(maxsize=1)
def _hasher() -> PasswordHasher:
    return PasswordHasher()


def check_strength(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise Invalid(f"password must be at least {MIN_PASSWORD_CHARS} characters", code="weak_password")


def hash_password(password: str) -> str:
    check_strength(password)
    return _hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    try:
        return _hasher().verify(stored_hash or _DUMMY, password) and stored_hash is not None
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
