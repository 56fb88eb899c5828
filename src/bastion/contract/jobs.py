"""Training jobs: seeds/000's shapes first, Bastion's additions after them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from bastion.contract.common import STRICT, DbInt, UtcDateTime

StateName = Literal["pending", "running", "completed", "failed", "cancelled"]


# Names of registry models (bastion.jobs.service.default_model_name builds the default one).
MODEL_NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9 ._:+-]{0,199}$"


class SubmitRequest(BaseModel):
    """One training job as submitted (the route's body and the service's input)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=(), strict=True)

    model_type: str = Field(min_length=1, max_length=64, examples=["alzheimer_classifier"])
    dataset_source: str = Field(min_length=1, max_length=64, examples=["synthetic_test_data"])
    dataset_id: str | None = Field(None, max_length=64, description="Uploaded dataset (user_provided)")
    target: str | None = Field(None, max_length=200, description="Column to predict (user_provided)")
    params: dict[str, Any] = Field(default_factory=dict, description="Hyper-parameters of the model type")
    resource_profile: str | None = Field(None, max_length=32, description="Priced profile; see cost-estimate")
    max_runtime_seconds: float | None = Field(None, gt=0, le=30 * 24 * 3600)
    seed: int = Field(0, ge=0, le=2**31 - 1)
    project: str | None = Field(
        None,
        max_length=36,
        description="Project that owns the job and its model (default: your personal one)",
    )
    model_name: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=MODEL_NAME_PATTERN,
        description="Registry model the result joins as a new version (default: model_type-dataset)",
    )
    resources: dict[str, float | int | str] | None = Field(
        None,
        max_length=3,
        description="What the executor reserves: cpus, gpus, memory (MiB or '8GiB'); "
        "unset ones come from the resource profile",
        examples=[{"cpus": 2, "gpus": 1, "memory": "8GiB"}],
    )
    search: dict[str, Any] | None = Field(
        None,
        description="Make this a hyper-parameter search: space, trials, parallel, cv, time_budget_seconds "
        "(see docs/ray_and_search.md)",
        examples=[{"space": {"C": {"type": "float", "low": 0.001, "high": 100, "log": True}}, "trials": 20}],
    )


class SubmitResponse(BaseModel):
    success: bool
    job_id: str
    message: str
    status: str


class CancelResponse(BaseModel):
    success: bool
    message: str
    job_id: str
    status: StateName


class JobSummary(BaseModel):
    """One row of ``GET /training/jobs`` (seeds/000's fields first)."""

    model_config = ConfigDict(protected_namespaces=())

    job_id: str
    project_id: str | None = Field(None, description="The project that owns the job")
    status: StateName
    progress: float = Field(ge=0, le=1)
    created_at: UtcDateTime | None
    results: dict[str, Any] | None
    model_type: str
    dataset_source: str
    model_name: str | None = Field(None, description="The registry model its result joins")
    started_at: UtcDateTime | None
    completed_at: UtcDateTime | None
    error_message: str | None


class AdminJobSummary(JobSummary):
    owner_id: str
    owner: str | None = None  # the owner's username, for people reading the list
    worker_id: str | None
    attempt: int


class JobStatus(BaseModel):
    """``GET /training/status/{id}``: seeds/000's shape plus params, stage, attempts and history."""

    model_config = ConfigDict(protected_namespaces=())

    job_id: str
    project_id: str | None = Field(None, description="The project that owns the job")
    status: StateName
    progress: float = Field(ge=0, le=1)
    created_at: UtcDateTime | None
    started_at: UtcDateTime | None
    completed_at: UtcDateTime | None
    results: dict[str, Any] | None
    error_message: str | None
    model_type: str
    dataset_source: str
    dataset_id: str | None
    target: str | None
    model_name: str | None = Field(None, description="The registry model its result joins")
    params: dict[str, Any]
    resource_profile: str | None
    stage: str | None
    attempt: int
    history: list[dict[str, Any]]
    estimated_seconds: float | None
    max_runtime_seconds: float | None
    updated_at: UtcDateTime | None
    model_available: bool
    model_format: str | None
    resources: dict[str, Any] | None = Field(None, description="What the executor reserves")
    search: dict[str, Any] | None = Field(None, description="The search spec, for search jobs")


class JobList(BaseModel):
    """seeds/000's ``{"jobs": [...]}``, plus the cursor of the list convention."""

    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page; null at the end")


class LogLine(BaseModel):
    seq: DbInt
    ts: UtcDateTime
    stream: str
    line: str


class LogPage(BaseModel):
    job_id: str
    status: StateName
    lines: list[LogLine]
    next_after: DbInt
    total_lines: int
    dropped_lines: int


class Example(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_type: str
    dataset_source: str
    description: str
    params: dict[str, Any] | None = None


class Examples(BaseModel):
    examples: dict[str, Example]
    usage: str
    model_types: list[str]
    dataset_sources: list[str]


class ModelTypes(BaseModel):
    model_types: list[dict[str, Any]] = Field(description="Each type with its parameter JSON schema")


class CostEstimate(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    dataset_source: str
    model_type: str
    resource_profile: str
    n_samples: int
    n_features: int
    estimated_seconds: float
    estimated_hours: float
    hourly_cost: float
    total_estimated_cost: float
    currency: str
    params: dict[str, Any]
    note: str | None = None


class PriceSpec(BaseModel):
    model_config = STRICT

    hourly_cost: float = Field(ge=0, lt=1e6)
    currency: str = Field("USD", min_length=3, max_length=8)
    speedup: float = Field(1.0, gt=0, le=1e4, description="How much faster than the reference CPU")
    description: str = Field("", max_length=200)


class Price(PriceSpec):
    profile: str


class ResourceProfiles(BaseModel):
    resource_profiles: list[Price]
    note: str | None = None


# bastion.jobs.pricing.PROFILE_NAME, stated in the schema.
PROFILE_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,31}$"
ProfileName = Annotated[str, Field(pattern=PROFILE_PATTERN)]


def _profile_keys(schema: dict[str, Any]) -> None:
    """pydantic states pattern-checked keys as patternProperties, which lets other keys through;
    the server refuses them, so say so: propertyNames plus additionalProperties."""
    patterns = schema.pop("patternProperties", None)
    if patterns:
        schema["propertyNames"] = {"pattern": PROFILE_PATTERN}
        schema["additionalProperties"] = next(iter(patterns.values()))


class PriceTableBody(BaseModel):
    model_config = STRICT

    """PUT: the whole table (profiles not listed are removed)."""

    prices: dict[ProfileName, PriceSpec] = Field(min_length=1, max_length=50, json_schema_extra=_profile_keys)


class PricePatch(BaseModel):
    model_config = STRICT

    """PATCH (RFC 7396 merge): listed profiles are set, ``null`` removes one, others are kept."""

    prices: dict[ProfileName, PriceSpec | None] = Field(
        min_length=1, max_length=50, json_schema_extra=_profile_keys
    )


class PriceTable(BaseModel):
    prices: dict[str, Price]


class PriceTableUpdated(PriceTable):
    success: Literal[True] = True


class Worker(BaseModel):
    id: str
    hostname: str
    pid: int
    max_concurrent: int
    running: int
    started_at: UtcDateTime
    heartbeat_at: UtcDateTime


class AdminStatus(BaseModel):
    active_jobs: int
    pending_jobs: int
    completed_jobs: int
    failed_jobs: int
    cancelled_jobs: int
    max_concurrent_jobs: int
    capacity_available: int
    system_healthy: bool
    max_active_jobs_per_user: int
    workers: list[Worker]


class PublicKeyBody(BaseModel):
    model_config = STRICT

    public_key: str = Field(
        min_length=43,
        max_length=43,
        pattern=r"^[A-Za-z0-9_-]{42}[AEIMQUYcgkosw048]$",
        description="X25519 public key: 32 bytes, base64url without padding",
    )


class DownloadKey(BaseModel):
    public_key: str
    created_at: UtcDateTime | None


class DownloadKeyStored(DownloadKey):
    success: Literal[True] = True


class EncryptedModel(BaseModel):
    """The trained model, sealed for the caller (see docs/jobs.md for both schemes)."""

    model_config = ConfigDict(protected_namespaces=())

    success: Literal[True] = True
    encrypted_model: str
    job_id: str
    scheme: Literal["api-key-hkdf-aes256gcm-v1", "x25519-sealed-box-v1"]
    salt: str | None = None
    nonce: str | None = None
    public_key: str | None = None
    model_type: str
    model_format: str | None
    package_bytes: int
