"""Fine-tuning: the job list, a two-step create form (training file, then base model, hyperparameters
and LoRA settings with the cost estimate shown before submitting), and a job's live page (SSE loss
curve, checkpoints, cancel). Every call goes through the services the API's fine-tuning routes use."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import Query, Request
from pydantic import ValidationError
from starlette.responses import Response, StreamingResponse

from bastion.api.deps import BaseModelsDep, FineTuneFilesDep, FineTuningDep, JobsDep, client_ip
from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.errors import BastionError, Invalid
from bastion.jobs.pricing import Price
from bastion.llm import views
from bastion.llm.params import Hyperparameters
from bastion.llm.service import CreateRequest
from bastion.web.pages.base import (
    Ctx,
    Session,
    Writer,
    last_event_id,
    page_router,
    redirect,
    sse,
    threaded,
    uploaded,
)
from bastion.web.render import page

router = page_router(prefix="/fine-tuning")
SUFFIX = re.compile(r"^[A-Za-z0-9._-]{1,40}$")
LOSS_KEYS = ("train_loss", "eval_loss")
MAX_EVENTS = 2000


def _view(ctx: Context, job: Any, prices: dict[str, Price] | None = None) -> dict[str, Any]:
    """``prices``: the price table, read once for a whole list (else read here)."""
    price = (prices if prices is not None else ctx.services.jobs.prices.all()).get(job.resource_profile)
    return _dated(views.job_view(job, price.hourly_cost if price else None))


def _dated(view: dict[str, Any]) -> dict[str, Any]:
    """The API's unix seconds as datetimes, for the pages' UTC time filter."""
    for key in ("created_at", "finished_at"):
        if isinstance(view.get(key), int):
            view[key] = datetime.fromtimestamp(view[key], UTC)
    return view


@router.get("")
def job_list(
    request: Request,
    ctx: Ctx,
    fine_tuning: FineTuningDep,
    session: Session,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    rows, next_cursor = fine_tuning.page(session.principal, 50, cursor)
    prices = ctx.services.jobs.prices.all()
    return page(request, "ft_jobs.html", jobs=[_view(ctx, j, prices) for j in rows], next_cursor=next_cursor)


# -- create -----------------------------------------------------------------------------------------
def _number(form: dict[str, str], name: str, kind: type, default: Any) -> Any:
    raw = (form.get(name) or "").strip()
    if not raw:
        return default
    try:
        return kind(raw)
    except ValueError:
        raise Invalid(
            f"{name.replace('_', ' ')} must be a number", code="invalid_number", field=name
        ) from None


def request_of(form: dict[str, str]) -> CreateRequest:
    """The form as the API's create body: the same pydantic checks, errors named by field."""
    suffix = (form.get("suffix") or "").strip() or None
    if suffix is not None and not SUFFIX.match(suffix):
        raise Invalid(
            "the suffix may use only letters, digits, '.', '_' and '-' (at most 40)", code="invalid_suffix"
        )
    targets = [t.strip() for t in (form.get("target_modules") or "").split(",") if t.strip()]
    try:
        hp = Hyperparameters(
            n_epochs=_number(form, "n_epochs", int, 3),
            batch_size=_number(form, "batch_size", int, 4),
            learning_rate=_number(form, "learning_rate", float, 1e-3),
            lora={
                "r": _number(form, "lora_r", int, 8),
                "alpha": _number(form, "lora_alpha", float, 16.0),
                "dropout": _number(form, "lora_dropout", float, 0.05),
                "target_modules": targets or None,
            },
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise Invalid(f"{where}: {first['msg']}", code="invalid_hyperparameters") from None
    if not form.get("model") or not form.get("training_file"):
        raise Invalid("choose a base model and a training file", code="missing_file")
    return CreateRequest(
        model=form["model"][:100],
        training_file=form["training_file"][:64],
        validation_file=None,
        hyperparameters=hp,
        suffix=suffix,
        resource_profile=form.get("resource_profile") or None,
    )


def _estimate(ctx: Context, principal: Principal, form: dict[str, str]) -> tuple[dict[str, Any] | None, str]:
    try:
        return ctx.services.fine_tuning.estimate(principal, request_of(form)), ""
    except BastionError as exc:
        return None, exc.message


def _form_context(ctx: Context, principal: Principal, form: dict[str, str]) -> dict[str, Any]:
    bases = ctx.services.llm_bases.list()
    form = {**form}
    form.setdefault("model", bases[0]["name"] if bases else "")
    form.setdefault("resource_profile", ctx.services.jobs.prices.get(None).profile)
    file = None
    if form.get("training_file"):
        file = ctx.services.ft_files.get(principal, form["training_file"])  # foreign: 404 page
    estimate, estimate_error = _estimate(ctx, principal, form) if file else (None, "")
    return {
        "bases": bases,
        "form": form,
        "file": file,
        "profiles": [p.public() for p in ctx.services.jobs.prices.all().values()],
        "estimate": estimate,
        "estimate_error": estimate_error,
    }


def _query(request: Request) -> dict[str, str]:
    return {k: v for k, v in request.query_params.items() if len(v) <= 200}


@router.get("/new")
def create_form(request: Request, ctx: Ctx, session: Session) -> Response:
    return page(request, "ft_new.html", error="", **_form_context(ctx, session.principal, _query(request)))


@router.get("/new/estimate")
def estimate(request: Request, ctx: Ctx, session: Session) -> Response:
    est, err = _estimate(ctx, session.principal, _query(request))
    return page(request, "partials/ft_estimate.html", estimate=est, estimate_error=err)


@router.post("/files")
async def upload_file(
    request: Request, ctx: Ctx, bases: BaseModelsDep, files: FineTuneFilesDep, session: Writer
) -> Response:
    """Step one: the JSONL file, scrubbed and token-counted with the chosen base model's tokenizer."""
    form = await request.form(max_files=1, max_fields=10, max_part_size=ctx.settings.max_upload_bytes)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    part = uploaded(form, "file")
    try:
        if part is None or not part.filename:
            raise Invalid("choose a JSONL training file", code="missing_file")
        data = await part.read()
        name = (part.filename or "train.jsonl")[:200]

        def run() -> dict[str, Any]:
            base = bases.get(fields.get("model", ""))
            uploaded: dict[str, Any] = files.upload(session.principal, data, name=name, base=base)
            return uploaded

        out = await threaded(run)
    except BastionError as exc:
        context = await threaded(_form_context, ctx, session.principal, {"model": fields.get("model", "")})
        return page(request, "ft_new.html", exc.status_code, error=exc.message, **context)
    finally:
        await form.close()
    query = urlencode({"model": fields.get("model", ""), "training_file": out["id"]})
    return redirect(f"/fine-tuning/new?{query}")


@router.post("")
async def create(request: Request, ctx: Ctx, fine_tuning: FineTuningDep, session: Writer) -> Response:
    form = {k: v for k, v in (await request.form()).items() if isinstance(v, str)}
    try:
        job = await threaded(fine_tuning.create, session.principal, request_of(form), ip=client_ip(request))
    except BastionError as exc:
        context = await threaded(_form_context, ctx, session.principal, form)
        return page(request, "ft_new.html", exc.status_code, error=exc.message, **context)
    return redirect(f"/fine-tuning/{job.id}")


# -- one job ----------------------------------------------------------------------------------------
def loss_series(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Per-epoch training and validation loss from the job's metrics events (the shape app.js plots)."""
    points = [e["data"] for e in events if e["type"] == "metrics" and "epoch" in e["data"]]
    keys = [k for k in LOSS_KEYS if any(isinstance(p.get(k), int | float) for p in points)]
    return {"x": [p["epoch"] for p in points], "series": {k: [p.get(k) for p in points] for k in keys}}


def _job_context(ctx: Context, principal: Principal, job_id: str) -> dict[str, Any]:
    svc = ctx.services.fine_tuning
    job = svc.get(principal, job_id)
    events = [views.event_view(r) for r in svc.jobs.events_after(job.id, 0, MAX_EVENTS)]
    return {
        "job": _view(ctx, job),
        "error_message": job.error_message if job.state == "failed" else "",
        "checkpoints": [_dated(views.checkpoint_view(job, e)) for e in svc.checkpoints(job)],
        "loss_json": loss_series(events),
        "events": events[-20:],
    }


@router.get("/{job_id}")
def job_page(request: Request, ctx: Ctx, session: Session, job_id: str) -> Response:
    return page(request, "ft_job.html", **_job_context(ctx, session.principal, job_id))


@router.get("/{job_id}/panel")
def job_panel(request: Request, ctx: Ctx, session: Session, job_id: str) -> Response:
    return page(request, "partials/ft_panel.html", **_job_context(ctx, session.principal, job_id))


@router.get("/{job_id}/events")
def job_events(
    request: Request, ctx: Ctx, fine_tuning: FineTuningDep, session: Session, job_id: str
) -> StreamingResponse:
    """The API's own fine-tuning event stream (replayed from the start, ends with the job)."""
    from bastion.api.routes.fine_tuning import _stream

    svc = fine_tuning
    job = svc.get(session.principal, job_id)
    return sse(_stream(ctx, svc, job.id, last_event_id(request), request))


@router.post("/{job_id}/cancel")
async def cancel(
    request: Request, fine_tuning: FineTuningDep, jobs: JobsDep, session: Writer, job_id: str
) -> Response:
    def run() -> None:
        fine_tuning.get(session.principal, job_id)
        jobs.cancel(session.principal, job_id, ip=client_ip(request))

    await threaded(run)
    return redirect(f"/fine-tuning/{job_id}")
