"""Federations across users: invited guests enrol their own sites, and see of the other parties
only what the federation's ``visibility`` allows.

- ``aggregates`` (default): the federation, its rounds and aggregate metrics, and their own sites;
  other sites are not listed at all.
- ``sites``: also the other sites' names (no credential prefixes, keys or metrics).
- ``metrics``: also each other site's latest reported metrics.

Members of the federation's project (the coordinator side) see everything, as before. A guest may
read and enrol; every other change stays with the project (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.auth.principal import Principal
from bastion.errors import Invalid, NotFound
from bastion.store.tables import FederationGuest, FederationParticipant, FederationUpdate, User

VISIBILITY = ("aggregates", "sites", "metrics")
REDACTED = ("credential_prefix", "signing_public_key", "registered_at", "last_seen_at", "revoked_at")


@dataclass(frozen=True)
class Viewer:
    """How the caller sees a federation: ``guest`` None for project members (everything)."""

    user_id: str
    guest: bool
    visibility: str

    def shows(self, row: FederationParticipant) -> bool:
        return not self.guest or row.enrolled_by == self.user_id or self.visibility != "aggregates"

    def may_revoke(self, row: FederationParticipant) -> bool:
        """The coordinator's project revokes any site; a guest only a site they enrolled (the others
        answer 404, as if absent: whether a guest can see them depends on the visibility)."""
        return not self.guest or row.enrolled_by == self.user_id

    def view(
        self, row: FederationParticipant, full: dict[str, Any], metrics: dict[str, Any] | None
    ) -> dict[str, Any]:
        mine = row.enrolled_by == self.user_id
        out = dict(full)
        if self.guest and not mine:
            out.update(dict.fromkeys(REDACTED))
        if not self.guest or mine or self.visibility == "metrics":
            out["metrics"] = metrics
        out["yours"] = mine
        return out


def is_guest(s: Session, user_id: str, federation_id: str) -> bool:
    return (
        s.scalar(
            select(FederationGuest.user_id).where(
                FederationGuest.federation_id == federation_id, FederationGuest.user_id == user_id
            )
        )
        is not None
    )


def guest_federations(user_id: str) -> Any:
    """Sub-select of the federations the user is invited to (for list queries)."""
    return select(FederationGuest.federation_id).where(FederationGuest.user_id == user_id)


def check_visibility(value: str) -> str:
    if value not in VISIBILITY:
        raise Invalid(f"visibility must be one of {', '.join(VISIBILITY)}", code="invalid_visibility")
    return value


def latest_metrics(s: Session, federation_id: str, participant_ids: list[str]) -> dict[str, dict[str, Any]]:
    """Each site's metrics from its latest accepted update: one grouped query, not one per site."""
    if not participant_ids:
        return {}
    last = (
        select(FederationUpdate.participant_id, func.max(FederationUpdate.round).label("round"))
        .where(
            FederationUpdate.federation_id == federation_id,
            FederationUpdate.participant_id.in_(participant_ids),
        )
        .group_by(FederationUpdate.participant_id)
        .subquery()
    )
    rows = s.execute(
        select(FederationUpdate.participant_id, FederationUpdate.metrics_json).join(
            last,
            (FederationUpdate.participant_id == last.c.participant_id)
            & (FederationUpdate.round == last.c.round),
        )
    ).all()
    return {str(pid): m or {} for pid, m in rows}


def guests(s: Session, federation_id: str) -> list[dict[str, Any]]:
    rows = s.execute(
        select(FederationGuest, User.username)
        .join(User, User.id == FederationGuest.user_id)
        .where(FederationGuest.federation_id == federation_id)
        .order_by(FederationGuest.invited_at)
    ).all()
    return [
        {"user_id": g.user_id, "username": str(name), "invited_at": g.invited_at.isoformat()}
        for g, name in rows
    ]


def find_user(s: Session, ref: str) -> User:
    user = s.get(User, ref) if len(ref) <= 36 else None
    user = user or s.scalar(select(User).where(User.username == ref))
    if user is None:
        raise NotFound("user not found", code="user_not_found")
    return user


def viewer_of(principal: Principal, guest: bool, visibility: str) -> Viewer:
    return Viewer(principal.user_id, guest, visibility)
