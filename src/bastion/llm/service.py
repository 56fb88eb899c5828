"""Fine-tuning jobs: one more kind of training job (``model_type = llm_lora``) on the same queue.

Create checks everything before queueing (base model, files, hyper-parameters, target modules, GPU
options) so that a job only fails at run time for run-time reasons. Reads, cancel, events and
logs are the job service's, scoped to the owner (somebody else's job is a 404). Lists and event
pages use opaque cursors.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Row, select

from bastion.errors import Invalid, NotFound
from bastion.jobs.pricing import FIXED_OVERHEAD_SECONDS, Price
from bastion.jobs.service import JOBS
from bastion.llm.params import Hyperparameters, check_executor, check_hardware, resolve_targets
from bastion.llm.train import LORA_MODEL_TYPE
from bastion.projects import policy
from bastion.store.paging import Keyset
from bastion.store.tables import JobEvent, TrainingJob

if TYPE_CHECKING:
    from bastion.auth.principal import Principal
    from bastion.config import Settings
    from bastion.jobs.service import JobService
    from bastion.llm.base_models import BaseModels
    from bastion.llm.files import FineTuneFiles
    from bastion.store import Database

SOURCE = "text_jsonl"
# Effective training FLOP/s of the reference profile (speed-up 1.0, a 2-vCPU machine) on LoRA
# fine-tuning; other profiles scale by their speed-up. Measured order of magnitude, see docs.
REFERENCE_FLOPS = 2.0e10
MAX_PAGE = 100
EVENTS = Keyset(JobEvent.id, descending=False)
_LIST = policy.ScopedList(
    select(TrainingJob.__table__).where(TrainingJob.model_type == LORA_MODEL_TYPE),
    TrainingJob.project_id,
    JOBS,
)


def event_after(cursor: str | None) -> int:
    """The event id a fine-tuning events cursor starts after (0: from the first)."""
    return int(EVENTS.decode(cursor)[0]) if cursor else 0


@dataclass(frozen=True)
class CreateRequest:
    model: str
    training_file: str
    validation_file: str | None
    hyperparameters: Hyperparameters
    suffix: str | None = None
    seed: int = 0
    resource_profile: str | None = None
    max_runtime_seconds: float | None = None


def flops_per_token(parameter_count: int) -> float:
    """LoRA training: forward (2N) and backward through the frozen weights (2N); the adapter's own
    weight gradients are negligible next to N."""
    return 4.0 * parameter_count


def estimate_cost(price: Price, parameter_count: int, tokens: int, epochs: int) -> dict[str, Any]:
    compute = (
        tokens * epochs * flops_per_token(parameter_count) / (REFERENCE_FLOPS * max(price.speedup, 1e-6))
    )
    seconds = FIXED_OVERHEAD_SECONDS + compute
    return {
        "resource_profile": price.profile,
        "tokens": tokens,
        "epochs": epochs,
        "flops_per_token": flops_per_token(parameter_count),
        "estimated_seconds": round(seconds, 3),
        "hourly_cost": price.hourly_cost,
        "estimated_cost": round(seconds / 3600 * price.hourly_cost, 6),
        "currency": price.currency,
    }


class FineTuning:
    def __init__(
        self, db: Database, settings: Settings, jobs: JobService, bases: BaseModels, files: FineTuneFiles
    ) -> None:
        self.db = db
        self.settings = settings
        self.jobs = jobs
        self.bases = bases
        self.files = files

    # -- create -----------------------------------------------------------------------------------

    def _prepare(self, principal: Principal, req: CreateRequest) -> tuple[Any, Any, Any, list[str], Price]:
        try:
            base = self.bases.get(req.model)
        except NotFound:
            raise Invalid(
                f"unknown base model {req.model[:100]!r}", code="unknown_base_model", field="model"
            ) from None
        train = self.files.owned(principal, req.training_file)
        val = self.files.owned(principal, req.validation_file) if req.validation_file else None
        check_hardware(req.hyperparameters)
        check_executor(req.hyperparameters, self.settings.executor)
        targets = resolve_targets(req.hyperparameters, base.model_type, base.path, base.weights_sha256)
        return base, train, val, targets, self.jobs.prices.get(req.resource_profile)

    @staticmethod
    def _tokens(row: Any) -> int:
        stats = row.schema_json.get("tokens") or {}
        return int(stats.get("total_tokens") or 0)

    def estimate(self, principal: Principal, req: CreateRequest) -> dict[str, Any]:
        base, train, _, _, price = self._prepare(principal, req)
        out = estimate_cost(price, base.parameter_count, self._tokens(train), req.hyperparameters.n_epochs)
        profiles = [
            estimate_cost(p, base.parameter_count, self._tokens(train), req.hyperparameters.n_epochs)
            for p in self.jobs.prices.all().values()
        ]
        return {**out, "profiles": profiles}

    def create(
        self, principal: Principal, req: CreateRequest, ip: str | None = None, project: str | None = None
    ) -> TrainingJob:
        base, train, val, targets, price = self._prepare(principal, req)
        hp = req.hyperparameters
        params = {
            **hp.model_dump(mode="json"),
            "target_modules": targets,
            "base_model_type": base.model_type,
            "base_model": {
                "id": base.id,
                "name": base.name,
                "path": base.path,
                "sha256": base.weights_sha256,
                "architecture": base.architecture,
            },
            "suffix": req.suffix,
        }
        est = estimate_cost(price, base.parameter_count, self._tokens(train), hp.n_epochs)
        ref = {
            "source": SOURCE,
            "training_file": train.id,
            "training_artifact": train.artifact_id,
            "validation_file": val.id if val else None,
            "validation_artifact": val.artifact_id if val else None,
        }
        return self.jobs.enqueue(
            principal,
            model_type=LORA_MODEL_TYPE,
            dataset_source=SOURCE,
            dataset_id=train.id,
            target=None,
            dataset_ref=ref,
            params=params,
            profile=price.profile,
            max_runtime_seconds=req.max_runtime_seconds,
            seed=req.seed,
            estimated_seconds=est["estimated_seconds"],
            ip=ip,
            action="fine_tuning.create",
            project=project,
        )

    # -- reading ----------------------------------------------------------------------------------

    def get(self, principal: Principal, job_id: str) -> TrainingJob:
        job = self.jobs.get(principal, job_id)
        if job.model_type != LORA_MODEL_TYPE:
            raise NotFound("fine-tuning job not found", code="job_not_found")
        return job

    def page(
        self, principal: Principal, limit: int, cursor: str | None, project: str | None = None
    ) -> tuple[list[Row[Any]], str | None]:
        """Fine-tuning jobs of the caller's projects (or of one), newest first: plain rows, read on a
        bare connection. A cursor written before the list used Keyset (a plain ISO time) still pages."""
        limit = min(limit, MAX_PAGE)
        with self.db.reader() as conn:
            rows = _LIST.rows(conn, principal, project, cursor, limit)
        return list(rows[:limit]), JOBS.next_cursor(rows, limit)

    def events(self, job: TrainingJob, limit: int, cursor: str | None) -> tuple[list[JobEvent], str | None]:
        limit = min(limit, MAX_PAGE)
        rows = self.jobs.events_after(job.id, event_after(cursor), limit + 1)
        return rows[:limit], EVENTS.next_cursor(rows, limit)

    def checkpoints(self, job: TrainingJob) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(JobEvent)
                .where(JobEvent.job_id == job.id, JobEvent.kind == "metrics")
                .order_by(JobEvent.id)
            ).all()
        latest: dict[int, dict[str, Any]] = {}
        for row in rows:
            data = row.data
            if "checkpoint" in data:
                latest[int(data["epoch"])] = {"event_id": row.id, "ts": row.ts, **data}
        return [latest[k] for k in sorted(latest)]
