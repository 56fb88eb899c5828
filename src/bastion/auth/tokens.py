"""JWT access and refresh tokens: HS256 only, every registered claim required and checked."""

from __future__ import annotations

import hashlib
import hmac
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

import jwt

from bastion.errors import Unauthorized

ALGORITHMS = ["HS256"]
TokenType = Literal["access", "refresh"]
_REQUIRED = ["exp", "iat", "nbf", "iss", "aud", "sub", "jti", "typ", "sid"]


@dataclass(frozen=True)
class TokenClaims:
    subject: str
    session_id: str
    jti: str
    type: TokenType
    expires_at: datetime


class TokenService:
    def __init__(
        self, secret: bytes, *, issuer: str, audience: str, access_ttl: timedelta, refresh_ttl: timedelta
    ) -> None:
        self._secret = secret
        # Keys the hash of unknown usernames in the audit log (bastion.auth.service.unknown_username).
        self.audit_key = hmac.new(secret, b"bastion-audit-unknown-usernames-v1", hashlib.sha256).digest()
        self.issuer = issuer
        self.audience = audience
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl

    def issue(self, subject: str, session_id: str, token_type: TokenType, jti: str | None = None) -> str:
        # The system clock, not bastion.clock: PyJWT checks exp/nbf against it, so a token minted at
        # an injected time would be refused by verify().
        now = datetime.now(UTC)
        ttl = self.access_ttl if token_type == "access" else self.refresh_ttl
        claims: dict[str, Any] = {
            "sub": subject,
            "sid": session_id,
            "jti": jti or str(uuid.uuid4()),
            "typ": token_type,
            "iss": self.issuer,
            "aud": self.audience,
            "iat": now,
            "nbf": now,
            "exp": now + ttl,
        }
        header = {"typ": "at+jwt" if token_type == "access" else "rt+jwt"}
        return jwt.encode(claims, self._secret, algorithm="HS256", headers=header)

    def verify(self, token: str, expected: TokenType) -> TokenClaims:
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=ALGORITHMS,
                audience=self.audience,
                issuer=self.issuer,
                options={"require": _REQUIRED},
                leeway=5,
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("token expired", code="token_expired") from exc
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid token", code="invalid_token") from exc
        if claims.get("typ") != expected:
            raise Unauthorized(f"a {claims.get('typ')} token cannot be used here", code="wrong_token_type")
        return TokenClaims(
            subject=str(claims["sub"]),
            session_id=str(claims["sid"]),
            jti=str(claims["jti"]),
            type=expected,
            expires_at=datetime.fromtimestamp(int(claims["exp"]), UTC).replace(tzinfo=None),
        )
