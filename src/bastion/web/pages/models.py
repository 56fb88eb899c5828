"""Models: the registry (versions, metrics, lineage), a chart comparing versions on a chosen metric,
the best version, quantize and a predict form (JSON rows or CSV text)."""

from __future__ import annotations

import io
import json
from typing import Annotated, Any

from fastapi import Query, Request
from starlette.responses import Response

from bastion.api.deps import GenerationDep, ModelsDep
from bastion.context import Context
from bastion.errors import BastionError, Invalid, NotFound
from bastion.web.listing import gather
from bastion.web.pages.base import Ctx, Session, Writer, form_fields, page_router, redirect, threaded
from bastion.web.render import page

router = page_router(prefix="/models")
MAX_PREDICT_ROWS = 1000


@router.get("")
def model_list(request: Request, models: ModelsDep, session: Session) -> Response:
    return page(
        request,
        "models.html",
        models=gather(lambda n, c: models.list_for(session.principal, n, c))[::-1],
    )


def numeric_metrics(history: list[dict[str, Any]]) -> list[str]:
    return sorted(
        {
            k
            for v in history
            for k, m in v["metrics"].items()
            if isinstance(m, int | float) and not isinstance(m, bool)
        }
    )


def _model_context(ctx: Context, session: Session, model_id: str, metric: str) -> dict[str, Any]:
    model = ctx.services.models.get(session.principal, model_id)
    metrics = numeric_metrics(model["history"])
    chosen = metric if metric in metrics else (model.get("primary_metric") or (metrics[0] if metrics else ""))
    try:
        best = ctx.services.models.best(session.principal, model_id, chosen or None)
    except NotFound:
        best = None
    compare = {
        "x": [v["version"] for v in model["history"]],
        "series": {chosen: [v["metrics"].get(chosen) for v in model["history"]]} if chosen else {},
    }
    language = any(v["lineage"].get("kind") == "lora_adapter" for v in model["history"][-1:])
    return {
        "model": model,
        "metrics": metrics,
        "metric": chosen,
        "best": best,
        "compare": compare,
        "language_model": language,
    }


@router.get("/{model_id}")
def model_page(
    request: Request,
    ctx: Ctx,
    session: Session,
    model_id: str,
    metric: Annotated[str, Query(max_length=64)] = "",
) -> Response:
    return page(
        request, "model.html", result=None, error="", **_model_context(ctx, session, model_id, metric)
    )


@router.post("/{model_id}/quantize")
async def quantize(request: Request, ctx: Ctx, session: Writer, model_id: str) -> Response:
    """The API's own handler (int8 version + report): one code path for both."""
    from starlette.concurrency import run_in_threadpool

    from bastion.api.routes.models import quantize_measured

    form = await form_fields(request)
    version = int(form["version"]) if (form.get("version") or "").isdigit() else None
    await run_in_threadpool(
        quantize_measured, ctx, session.principal, model_id, version, form.get("access_code") or None
    )
    return redirect(f"/models/{model_id}")


def parse_rows(text: str) -> list[dict[str, Any]]:
    """JSON (one object or a list of objects) or CSV with a header line."""
    text = text.strip()
    if not text:
        raise Invalid("enter at least one row")
    if text[0] in "[{":
        try:
            parsed = json.loads(text)
        except ValueError:
            raise Invalid("the rows are not valid JSON") from None
        rows = parsed if isinstance(parsed, list) else [parsed]
        if not all(isinstance(r, dict) for r in rows):
            raise Invalid("JSON rows must be objects of column: value")
    else:
        import csv

        rows = [dict(r) for r in csv.DictReader(io.StringIO(text))]
        rows = [{k: _scalar(v) for k, v in r.items()} for r in rows]
    if not rows or len(rows) > MAX_PREDICT_ROWS:
        raise Invalid(f"send 1 to {MAX_PREDICT_ROWS} rows")
    return rows


def _scalar(value: str | None) -> Any:
    if value is None or value == "":
        return None
    try:
        return float(value) if any(c in value for c in ".eE") else int(value)
    except ValueError:
        return value


@router.post("/{model_id}/predict")
async def predict(request: Request, ctx: Ctx, session: Session, model_id: str) -> Response:
    """Any role may predict (as with the API); CSRF still applies since it is a POST."""
    from bastion.api.routes.models import predict as api_predict
    from bastion.contract.catalog import PredictRequest
    from bastion.web.pages.base import self_writer

    await self_writer(request, session)
    form = await form_fields(request)
    context = await threaded(_model_context, ctx, session, model_id, "")
    try:
        rows = parse_rows(form.get("rows", ""))
        version = int(form["version"]) if (form.get("version") or "").isdigit() else None
        body = PredictRequest(rows=rows, version=version, probabilities=True)
        result = await api_predict(
            model_id, body, session.principal, ctx.services.models, form.get("access_code") or None
        )
    except BastionError as exc:
        return page(
            request,
            "model.html",
            exc.status_code,
            result=None,
            error=exc.message,
            rows=form.get("rows", ""),
            **context,
        )
    return page(
        request, "model.html", result=result, rows_in=rows, error="", rows=form.get("rows", ""), **context
    )


# -- prompt playground (language models) ---------------------------------------------------------
PLAYGROUND_MAX_TOKENS = 128


def generate_params(form: dict[str, str]) -> Any:
    """The playground's prompt and bounded decoding settings, as the generate route's parameters."""
    from bastion.llm.generate import GenerateParams

    prompt = (form.get("prompt") or "").strip()
    if not prompt or len(prompt) > 4000:
        raise Invalid("enter a prompt (at most 4,000 characters)", code="invalid_prompt")
    try:
        tokens = int(form.get("max_new_tokens") or 32)
        temperature = float(form.get("temperature") or 0)
    except ValueError:
        raise Invalid("max new tokens and temperature must be numbers", code="invalid_number") from None
    if not 1 <= tokens <= PLAYGROUND_MAX_TOKENS:
        raise Invalid(f"max new tokens: 1 to {PLAYGROUND_MAX_TOKENS}", code="invalid_max_new_tokens")
    if not 0 <= temperature <= 2:
        raise Invalid("temperature: 0 (greedy) to 2", code="invalid_temperature")
    return GenerateParams(
        prompt=None,
        messages=[{"role": "user", "content": prompt}],
        max_new_tokens=tokens,
        temperature=temperature,
        seed=0,
    )


@router.post("/{model_id}/generate")
async def generate(
    request: Request, ctx: Ctx, generation: GenerationDep, session: Writer, model_id: str
) -> Response:
    """The generate route's compare mode: the fine-tuned answer and the base model's, side by side."""
    form = await form_fields(request)
    context = await threaded(_model_context, ctx, session, model_id, "")
    try:
        params = generate_params(form)
        answer = await threaded(
            generation.generate,
            session.principal,
            model_id,
            params,
            access_code=form.get("access_code") or None,
            compare=True,
        )
    except BastionError as exc:
        return page(
            request,
            "model.html",
            exc.status_code,
            result=None,
            error="",
            gen_error=exc.message,
            prompt=form,
            **context,
        )
    return page(request, "model.html", result=None, error="", answer=answer, prompt=form, **context)
