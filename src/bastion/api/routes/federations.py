"""Federations for their coordinator: create, enrol sites, status and rounds, the global model.

Normal user authentication; every object is scoped to its owner (others get 404). The participant
routes under ``/{id}/site`` live in :mod:`bastion.api.routes.federation_site`.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import ContextDep, CurrentPrincipal, UserPrincipal, client_ip
from bastion.context import Context
from bastion.errors import PayloadTooLarge
from bastion.federation.server.config import FederationCreate
from bastion.federation.server.service import FederationService

router = APIRouter(prefix="/api/v1/federations", tags=["federations"])
SAFETENSORS = "application/octet-stream"


class EnrollRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9 ._-]*$")


def service(ctx: Context) -> FederationService:
    svc: FederationService = ctx.services["federations"]
    return svc


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


@router.post("", status_code=201)
def create_federation(
    body: FederationCreate, principal: UserPrincipal, ctx: ContextDep, request: Request
) -> dict[str, Any]:
    return service(ctx).create(principal, body, client_ip(request))


@router.get("")
def list_federations(principal: CurrentPrincipal, ctx: ContextDep) -> dict[str, Any]:
    return {"federations": service(ctx).list_for(principal)}


@router.get("/{federation_id}")
def get_federation(federation_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> dict[str, Any]:
    return service(ctx).get(principal, federation_id)


@router.get("/{federation_id}/status")
def federation_status(federation_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> dict[str, Any]:
    return service(ctx).status(principal, federation_id)


@router.get("/{federation_id}/rounds")
def federation_rounds(federation_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> dict[str, Any]:
    return {"federation_id": federation_id, "rounds": service(ctx).rounds(principal, federation_id)}


class FederationArchived(BaseModel):
    id: str
    name: str
    state: str = Field(description="'archived': sites are refused and the vault artifacts are deleted")


@router.delete(
    "/{federation_id}",
    response_model=FederationArchived,
    responses={404: {"description": "no such federation (or someone else's)"}},
)
def archive_federation(
    federation_id: str, principal: UserPrincipal, ctx: ContextDep, request: Request
) -> dict[str, Any]:
    """End a federation: it is archived (rows kept), its model, keys and updates are deleted."""
    return service(ctx).archive(principal, federation_id, client_ip(request))


@router.post("/{federation_id}/participants", status_code=201)
def enroll_participant(
    federation_id: str, body: EnrollRequest, principal: UserPrincipal, ctx: ContextDep, request: Request
) -> dict[str, Any]:
    return service(ctx).enroll(principal, federation_id, body.name, client_ip(request))


@router.get("/{federation_id}/participants")
def list_participants(federation_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> dict[str, Any]:
    return {"participants": service(ctx).participants(principal, federation_id)}


@router.delete("/{federation_id}/participants/{participant_id}")
def revoke_participant(
    federation_id: str, participant_id: str, principal: UserPrincipal, ctx: ContextDep, request: Request
) -> dict[str, Any]:
    return service(ctx).revoke(principal, federation_id, participant_id, client_ip(request))


@router.get("/{federation_id}/model")
def download_model(federation_id: str, principal: CurrentPrincipal, ctx: ContextDep) -> Response:
    """The current global model as plain safetensors (float32), e.g. to fine-tune it."""
    version, blob = service(ctx).download_model(principal, federation_id)
    return Response(
        blob,
        media_type=SAFETENSORS,
        headers={
            "X-Bastion-Global-Version": str(version),
            "Content-Disposition": f'attachment; filename="federation-{federation_id[:8]}-v{version}.safetensors"',
        },
    )


@router.post("/{federation_id}/model", status_code=201)
async def upload_model(
    federation_id: str, principal: UserPrincipal, ctx: ContextDep, request: Request
) -> dict[str, Any]:
    """Hand-off of a fine-tuned model: becomes the new global version (safetensors, shapes checked)."""
    svc = service(ctx)
    limit = await run_in_threadpool(svc.model_limit, principal, federation_id)
    try:
        body = await read_capped(request, limit, "model_too_large")
    except PayloadTooLarge as exc:
        await run_in_threadpool(svc.deny_upload, principal, federation_id, exc, client_ip(request))
        raise
    return await run_in_threadpool(svc.upload_model, principal, federation_id, body, client_ip(request))
