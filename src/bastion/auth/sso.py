"""Single sign-on logins: server-side state, nonce and PKCE; linking by (issuer, subject); hand-offs.

A login is one ``SsoFlow`` row: ``begin`` stores the state (as a digest), nonce and PKCE verifier and
gives back the provider's authorization URL; ``complete`` (the callback) consumes the state once,
exchanges the code with authlib, verifies the ID token (``bastion.auth.oidc``), finds the account by
(issuer, subject) only, and leaves a short-lived one-time hand-off on the row: a code the browser
redeems (``redeem``) or, for the CLI, the poll secret it already holds (``poll``). Either way the
result is an ordinary Bastion session from ``AuthService.login_sso``.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # authlib loads at the first sign-in, not with every server
    from authlib.integrations.httpx_client import OAuth2Client
from sqlalchemy import delete, select
from sqlalchemy.orm import Session

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.oidc import OidcProvider
from bastion.auth.roles import Role
from bastion.auth.service import AuthService, TokenPair
from bastion.errors import BadRequest, Conflict, Forbidden
from bastion.projects.sso_groups import GroupGrant, apply_group_projects
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.tables import OidcIdentity, SsoFlow, User

FLOW_TTL = timedelta(minutes=10)
HANDOFF_TTL = timedelta(seconds=60)
RANK = {Role.VIEWER.value: 0, Role.USER.value: 1, Role.ADMIN.value: 2}
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_.@-]")


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def safe_return_to(value: str | None) -> str:
    """A path on this server, or a 400: never a scheme, a host (``//x``), a backslash or a control char."""
    if not value:
        return "/"
    if (
        len(value) > 500
        or not value.startswith("/")
        or value.startswith("//")
        or "\\" in value
        or any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)
    ):
        raise BadRequest("return_to must be a path on this server", code="sso_bad_return_to")
    return value


def parse_role_map(text: str) -> dict[str, str]:
    pairs = (item.split("=", 1) for item in text.split(",") if "=" in item)
    mapping = {group.strip(): role.strip() for group, role in pairs}
    bad = [r for r in mapping.values() if r not in RANK]
    if bad:
        raise ValueError(f"unknown roles in the OIDC role map: {', '.join(bad)}")
    return mapping


@dataclass(frozen=True)
class Started:
    authorization_url: str
    expires_in: int
    poll_token: str | None = None


@dataclass(frozen=True)
class Completed:
    return_to: str
    handoff_code: str | None  # None for a CLI login: the CLI's poll picks the session up
    linked: bool = False  # a signed-in user linked this identity; no new session


class SingleSignOn:
    def __init__(
        self,
        provider: OidcProvider,
        db: Database,
        audit: AuditLog,
        auth: AuthService,
        *,
        allow_provisioning: bool = False,
        groups_claim: str = "groups",
        role_map: dict[str, str] | None = None,
        default_role: str = "user",
        group_projects: list[GroupGrant] | None = None,
    ) -> None:
        self.provider = provider
        self.db = db
        self.audit = audit
        self.auth = auth
        self.allow_provisioning = allow_provisioning
        self.groups_claim = groups_claim
        self.role_map = role_map or {}
        self.default_role = default_role
        self.group_projects = group_projects or []

    def close(self) -> None:
        self.provider.close()

    def _oauth(self) -> OAuth2Client:
        from authlib.integrations.httpx_client import OAuth2Client

        c = self.provider.config
        return OAuth2Client(
            c.client_id,
            c.client_secret,
            scope=c.scopes,
            redirect_uri=c.redirect_uri,
            code_challenge_method="S256",
            timeout=10.0,
        )

    # -- the login -------------------------------------------------------------------------------
    def begin(self, return_to: str | None, *, cli: bool = False, link_user_id: str | None = None) -> Started:
        target = safe_return_to(return_to)
        state, nonce, verifier = (secrets.token_urlsafe(32) for _ in range(3))
        poll = secrets.token_urlsafe(32) if cli else None
        endpoint = self.provider.metadata()["authorization_endpoint"]
        with self._oauth() as oauth:
            url, _ = oauth.create_authorization_url(
                endpoint, state=state, nonce=nonce, code_verifier=verifier
            )
        with self.db.session() as s:
            s.execute(delete(SsoFlow).where(SsoFlow.expires_at < utcnow()))  # bounded: old rows go
            s.add(
                SsoFlow(
                    state_hash=digest(state),
                    nonce=nonce,
                    code_verifier=verifier,
                    return_to=target,
                    poll_hash=digest(poll) if poll else None,
                    link_user_id=link_user_id,
                    expires_at=utcnow() + FLOW_TTL,
                )
            )
        return Started(url, int(FLOW_TTL.total_seconds()), poll)

    def complete(self, code: str, state: str, issuer: str | None, source_ip: str | None) -> Completed:
        """The callback: state consumed first (committed, so a replay fails even if the rest does)."""
        with self.db.session() as s:
            flow = s.scalar(select(SsoFlow).where(SsoFlow.state_hash == digest(state)).with_for_update())
            usable = flow is not None and flow.state_used_at is None and flow.expires_at > utcnow()
            if flow is None or not usable:
                self._deny(s, source_ip, "state")
            else:
                flow.state_used_at = utcnow()
                flow_id, nonce, verifier, linking = flow.id, flow.nonce, flow.code_verifier, flow.link_user_id
                target = flow.return_to
        if not usable:
            raise BadRequest("unknown, used or expired login state", code="sso_state_invalid")
        try:
            if issuer is not None and issuer != self.provider.config.issuer:  # RFC 9207 mix-up defence
                raise BadRequest("the callback names another issuer", code="sso_issuer_mismatch")
            claims = self._exchange(code, verifier, nonce)
        except BadRequest as exc:
            with self.db.session() as s:
                self._deny(s, source_ip, exc.code)
            raise
        if linking is not None:
            self._link(linking, claims, source_ip)
            return Completed(target, None, linked=True)
        with self.db.session() as s:
            user = self._account(s, claims, source_ip)
            if user is None:
                self._deny(s, source_ip, "no_linked_account")
        if user is None:
            raise Forbidden("no Bastion account is linked to this identity", code="sso_no_account")
        with self.db.session() as s:
            flow = s.get(SsoFlow, flow_id)
            assert flow is not None
            flow.user_id = user.id
            flow.expires_at = utcnow() + HANDOFF_TTL
            handoff = None
            if flow.poll_hash is None:
                handoff = secrets.token_urlsafe(32)
                flow.grant_hash = digest(handoff)
            return Completed(flow.return_to, handoff)

    def _exchange(self, code: str, verifier: str, nonce: str) -> dict[str, Any]:
        from authlib.integrations.base_client.errors import OAuthError

        endpoint = self.provider.metadata()["token_endpoint"]
        try:
            with self._oauth() as oauth:
                token = oauth.fetch_token(endpoint, code=code, code_verifier=verifier)
        except OAuthError as exc:
            raise BadRequest(
                "the identity provider refused the code", code="sso_code_rejected", reason=exc.error
            ) from None
        except Exception:  # transport errors and non-JSON answers from the token endpoint
            raise BadRequest(
                "the token exchange failed", code="sso_code_rejected", reason="exchange"
            ) from None
        raw = token.get("id_token")
        if not isinstance(raw, str):
            raise BadRequest("the provider sent no ID token", code="sso_id_token_invalid", reason="missing")
        return self.provider.verify_id_token(raw, nonce)

    def _account(self, s: Session, claims: dict[str, Any], source_ip: str | None) -> User | None:
        """The linked account, or a new one if provisioning is allowed. Never found by email."""
        issuer, subject = self.provider.config.issuer, str(claims["sub"])
        link = s.scalar(
            select(OidcIdentity).where(OidcIdentity.issuer == issuer, OidcIdentity.subject == subject)
        )
        mapped = self._mapped_role(claims)
        if link is not None:
            user = s.get(User, link.user_id)
            assert user is not None
            if mapped is not None and mapped != user.role:
                user.role = mapped
        elif self.allow_provisioning:
            email = claims.get("email") if claims.get("email_verified") is True else None
            user = User(
                username=self._free_username(s, claims, email),
                email=email if isinstance(email, str) else None,
                role=mapped or self.default_role,
                password_hash=None,  # SSO only: no password to guess
            )
            s.add(user)
            s.flush()
            link = OidcIdentity(issuer=issuer, subject=subject, user_id=user.id)
            s.add(link)
            self.audit.append(
                AuditRecord(
                    "user.create",
                    actor_id=user.id,
                    actor=user.username,
                    source_ip=source_ip,
                    target_type="user",
                    target_id=user.id,
                    details={"via": "sso", "role": user.role},
                ),
                s,
            )
        else:
            return None
        if user.disabled:
            raise Forbidden("account disabled", code="account_disabled")
        link.last_login_at = utcnow()
        apply_group_projects(s, self.audit, self.group_projects, user, claims, self.groups_claim, source_ip)
        return user

    def _link(self, user_id: str, claims: dict[str, Any], source_ip: str | None) -> None:
        """Attach the identity to the signed-in account that started the flow (it proved both sides)."""
        issuer, subject = self.provider.config.issuer, str(claims["sub"])
        with self.db.session() as s:
            link = s.scalar(
                select(OidcIdentity).where(OidcIdentity.issuer == issuer, OidcIdentity.subject == subject)
            )
            taken = link is not None and link.user_id != user_id
            if taken:
                self._deny(s, source_ip, "identity_linked_elsewhere")
            elif link is None:
                s.add(OidcIdentity(issuer=issuer, subject=subject, user_id=user_id))
                self.audit.append(
                    AuditRecord(
                        "user.sso_link",
                        actor_id=user_id,
                        source_ip=source_ip,
                        target_type="user",
                        target_id=user_id,
                        details={"issuer": issuer},
                    ),
                    s,
                )
        if taken:
            raise Conflict("this identity is linked to another account", code="sso_identity_taken")

    def _mapped_role(self, claims: dict[str, Any]) -> str | None:
        groups = claims.get(self.groups_claim)
        if not self.role_map or not isinstance(groups, list):
            return None
        roles = [self.role_map[g] for g in groups if isinstance(g, str) and g in self.role_map]
        return max(roles, key=RANK.__getitem__) if roles else None

    @staticmethod
    def _free_username(s: Session, claims: dict[str, Any], email: object) -> str:
        base = claims.get("preferred_username")
        if not isinstance(base, str) and isinstance(email, str):
            base = email.split("@", 1)[0]
        if not isinstance(base, str) or not base:
            base = "sso-" + digest(str(claims["sub"]))[:10]
        name = _UNSAFE_NAME.sub("-", base)[:56]
        while s.scalar(select(User.id).where(User.username == name)) is not None:
            name = f"{name[:49]}-{secrets.token_hex(3)}"
        return name

    # -- hand-offs --------------------------------------------------------------------------------
    def redeem(self, code: str, source_ip: str | None) -> TokenPair:
        """The browser's one-time code for a session (single use, ``HANDOFF_TTL``)."""
        return self._handoff(SsoFlow.grant_hash == digest(code), source_ip, "sso_code_invalid")

    def poll(self, poll_token: str, source_ip: str | None) -> TokenPair:
        """The CLI's poll: pending (409 ``authorization_pending``) until the browser login is done."""
        return self._handoff(SsoFlow.poll_hash == digest(poll_token), source_ip, "sso_poll_invalid")

    def _handoff(self, where: Any, source_ip: str | None, bad_code: str) -> TokenPair:
        with self.db.session() as s:
            flow = s.scalar(select(SsoFlow).where(where).with_for_update())
            if flow is None or flow.redeemed_at is not None or flow.expires_at <= utcnow():
                raise BadRequest("unknown, used or expired SSO code", code=bad_code)
            if flow.user_id is None:
                raise Conflict("the sign-in in the browser is not finished yet", code="authorization_pending")
            flow.redeemed_at = utcnow()
            user_id = flow.user_id
        return self.auth.login_sso(user_id, source_ip, issuer=self.provider.config.issuer)

    def _deny(self, s: Session, source_ip: str | None, reason: str) -> None:
        self.audit.append(
            AuditRecord("auth.sso", "denied", source_ip=source_ip, details={"reason": reason}), s
        )
