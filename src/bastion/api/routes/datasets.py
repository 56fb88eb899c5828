"""Dataset uploads: multipart or raw body, de-identified before anything is stored."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header, Query, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from bastion.api.deps import ContextDep, DatasetsDep, UserPrincipal
from bastion.api.idempotency import Idempotent
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, LimitQuery, Page
from bastion.api.reads import read
from bastion.api.routing import PrefixRouter
from bastion.api.scoping import ProjectQuery
from bastion.contract.catalog import Dataset, DatasetDeleted
from bastion.errors import Invalid, UnsupportedMedia

router = PrefixRouter(prefix="/api/v1/datasets", tags=["datasets"])
_RAW = {"schema": {"type": "string", "format": "binary"}}
# The two ways to send a file, declared so generated clients (and fuzzers) can build a valid call.
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "name": {"type": "string", "maxLength": 200},
                        "policy": {"type": "string", "maxLength": 20000},
                    },
                }
            },
            "application/octet-stream": _RAW,
            "text/csv": _RAW,
        },
    }
}


@router.post(
    "",
    status_code=201,
    summary="Upload a CSV, JSON, Excel or Parquet table",
    response_model=Dataset,
    responses=errors(400, 404, 409, 415),
    openapi_extra=UPLOAD_BODY,
)
async def upload(
    request: Request,
    principal: UserPrincipal,
    ctx: ContextDep,
    datasets: DatasetsDep,
    idem: Idempotent,
    response: Response,
    name: Annotated[str | None, Query(max_length=200)] = None,
    project: ProjectQuery = None,
    policy: Annotated[
        str | None,
        Query(
            max_length=2000,
            description="de-identification policy JSON (a longer one goes in the multipart field)",
        ),
    ] = None,
    content_type: Annotated[str, Header(include_in_schema=False)] = "",
) -> Any:
    """Send ``multipart/form-data`` (field ``file``, optional ``name`` and ``policy``) or the raw file
    as the body (``application/octet-stream``, name and policy as query parameters)."""

    if (replay := idem.replay()) is not None:
        return replay
    if content_type.startswith("multipart/form-data"):
        # Limits are the body limit itself: parts stay in memory, so no plaintext spills to disk.
        form = await request.form(max_files=1, max_fields=10, max_part_size=ctx.settings.max_upload_bytes)
        upload_file = form.get("file")
        if not isinstance(upload_file, UploadFile):
            raise Invalid("multipart upload needs a 'file' field", code="missing_file")
        if (upload_file.filename or "").lower().endswith(".txt"):
            await form.close()
            raise UnsupportedMedia(
                "a .txt file is text, not a table: upload CSV, JSON, Excel or Parquet here "
                "(free text for fine-tuning goes to the fine-tuning routes)",
                code="text_not_a_table",
            )
        data = await upload_file.read()
        name = name or _text(form.get("name")) or upload_file.filename or "dataset"
        policy = policy or _text(form.get("policy"))
        await form.close()
    elif (
        content_type.startswith(("application/octet-stream", "text/csv", "application/json"))
        or not content_type
    ):
        data = await request.body()
        name = name or "dataset"
    else:
        raise UnsupportedMedia("send multipart/form-data or the raw file as application/octet-stream")
    if not data:
        raise Invalid("the upload is empty", code="empty_upload")
    view = await run_in_threadpool(
        datasets.upload, principal, data, name=name[:200], policy=policy, project=project
    )
    dataset = Dataset.model_validate(view)
    return await run_in_threadpool(idem.created, response, dataset, f"/api/v1/datasets/{dataset.id}")


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


@router.get("", response_model=Page[Dataset], responses=errors(404))
async def list_datasets(
    principal: UserPrincipal,
    datasets: DatasetsDep,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
    project: ProjectQuery = None,
) -> dict[str, Any]:
    """The datasets of your projects (or of one, ``?project=``), oldest first."""
    data, next_cursor = await read(datasets.db, datasets.list_for, principal, limit, cursor, project)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{dataset_id}", response_model=Dataset)
def get_dataset(dataset_id: str, principal: UserPrincipal, datasets: DatasetsDep) -> dict[str, Any]:
    return datasets.get(principal, dataset_id)


@router.delete("/{dataset_id}", response_model=DatasetDeleted)
def delete_dataset(dataset_id: str, principal: UserPrincipal, datasets: DatasetsDep) -> DatasetDeleted:
    """Delete a dataset's encrypted payload. Repeating it answers the same."""
    deleted_at = datasets.delete(principal, dataset_id)
    return DatasetDeleted(message="dataset deleted", id=dataset_id, deleted_at=deleted_at)


AccessCode = Annotated[str | None, Header(alias="X-Access-Code", max_length=1024)]


class DatasetAccessCodeBody(BaseModel):
    access_code: str = Field(min_length=1, max_length=1024, description="The new code")


class DatasetAccessCodeResult(BaseModel):
    dataset_id: str
    access_protected: bool


class DatasetPreview(BaseModel):
    id: str
    rows_total: int
    columns: list[str]
    rows: list[dict[str, Any]] = Field(description="The first stored rows, as training reads them")
    deidentification: list[dict[str, Any]] = Field(description="What was done to each column, and why")


@router.get("/{dataset_id}/preview", response_model=DatasetPreview, responses=errors(403, 404, 423))
async def preview(
    dataset_id: str,
    principal: UserPrincipal,
    datasets: DatasetsDep,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    access_code: AccessCode = None,
) -> dict[str, Any]:
    """Review what was stored: the first ``limit`` de-identified rows and the per-column report."""

    return await run_in_threadpool(datasets.preview, principal, dataset_id, limit, access_code)


@router.put(
    "/{dataset_id}/access-code",
    response_model=DatasetAccessCodeResult,
    responses=errors(403, 404, 422, 423),
)
async def set_access_code(
    dataset_id: str,
    body: DatasetAccessCodeBody,
    principal: UserPrincipal,
    datasets: DatasetsDep,
    access_code: AccessCode = None,
) -> dict[str, Any]:
    """Set a code (or change it: the current one in ``X-Access-Code``). Owner only; audited; wrong
    codes count towards the lockout. A protected dataset cannot be trained on by a queued job."""

    return await run_in_threadpool(
        datasets.set_access_code, principal, dataset_id, current=access_code, new=body.access_code
    )


@router.delete(
    "/{dataset_id}/access-code",
    response_model=DatasetAccessCodeResult,
    responses=errors(403, 404, 422, 423),
)
async def remove_access_code(
    dataset_id: str, principal: UserPrincipal, datasets: DatasetsDep, access_code: AccessCode = None
) -> dict[str, Any]:
    """Remove the code (the current one in ``X-Access-Code``)."""

    return await run_in_threadpool(
        datasets.set_access_code, principal, dataset_id, current=access_code, new=None
    )
