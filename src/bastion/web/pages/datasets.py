"""Datasets: drag-and-drop upload (with a progress bar, in app.js), then the de-identification report
per column, the schema and statistics, and a preview of the stored, de-identified rows."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse, Response

from bastion.api.deps import DatasetsDep
from bastion.context import Context
from bastion.errors import BastionError, Invalid
from bastion.web.listing import gather
from bastion.web.pages.base import (
    Ctx,
    Session,
    Writer,
    form_fields,
    page_router,
    redirect,
    threaded,
    uploaded,
)
from bastion.web.render import page

router = page_router(prefix="/datasets")
PREVIEW_ROWS = 20


@router.get("")
def dataset_list(request: Request, datasets: DatasetsDep, session: Session) -> Response:
    return page(
        request,
        "datasets.html",
        datasets=gather(lambda n, c: datasets.list_for(session.principal, n, c))[::-1],
    )


@router.post("/upload")
async def upload(request: Request, ctx: Ctx, datasets: DatasetsDep, session: Writer) -> Response:
    """Multipart (``file``, optional ``name``): the same ``DatasetCatalog.upload`` as the API's."""
    form = await request.form(max_files=1, max_fields=10, max_part_size=ctx.settings.max_upload_bytes)
    file = uploaded(form, "file")
    if file is None:
        raise Invalid("choose a file to upload", code="missing_file")
    data = await file.read()
    await form.close()
    if not data:
        raise Invalid("the upload is empty", code="empty_upload")
    name_field = form.get("name")
    name = (name_field if isinstance(name_field, str) and name_field.strip() else file.filename) or "dataset"
    view = await threaded(datasets.upload, session.principal, data, name=name.strip()[:200], policy=None)
    if "hx-request" in request.headers or request.headers.get("accept", "").startswith("application/json"):
        return JSONResponse({"id": view["id"], "location": f"/datasets/{view['id']}"}, status_code=201)
    return redirect(f"/datasets/{view['id']}")


def preview(ctx: Context, principal: Any, dataset_id: str, access_code: str | None = None) -> dict[str, Any]:
    frame = ctx.services.datasets.load_frame(principal, dataset_id, access_code).head(PREVIEW_ROWS)
    return {
        "columns": [str(c) for c in frame.columns],
        "rows": [
            ["" if v is None else str(v) for v in row]
            for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False)
        ],
    }


def _dataset_page(
    request: Request,
    ctx: Context,
    principal: Any,
    dataset_id: str,
    access_code: str | None = None,
) -> Response:
    """A protected dataset's rows are shown only after its access code is given (never kept: the
    code is posted, used once for this page, and wrong codes count towards the lockout)."""
    view = ctx.services.datasets.get(principal, dataset_id)
    actions = {a["column"]: a for a in view["deidentification"]}
    rows, code_error, status = None, "", 200
    if not view.get("access_protected") or access_code is not None:
        try:
            rows = preview(ctx, principal, dataset_id, access_code)
        except BastionError as exc:
            code_error, status = exc.message, exc.status_code
    return page(
        request, "dataset.html", status, ds=view, actions=actions, preview=rows, code_error=code_error
    )


@router.get("/{dataset_id}")
def dataset_page(request: Request, ctx: Ctx, session: Session, dataset_id: str) -> Response:
    return _dataset_page(request, ctx, session.principal, dataset_id)


@router.post("/{dataset_id}/preview")
async def protected_preview(request: Request, ctx: Ctx, session: Writer, dataset_id: str) -> Response:
    code = (await form_fields(request)).get("access_code") or ""
    if not code:
        raise Invalid("enter the dataset's access code", code="access_code_required")
    return await threaded(_dataset_page, request, ctx, session.principal, dataset_id, code[:1024])


@router.post("/{dataset_id}/delete")
async def delete(request: Request, datasets: DatasetsDep, session: Writer, dataset_id: str) -> Response:
    await threaded(datasets.delete, session.principal, dataset_id)
    return redirect("/datasets")
