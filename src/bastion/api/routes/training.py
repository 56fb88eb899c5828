"""Training jobs: seeds/000's routes and shapes, plus params, events (SSE), logs and cost estimates."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated, Any, Literal

from fastapi import Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import PlainTextResponse, StreamingResponse

from bastion.api.deps import JobsDep, UserPrincipal, client_ip, presented_credential
from bastion.api.idempotency import Idempotent
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, SeqQuery
from bastion.api.reads import read
from bastion.api.routing import PrefixRouter
from bastion.api.scoping import ProjectQuery
from bastion.contract.common import DB_INT_MAX, Ack
from bastion.contract.jobs import (
    CancelResponse,
    CostEstimate,
    DownloadKey,
    DownloadKeyStored,
    EncryptedModel,
    Examples,
    JobList,
    JobStatus,
    LogPage,
    ModelTypes,
    PublicKeyBody,
    ResourceProfiles,
    StateName,
    SubmitRequest,
    SubmitResponse,
)
from bastion.jobs import states, views
from bastion.jobs.download import DownloadKeys, check_public_key, download
from bastion.jobs.pricing import RESOURCE_PROFILE_NOTE
from bastion.jobs.service import JobService

router = PrefixRouter(prefix="/api/v1/training", tags=["training"])
SSE_POLL_SECONDS = 0.25
SSE_KEEPALIVE_SECONDS = 15.0


# seeds/000's name for the body; one model shared by the route, the service and the SDK.
SubmitBody = SubmitRequest


EXAMPLES: dict[str, dict[str, Any]] = {
    "alzheimer_classifier_synthetic": {
        "model_type": "alzheimer_classifier",
        "dataset_source": "synthetic_test_data",
        "description": "Train Alzheimer's disease classifier on synthetic test data",
    },
    "alzheimer_classifier_kaggle": {
        "model_type": "alzheimer_classifier",
        "dataset_source": "kaggle_alzheimer",
        "description": "Train on the Kaggle OASIS file if configured (synthetic fallback otherwise)",
    },
    "adaptive_neural_net_wine": {
        "model_type": "adaptive_neural_net",
        "dataset_source": "wine",
        "params": {"epochs": 50, "hidden_layers": [32, 16]},
        "description": "A small neural network with early stopping; per-epoch metrics stream live",
    },
    "tabular_regressor_diabetes": {
        "model_type": "tabular_regressor",
        "dataset_source": "diabetes",
        "params": {"estimator": "gradient_boosting"},
        "description": "Regression of disease progression on scikit-learn's diabetes data",
    },
}


@router.get("/examples", response_model=Examples)
def examples() -> dict[str, Any]:
    """Example configurations (no authentication)."""
    from bastion.jobs.datasets import source_names
    from bastion.ml.model_types import model_type_names

    return {
        "examples": EXAMPLES,
        "usage": "Submit one of these configurations to /api/v1/training/submit",
        "model_types": model_type_names(),
        "dataset_sources": source_names(),
    }


@router.get("/model-types", response_model=ModelTypes)
def model_types(_: UserPrincipal) -> dict[str, Any]:
    """Every model type with its parameter schema (bounds, defaults, choices)."""
    from bastion.ml.model_types import list_model_types

    return {"model_types": list_model_types()}


@router.post("/submit", response_model=SubmitResponse, responses=errors(404, 409, 413))
def submit(
    body: SubmitRequest,
    principal: UserPrincipal,
    request: Request,
    jobs: JobsDep,
    idem: Idempotent,
    response: Response,
) -> SubmitResponse | Response:
    """Queue a job (seeds/000: answers 200). With ``Idempotency-Key`` a retried submit returns the
    first job instead of queueing a second one."""
    if (replay := idem.replay()) is not None:
        return replay
    job = jobs.submit(principal, body, ip=client_ip(request))
    out = SubmitResponse(
        success=True, job_id=job.id, message="Training job submitted successfully", status=job.state
    )
    return idem.created(response, out, f"/api/v1/training/status/{job.id}", status=200)


@router.get("/status/{job_id}", response_model=JobStatus)
def status(job_id: str, principal: UserPrincipal, jobs: JobsDep) -> dict[str, Any]:
    return views.status(jobs.get(principal, job_id))


@router.get("/jobs", response_model=JobList, responses=errors(404))
async def list_jobs(
    principal: UserPrincipal,
    jobs: JobsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    status: Annotated[StateName | None, Query(description="Only jobs in this state")] = None,
    cursor: CursorQuery = None,
    project: ProjectQuery = None,
) -> dict[str, Any]:
    """The jobs of your projects (or of one, ``?project=``), newest first (seeds/000's shape, plus
    ``next_cursor``)."""
    rows, next_cursor = await read(jobs.db, jobs.list_for, principal, limit, status, cursor, project)
    return {"jobs": [views.summary(j) for j in rows], "next_cursor": next_cursor}


@router.post("/cancel/{job_id}", response_model=CancelResponse, responses=errors(409))
def cancel(job_id: str, principal: UserPrincipal, request: Request, jobs: JobsDep) -> dict[str, Any]:
    job, already = jobs.cancel(principal, job_id, ip=client_ip(request))
    message = "Job was already cancelled" if already else "Job cancelled successfully"
    return {"success": True, "message": message, "job_id": job.id, "status": job.state}


@router.get("/model/{job_id}", response_model=EncryptedModel, responses=errors(409))
def model(
    job_id: str,
    principal: UserPrincipal,
    request: Request,
    jobs: JobsDep,
    scheme: Annotated[
        Literal["api-key", "x25519"] | None, Query(description="Default: x25519 if registered")
    ] = None,
) -> dict[str, Any]:
    """The trained model, encrypted so only the caller can open it (see docs/jobs.md)."""
    api_key = presented_credential(request) if principal.via == "api_key" else None
    return download(jobs, principal, job_id, api_key=api_key, scheme=scheme, ip=client_ip(request))


@router.get(
    "/jobs/{job_id}/logs",
    response_model=LogPage,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}}},
)
def logs(
    job_id: str,
    principal: UserPrincipal,
    jobs: JobsDep,
    after: SeqQuery = 0,
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
    format: Annotated[Literal["json", "text"], Query()] = "json",
) -> dict[str, Any] | PlainTextResponse:
    svc = jobs
    page = svc.logs(svc.get(principal, job_id), after, limit)
    if format == "text":
        return PlainTextResponse(
            "".join(f"{ln['ts']} [{ln['stream']}] {ln['line']}\n" for ln in page["lines"])
        )
    return page


@router.get(
    "/jobs/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "Events until ``end``; each event's data is one JSON object",
            "content": {"text/event-stream": {"schema": {"type": "object"}}},
        }
    },
)
def events(
    job_id: str,
    principal: UserPrincipal,
    request: Request,
    jobs: JobsDep,
    after: Annotated[
        int | None, Query(ge=0, le=DB_INT_MAX, description="Replay events after this id")
    ] = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=20)] = None,
) -> StreamingResponse:
    """Server-Sent Events: ``status`` first, then ``state``, ``progress`` and ``metrics`` as they happen,
    and ``end`` once the job is finished. Reconnect with Last-Event-ID to resume."""
    svc = jobs
    job = svc.get(principal, job_id)
    start = after if after is not None else 0
    if after is None and last_event_id is not None and last_event_id.isdigit():
        start = min(int(last_event_id), DB_INT_MAX)  # an id past every event replays nothing
    return StreamingResponse(
        _event_stream(svc, job.id, start, request),
        media_type="text/event-stream",
        headers={"X-Accel-Buffering": "no"},
    )


def _sse(kind: str, data: dict[str, Any], event_id: int | None = None) -> str:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {kind}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


async def _event_stream(svc: JobService, job_id: str, after: int, request: Request) -> AsyncIterator[str]:
    job = await run_in_threadpool(svc.get_any, job_id)
    yield _sse("status", views.status(job))
    last, quiet_since = after, time.monotonic()
    while not await request.is_disconnected():
        rows = await run_in_threadpool(svc.events_after, job_id, last)
        for row in rows:
            last = row.id
            yield _sse(row.kind, {"job_id": job_id, **row.data}, row.id)
        if rows:
            quiet_since = time.monotonic()
            continue
        job = await run_in_threadpool(svc.get_any, job_id)
        if states.is_terminal(job.state):
            for row in await run_in_threadpool(svc.events_after, job_id, last, 10_000):
                last = row.id
                yield _sse(row.kind, {"job_id": job_id, **row.data}, row.id)
            yield _sse("end", views.status(job))
            return
        if time.monotonic() - quiet_since >= SSE_KEEPALIVE_SECONDS:
            quiet_since = time.monotonic()
            yield ": keep-alive\n\n"
        await asyncio.sleep(SSE_POLL_SECONDS)


@router.get("/cost-estimate", response_model=CostEstimate)
def cost_estimate(
    principal: UserPrincipal,
    jobs: JobsDep,
    model_type: Annotated[str, Query(min_length=1, max_length=64)],
    dataset_source: Annotated[str, Query(min_length=1, max_length=64)],
    resource_profile: Annotated[str | None, Query(max_length=32)] = None,
    dataset_id: Annotated[str | None, Query(max_length=64)] = None,
    params: Annotated[str | None, Query(max_length=2000, description="JSON object of params")] = None,
) -> dict[str, Any]:
    """Time and cost of a job before submitting it: the model's compute estimate x the profile's price."""
    from bastion.errors import Invalid

    parsed: Any = {}
    if params:
        try:
            parsed = json.loads(params)
        except ValueError:
            raise Invalid("params must be a JSON object", code="invalid_params") from None
        if not isinstance(parsed, dict):
            raise Invalid("params must be a JSON object", code="invalid_params")
    return jobs.cost_estimate(principal, model_type, dataset_source, resource_profile, dataset_id, parsed)


@router.get("/resource-profiles", response_model=ResourceProfiles)
def resource_profiles(_: UserPrincipal, jobs: JobsDep) -> dict[str, Any]:
    return {
        "resource_profiles": [p.public() for p in jobs.prices.all().values()],
        "note": RESOURCE_PROFILE_NOTE,
    }


@router.get("/download-key", response_model=DownloadKey)
def get_download_key(principal: UserPrincipal, jobs: JobsDep) -> dict[str, Any]:
    from bastion.errors import NotFound

    row = DownloadKeys(jobs).get(principal.user_id)
    if row is None:
        raise NotFound("no download key registered", code="download_key_not_found")
    return {"public_key": row.public_key, "created_at": views.iso(row.created_at)}


@router.put("/download-key", response_model=DownloadKeyStored)
def put_download_key(
    body: PublicKeyBody, principal: UserPrincipal, request: Request, jobs: JobsDep
) -> dict[str, Any]:
    """Register an X25519 public key: later downloads are sealed to it (the strongest option)."""
    row = DownloadKeys(jobs).put(principal, check_public_key(body.public_key), client_ip(request))
    return {"success": True, "public_key": row.public_key, "created_at": views.iso(row.created_at)}


@router.delete("/download-key", response_model=Ack)
def delete_download_key(principal: UserPrincipal, request: Request, jobs: JobsDep) -> Ack:
    """Forget the registered key (answers the same whether or not one was registered)."""
    DownloadKeys(jobs).delete(principal, client_ip(request))
    return Ack(message="download key removed")
