"""The federations list: the project policy's one list mechanism, widened by invitations.

A federation shows in the all-my-projects list when it belongs to one of the caller's projects or
the caller is invited to it as a guest; ``?project=`` lists one project, for its members only (a
guest's invitation does not make the project visible).
"""

from __future__ import annotations

from sqlalchemy import BindParameter, ColumnElement, select

from bastion.federation.server.service import FEDERATIONS
from bastion.projects.policy import ScopedList
from bastion.store.tables import Federation, FederationGuest


def _invited(user: BindParameter[str]) -> ColumnElement[bool]:
    return Federation.id.in_(select(FederationGuest.federation_id).where(FederationGuest.user_id == user))


FEDERATION_LIST = ScopedList(select(Federation.__table__), Federation.project_id, FEDERATIONS, widen=_invited)
