"""Federations across users: invited guests and what they see of the other parties (see
bastion.federation.server.sharing)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response

from bastion.api.deps import ContextDep, UserPrincipal, client_ip
from bastion.api.openapi import errors
from bastion.contract.federations import GuestInvite, Sharing, VisibilityBody
from bastion.federation.server.service import FederationService

router = APIRouter(prefix="/api/v1/federations", tags=["federations"])


def service(ctx: ContextDep) -> FederationService:
    svc: FederationService = ctx.services.federations
    return svc


@router.get("/{federation_id}/sharing", response_model=Sharing, responses=errors(403, 404))
def get_sharing(federation_id: str, principal: UserPrincipal, ctx: ContextDep) -> dict[str, Any]:
    """Visibility and invited guests (the coordinator's project; guests get 403)."""
    return service(ctx).sharing(principal, federation_id)


@router.put("/{federation_id}/sharing", response_model=Sharing, responses=errors(403, 404))
def set_visibility(
    federation_id: str, body: VisibilityBody, principal: UserPrincipal, request: Request, ctx: ContextDep
) -> dict[str, Any]:
    """What guests see of the other parties: aggregates (default), sites, or metrics."""
    return service(ctx).set_visibility(principal, federation_id, body.visibility, client_ip(request))


@router.post(
    "/{federation_id}/guests", status_code=201, response_model=Sharing, responses=errors(403, 404, 409)
)
def invite_guest(
    federation_id: str,
    body: GuestInvite,
    principal: UserPrincipal,
    request: Request,
    response: Response,
    ctx: ContextDep,
) -> dict[str, Any]:
    """Invite a user of another project to enrol their own sites (audited)."""
    out = service(ctx).invite(principal, federation_id, body.user, client_ip(request))
    response.headers["Location"] = f"/api/v1/federations/{federation_id}/sharing"
    return out


@router.delete("/{federation_id}/guests/{user}", response_model=Sharing, responses=errors(403, 404))
def remove_guest(
    federation_id: str, user: str, principal: UserPrincipal, request: Request, ctx: ContextDep
) -> dict[str, Any]:
    """Withdraw an invitation; the guest's enrolled sites stay until revoked."""
    return service(ctx).uninvite(principal, federation_id, user[:64], client_ip(request))
