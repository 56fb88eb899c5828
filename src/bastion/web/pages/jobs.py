"""Jobs: a filterable list, the submit form generated from each model type's parameter schema (the
cost estimate first), and a job's live page (SSE progress and metrics, log tail, cancel, download)."""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from fastapi import Query, Request
from starlette.responses import Response, StreamingResponse

from bastion.api.deps import JobsDep, client_ip
from bastion.auth.principal import Principal
from bastion.auth.roles import Role
from bastion.context import Context
from bastion.contract.jobs import SubmitRequest
from bastion.errors import BastionError, Invalid
from bastion.jobs import views
from bastion.jobs.service import MAX_LIST, JobService
from bastion.web.forms import fields_of, parse_params
from bastion.web.listing import gather
from bastion.web.pages.base import (
    Ctx,
    Session,
    Writer,
    form_fields,
    last_event_id,
    page_router,
    redirect,
    sse,
    threaded,
)
from bastion.web.render import page

router = page_router(prefix="/jobs")
StateName = Literal["pending", "running", "completed", "failed", "cancelled"]
LOG_TAIL = 200


@router.get("")
def job_list(
    request: Request,
    jobs: JobsDep,
    session: Session,
    status: Annotated[StateName | None, Query()] = None,
    model_type: Annotated[str, Query(max_length=64)] = "",
    limit: Annotated[int, Query(ge=1, le=MAX_LIST)] = 50,
) -> Response:
    rows = [views.summary(j) for j in jobs.list_for(session.principal, limit, status)[0]]
    if model_type:
        rows = [j for j in rows if j["model_type"] == model_type]
    template = "partials/job_rows.html" if "hx-request" in request.headers else "jobs.html"
    from bastion.ml.model_types import model_type_names

    return page(
        request,
        template,
        jobs=rows,
        status=status or "",
        model_type=model_type,
        model_types=model_type_names(),
        states=list(StateName.__args__),  # type: ignore[attr-defined]
        limit=limit,
    )


# -- submit ---------------------------------------------------------------------------------------
def _model_types() -> dict[str, dict[str, Any]]:
    from bastion.ml.model_types import list_model_types

    return {m["name"]: m for m in list_model_types()}


def _dataset_choices(ctx: Context, principal: Principal) -> list[tuple[str, str]]:
    from bastion.data.builtin import BUILTINS

    builtin = [(f"builtin:{b.name}", f"{b.name} (built-in)") for b in BUILTINS.values() if b.jobs]
    if not principal.has(Role.USER):
        return builtin
    uploads = [
        (f"upload:{d['id']}", f"{d['name']} (uploaded)")
        for d in gather(lambda n, c: ctx.services.datasets.list_for(principal, n, c))
    ]
    return builtin + uploads


def _dataset_ref(value: str) -> tuple[str, str | None]:
    kind, _, ref = value.partition(":")
    if kind == "builtin" and ref:
        return ref, None
    if kind == "upload" and ref:
        return "user_provided", ref
    raise Invalid("choose a dataset", code="invalid_dataset")


def _request_of(form: dict[str, str], types: dict[str, dict[str, Any]]) -> SubmitRequest:
    model_type = form.get("model_type", "")
    if model_type not in types:
        raise Invalid("choose a model type", code="unknown_model_type")
    source, dataset_id = _dataset_ref(form.get("dataset", ""))
    return SubmitRequest(
        model_type=model_type,
        dataset_source=source,
        dataset_id=dataset_id,
        target=(form.get("target") or "").strip() or None,
        params=parse_params(types[model_type]["params"], form),
        resource_profile=form.get("resource_profile") or None,
        max_runtime_seconds=None,
        seed=0,
    )


def _estimate(ctx: Context, principal: Principal, form: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    try:
        req = _request_of(form, _model_types())
        est = ctx.services.jobs.cost_estimate(
            principal, req.model_type, req.dataset_source, req.resource_profile, req.dataset_id, req.params
        )
        return est, ""
    except BastionError as exc:
        return None, exc.message


def _form_context(ctx: Context, principal: Principal, form: dict[str, str]) -> dict[str, Any]:
    types = _model_types()
    chosen = form.get("model_type") or next(iter(types))
    form = {**form, "model_type": chosen}
    datasets = _dataset_choices(ctx, principal)
    form.setdefault("dataset", datasets[0][0] if datasets else "")
    estimate, estimate_error = _estimate(ctx, principal, form)
    return {
        "types": types,
        "chosen": types[chosen],
        "fields": fields_of(types[chosen]["params"]),
        "datasets": datasets,
        "profiles": [p.public() for p in ctx.services.jobs.prices.all().values()],
        "form": form,
        "estimate": estimate,
        "estimate_error": estimate_error,
    }


@router.get("/new")
def submit_form(request: Request, ctx: Ctx, session: Session) -> Response:
    form = {k: v for k, v in request.query_params.items() if len(v) <= 4096}
    template = "partials/job_form.html" if "hx-request" in request.headers else "job_new.html"
    return page(request, template, error="", **_form_context(ctx, session.principal, form))


@router.get("/new/estimate")
def estimate(request: Request, ctx: Ctx, session: Session) -> Response:
    form = {k: v for k, v in request.query_params.items() if len(v) <= 4096}
    est, err = _estimate(ctx, session.principal, form)
    return page(request, "partials/estimate.html", estimate=est, estimate_error=err)


@router.post("")
async def submit(request: Request, ctx: Ctx, jobs: JobsDep, session: Writer) -> Response:
    form = await form_fields(request)
    try:
        req = _request_of(form, await threaded(_model_types))
        job = await threaded(jobs.submit, session.principal, req, ip=client_ip(request))
    except BastionError as exc:
        context = await threaded(_form_context, ctx, session.principal, form)
        return page(request, "job_new.html", exc.status_code, error=exc.message, **context)
    return redirect(f"/jobs/{job.id}")


# -- one job --------------------------------------------------------------------------------------
def _job_context(ctx: Context, principal: Principal, job_id: str) -> dict[str, Any]:
    svc = ctx.services.jobs
    job = svc.get(principal, job_id)
    status = views.status(job)
    logs = svc.logs(job, max(0, job.log_lines - LOG_TAIL), LOG_TAIL)
    return {
        "job": status,
        "logs": logs,
        "history_json": _history_series(status["history"]),
        "download_key": has_download_key(svc, principal),
    }


def has_download_key(svc: JobService, principal: Principal) -> bool:
    """Browser downloads are sealed to a registered X25519 key (the private half stays with the
    CLI); without one the page shows the CLI command instead of a button that cannot work."""
    from bastion.jobs.download import DownloadKeys

    return DownloadKeys(svc).get(principal.user_id) is not None


def _history_series(history: list[dict[str, Any]]) -> dict[str, Any]:
    """Epoch-indexed series of every numeric metric, the shape app.js hands to uPlot."""
    keys = sorted({k for h in history for k, v in h.items() if k != "epoch" and isinstance(v, int | float)})
    return {
        "x": [h.get("epoch") for h in history],
        "series": {k: [h.get(k) for h in history] for k in keys if k not in ("lr", "steps")},
    }


@router.get("/{job_id}")
def job_page(request: Request, ctx: Ctx, session: Session, job_id: str) -> Response:
    return page(request, "job.html", **_job_context(ctx, session.principal, job_id))


@router.get("/{job_id}/panel")
def job_panel(request: Request, ctx: Ctx, session: Session, job_id: str) -> Response:
    return page(request, "partials/job_panel.html", **_job_context(ctx, session.principal, job_id))


@router.get("/{job_id}/logs")
def job_logs(request: Request, ctx: Ctx, session: Session, job_id: str) -> Response:
    ctx_ = _job_context(ctx, session.principal, job_id)
    return page(request, "partials/job_logs.html", **ctx_)


@router.get("/{job_id}/events")
def job_events(request: Request, jobs: JobsDep, session: Session, job_id: str) -> StreamingResponse:
    """The API's own SSE stream (status, state, progress, metrics, end) for the page's script."""
    from bastion.api.routes.training import _event_stream

    svc = jobs
    job = svc.get(session.principal, job_id)
    return sse(_event_stream(svc, job.id, last_event_id(request), request))


@router.post("/{job_id}/cancel")
async def cancel(request: Request, ctx: Ctx, jobs: JobsDep, session: Writer, job_id: str) -> Response:
    await threaded(jobs.cancel, session.principal, job_id, ip=client_ip(request))
    if "hx-request" in request.headers:
        return page(
            request, "partials/job_panel.html", **await threaded(_job_context, ctx, session.principal, job_id)
        )
    return redirect(f"/jobs/{job_id}")


@router.get("/{job_id}/download")
def download(request: Request, jobs: JobsDep, session: Session, job_id: str) -> Response:
    """The model sealed to the caller's registered X25519 key (as ``GET /training/model`` gives a
    signed-in caller); without one, the error page says how to register it."""
    from bastion.jobs.download import download as sealed_download

    body = sealed_download(
        jobs, session.principal, job_id, api_key=None, scheme="x25519", ip=client_ip(request)
    )
    return Response(
        json.dumps(body),
        media_type="application/json",
        headers={"Content-Disposition": f'attachment; filename="job-{job_id[:12]}.sealed.json"'},
    )
