"""The one place the server's services are built: :class:`Services` and :func:`install_services`.

Called by the API app factory, the CLI's server commands (``serve``, ``worker``, admin commands), tests
and benches. It lives below ``bastion.api`` so that no server module has to import wiring from the
HTTP layer. The subsystems are imported when called, not at import time: the types below are for
the checker only, so importing this module stays cheap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from bastion.config import Settings
from bastion.context import Context
from bastion.errors import ConfigError

if TYPE_CHECKING:
    from bastion.audit import AuditLog
    from bastion.auth.oidc import OidcConfig
    from bastion.auth.service import AuthService
    from bastion.auth.signup import Signups
    from bastion.auth.sso import SingleSignOn
    from bastion.catalog.datasets import DatasetCatalog
    from bastion.catalog.encrypted import EncryptedInference
    from bastion.catalog.model_versions import ModelVersions
    from bastion.data.sandbox import ParseLimits
    from bastion.federation.server.coordinator import Coordinator
    from bastion.federation.server.service import FederationService
    from bastion.federation.server.site import SiteService
    from bastion.jobs.config import JobConfig
    from bastion.jobs.service import JobService
    from bastion.jobs.worker import Worker
    from bastion.llm.base_models import BaseModels
    from bastion.llm.files import FineTuneFiles
    from bastion.llm.generate import Generator
    from bastion.llm.service import FineTuning
    from bastion.projects.service import ProjectService
    from bastion.store import Database


@dataclass
class Services:
    """Every service a running server holds, by name; routes reach them through ``bastion.api.deps``.

    Attributes are assignable so that tests can swap one (a job service with a fake target, say).
    """

    models: ModelVersions
    datasets: DatasetCatalog
    encrypted: EncryptedInference
    projects: ProjectService
    signups: Signups
    jobs: JobService
    fl_coordinator: Coordinator
    federations: FederationService
    fl_sites: SiteService
    llm_bases: BaseModels
    ft_files: FineTuneFiles
    fine_tuning: FineTuning
    generation: Generator
    sso: SingleSignOn | None = None
    worker: Worker | None = None  # the embedded worker (``bastion serve`` without ``--no-worker``)

    def start(self) -> None:
        """Start the background threads: the embedded worker, then the federation deadline ticker."""
        if self.worker is not None:
            self.worker.start()
        self.fl_coordinator.start()

    def close(self) -> None:
        if self.sso is not None:
            self.sso.close()
        if self.worker is not None:
            self.worker.close()
        self.fl_coordinator.close()


def install_services(ctx: Context, jobs_config: JobConfig | None = None) -> Context:
    """Build every service over ``ctx`` and attach them as ``ctx.services``; returns ``ctx``."""
    ctx.services = build_services(ctx, jobs_config)
    return ctx


def build_services(ctx: Context, jobs_config: JobConfig | None = None) -> Services:
    """The catalogs, then jobs, federations and fine-tuning (each uses what the earlier ones built)."""
    from bastion.auth.signup import SignupPolicy, Signups
    from bastion.catalog.access import AccessCodeGuard
    from bastion.catalog.datasets import DatasetCatalog, stored_pseudonym_key
    from bastion.catalog.model_versions import ModelVersions
    from bastion.jobs.config import JobConfig
    from bastion.jobs.hooks import make_worker, watch_training
    from bastion.jobs.service import JobService
    from bastion.llm.base_models import BaseModels
    from bastion.llm.files import FineTuneFiles
    from bastion.llm.generate import Generator
    from bastion.llm.service import FineTuning
    from bastion.projects.service import ProjectService
    from bastion.projects.taxonomy import Taxonomy

    settings, db, audit, vault = ctx.settings, ctx.db, ctx.audit, ctx.vault
    guard = AccessCodeGuard(db, audit, ctx.lockout)
    models = ModelVersions(db, vault, audit, guard)
    datasets = DatasetCatalog(
        db,
        vault,
        audit,
        stored_pseudonym_key(vault, settings.secret_bytes("master_key")),
        settings.max_upload_bytes,
        guard=guard,
        limits=parse_limits(settings),
        quota_bytes=settings.user_storage_quota_bytes,
    )
    config = jobs_config or JobConfig.from_settings(settings)
    jobs = JobService(ctx, config)
    coordinator, federations, sites = _federations(ctx, models)
    bases = BaseModels(db, audit)
    files = FineTuneFiles(
        db,
        vault,
        audit,
        datasets.hmac_key,
        settings.max_upload_bytes,
        quota_bytes=settings.user_storage_quota_bytes,
    )
    services = Services(
        models=models,
        datasets=datasets,
        encrypted=encrypted_inference(settings, models, audit),
        projects=ProjectService(db, audit, Taxonomy.parse(settings.project_domains)),
        signups=Signups(
            db,
            audit,
            ctx.lockout,
            SignupPolicy.parse(settings.signup_enabled, settings.signup_allowed_domains),
        ),
        sso=build_sso(settings, db, audit, ctx.auth) if settings.oidc_issuer else None,
        jobs=jobs,
        fl_coordinator=coordinator,
        federations=federations,
        fl_sites=sites,
        llm_bases=bases,
        ft_files=files,
        fine_tuning=FineTuning(db, settings, jobs, bases, files),
        generation=Generator(bases, models, files),
    )
    if settings.embedded_worker:
        services.worker = make_worker(ctx, config)
    ctx.health_checks["training_manager"] = watch_training(ctx, config)
    return services


def _federations(ctx: Context, models: ModelVersions) -> tuple[Coordinator, FederationService, SiteService]:
    """The coordinator (its ``start``/``close`` run the deadline ticker) and the two services over it."""
    from bastion.federation.server.coordinator import Coordinator
    from bastion.federation.server.service import FederationService
    from bastion.federation.server.site import SiteService

    coordinator = Coordinator(
        ctx.db,
        ctx.vault,
        ctx.audit,
        models,
        tick_seconds=float(getattr(ctx.settings, "fl_tick_seconds", 1.0)),
    )
    federations = FederationService(
        coordinator,
        max_parameters=ctx.settings.fl_max_model_parameters,
        max_per_user=ctx.settings.fl_max_federations_per_user,
    )
    return coordinator, federations, SiteService(coordinator)


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
    from bastion.data.sandbox import ParseLimits

    return ParseLimits(
        max_bytes=settings.max_upload_bytes,
        max_decoded=settings.max_decoded_bytes,
        memory_mb=settings.parse_memory_mb,
        cpu_seconds=settings.parse_cpu_seconds,
        timeout_seconds=settings.parse_timeout_seconds,
        parallel=settings.parse_parallel,
    )


def encrypted_inference(settings: Settings, registry: ModelVersions, audit: AuditLog) -> EncryptedInference:
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
