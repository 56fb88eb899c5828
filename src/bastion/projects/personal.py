"""Every user's personal project: where objects go when no project is named (today's behaviour).

It is created on first need (and by migration 0006_h20 for users who existed before projects). A
mapper hook files any owned row inserted without a project into its owner's personal project, so a
code path that predates projects can never create an object nobody's policy covers.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, event, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapper

from bastion.projects.taxonomy import PERSONAL
from bastion.store.base import new_id, utcnow
from bastion.store.tables import (
    DatasetRecord,
    Federation,
    ModelRecord,
    Project,
    ProjectMember,
    TrainingJob,
    User,
)

OWNED = (DatasetRecord, ModelRecord, TrainingJob, Federation)


def personal_project_id(conn: Connection, user_id: str) -> str:
    """The user's personal project, created (with the user as owner) when missing."""
    found = conn.scalar(select(Project.id).where(Project.personal_of == user_id))
    if found is not None:
        return str(found)
    name = conn.scalar(select(User.username).where(User.id == user_id)) or user_id
    pid, now = new_id(), utcnow()
    try:
        with conn.begin_nested():
            conn.execute(
                insert(Project).values(
                    id=pid,
                    name=name,
                    domain=PERSONAL,
                    subdomain=None,
                    personal_of=user_id,
                    created_by=user_id,
                    created_at=now,
                    updated_at=now,
                )
            )
            conn.execute(
                insert(ProjectMember).values(project_id=pid, user_id=user_id, role="owner", added_at=now)
            )
    except IntegrityError:  # created concurrently by another request
        found = conn.scalar(select(Project.id).where(Project.personal_of == user_id))
        if found is None:
            raise
        return str(found)
    return pid


def _file_into_personal(_mapper: Mapper[Any], conn: Connection, target: Any) -> None:
    if target.project_id is None:
        target.project_id = personal_project_id(conn, target.owner_id)


for _cls in OWNED:
    event.listen(_cls, "before_insert", _file_into_personal)
