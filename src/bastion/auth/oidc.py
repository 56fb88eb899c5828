"""An OpenID Connect relying party: discovery, JWKS (with key rotation) and ID-token verification.

Order of checks on an ID token (``verify_id_token``), each failure a ``BadRequest`` with code
``sso_id_token_invalid`` and the reason in ``details``:
1. the header's ``alg`` is on the allow-list (never ``none``, never an HMAC with the client secret);
2. the signature verifies against the provider's JWKS, found by ``kid``; an unknown ``kid`` fetches
   the JWKS once more (the provider rotated its key) before failing;
3. ``iss`` equals the configured issuer, ``aud`` contains the client id (``azp`` too if several);
4. ``exp`` is in the future and ``iat`` neither in the future nor older than ``MAX_TOKEN_AGE``
   (60 s leeway for clocks);
5. ``nonce`` equals the one stored server-side for this login.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import httpx

if TYPE_CHECKING:  # joserfc loads when a sign-in first verifies a token, not with every server
    from joserfc.jwk import KeySet

from bastion.errors import BadRequest, Unavailable

LEEWAY_S = 60
MAX_TOKEN_AGE = timedelta(minutes=10)
SAFE_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)


@dataclass(frozen=True)
class OidcConfig:
    issuer: str
    client_id: str
    client_secret: str
    redirect_uri: str
    scopes: str = "openid email profile"
    algorithms: tuple[str, ...] = ("RS256", "ES256", "PS256")

    def __post_init__(self) -> None:
        bad = [a for a in self.algorithms if a not in SAFE_ALGORITHMS]
        if bad:
            raise ValueError(f"ID-token algorithms not allowed: {', '.join(bad)}")


def invalid_token(reason: str) -> BadRequest:
    return BadRequest(
        "the identity provider's ID token was rejected", code="sso_id_token_invalid", reason=reason
    )


class OidcProvider:
    """One configured provider; metadata and keys are fetched lazily and cached for the process."""

    def __init__(self, config: OidcConfig, *, http: httpx.Client | None = None) -> None:
        self.config = config
        self.http = http or httpx.Client(timeout=10.0, follow_redirects=False)
        self._lock = threading.Lock()
        self._metadata: dict[str, Any] | None = None
        self._keys: KeySet | None = None

    def close(self) -> None:
        self.http.close()

    def _get_json(self, url: str) -> dict[str, Any]:
        try:
            response = self.http.get(url)
            response.raise_for_status()
            body = response.json()
        except (httpx.HTTPError, ValueError):
            raise Unavailable(
                "the identity provider cannot be reached", code="sso_provider_unavailable"
            ) from None
        if not isinstance(body, dict):
            raise Unavailable("the identity provider answered nonsense", code="sso_provider_unavailable")
        return body

    def metadata(self) -> dict[str, Any]:
        """The discovery document; its ``issuer`` must be exactly the configured one (OIDC Discovery 4.3)."""
        with self._lock:
            if self._metadata is None:
                doc = self._get_json(self.config.issuer.rstrip("/") + "/.well-known/openid-configuration")
                if doc.get("issuer") != self.config.issuer:
                    raise Unavailable(
                        "discovery document names another issuer", code="sso_provider_unavailable"
                    )
                for field in ("authorization_endpoint", "token_endpoint", "jwks_uri"):
                    if not isinstance(doc.get(field), str):
                        raise Unavailable(
                            f"discovery document lacks {field}", code="sso_provider_unavailable"
                        )
                self._metadata = doc
            return self._metadata

    def keys(self, *, refresh: bool = False) -> KeySet:
        from joserfc.errors import JoseError
        from joserfc.jwk import KeySet

        jwks_uri = self.metadata()["jwks_uri"]
        with self._lock:
            # ID tokens only arrive over the back channel from the token endpoint, so an unknown kid
            # costs one fetch per login attempt, which the login rate limit already bounds.
            if self._keys is None or refresh:
                try:
                    self._keys = KeySet.import_key_set(self._get_json(jwks_uri))  # type: ignore[arg-type]
                except (JoseError, ValueError, TypeError):
                    raise Unavailable(
                        "the provider's JWKS is malformed", code="sso_provider_unavailable"
                    ) from None
            return self._keys

    def verify_id_token(self, raw: str, nonce: str) -> dict[str, Any]:
        """The ID token's claims, after every check in the module docstring."""
        from joserfc import jwt
        from joserfc.errors import InvalidKeyIdError, JoseError

        algorithms = list(self.config.algorithms)
        try:
            try:
                token = jwt.decode(raw, self.keys(), algorithms=algorithms)
            except InvalidKeyIdError:
                token = jwt.decode(raw, self.keys(refresh=True), algorithms=algorithms)
        except InvalidKeyIdError:
            raise invalid_token("unknown signing key") from None
        except JoseError as exc:
            raise invalid_token(exc.error or "bad signature") from None
        except (ValueError, TypeError):
            raise invalid_token("malformed token") from None
        return self._check_claims(token.claims, nonce)

    def _check_claims(self, claims: dict[str, Any], nonce: str) -> dict[str, Any]:
        now = time.time()
        if claims.get("iss") != self.config.issuer:
            raise invalid_token("issuer")
        aud = claims.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.config.client_id not in audiences:
            raise invalid_token("audience")
        if len(audiences) > 1 and claims.get("azp") != self.config.client_id:
            raise invalid_token("authorized party")
        exp, iat = claims.get("exp"), claims.get("iat")
        if not isinstance(exp, int | float) or exp <= now - LEEWAY_S:
            raise invalid_token("expired")
        if not isinstance(iat, int | float) or iat > now + LEEWAY_S:
            raise invalid_token("issued in the future")
        if iat < now - MAX_TOKEN_AGE.total_seconds() - LEEWAY_S:
            raise invalid_token("issued too long ago")
        if not isinstance(claims.get("nonce"), str) or claims["nonce"] != nonce:
            raise invalid_token("nonce")
        if not isinstance(claims.get("sub"), str) or not claims["sub"]:
            raise invalid_token("subject")
        return claims
