"""Self-service sign-up: off unless enabled; accounts wait for an admin or come from allowed domains.

No enumeration: ``register`` gives one answer whatever happens (name free, name taken, request
pending) and does the same work on every path (one argon2 hash, one lookup, one write attempt), so
neither the answer nor its timing tells whether an account exists. Login already answers
``invalid_credentials`` for unknown, pending and wrong-password accounts alike.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.lockout import LockoutPolicy, source_subject
from bastion.auth.passwords import hash_password
from bastion.auth.principal import Principal
from bastion.errors import Conflict, Forbidden, NotFound
from bastion.store import Database
from bastion.store.paging import Keyset
from bastion.store.tables import SignupRequest, User

SIGNUPS = Keyset(SignupRequest.created_at, SignupRequest.id, descending=False)

RECEIVED = "registration received; you can sign in once the account is active"


@dataclass(frozen=True)
class SignupPolicy:
    enabled: bool
    allowed_domains: frozenset[str]

    @classmethod
    def parse(cls, enabled: bool, domains: str) -> SignupPolicy:
        return cls(enabled, frozenset(d.strip().lower().lstrip("@") for d in domains.split(",") if d.strip()))

    def auto_approves(self, email: str) -> bool:
        return email.rsplit("@", 1)[-1].lower() in self.allowed_domains


class Signups:
    def __init__(self, db: Database, audit: AuditLog, lockout: LockoutPolicy, policy: SignupPolicy) -> None:
        self.db = db
        self.audit = audit
        self.lockout = lockout
        self.policy = policy

    def register(self, username: str, email: str, password: str, source_ip: str | None) -> str:
        """Record a sign-up; the same message comes back whether or not anything was created."""
        if not self.policy.enabled:
            raise Forbidden("sign-up is disabled on this server", code="signup_disabled")
        password_hash = hash_password(password)  # strength first (422), before any lookup
        with self.db.session() as s:
            self.lockout.check(s, source_subject(source_ip))  # a locked address cannot register either
            taken = self._taken(s, username)
            outcome = "duplicate"
            if not taken:
                if self.policy.auto_approves(email):
                    s.add(User(username=username, email=email, role="user", password_hash=password_hash))
                    outcome = "active"
                else:
                    s.add(
                        SignupRequest(
                            username=username, email=email, password_hash=password_hash, source_ip=source_ip
                        )
                    )
                    outcome = "pending"
            self.audit.append(
                AuditRecord(
                    "auth.signup",
                    "success" if not taken else "denied",
                    actor=username if not taken else None,
                    source_ip=source_ip,
                    details={"outcome": outcome},
                ),
                s,
            )
        return RECEIVED

    @staticmethod
    def _taken(s: Session, username: str) -> bool:
        return (
            s.scalar(select(User.id).where(User.username == username)) is not None
            or s.scalar(select(SignupRequest.id).where(SignupRequest.username == username)) is not None
        )

    def pending(self, *, limit: int, cursor: str | None = None) -> tuple[list[SignupRequest], str | None]:
        """Requests oldest first, keyset-paginated on (created_at, id), and the next page's cursor."""
        with self.db.session() as s:
            rows = list(s.scalars(SIGNUPS.apply(select(SignupRequest), cursor, limit)))
        return rows[:limit], SIGNUPS.next_cursor(rows, limit)

    def approve(self, ref: str, actor: Principal | None = None) -> User:
        """Turn a pending request (by id or username) into an active ``user`` account."""
        with self.db.session() as s:
            req = self._request(s, ref)
            if s.scalar(select(User.id).where(User.username == req.username)) is not None:
                raise Conflict(f"user {req.username!r} already exists", code="user_exists")
            user = User(username=req.username, email=req.email, role="user", password_hash=req.password_hash)
            s.add(user)
            s.delete(req)
            s.flush()
            self._audit(s, actor, "signup.approve", user.id, req.username)
            return user

    def reject(self, ref: str, actor: Principal | None = None) -> None:
        with self.db.session() as s:
            req = self._request(s, ref)
            s.delete(req)
            self._audit(s, actor, "signup.reject", req.id, req.username)

    @staticmethod
    def _request(s: Session, ref: str) -> SignupRequest:
        req = s.get(SignupRequest, ref) or s.scalar(
            select(SignupRequest).where(SignupRequest.username == ref)
        )
        if req is None:
            raise NotFound("sign-up request not found", code="signup_not_found")
        return req

    def _audit(self, s: Session, actor: Principal | None, action: str, target: str, username: str) -> None:
        self.audit.append(
            AuditRecord(
                action,
                actor_id=actor.user_id if actor else None,
                actor=actor.username if actor else "cli",
                target_type="signup",
                target_id=target,
                details={"username": username},
            ),
            s,
        )
