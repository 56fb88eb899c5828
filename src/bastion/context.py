"""The core a running server holds (settings, store, vault, audit, auth), built once by ``build_context``.

Its services (catalogs, jobs, federations, fine-tuning) are built over it by ``bastion.wiring`` and
reached as ``ctx.services``, a typed :class:`bastion.wiring.Services`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING

from bastion.audit import AuditLog
from bastion.audit.coalesce import DenialCoalescer
from bastion.auth.accounts import Accounts
from bastion.auth.lockout import LockoutPolicy
from bastion.auth.ratelimit import RateLimiter
from bastion.auth.service import AuthService
from bastion.auth.tokens import TokenService
from bastion.config import Settings, ensure_private_dir
from bastion.store import Database
from bastion.vault.store import VaultStore

if TYPE_CHECKING:
    from bastion.wiring import Services

HealthCheck = Callable[[], bool]


@dataclass
class Context:
    settings: Settings
    db: Database
    audit: AuditLog
    accounts: Accounts
    auth: AuthService
    limiter: RateLimiter
    vault: VaultStore
    lockout: LockoutPolicy
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    denials: DenialCoalescer = field(default_factory=DenialCoalescer)
    _services: Services | None = field(default=None, repr=False)

    @property
    def services(self) -> Services:
        """The services ``bastion.wiring.install_services`` built over this context."""
        if self._services is None:
            raise RuntimeError("services are not wired: call bastion.wiring.install_services(ctx)")
        return self._services

    @services.setter
    def services(self, services: Services) -> None:
        self._services = services

    @property
    def wired(self) -> bool:
        return self._services is not None

    def close(self) -> None:
        if self._services is not None:
            self._services.close()
        self.db.dispose()


def build_context(settings: Settings, *, migrate: bool = True) -> Context:
    """Open the vault and the store (migrating it). Secrets must already be resolved; services are
    added by ``bastion.wiring.install_services``."""
    ensure_private_dir(settings.data_dir)
    # Opening the key ring first: a wrong master key must stop the start before anything else.
    vault = VaultStore.open(settings.vault_dir, settings.secret_bytes("master_key"))
    db = Database(settings.resolved_database_url)
    if migrate:
        db.migrate()
    audit = AuditLog(db)
    tokens = TokenService(
        settings.secret_bytes("jwt_secret"),
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        access_ttl=timedelta(hours=settings.token_expiry_hours),
        refresh_ttl=timedelta(days=settings.refresh_expiry_days),
    )
    lockout = LockoutPolicy(settings.max_failed_attempts, timedelta(minutes=settings.lockout_minutes))
    limiter = RateLimiter(settings.redis_url or "memory://")
    ctx = Context(
        settings=settings,
        db=db,
        audit=audit,
        accounts=Accounts(db, audit),
        auth=AuthService(db, tokens, audit, lockout),
        limiter=limiter,
        vault=vault,
        lockout=lockout,
    )
    ctx.health_checks["database"] = db.ping
    ctx.health_checks["security"] = limiter.healthy
    return ctx
