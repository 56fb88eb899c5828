"""Everything a running server holds, built once by ``build_context`` in the app factory or CLI."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from bastion.audit import AuditLog
from bastion.audit.coalesce import DenialCoalescer
from bastion.auth.accounts import Accounts
from bastion.auth.lockout import LockoutPolicy
from bastion.auth.ratelimit import RateLimiter
from bastion.auth.service import AuthService
from bastion.auth.signup import SignupPolicy, Signups
from bastion.auth.tokens import TokenService
from bastion.catalog.access import AccessCodeGuard
from bastion.catalog.datasets import DatasetCatalog, stored_pseudonym_key
from bastion.catalog.model_versions import ModelVersions
from bastion.config import Settings, ensure_private_dir
from bastion.data.sandbox import ParseLimits
from bastion.errors import ConfigError
from bastion.projects.service import ProjectService
from bastion.projects.taxonomy import Taxonomy
from bastion.store import Database
from bastion.vault.store import VaultStore

if TYPE_CHECKING:
    from bastion.auth.oidc import OidcConfig
    from bastion.auth.sso import SingleSignOn

HealthCheck = Callable[[], bool]


@dataclass
class Context:
    settings: Settings
    db: Database
    audit: AuditLog
    accounts: Accounts
    auth: AuthService
    limiter: RateLimiter
    health_checks: dict[str, HealthCheck] = field(default_factory=dict)
    denials: DenialCoalescer = field(default_factory=DenialCoalescer)
    services: dict[str, Any] = field(default_factory=dict)

    @property
    def vault(self) -> VaultStore:
        vault: VaultStore = self.services["vault"]
        return vault

    def close(self) -> None:
        for service in self.services.values():
            stop = getattr(service, "close", None)
            if callable(stop):
                stop()
        self.db.dispose()


def build_context(settings: Settings, *, migrate: bool = True) -> Context:
    """Open the store (migrating it) and wire the services. Secrets must already be resolved."""
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
    )
    ctx.services["vault"] = vault
    guard = AccessCodeGuard(db, audit, lockout)
    ctx.services["models"] = ModelVersions(db, vault, audit, guard)
    ctx.services["datasets"] = DatasetCatalog(
        db,
        vault,
        audit,
        stored_pseudonym_key(vault, settings.secret_bytes("master_key")),
        settings.max_upload_bytes,
        guard=guard,
        limits=parse_limits(settings),
        quota_bytes=settings.user_storage_quota_bytes,
    )
    ctx.services["encrypted"] = _encrypted_inference(settings, ctx.services["models"], audit)
    ctx.services["projects"] = ProjectService(db, audit, Taxonomy.parse(settings.project_domains))
    ctx.services["signups"] = Signups(
        db, audit, lockout, SignupPolicy.parse(settings.signup_enabled, settings.signup_allowed_domains)
    )
    if settings.oidc_issuer:
        ctx.services["sso"] = build_sso(settings, db, audit, ctx.auth)
    ctx.health_checks["database"] = db.ping
    ctx.health_checks["security"] = limiter.healthy
    return ctx


def build_sso(settings: Settings, db: Database, audit: AuditLog, auth: AuthService) -> SingleSignOn:
    """The OIDC relying party from settings; nothing is fetched from the provider until first use."""
    from bastion.auth.oidc import OidcProvider
    from bastion.auth.sso import SingleSignOn, parse_role_map
    from bastion.projects.sso_groups import parse_group_projects

    missing = [
        n for n in ("oidc_client_id", "oidc_client_secret", "oidc_redirect_uri") if not getattr(settings, n)
    ]
    if missing:
        raise ConfigError(
            f"BASTION_OIDC_ISSUER is set but not {', '.join('BASTION_' + m.upper() for m in missing)}"
        )
    secret = settings.oidc_client_secret
    try:
        config = _oidc_config(settings, secret.get_secret_value() if secret else "")
        role_map = parse_role_map(settings.oidc_role_map)
        group_projects = parse_group_projects(settings.oidc_group_projects)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    return SingleSignOn(
        OidcProvider(config),
        db,
        audit,
        auth,
        allow_provisioning=settings.oidc_allow_provisioning,
        groups_claim=settings.oidc_groups_claim,
        role_map=role_map,
        default_role=settings.oidc_default_role,
        group_projects=group_projects,
    )


def _oidc_config(settings: Settings, secret: str) -> OidcConfig:
    from bastion.auth.oidc import OidcConfig

    return OidcConfig(
        issuer=str(settings.oidc_issuer),
        client_id=str(settings.oidc_client_id),
        client_secret=secret,
        redirect_uri=str(settings.oidc_redirect_uri),
        scopes=settings.oidc_scopes,
        algorithms=tuple(a.strip() for a in settings.oidc_algorithms.split(",") if a.strip()),
    )


def parse_limits(settings: Settings) -> ParseLimits:
    return ParseLimits(
        max_bytes=settings.max_upload_bytes,
        max_decoded=settings.max_decoded_bytes,
        memory_mb=settings.parse_memory_mb,
        cpu_seconds=settings.parse_cpu_seconds,
        timeout_seconds=settings.parse_timeout_seconds,
        parallel=settings.parse_parallel,
    )


def _encrypted_inference(settings: Settings, registry: ModelVersions, audit: AuditLog) -> Any:
    from bastion.catalog.encrypted import EncryptedInference
    from bastion.ml.he.evaluate import Limits

    limits = Limits(
        max_context_bytes=settings.he_max_context_bytes,
        max_ciphertext_bytes=settings.he_max_ciphertext_bytes,
        max_total_bytes=settings.he_max_request_bytes,
        max_rows=settings.he_max_rows,
        time_budget_seconds=settings.he_time_budget_seconds,
    )
    return EncryptedInference(registry, audit, limits, settings.he_max_concurrent)
