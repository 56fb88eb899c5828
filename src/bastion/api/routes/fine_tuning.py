"""Fine-tuning in OpenAI's shapes: files, jobs, events (paged and SSE), checkpoints, cost estimates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.convertors import Convertor, register_url_convertor
from starlette.datastructures import UploadFile

from bastion.api.deps import (
    BaseModelsDep,
    ContextDep,
    FineTuneFilesDep,
    FineTuningDep,
    JobsDep,
    UserPrincipal,
    client_ip,
)
from bastion.api.openapi import errors
from bastion.api.reads import read
from bastion.api.routing import PrefixRouter
from bastion.api.scoping import ProjectQuery
from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.errors import Invalid, UnsupportedMedia
from bastion.jobs import states
from bastion.jobs.pricing import Price
from bastion.llm import views
from bastion.llm.params import Hyperparameters
from bastion.llm.service import CreateRequest, FineTuning

router = PrefixRouter(prefix="/api/v1/fine_tuning", tags=["fine-tuning"])
SSE_POLL_SECONDS = 0.25
SSE_KEEPALIVE_SECONDS = 15.0


class _JobId(Convertor[str]):
    """One path segment, but not ``estimate``: ``/jobs/estimate`` is POST's own resource, and GET
    ``/jobs/{job_id}`` must not claim it too (a 405's ``Allow`` would then name an undocumented GET)."""

    regex = "(?!estimate$)[^/]+"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("ft_job_id", _JobId())


class FileObject(BaseModel):
    id: str
    object: Literal["file"] = "file"
    purpose: str
    filename: str
    bytes: int
    created_at: int
    shape: str | None
    base_model: str | None
    statistics: dict[str, Any] | None
    deidentification: dict[str, Any]
    project_id: str | None = Field(None, description="The project that owns the file")


class CreateJobBody(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    model: str = Field(min_length=1, max_length=100, description="A registered base model (name or id)")
    training_file: str = Field(min_length=1, max_length=64)
    validation_file: str | None = Field(None, max_length=64)
    hyperparameters: Hyperparameters = Field(default_factory=Hyperparameters)
    suffix: str | None = Field(None, max_length=40, pattern=r"^[A-Za-z0-9._-]+$")
    seed: int = Field(0, ge=0, le=2**31 - 1)
    resource_profile: str | None = Field(None, max_length=32)
    max_runtime_seconds: float | None = Field(None, gt=0, le=30 * 24 * 3600)

    def request(self) -> CreateRequest:
        return CreateRequest(
            model=self.model,
            training_file=self.training_file,
            validation_file=self.validation_file,
            hyperparameters=self.hyperparameters,
            suffix=self.suffix,
            seed=self.seed,
            resource_profile=self.resource_profile,
            max_runtime_seconds=self.max_runtime_seconds,
        )


class JobObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job"] = "fine_tuning.job"
    project_id: str | None = Field(None, description="The project that owns the job")
    model: str | None
    created_at: int | None
    finished_at: int | None
    fine_tuned_model: str | None
    status: Literal["validating_files", "queued", "running", "succeeded", "failed", "cancelled"]
    training_file: str | None
    validation_file: str | None
    hyperparameters: dict[str, Any]
    suffix: str | None
    seed: int
    trained_tokens: int | None
    result_files: list[str]
    error: dict[str, Any] | None
    progress: float
    attempt: int
    metrics: dict[str, Any] | None
    cost: dict[str, Any]


class JobList(BaseModel):
    object: Literal["list"] = "list"
    data: list[JobObject]
    has_more: bool
    next_cursor: str | None


class EventObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.event"] = "fine_tuning.job.event"
    created_at: int | None
    level: str
    message: str
    type: str
    data: dict[str, Any]


class EventList(BaseModel):
    object: Literal["list"] = "list"
    data: list[EventObject]
    has_more: bool
    next_cursor: str | None


class CheckpointObject(BaseModel):
    id: str
    object: Literal["fine_tuning.job.checkpoint"] = "fine_tuning.job.checkpoint"
    created_at: int | None
    fine_tuning_job_id: str
    step_number: int | None
    epoch: int | None
    metrics: dict[str, Any]


class CheckpointList(BaseModel):
    object: Literal["list"] = "list"
    data: list[CheckpointObject]
    next_cursor: str | None = None


class CostEstimate(BaseModel):
    resource_profile: str
    tokens: int
    epochs: int
    flops_per_token: float
    estimated_seconds: float
    hourly_cost: float
    estimated_cost: float
    currency: str
    profiles: list[dict[str, Any]]


def _job(ctx: Context, job: Any, prices: dict[str, Price] | None = None) -> JobObject:
    """``prices``: the price table, read once for a whole list (else read here)."""
    price = (prices if prices is not None else ctx.services.jobs.prices.all()).get(job.resource_profile)
    return JobObject(**views.job_view(job, price.hourly_cost if price else None), project_id=job.project_id)


@router.post(
    "/files",
    status_code=201,
    response_model=FileObject,
    responses=errors(401, 403, 404, 413, 415, 422),
    summary="Upload a JSONL training file (chat, instruction or plain text); PHI is scrubbed before storage",
)
async def upload_file(
    request: Request,
    response: Response,
    principal: UserPrincipal,
    ctx: ContextDep,
    bases: BaseModelsDep,
    files: FineTuneFilesDep,
    model: Annotated[
        str, Query(min_length=1, max_length=100, description="Base model whose tokenizer counts tokens")
    ],
    name: Annotated[str | None, Query(max_length=200)] = None,
    scrub: Annotated[
        Literal["placeholder", "surrogate"], Query(description="Typed placeholders or consistent surrogates")
    ] = "placeholder",
    project: ProjectQuery = None,
    content_type: Annotated[str, Header()] = "",
) -> FileObject:
    """The raw file as the body (``application/octet-stream`` or ``application/jsonl``) or multipart
    (field ``file``). Every line is checked; a bad line refuses the whole file (422, with line numbers)."""
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=5, max_part_size=ctx.settings.max_upload_bytes)
        part = form.get("file")
        if not isinstance(part, UploadFile):
            raise Invalid("multipart upload needs a 'file' field", code="missing_file")
        data = await part.read()
        name = name or part.filename or "train.jsonl"
        await form.close()
    elif not content_type or content_type.startswith(
        (
            "application/octet-stream",
            "application/jsonl",
            "application/x-ndjson",
            "text/plain",
            "application/json",
        )
    ):
        data = await request.body()
    else:
        raise UnsupportedMedia("send the JSONL file raw (application/octet-stream) or as multipart/form-data")

    def run() -> dict[str, Any]:
        base = bases.get(model)
        uploaded: dict[str, Any] = files.upload(
            principal, data, name=(name or "train.jsonl")[:200], base=base, scrub=scrub, project=project
        )
        return uploaded

    out = FileObject(**await run_in_threadpool(run))
    response.headers["Location"] = f"/api/v1/fine_tuning/files/{out.id}"
    return out


@router.get("/files/{file_id}", response_model=FileObject, responses=errors(401, 403, 404))
def get_file(file_id: str, principal: UserPrincipal, files: FineTuneFilesDep) -> FileObject:
    return FileObject(**files.get(principal, file_id))


@router.post("/jobs/estimate", response_model=CostEstimate, responses=errors(401, 403, 404, 422))
def estimate(body: CreateJobBody, principal: UserPrincipal, fine_tuning: FineTuningDep) -> CostEstimate:
    """Time and cost before submitting: tokens x epochs x compute per token / the profile's throughput."""
    return CostEstimate(**fine_tuning.estimate(principal, body.request()))


@router.post(
    "/jobs", status_code=201, response_model=JobObject, responses=errors(401, 403, 404, 413, 422, 429)
)
def create_job(
    body: CreateJobBody,
    principal: UserPrincipal,
    request: Request,
    response: Response,
    ctx: ContextDep,
    fine_tuning: FineTuningDep,
    project: ProjectQuery = None,
) -> JobObject:
    job = fine_tuning.create(principal, body.request(), ip=client_ip(request), project=project)
    response.headers["Location"] = f"/api/v1/fine_tuning/jobs/{job.id}"
    return _job(ctx, job)


@router.get("/jobs", response_model=JobList, responses=errors(401, 403, 404, 422))
async def list_jobs(
    principal: UserPrincipal,
    ctx: ContextDep,
    fine_tuning: FineTuningDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    project: ProjectQuery = None,
) -> JobList:
    return await read(ctx.db, _list, ctx, fine_tuning, principal, limit, cursor, project)


def _list(
    ctx: Context,
    fine_tuning: FineTuning,
    principal: Principal,
    limit: int,
    cursor: str | None,
    project: str | None,
) -> JobList:
    """One page of jobs with their costs: the page query and one read of the price table."""
    rows, next_cursor = fine_tuning.page(principal, limit, cursor, project)
    prices = ctx.services.jobs.prices.all()
    return JobList(
        data=[_job(ctx, j, prices) for j in rows], has_more=next_cursor is not None, next_cursor=next_cursor
    )


@router.get("/jobs/{job_id:ft_job_id}", response_model=JobObject, responses=errors(401, 403, 404))
def get_job(job_id: str, principal: UserPrincipal, ctx: ContextDep, fine_tuning: FineTuningDep) -> JobObject:
    return _job(ctx, fine_tuning.get(principal, job_id))


@router.post("/jobs/{job_id}/cancel", response_model=JobObject, responses=errors(401, 403, 404, 409))
def cancel_job(
    job_id: str,
    principal: UserPrincipal,
    request: Request,
    ctx: ContextDep,
    fine_tuning: FineTuningDep,
    jobs: JobsDep,
) -> JobObject:
    fine_tuning.get(principal, job_id)
    job, _ = jobs.cancel(principal, job_id, ip=client_ip(request))
    return _job(ctx, job)


@router.get("/jobs/{job_id}/checkpoints", response_model=CheckpointList, responses=errors(401, 403, 404))
def checkpoints(job_id: str, principal: UserPrincipal, fine_tuning: FineTuningDep) -> CheckpointList:
    svc = fine_tuning
    job = svc.get(principal, job_id)
    return CheckpointList(
        data=[CheckpointObject(**views.checkpoint_view(job, e)) for e in svc.checkpoints(job)]
    )


class MergedDownload(BaseModel):
    success: bool
    encrypted_model: str
    job_id: str
    scheme: str
    model_type: str
    model_format: str | None
    package_bytes: int
    salt: str | None = None
    nonce: str | None = None


@router.get(
    "/jobs/{job_id}/merged_model", response_model=MergedDownload, responses=errors(401, 403, 404, 409, 422)
)
def merged_model(
    job_id: str,
    principal: UserPrincipal,
    request: Request,
    fine_tuning: FineTuningDep,
    jobs: JobsDep,
    bases: BaseModelsDep,
    scheme: Annotated[Literal["api-key", "x25519"] | None, Query()] = None,
) -> MergedDownload:
    """The adapter merged into its base weights, encrypted for the caller like every model download."""
    from bastion.api.deps import presented_credential
    from bastion.jobs.download import download
    from bastion.llm.merge import merged_package

    fine_tuning.get(principal, job_id)
    api_key = presented_credential(request) if principal.via == "api_key" else None
    out = download(
        jobs,
        principal,
        job_id,
        api_key=api_key,
        scheme=scheme,
        ip=client_ip(request),
        transform=lambda job, package: merged_package(job, package, bases),
    )
    return MergedDownload(**{**out, "model_type": "llm_merged"})


@router.get(
    "/jobs/{job_id}/events",
    response_model=EventList,
    responses={**errors(401, 403, 404, 422), 200: {"content": {"text/event-stream": {}}}},
)
def events(
    job_id: str,
    principal: UserPrincipal,
    request: Request,
    ctx: ContextDep,
    fine_tuning: FineTuningDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
    stream: Annotated[bool, Query(description="Live Server-Sent Events until the job ends")] = False,
    accept: Annotated[str, Header()] = "",
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> Any:
    """A page of events, oldest first; with ``stream=true`` (or Accept: text/event-stream) an SSE
    stream that replays from ``cursor`` and ends when the job does."""
    svc = fine_tuning
    job = svc.get(principal, job_id)
    if stream or "text/event-stream" in accept:
        start = 0
        if cursor:
            from bastion.llm.service import event_after

            start = event_after(cursor)
        elif last_event_id is not None and last_event_id.isdigit():
            start = int(last_event_id)
        return StreamingResponse(
            _stream(ctx, svc, job.id, start, request),
            media_type="text/event-stream",
            headers={"X-Accel-Buffering": "no"},
        )
    rows, next_cursor = svc.events(job, limit, cursor)
    return EventList(
        data=[EventObject(**views.event_view(r)) for r in rows],
        has_more=next_cursor is not None,
        next_cursor=next_cursor,
    )


def _sse(kind: str, data: dict[str, Any], event_id: str | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


async def _stream(
    ctx: Context, svc: FineTuning, job_id: str, after: int, request: Request
) -> AsyncIterator[str]:
    jobs = svc.jobs
    last, quiet_since = after, time.monotonic()
    while not await request.is_disconnected():
        rows = await run_in_threadpool(jobs.events_after, job_id, last)
        for row in rows:
            last = row.id
            yield _sse("event", views.event_view(row), str(row.id))
        if rows:
            quiet_since = time.monotonic()
            continue
        job = await run_in_threadpool(jobs.get_any, job_id)
        if states.is_terminal(job.state):
            for row in await run_in_threadpool(jobs.events_after, job_id, last, 10_000):
                last = row.id
                yield _sse("event", views.event_view(row), str(row.id))
            yield _sse("end", _job(ctx, job).model_dump())
            return
        if time.monotonic() - quiet_since >= SSE_KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(SSE_POLL_SECONDS)


__all__ = ["router"]
