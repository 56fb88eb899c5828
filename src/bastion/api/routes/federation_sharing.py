"""Federations across users: invited guests and what they see of the other parties (see
bastion.federation.server.sharing)."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response

from bastion.api.deps import FederationsDep, UserPrincipal, client_ip
from bastion.api.openapi import errors
from bastion.api.routing import PrefixRouter
from bastion.contract.federations import GuestInvite, Sharing, VisibilityBody

router = PrefixRouter(prefix="/api/v1/federations", tags=["federations"])


@router.get("/{federation_id}/sharing", response_model=Sharing, responses=errors(403, 404))
def get_sharing(federation_id: str, principal: UserPrincipal, federations: FederationsDep) -> dict[str, Any]:
    """Visibility and invited guests (the coordinator's project; guests get 403)."""
    return federations.sharing(principal, federation_id)


@router.put("/{federation_id}/sharing", response_model=Sharing, responses=errors(403, 404))
def set_visibility(
    federation_id: str,
    body: VisibilityBody,
    principal: UserPrincipal,
    request: Request,
    federations: FederationsDep,
) -> dict[str, Any]:
    """What guests see of the other parties: aggregates (default), sites, or metrics."""
    return federations.set_visibility(principal, federation_id, body.visibility, client_ip(request))


@router.post(
    "/{federation_id}/guests", status_code=201, response_model=Sharing, responses=errors(403, 404, 409)
)
def invite_guest(
    federation_id: str,
    body: GuestInvite,
    principal: UserPrincipal,
    request: Request,
    response: Response,
    federations: FederationsDep,
) -> dict[str, Any]:
    """Invite a user of another project to enrol their own sites (audited)."""
    out = federations.invite(principal, federation_id, body.user, client_ip(request))
    response.headers["Location"] = f"/api/v1/federations/{federation_id}/sharing"
    return out


@router.delete("/{federation_id}/guests/{user}", response_model=Sharing, responses=errors(403, 404))
def remove_guest(
    federation_id: str, user: str, principal: UserPrincipal, request: Request, federations: FederationsDep
) -> dict[str, Any]:
    """Withdraw an invitation; the guest's enrolled sites stay until revoked."""
    return federations.uninvite(principal, federation_id, user[:64], client_ip(request))
