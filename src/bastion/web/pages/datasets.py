"""Datasets: drag-and-drop upload (with a progress bar, in app.js), then the de-identification report
per column, the schema and statistics, and a preview of the stored, de-identified rows."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from starlette.responses import JSONResponse, Response

from bastion.catalog.datasets import DatasetCatalog
from bastion.context import Context
from bastion.errors import Invalid
from bastion.web.listing import gather
from bastion.web.pages.base import Ctx, Session, Writer, page_router, redirect, threaded, uploaded
from bastion.web.render import page

router = page_router(prefix="/datasets")
PREVIEW_ROWS = 20


def catalog(ctx: Context) -> DatasetCatalog:
    svc: DatasetCatalog = ctx.services["datasets"]
    return svc


@router.get("")
def dataset_list(request: Request, ctx: Ctx, session: Session) -> Response:
    return page(
        request,
        "datasets.html",
        datasets=gather(lambda n, c: catalog(ctx).list_for(session.principal, n, c))[::-1],
    )


@router.post("/upload")
async def upload(request: Request, ctx: Ctx, session: Writer) -> Response:
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
    view = await threaded(catalog(ctx).upload, session.principal, data, name=name.strip()[:200], policy=None)
    if "hx-request" in request.headers or request.headers.get("accept", "").startswith("application/json"):
        return JSONResponse({"id": view["id"], "location": f"/datasets/{view['id']}"}, status_code=201)
    return redirect(f"/datasets/{view['id']}")


def preview(ctx: Context, session_principal: Any, dataset_id: str) -> dict[str, Any]:
    frame = catalog(ctx).load_frame(session_principal, dataset_id).head(PREVIEW_ROWS)
    return {
        "columns": [str(c) for c in frame.columns],
        "rows": [
            ["" if v is None else str(v) for v in row]
            for row in frame.astype(object).where(frame.notna(), None).itertuples(index=False)
        ],
    }


@router.get("/{dataset_id}")
def dataset_page(request: Request, ctx: Ctx, session: Session, dataset_id: str) -> Response:
    view = catalog(ctx).get(session.principal, dataset_id)
    actions = {a["column"]: a for a in view["deidentification"]}
    return page(
        request, "dataset.html", ds=view, actions=actions, preview=preview(ctx, session.principal, dataset_id)
    )


@router.post("/{dataset_id}/delete")
async def delete(request: Request, ctx: Ctx, session: Writer, dataset_id: str) -> Response:
    await threaded(catalog(ctx).delete, session.principal, dataset_id)
    return redirect("/datasets")
