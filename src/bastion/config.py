"""Settings from the environment (and CLI flags), built at start-up and never at import."""

from __future__ import annotations

import ipaddress
import os
import secrets
from pathlib import Path
from typing import Any

import structlog
from pydantic import AliasChoices, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from bastion.errors import ConfigError

MIN_SECRET_CHARS = 32
_log = structlog.get_logger("bastion.config")


def _env(*names: str) -> AliasChoices:
    return AliasChoices(*names)


class Settings(BaseSettings):
    """Every knob Bastion reads. Env names follow DESIGN.md; the seeds' names are aliases."""

    model_config = SettingsConfigDict(populate_by_name=True, extra="ignore", env_file=None)

    data_dir: Path = Field(Path(".bastion"), validation_alias=_env("BASTION_DATA_DIR"))
    database_url: str | None = Field(None, validation_alias=_env("BASTION_DATABASE_URL"))
    master_key: SecretStr | None = Field(
        None, validation_alias=_env("BASTION_MASTER_KEY", "DUETMIND_MASTER_KEY", "MODEL_ENCRYPTION_KEY")
    )
    jwt_secret: SecretStr | None = Field(None, validation_alias=_env("BASTION_JWT_SECRET", "JWT_SECRET"))
    jwt_issuer: str = Field("bastion", validation_alias=_env("BASTION_JWT_ISSUER"))
    jwt_audience: str = Field("bastion-api", validation_alias=_env("BASTION_JWT_AUDIENCE"))
    max_failed_attempts: int = Field(
        5, ge=1, validation_alias=_env("BASTION_MAX_FAILED_ATTEMPTS", "MAX_FAILED_ATTEMPTS")
    )
    lockout_minutes: float = Field(
        15, gt=0, validation_alias=_env("BASTION_LOCKOUT_MINUTES", "LOCKOUT_DURATION_MINUTES")
    )
    token_expiry_hours: float = Field(
        1, gt=0, validation_alias=_env("BASTION_TOKEN_EXPIRY_HOURS", "TOKEN_EXPIRY_HOURS")
    )
    refresh_expiry_days: float = Field(7, gt=0, validation_alias=_env("BASTION_REFRESH_EXPIRY_DAYS"))
    max_concurrent_jobs: int = Field(3, ge=1, validation_alias=_env("BASTION_MAX_CONCURRENT_JOBS"))
    # Job limits (None = the defaults in bastion.jobs.config.JobConfig; see docs/jobs.md).
    max_active_jobs_per_user: int | None = Field(
        None, ge=1, validation_alias=_env("BASTION_MAX_ACTIVE_JOBS_PER_USER")
    )
    job_max_runtime_seconds: float | None = Field(
        None, gt=0, validation_alias=_env("BASTION_JOB_MAX_RUNTIME_SECONDS")
    )
    job_max_attempts: int | None = Field(None, ge=1, validation_alias=_env("BASTION_JOB_MAX_ATTEMPTS"))
    job_heartbeat_seconds: float | None = Field(
        None, gt=0, validation_alias=_env("BASTION_JOB_HEARTBEAT_SECONDS")
    )
    job_stale_after_seconds: float | None = Field(
        None, gt=0, validation_alias=_env("BASTION_JOB_STALE_AFTER_SECONDS")
    )
    job_poll_seconds: float | None = Field(None, gt=0, validation_alias=_env("BASTION_JOB_POLL_SECONDS"))
    job_memory_limit_mb: int | None = Field(None, ge=64, validation_alias=_env("BASTION_JOB_MEMORY_LIMIT_MB"))
    job_cpu_limit_seconds: int | None = Field(
        None, ge=1, validation_alias=_env("BASTION_JOB_CPU_LIMIT_SECONDS")
    )
    job_open_files_limit: int | None = Field(
        None, ge=16, validation_alias=_env("BASTION_JOB_OPEN_FILES_LIMIT")
    )
    job_output_limit_mb: int | None = Field(None, ge=1, validation_alias=_env("BASTION_JOB_OUTPUT_LIMIT_MB"))
    job_log_line_cap: int | None = Field(None, ge=10, validation_alias=_env("BASTION_JOB_LOG_LINE_CAP"))
    fl_tick_seconds: float = Field(1.0, gt=0, validation_alias=_env("BASTION_FL_TICK_SECONDS"))
    redis_url: str | None = Field(None, validation_alias=_env("BASTION_REDIS_URL"))
    trusted_proxies: str = Field(
        "",
        validation_alias=_env("BASTION_TRUSTED_PROXIES"),
        description="comma-separated proxy addresses/CIDRs whose X-Forwarded-For is believed; empty: none",
    )
    rate_limit: str = Field("600/minute", validation_alias=_env("BASTION_RATE_LIMIT"))
    login_rate_limit: str = Field("30/minute", validation_alias=_env("BASTION_LOGIN_RATE_LIMIT"))
    anonymous_rate_limit: str = Field("120/minute", validation_alias=_env("BASTION_ANONYMOUS_RATE_LIMIT"))
    max_body_bytes: int = Field(1024 * 1024, ge=1024, validation_alias=_env("BASTION_MAX_BODY_BYTES"))
    max_upload_bytes: int = Field(
        100 * 1024 * 1024, ge=1024, validation_alias=_env("BASTION_MAX_UPLOAD_BYTES")
    )
    # Upload parsing (bastion.data.sandbox) and storage: see the README's security section.
    max_decoded_bytes: int = Field(
        256 * 1024 * 1024, ge=1024 * 1024, validation_alias=_env("BASTION_MAX_DECODED_BYTES")
    )
    parse_memory_mb: int = Field(1024, ge=128, validation_alias=_env("BASTION_PARSE_MEMORY_MB"))
    parse_cpu_seconds: int = Field(60, ge=1, validation_alias=_env("BASTION_PARSE_CPU_SECONDS"))
    parse_timeout_seconds: float = Field(120, gt=0, validation_alias=_env("BASTION_PARSE_TIMEOUT_SECONDS"))
    parse_parallel: int = Field(2, ge=1, validation_alias=_env("BASTION_PARSE_PARALLEL"))
    user_storage_quota_bytes: int | None = Field(
        10 * 1024**3, ge=0, validation_alias=_env("BASTION_USER_STORAGE_QUOTA_BYTES")
    )
    fl_max_model_parameters: int = Field(
        10_000_000, ge=1, validation_alias=_env("BASTION_FL_MAX_MODEL_PARAMETERS")
    )
    fl_max_federations_per_user: int = Field(
        20, ge=1, validation_alias=_env("BASTION_FL_MAX_FEDERATIONS_PER_USER")
    )
    kaggle_alzheimer_path: Path | None = Field(None, validation_alias=_env("BASTION_KAGGLE_ALZHEIMER_PATH"))
    log_level: str = Field("info", validation_alias=_env("BASTION_LOG_LEVEL"))
    embedded_worker: bool = Field(True, validation_alias=_env("BASTION_EMBEDDED_WORKER"))
    executor: str = Field("local", pattern="^(local|ray)$", validation_alias=_env("BASTION_EXECUTOR"))
    ray_address: str | None = Field(None, validation_alias=_env("BASTION_RAY_ADDRESS"))
    ray_insecure: bool = Field(False, validation_alias=_env("BASTION_RAY_INSECURE"))
    # Encrypted (CKKS) predictions: request caps and the per-request time budget (docs/privacy.md).
    he_max_request_bytes: int = Field(
        64 * 1024 * 1024, ge=1024, validation_alias=_env("BASTION_HE_MAX_REQUEST_BYTES")
    )
    he_max_context_bytes: int = Field(
        8 * 1024 * 1024, ge=1024, validation_alias=_env("BASTION_HE_MAX_CONTEXT_BYTES")
    )
    he_max_ciphertext_bytes: int = Field(
        4 * 1024 * 1024, ge=1024, validation_alias=_env("BASTION_HE_MAX_CIPHERTEXT_BYTES")
    )
    he_max_rows: int = Field(65_536, ge=1, validation_alias=_env("BASTION_HE_MAX_ROWS"))
    he_time_budget_seconds: float = Field(20.0, gt=0, validation_alias=_env("BASTION_HE_TIME_BUDGET_SECONDS"))
    he_max_concurrent: int = Field(2, ge=1, validation_alias=_env("BASTION_HE_MAX_CONCURRENT"))
    # Gymnasium environment ids a DQN job may name (comma-separated), set by the operator.
    dqn_allowed_envs: str = Field("CartPole-v1", validation_alias=_env("BASTION_DQN_ALLOWED_ENVS"))
    web_idle_minutes: float = Field(
        30,
        gt=0,
        le=24 * 60,
        validation_alias=_env("BASTION_WEB_IDLE_MINUTES"),
        description="a dashboard session unused this long ends (the next page asks to sign in again)",
    )
    project_domains: str = Field(
        "healthcare,finance,technology,retail,education",
        validation_alias=_env("BASTION_PROJECT_DOMAINS"),
        description="the domain taxonomy of projects: comma-separated domains, each optionally "
        "'domain:sub1|sub2' to fix its subdomains (without a list any short subdomain is allowed)",
    )
    # Sign-up (off by default) and OpenID Connect single sign-on: see docs/sso.md.
    signup_enabled: bool = Field(False, validation_alias=_env("BASTION_SIGNUP_ENABLED"))
    signup_allowed_domains: str = Field(
        "",
        validation_alias=_env("BASTION_SIGNUP_ALLOWED_DOMAINS"),
        description="comma-separated email domains whose sign-ups need no approval; empty: all wait",
    )
    oidc_issuer: str | None = Field(None, validation_alias=_env("BASTION_OIDC_ISSUER"))
    oidc_client_id: str | None = Field(None, validation_alias=_env("BASTION_OIDC_CLIENT_ID"))
    oidc_client_secret: SecretStr | None = Field(None, validation_alias=_env("BASTION_OIDC_CLIENT_SECRET"))
    oidc_redirect_uri: str | None = Field(
        None,
        validation_alias=_env("BASTION_OIDC_REDIRECT_URI"),
        description="this server's callback as the provider knows it (.../api/v1/auth/sso/callback)",
    )
    oidc_scopes: str = Field("openid email profile", validation_alias=_env("BASTION_OIDC_SCOPES"))
    oidc_algorithms: str = Field("RS256,ES256,PS256", validation_alias=_env("BASTION_OIDC_ALGORITHMS"))
    oidc_allow_provisioning: bool = Field(False, validation_alias=_env("BASTION_OIDC_ALLOW_PROVISIONING"))
    oidc_groups_claim: str = Field("groups", validation_alias=_env("BASTION_OIDC_GROUPS_CLAIM"))
    oidc_role_map: str = Field(
        "",
        validation_alias=_env("BASTION_OIDC_ROLE_MAP"),
        description="comma-separated group=role pairs (e.g. 'bastion-admins=admin,staff=user')",
    )
    oidc_group_projects: str = Field(
        "",
        validation_alias=_env("BASTION_OIDC_GROUP_PROJECTS"),
        description="comma-separated group=project:role items (project by id or name); joins or "
        "raises at each SSO login, never removes (see bastion.projects.sso_groups)",
    )
    oidc_default_role: str = Field(
        "user", pattern="^(admin|user|viewer)$", validation_alias=_env("BASTION_OIDC_DEFAULT_ROLE")
    )

    host: str = Field("127.0.0.1", validation_alias=_env("BASTION_HOST"))
    port: int = Field(5000, ge=0, le=65535, validation_alias=_env("BASTION_PORT"))
    debug: bool = Field(False, validation_alias=_env("BASTION_DEBUG"))
    ssl_cert: Path | None = Field(None, validation_alias=_env("BASTION_SSL_CERT"))
    ssl_key: Path | None = Field(None, validation_alias=_env("BASTION_SSL_KEY"))

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{(self.data_dir / 'bastion.db').resolve()}"

    @property
    def vault_dir(self) -> Path:
        return self.data_dir / "vault"

    @property
    def on_loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def secret_bytes(self, name: str) -> bytes:
        value = getattr(self, name)
        if value is None:
            raise ConfigError(f"{name} is not set; call resolve_secrets() first")
        return str(value.get_secret_value()).encode()


def load_settings(**overrides: Any) -> Settings:
    """Read the environment; keyword overrides (CLI flags) win over it. ``None`` means not given."""
    given = {k: v for k, v in overrides.items() if v is not None}
    settings = Settings(**given)
    if settings.ssl_cert is None and settings.ssl_key is not None:
        raise ConfigError("--ssl-key was given without --ssl-cert")
    if settings.ssl_cert is not None and settings.ssl_key is None:
        raise ConfigError("--ssl-cert was given without --ssl-key")
    return settings


def ensure_private_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _read_or_create_secret(path: Path) -> tuple[str, bool]:
    """The dev secret in ``path`` and whether it was generated just now."""
    if path.exists():
        return path.read_text().strip(), False
    value = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(value)
    return value, True


def resolve_secrets(settings: Settings) -> Settings:
    """Fill in or refuse missing secrets, depending on how exposed the server is.

    Off loopback without ``--debug``, missing or short secrets stop the start: a production server
    must never run on a key that was generated next to the data it protects. On loopback (or in
    debug) they are generated into the data dir with 0600 permissions and a loud warning.
    """
    strict = not settings.on_loopback and not settings.debug
    updates: dict[str, SecretStr] = {}
    for name, env in (("master_key", "BASTION_MASTER_KEY"), ("jwt_secret", "BASTION_JWT_SECRET")):
        value: SecretStr | None = getattr(settings, name)
        if value is not None and len(value.get_secret_value()) >= MIN_SECRET_CHARS:
            continue
        if strict:
            state = "missing" if value is None else f"shorter than {MIN_SECRET_CHARS} characters"
            raise ConfigError(
                f"{env} is {state}; refusing to serve on {settings.host} without a strong secret "
                "(set it, or use --debug for a throw-away server)"
            )
        if value is not None:
            _log.warning("weak_secret", setting=env, hint=f"use at least {MIN_SECRET_CHARS} characters")
            continue
        secrets_dir = ensure_private_dir(ensure_private_dir(settings.data_dir) / "secrets")
        value_text, created = _read_or_create_secret(secrets_dir / f"{name}.txt")
        updates[name] = SecretStr(value_text)
        _log.warning(
            "generated_dev_secret" if created else "using_dev_secret",
            setting=env,
            path=str(secrets_dir / f"{name}.txt"),
            hint="development only: set it explicitly in production",
        )
    return settings.model_copy(update=updates) if updates else settings
