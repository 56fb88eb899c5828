"""Federations for their coordinator: create, enrol sites, status and rounds, the global model.

Normal user authentication; every object is scoped to its owner (others get 404). The participant
routes under ``/{id}/site`` live in :mod:`bastion.api.routes.federation_site`.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import CurrentPrincipal, FederationsDep, UserPrincipal, client_ip
from bastion.api.idempotency import Idempotent
from bastion.api.openapi import errors
from bastion.api.pagination import CursorQuery, LimitQuery, Page
from bastion.api.reads import read
from bastion.api.routing import PrefixRouter
from bastion.api.scoping import ProjectQuery
from bastion.contract.federations import (
    Enrolled,
    EnrollRequest,
    FederationDetail,
    FederationStatus,
    FederationSummary,
    Participant,
    Round,
    UploadedModel,
)
from bastion.errors import PayloadTooLarge
from bastion.federation.server.config import FederationCreate

router = PrefixRouter(prefix="/api/v1/federations", tags=["federations"])
SAFETENSORS = "application/octet-stream"
RAW_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {SAFETENSORS: {"schema": {"type": "string", "format": "binary"}}},
    }
}
BINARY_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {SAFETENSORS: {"schema": {"type": "string", "format": "binary"}}}}
}


async def read_capped(request: Request, limit: int, code: str) -> bytes:
    """The request body, refused with 413 past ``limit`` bytes (the rest is drained, not buffered).

    Draining instead of hanging up lets the client read the 413 instead of a broken pipe; the
    gateway's upload limit still bounds how much is read.
    """
    declared = request.headers.get("content-length")
    too_big = declared is not None and declared.isdigit() and int(declared) > limit
    buf = bytearray()
    async for chunk in request.stream():
        if too_big:
            continue
        buf += chunk
        if len(buf) > limit:
            too_big = True
            buf.clear()
    if too_big:
        raise PayloadTooLarge(
            f"the body is larger than this federation's limit of {limit} bytes",
            code=code,
            limit=limit,
        )
    return bytes(buf)


@router.post("", status_code=201, response_model=FederationDetail, responses=errors(404, 409))
def create_federation(
    body: FederationCreate,
    principal: UserPrincipal,
    federations: FederationsDep,
    request: Request,
    idem: Idempotent,
    response: Response,
    project: ProjectQuery = None,
) -> Any:
    if (replay := idem.replay()) is not None:
        return replay
    fed = FederationDetail.model_validate(federations.create(principal, body, client_ip(request), project))
    return idem.created(response, fed, f"/api/v1/federations/{fed.id}")


@router.get("", response_model=Page[FederationSummary], responses=errors(404))
async def list_federations(
    principal: CurrentPrincipal,
    federations: FederationsDep,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
    project: ProjectQuery = None,
) -> dict[str, Any]:
    """The federations of your projects (or of one, ``?project=``), oldest first."""
    data, next_cursor = await read(federations.db, federations.list_for, principal, limit, cursor, project)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{federation_id}", response_model=FederationDetail)
def get_federation(
    federation_id: str, principal: CurrentPrincipal, federations: FederationsDep
) -> dict[str, Any]:
    return federations.get(principal, federation_id)


@router.get("/{federation_id}/status", response_model=FederationStatus)
def federation_status(
    federation_id: str, principal: CurrentPrincipal, federations: FederationsDep
) -> dict[str, Any]:
    return federations.status(principal, federation_id)


@router.get("/{federation_id}/rounds", response_model=Page[Round])
def federation_rounds(
    federation_id: str,
    principal: CurrentPrincipal,
    federations: FederationsDep,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Rounds in order, first round first."""
    data, next_cursor = federations.rounds(principal, federation_id, limit, cursor)
    return {"data": data, "next_cursor": next_cursor}


class FederationArchived(BaseModel):
    id: str
    name: str
    state: str = Field(description="'archived': sites are refused and the vault artifacts are deleted")


@router.delete("/{federation_id}", response_model=FederationArchived)
def archive_federation(
    federation_id: str, principal: UserPrincipal, federations: FederationsDep, request: Request
) -> dict[str, Any]:
    """End a federation: it is archived (rows kept), its model, keys and updates are deleted.
    Repeating it answers the same."""
    return federations.archive(principal, federation_id, client_ip(request))


@router.post("/{federation_id}/participants", status_code=201, response_model=Enrolled, responses=errors(409))
def enroll_participant(
    federation_id: str,
    body: EnrollRequest,
    principal: UserPrincipal,
    federations: FederationsDep,
    request: Request,
    response: Response,
) -> dict[str, Any]:
    """Enrol a site; its ``bsp_`` token is in this answer only (so no Idempotency-Key: it is not
    kept). A second enrolment under the same name is 409."""
    out = federations.enroll(principal, federation_id, body.name, client_ip(request))
    response.headers["Location"] = f"/api/v1/federations/{federation_id}/participants/{out['id']}"
    return out


@router.get("/{federation_id}/participants", response_model=Page[Participant])
def list_participants(
    federation_id: str,
    principal: CurrentPrincipal,
    federations: FederationsDep,
    limit: LimitQuery = 100,
    cursor: CursorQuery = None,
) -> dict[str, Any]:
    """Enrolled sites, in enrolment order."""
    data, next_cursor = federations.participants(principal, federation_id, limit, cursor)
    return {"data": data, "next_cursor": next_cursor}


@router.get("/{federation_id}/participants/{participant_id}", response_model=Participant)
def get_participant(
    federation_id: str, participant_id: str, principal: CurrentPrincipal, federations: FederationsDep
) -> dict[str, Any]:
    return federations.participant(principal, federation_id, participant_id)


@router.delete("/{federation_id}/participants/{participant_id}", response_model=Participant)
def revoke_participant(
    federation_id: str,
    participant_id: str,
    principal: UserPrincipal,
    federations: FederationsDep,
    request: Request,
) -> dict[str, Any]:
    """Revoke a site's credential. Repeating it answers the same (the site, with its revocation time)."""
    return federations.revoke(principal, federation_id, participant_id, client_ip(request))


@router.get("/{federation_id}/model", response_class=Response, responses=BINARY_RESPONSE)
def download_model(federation_id: str, principal: CurrentPrincipal, federations: FederationsDep) -> Response:
    """The current global model as plain safetensors (float32), e.g. to fine-tune it."""
    version, blob = federations.download_model(principal, federation_id)
    return Response(
        blob,
        media_type=SAFETENSORS,
        headers={
            "X-Bastion-Global-Version": str(version),
            "Content-Disposition": f'attachment; filename="federation-{federation_id[:8]}-v{version}.safetensors"',
        },
    )


@router.post(
    "/{federation_id}/model",
    status_code=201,
    response_model=UploadedModel,
    responses=errors(400, 409),
    openapi_extra=RAW_BODY,
)
async def upload_model(
    federation_id: str,
    principal: UserPrincipal,
    federations: FederationsDep,
    request: Request,
    response: Response,
) -> dict[str, Any]:
    """Hand-off of a fine-tuned model: becomes the new global version (safetensors, shapes checked)."""
    svc = federations
    limit = await run_in_threadpool(svc.model_limit, principal, federation_id)
    try:
        body = await read_capped(request, limit, "model_too_large")
    except PayloadTooLarge as exc:
        await run_in_threadpool(svc.deny_upload, principal, federation_id, exc, client_ip(request))
        raise
    out = await run_in_threadpool(svc.upload_model, principal, federation_id, body, client_ip(request))
    response.headers["Location"] = f"/api/v1/federations/{federation_id}/model"
    return out
