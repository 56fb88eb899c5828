"""Turning credentials into a Principal, and issuing, rotating and revoking login sessions."""

from __future__ import annotations

import functools
import hashlib
import hmac
import math
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta

import anyio
from sqlalchemy import bindparam, func, select, update
from sqlalchemy.orm import Session

from bastion.audit import AuditLog, AuditRecord
from bastion.auth import apikeys
from bastion.auth.cache import PrincipalCache
from bastion.auth.lockout import LockoutPolicy, account_subject, pair_subject, source_subject
from bastion.auth.passwords import verify_password
from bastion.auth.principal import Principal
from bastion.auth.tokens import TokenService
from bastion.errors import Locked, NotFound, Unauthorized
from bastion.store import Database
from bastion.store.base import new_id, utcnow
from bastion.store.tables import ApiKey, AuthSession, Lockout, User

LAST_USED_RESOLUTION = timedelta(minutes=1)

# The API-key path in one round trip: the key, its owner and the source's lockout, as plain rows
# (no ORM objects to build) from statements built once (SQLAlchemy caches their compiled form).
_LOCKED_UNTIL = (
    select(func.max(Lockout.locked_until)).where(Lockout.subject == bindparam("subject")).scalar_subquery()
)
_KEY_WITH_LOCK = (
    select(
        ApiKey.id,
        ApiKey.revoked_at,
        ApiKey.expires_at,
        ApiKey.last_used_at,
        User.id.label("user_id"),
        User.username,
        User.role,
        User.disabled,
        _LOCKED_UNTIL.label("locked_until"),
    )
    .join_from(ApiKey, User, User.id == ApiKey.user_id)
    .where(ApiKey.key_hash == bindparam("digest"))
)
_LOCK_ONLY = select(_LOCKED_UNTIL)
_TOUCH_KEY = update(ApiKey).where(ApiKey.id == bindparam("key_id")).values(last_used_at=bindparam("now"))


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    refresh_token: str
    expires_in: int
    token_type: str = "bearer"


class AuthService:
    def __init__(
        self,
        db: Database,
        tokens: TokenService,
        audit: AuditLog,
        lockout: LockoutPolicy,
        *,
        cache: PrincipalCache | None = None,
    ) -> None:
        self.db = db
        self.tokens = tokens
        self.audit = audit
        self.lockout = lockout
        # Verified API keys, remembered for a short, bounded window (see bastion.auth.cache).
        self.cache = cache if cache is not None else PrincipalCache()
        self.cache.watch(db._factory)
        # Misses being looked up now, by (digest, source): concurrent misses for one key wait for the
        # first lookup instead of all hitting the database at once when an entry ages out.
        self._inflight: dict[tuple[str, str], anyio.Event] = {}

    # -- request authentication ---------------------------------------------------------------
    def authenticate(self, credential: str, source_ip: str | None) -> Principal:
        """A ``bst_`` API key or a JWT access token. Every failure is counted against the source."""
        return self._authenticate(credential, source_ip, refresh=False)

    def _authenticate(self, credential: str, source_ip: str | None, *, refresh: bool) -> Principal:
        try:
            if credential.startswith(apikeys.PREFIX):
                return self._by_api_key(credential, source_ip, refresh=refresh)
            with self.db.session() as s:
                try:
                    return self._by_access_token(s, credential)
                except Unauthorized:
                    self.lockout.check(s, source_subject(source_ip))  # a locked address: 423
                    raise
        except Unauthorized as exc:
            self._fail(source_ip, None, "auth.denied", exc)
            raise

    async def authenticate_async(self, credential: str, source_ip: str | None) -> Principal:
        """``authenticate`` for the event loop: a cache hit costs no I/O; database work runs in a thread.

        One lookup per key and source at a time: a request that misses while one is in flight waits
        for it, then reads the cache (if the lookup did not fill it, the request makes its own full
        check, so every failure is still counted and audited on its own). An entry past half its
        life is refreshed by one request while the others keep using it, so a busy key never expires
        under its callers' feet (which would stall them all at once).
        """
        if not self.cache.enabled or not credential.startswith(apikeys.PREFIX):
            return await anyio.to_thread.run_sync(self.authenticate, credential, source_ip)
        flight = (apikeys.digest(credential), source_subject(source_ip))
        principal, due = self.cache.lookup(*flight, utcnow())
        pending = self._inflight.get(flight)
        if principal is not None and (not due or pending is not None):
            return principal
        if pending is not None:
            await pending.wait()
            principal = self.cache.get(*flight, utcnow())
            if principal is not None:
                return principal
            return await anyio.to_thread.run_sync(self.authenticate, credential, source_ip)
        with self._leading(flight):
            return await anyio.to_thread.run_sync(
                functools.partial(self._authenticate, credential, source_ip, refresh=True)
            )

    @contextmanager
    def _leading(self, flight: tuple[str, str]) -> Iterator[None]:
        done = self._inflight[flight] = anyio.Event()
        try:
            yield
        finally:
            del self._inflight[flight]
            done.set()

    def _by_api_key(self, key: str, source_ip: str | None, *, refresh: bool) -> Principal:
        subject = source_subject(source_ip)
        if not apikeys.well_formed(key):
            with self.db.engine.connect() as conn:  # the source's lockout still comes first
                _raise_if_locked(conn.execute(_LOCK_ONLY, {"subject": subject}).scalar())
            raise Unauthorized("invalid API key", code="invalid_api_key")
        digest = apikeys.digest(key)
        now = utcnow()
        if not refresh:
            hit = self.cache.get(digest, subject, now)
            if hit is not None:
                return hit
        ticket = self.cache.ticket()  # before reading: what we read is at least this fresh
        with self.db.engine.begin() as conn:
            row = conn.execute(_KEY_WITH_LOCK, {"digest": digest, "subject": subject}).first()
            # A valid key (190 random bits) is never refused for its address's sake: the address's
            # lock only stops further guessing, so it is consulted on the failure paths alone.
            if row is None:
                _raise_if_locked(conn.execute(_LOCK_ONLY, {"subject": subject}).scalar())
                raise Unauthorized("invalid API key", code="invalid_api_key")
            if row.revoked_at is not None:
                _raise_if_locked(row.locked_until)
                raise Unauthorized("API key revoked", code="api_key_revoked")
            if row.expires_at is not None and row.expires_at <= now:
                _raise_if_locked(row.locked_until)
                raise Unauthorized("API key expired", code="api_key_expired")
            if row.disabled:
                _raise_if_locked(row.locked_until)
                raise Unauthorized("account disabled", code="account_disabled")
            if row.last_used_at is None or now - row.last_used_at > LAST_USED_RESOLUTION:
                conn.execute(_TOUCH_KEY, {"key_id": row.id, "now": now})
        principal = Principal(row.user_id, row.username, row.role, "api_key", key_id=row.id)
        self.cache.put(digest, principal, row.expires_at, subject, ticket)
        return principal

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
        """Count the attempt first (committed), then check the password, then clear on success.

        Counting first is what makes the lockout race-free: parallel guesses queue on the counter's
        row lock, and once ``max_failures`` are in flight the rest are refused unchecked. The counters
        are the account's and this address's for this account (never the address alone, so the
        people behind a shared NAT or proxy are not locked out by one person's typos).
        """
        subjects = (account_subject(username), pair_subject(source_ip, username))
        self._reserve(subjects, username, source_ip)
        with self.db.session() as s:
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
            known = user is not None
        exc = Unauthorized("invalid username or password", code="invalid_credentials")
        self._fail(source_ip, username if known else None, "auth.login", exc, attempted=username)
        raise exc

    def login_sso(self, user_id: str, source_ip: str | None, *, issuer: str) -> TokenPair:
        """A session for an account the identity provider vouched for (``bastion.auth.sso``)."""
        with self.db.session() as s:
            user = s.get(User, user_id)
            if user is None or user.disabled:
                raise Unauthorized("account disabled", code="account_disabled")
            pair = self._new_session(s, user)
            self.audit.append(
                AuditRecord(
                    "auth.login",
                    actor_id=user.id,
                    actor=user.username,
                    source_ip=source_ip,
                    details={"via": "sso", "issuer": issuer},
                ),
                s,
            )
            return pair

    def _reserve(self, subjects: tuple[str, ...], username: str, source_ip: str | None) -> None:
        """Count one login attempt on every subject, or refuse it (uncounted) if one is locked."""
        refused: datetime | None = None
        with self.db.session() as s:
            for subject in subjects:
                until, locked_now = self.lockout.reserve(s, subject)
                if until is not None:
                    refused = until
                    break
                if locked_now is not None:
                    self.audit.append(
                        AuditRecord(
                            "auth.lockout",
                            "denied",
                            actor=self.audit_name(s, username),
                            source_ip=source_ip,
                            target_type="subject",
                            target_id=subject.split(":", 1)[0],
                            details={"until": locked_now.isoformat()},
                        ),
                        s,
                    )
            if refused is not None:
                s.rollback()  # a refused attempt is not checked, so it is not counted either
        if refused is not None:
            _raise_if_locked(refused)

    def unlock(self, *, username: str | None, address: str | None, actor: Principal | None = None) -> int:
        """Lift the lockouts of an account and/or an address (admin route, ``bastion users unlock``)."""
        with self.db.session() as s:
            cleared = self.lockout.unlock(s, username=username, address=address)
            self.audit.append(
                AuditRecord(
                    "auth.unlock",
                    actor_id=actor.user_id if actor else None,
                    actor=actor.username if actor else "cli",
                    target_type="lockout",
                    target_id=(username or address or "")[:64],
                    details={"username": username, "address": address, "cleared": cleared},
                ),
                s,
            )
        self.cache.clear()
        return cleared

    def audit_name(self, s: Session, username: str) -> str:
        """A username as the audit log may keep it: verbatim if the account exists, else a keyed hash.

        A password typed into the username field must not stay in an append-only log forever.
        """
        if s.scalar(select(User.id).where(User.username == username)) is not None:
            return username
        return unknown_username(self.tokens, username)

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

    def revoke_session(self, principal: Principal, session_id: str, source_ip: str | None) -> None:
        """End one of the caller's own sign-in sessions (another browser, a lost laptop); a session
        that is not the caller's, or already ended, is not found (no probing of other users' ids)."""
        with self.db.session() as s:
            moved = s.execute(
                update(AuthSession)
                .where(
                    AuthSession.id == session_id,
                    AuthSession.user_id == principal.user_id,
                    AuthSession.revoked_at.is_(None),
                )
                .values(revoked_at=utcnow())
            )
            if moved.rowcount != 1:  # type: ignore[attr-defined]
                raise NotFound("session not found", code="session_not_found")
            self.audit.append(
                AuditRecord(
                    "auth.session.revoke",
                    actor_id=principal.user_id,
                    actor=principal.username,
                    source_ip=source_ip,
                    details={"session": session_id},
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

    def _fail(
        self,
        source_ip: str | None,
        username: str | None,
        action: str,
        exc: Exception,
        *,
        attempted: str | None = None,
    ) -> None:
        """Count a failure against the address (own transaction: it must persist) and audit it.

        The address's count sets ``exc.slow_down``, the progressive delay the API waits before
        answering. Then the cache forgets that the source was unlocked, so a lock this failure set
        (now committed) stops the very next failed guess from it.
        """
        try:
            self._record_failure(source_ip, username, action, exc, attempted)
        finally:
            self.cache.forget_source(source_subject(source_ip))

    def _record_failure(
        self,
        source_ip: str | None,
        username: str | None,
        action: str,
        exc: Exception,
        attempted: str | None,
    ) -> None:
        subject = source_subject(source_ip)
        with self.db.session() as s:
            locked_until = self.lockout.record_failure(s, subject)
            actor = (
                username if username else (unknown_username(self.tokens, attempted) if attempted else None)
            )
            if locked_until is not None:
                self.audit.append(
                    AuditRecord(
                        "auth.lockout",
                        "denied",
                        actor=actor,
                        source_ip=source_ip,
                        target_type="subject",
                        target_id="ip",
                        details={"until": locked_until.isoformat()},
                    ),
                    s,
                )
            if isinstance(exc, Unauthorized):
                exc.slow_down = progressive_delay(
                    self.lockout.failures(s, subject), self.lockout.max_failures
                )
            code = getattr(exc, "code", "denied")
            self.audit.append(
                AuditRecord(
                    action,
                    "denied" if not isinstance(exc, Locked) else "failure",
                    actor=actor,
                    source_ip=source_ip,
                    details={"reason": code},
                ),
                s,
            )


MAX_DELAY_S = 4.0


def progressive_delay(failures: int, threshold: int) -> float:
    """Seconds to wait before answering a failed attempt: none below ``threshold``, then doubling."""
    if failures < threshold:
        return 0.0
    result: float = min(MAX_DELAY_S, 0.25 * 2 ** (failures - threshold))
    return result


def unknown_username(tokens: TokenService, username: str) -> str:
    """A keyed hash of a username that matches no account (see ``AuthService.audit_name``)."""
    digest = hmac.new(tokens.audit_key, username.encode("utf-8", "replace"), hashlib.sha256).hexdigest()
    return f"unknown:{digest[:16]}"


def _raise_if_locked(locked_until: datetime | None) -> None:
    """What ``LockoutPolicy.check`` does, for a lock time read together with the key."""
    now = utcnow()
    if locked_until is not None and locked_until > now:
        raise Locked(
            "too many failed attempts; try again later",
            retry_after=max(1, math.ceil((locked_until - now).total_seconds())),
        )
