"""User and API-key management. Key listings are scoped to their owner; admins manage users."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from bastion.audit import AuditLog, AuditRecord
from bastion.auth import apikeys
from bastion.auth.passwords import hash_password, verify_password
from bastion.auth.principal import Principal
from bastion.auth.roles import Role
from bastion.errors import Conflict, Forbidden, Invalid, NotFound
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.paging import Keyset
from bastion.store.tables import ApiKey, AuthSession, User

USERS = Keyset(User.created_at, User.id, descending=False)
KEYS = Keyset(ApiKey.created_at, ApiKey.id, descending=False)


@dataclass(frozen=True)
class NewKey:
    key: ApiKey
    plaintext: str


class Accounts:
    def __init__(self, db: Database, audit: AuditLog) -> None:
        self.db = db
        self.audit = audit

    def create_user(
        self,
        username: str,
        role: str,
        *,
        password: str | None = None,
        email: str | None = None,
        actor: Principal | None = None,
    ) -> User:
        if role not in {r.value for r in Role}:
            raise Invalid(f"unknown role {role!r}; choose one of admin, user, viewer")
        with self.db.session() as s:
            if s.scalar(select(User).where(User.username == username)) is not None:
                raise Conflict(f"user {username!r} already exists", code="user_exists")
            user = User(
                username=username,
                role=role,
                email=email,
                password_hash=hash_password(password) if password else None,
            )
            s.add(user)
            s.flush()
            self._audit(s, actor, "user.create", user.id, {"username": username, "role": role})
            return user

    def list_users(self) -> list[User]:
        with self.db.session() as s:
            return list(s.scalars(select(User).order_by(User.created_at)))

    def page_users(self, limit: int, cursor: str | None) -> tuple[list[User], str | None]:
        with self.db.session() as s:
            rows = list(s.scalars(USERS.apply(select(User), cursor, limit)))
        return rows[:limit], USERS.next_cursor(rows, limit)

    def find_user(self, ref: str) -> User:
        with self.db.session() as s:
            return self.get_user(s, ref)

    def get_user(self, s: Session, ref: str) -> User:
        user = s.get(User, ref) or s.scalar(select(User).where(User.username == ref))
        if user is None:
            raise NotFound("user not found")
        return user

    def update_user(
        self,
        ref: str,
        *,
        disabled: bool | None = None,
        role: str | None = None,
        password: str | None = None,
        actor: Principal | None = None,
        current_password: str | None = None,
    ) -> User:
        """Change a user. The last enabled admin cannot lose the role or be disabled; a caller changing
        their own role or password proves it is them with ``current_password`` (a stolen key alone
        must not be able to lock the owner out or take the account over)."""
        with self.db.session() as s:
            user = self.get_user(s, ref)
            if actor is not None and actor.user_id == user.id:
                role_change = role is not None and role != user.role
                if (role_change or password is not None) and not (
                    current_password and verify_password(user.password_hash, current_password)
                ):
                    raise Forbidden(
                        "changing your own role or password needs current_password",
                        code="reauthentication_required",
                    )
            if user.role == Role.ADMIN.value and not user.disabled:
                demoted = role is not None and role != Role.ADMIN.value
                if (demoted or disabled) and self._other_admins(s, user.id) == 0:
                    raise Conflict("the last admin cannot be demoted or disabled", code="last_admin")
            changes: dict[str, object] = {}
            if role is not None:
                if role not in {r.value for r in Role}:
                    raise Invalid(f"unknown role {role!r}; choose one of admin, user, viewer")
                user.role, changes["role"] = role, role
            if disabled is not None:
                user.disabled, changes["disabled"] = disabled, disabled
            if password is not None:
                user.password_hash, changes["password"] = hash_password(password), "changed"
            if password is not None or disabled:
                # Every login session ends (access and refresh tokens alike); re-enabling the user
                # later does not bring them back: revoked_at stays set.
                ended = s.execute(
                    update(AuthSession)
                    .where(AuthSession.user_id == user.id, AuthSession.revoked_at.is_(None))
                    .values(revoked_at=utcnow())
                )
                changes["sessions_ended"] = int(getattr(ended, "rowcount", 0) or 0)
            self._audit(s, actor, "user.update", user.id, changes)
            return user

    @staticmethod
    def _other_admins(s: Session, user_id: str) -> int:
        return int(
            s.scalar(
                select(func.count())
                .select_from(User)
                .where(User.role == Role.ADMIN.value, User.disabled.is_(False), User.id != user_id)
            )
            or 0
        )

    def count_users(self) -> int:
        with self.db.session() as s:
            return int(s.scalar(select(func.count()).select_from(User)) or 0)

    # -- API keys -----------------------------------------------------------------------------
    def create_key(
        self,
        user_ref: str,
        name: str = "default",
        *,
        expires_in_days: float | None = None,
        actor: Principal | None = None,
    ) -> NewKey:
        plaintext = apikeys.generate()
        with self.db.session() as s:
            user = self.get_user(s, user_ref)
            expires: datetime | None = utcnow() + timedelta(days=expires_in_days) if expires_in_days else None
            key = ApiKey(
                user_id=user.id,
                name=name,
                prefix=apikeys.display_prefix(plaintext),
                key_hash=apikeys.digest(plaintext),
                expires_at=expires,
            )
            s.add(key)
            s.flush()
            self._audit(s, actor, "key.create", key.id, {"owner": user.username, "name": name})
            return NewKey(key, plaintext)

    def list_keys(self, user_ref: str) -> list[ApiKey]:
        with self.db.session() as s:
            user = self.get_user(s, user_ref)
            return list(
                s.scalars(select(ApiKey).where(ApiKey.user_id == user.id).order_by(ApiKey.created_at))
            )

    def page_keys(self, user_id: str, limit: int, cursor: str | None) -> tuple[list[ApiKey], str | None]:
        with self.db.session() as s:
            stmt = KEYS.apply(select(ApiKey).where(ApiKey.user_id == user_id), cursor, limit)
            rows = list(s.scalars(stmt))
        return rows[:limit], KEYS.next_cursor(rows, limit)

    def get_key(self, key_id: str, owner_id: str) -> ApiKey:
        with self.db.session() as s:
            key = s.get(ApiKey, key_id)
            if key is None or key.user_id != owner_id:
                raise NotFound("API key not found")
            return key

    def revoke_key(self, key_id: str, *, owner_id: str | None, actor: Principal | None = None) -> ApiKey:
        """Revoke; ``owner_id`` scopes the lookup (None = any owner, for admins and the CLI)."""
        with self.db.session() as s:
            key = s.get(ApiKey, key_id)
            if key is None or (owner_id is not None and key.user_id != owner_id):
                raise NotFound("API key not found")
            if key.revoked_at is None:
                key.revoked_at = utcnow()
            self._audit(s, actor, "key.revoke", key.id, {})
            return key

    def _audit(
        self, s: Session, actor: Principal | None, action: str, target: str, details: dict[str, object]
    ) -> None:
        self.audit.append(
            AuditRecord(
                action,
                actor_id=actor.user_id if actor else None,
                actor=actor.username if actor else "cli",
                target_type=action.split(".")[0],
                target_id=target,
                details=dict(details),
            ),
            s,
        )
