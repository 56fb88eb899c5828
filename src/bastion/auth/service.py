"""Turning credentials into a Principal, and issuing, rotating and revoking login sessions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from bastion.audit import AuditLog, AuditRecord
from bastion.auth import apikeys
from bastion.auth.lockout import LockoutPolicy, account_subject, source_subject
from bastion.auth.passwords import verify_password
from bastion.auth.principal import Principal
from bastion.auth.tokens import TokenService
from bastion.errors import Locked, Unauthorized
from bastion.store import Database
from bastion.store.base import new_id, utcnow
from bastion.store.models import ApiKey, AuthSession, User

LAST_USED_RESOLUTION = timedelta(minutes=1)


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


class AuthService:
    def __init__(self, db: Database, tokens: TokenService, audit: AuditLog, lockout: LockoutPolicy) -> None:
        self.db = db
        self.tokens = tokens
        self.audit = audit
        self.lockout = lockout

    # -- request authentication ---------------------------------------------------------------
    def authenticate(self, credential: str, source_ip: str | None) -> Principal:
        """A ``bst_`` API key or a JWT access token. Every failure is counted against the source."""
        try:
            with self.db.session() as s:
                self.lockout.check(s, source_subject(source_ip))
                if credential.startswith(apikeys.PREFIX):
                    return self._by_api_key(s, credential)
                return self._by_access_token(s, credential)
        except Unauthorized as exc:
            self._fail(source_ip, None, "auth.denied", exc)
            raise

    def _by_api_key(self, s: Session, key: str) -> Principal:
        if not apikeys.well_formed(key):
            raise Unauthorized("invalid API key", code="invalid_api_key")
        row = s.execute(
            select(ApiKey, User)
            .join(User, User.id == ApiKey.user_id)
            .where(ApiKey.key_hash == apikeys.digest(key))
        ).first()
        if row is None:
            raise Unauthorized("invalid API key", code="invalid_api_key")
        api_key, user = row
        now = utcnow()
        if api_key.revoked_at is not None:
            raise Unauthorized("API key revoked", code="api_key_revoked")
        if api_key.expires_at is not None and api_key.expires_at <= now:
            raise Unauthorized("API key expired", code="api_key_expired")
        if user.disabled:
            raise Unauthorized("account disabled", code="account_disabled")
        if api_key.last_used_at is None or now - api_key.last_used_at > LAST_USED_RESOLUTION:
            api_key.last_used_at = now
        return Principal(user.id, user.username, user.role, "api_key", key_id=api_key.id)

    def _by_access_token(self, s: Session, token: str) -> Principal:
        claims = self.tokens.verify(token, "access")
        row = s.execute(
            select(AuthSession, User)
            .join(User, User.id == AuthSession.user_id)
            .where(AuthSession.id == claims.session_id)
        ).first()
        if row is None:
            raise Unauthorized("invalid token", code="invalid_token")
        sess, user = row
        if sess.revoked_at is not None or user.id != claims.subject:
            raise Unauthorized("session ended", code="session_revoked")
        if user.disabled:
            raise Unauthorized("account disabled", code="account_disabled")
        return Principal(user.id, user.username, user.role, "jwt", session_id=sess.id)

    # -- password login and sessions ----------------------------------------------------------
    def login(self, username: str, password: str, source_ip: str | None) -> TokenPair:
        subjects = (account_subject(username), source_subject(source_ip))
        with self.db.session() as s:
            self.lockout.check(s, *subjects)
            user = s.scalar(select(User).where(User.username == username))
            ok = verify_password(user.password_hash if user else None, password)
            if user is not None and ok and not user.disabled:
                for subject in subjects:
                    self.lockout.clear(s, subject)
                pair = self._new_session(s, user)
                self.audit.append(
                    AuditRecord("auth.login", actor_id=user.id, actor=user.username, source_ip=source_ip), s
                )
                return pair
        exc = Unauthorized("invalid username or password", code="invalid_credentials")
        self._fail(source_ip, username, "auth.login", exc)
        raise exc

    def refresh(self, refresh_token: str, source_ip: str | None) -> TokenPair:
        claims = self.tokens.verify(refresh_token, "refresh")
        reused = False
        with self.db.session() as s:
            sess = s.get(AuthSession, claims.session_id, with_for_update=True)
            user = s.get(User, claims.subject)
            if sess is None or user is None or sess.revoked_at is not None or user.disabled:
                raise Unauthorized("session ended", code="session_revoked")
            if sess.refresh_jti != claims.jti:
                # An old refresh token came back: someone holds a copy. End the whole session
                # (committed before we refuse, so the revocation sticks).
                sess.revoked_at = utcnow()
                self.audit.append(
                    AuditRecord(
                        "auth.refresh_reuse", "denied", user.id, user.username, "session", sess.id, source_ip
                    ),
                    s,
                )
                reused = True
            else:
                sess.refresh_jti = new_id()
                sess.expires_at = utcnow() + self.tokens.refresh_ttl
                pair = self._pair(user.id, sess)
        if reused:
            raise Unauthorized("refresh token already used; session revoked", code="token_reused")
        return pair

    def logout(self, principal: Principal, refresh_token: str | None, source_ip: str | None) -> None:
        with self.db.session() as s:
            session_ids = {principal.session_id} if principal.session_id else set()
            if refresh_token:
                try:
                    claims = self.tokens.verify(refresh_token, "refresh")
                    if claims.subject == principal.user_id:
                        session_ids.add(claims.session_id)
                except Unauthorized:
                    pass
            if session_ids:
                s.execute(
                    update(AuthSession)
                    .where(AuthSession.id.in_(session_ids), AuthSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                )
            self.audit.append(
                AuditRecord(
                    "auth.logout",
                    actor_id=principal.user_id,
                    actor=principal.username,
                    source_ip=source_ip,
                    details={"sessions": len(session_ids)},
                ),
                s,
            )

    def _new_session(self, s: Session, user: User) -> TokenPair:
        sess = AuthSession(
            id=new_id(), user_id=user.id, refresh_jti=new_id(), expires_at=utcnow() + self.tokens.refresh_ttl
        )
        s.add(sess)
        return self._pair(user.id, sess)

    def _pair(self, user_id: str, sess: AuthSession) -> TokenPair:
        return TokenPair(
            access_token=self.tokens.issue(user_id, sess.id, "access"),
            refresh_token=self.tokens.issue(user_id, sess.id, "refresh", jti=sess.refresh_jti),
            expires_in=int(self.tokens.access_ttl.total_seconds()),
        )

    def _fail(self, source_ip: str | None, username: str | None, action: str, exc: Exception) -> None:
        """Count a failure (own transaction: it must persist although the request fails) and audit it."""
        subjects = [source_subject(source_ip)] + ([account_subject(username)] if username else [])
        with self.db.session() as s:
            for subject in subjects:
                locked_until = self.lockout.record_failure(s, subject)
                if locked_until is not None:
                    self.audit.append(
                        AuditRecord(
                            "auth.lockout",
                            "denied",
                            actor=username,
                            source_ip=source_ip,
                            target_type="subject",
                            target_id=subject.split(":", 1)[0],
                            details={"until": locked_until.isoformat()},
                        ),
                        s,
                    )
            code = getattr(exc, "code", "denied")
            self.audit.append(
                AuditRecord(
                    action,
                    "denied" if not isinstance(exc, Locked) else "failure",
                    actor=username,
                    source_ip=source_ip,
                    details={"reason": code},
                ),
                s,
            )
