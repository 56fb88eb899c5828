"""The prepared project list (policy.ScopedList): membership folded into the page query.

A member pages through every row exactly once (first page prepared, later pages by cursor); a
stranger gets 404 whether the project has rows or not, an unknown project is 404 even for an
admin, and a member of an empty project gets an empty page, not 404.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from sqlalchemy import insert

from bastion.auth.principal import Principal
from bastion.catalog.datasets import DatasetCatalog
from bastion.context import Context
from bastion.errors import NotFound
from bastion.projects.service import ProjectService
from bastion.store.base import new_id, utcnow
from bastion.store.tables import DatasetRecord
from tests.conftest import Caller


def _principal(c: Caller) -> Principal:
    return Principal(user_id=c.user_id, username=c.username, role=c.role, via="api_key")


def _seed(ctx: Context, owner: Caller, project: str, n: int) -> set[str]:
    rows = [
        {
            "id": new_id(),
            "owner_id": owner.user_id,
            "project_id": project,
            "name": f"d{i}",
            "source_format": "csv",
            "size_bytes": 1,
            "rows": 1,
            "columns": 1,
            "schema_json": [],
            "deid_json": [],
            "artifact_id": f"a-{project}-{i}",
            "access_protected": False,
            "created_at": utcnow(),
        }
        for i in range(n)
    ]
    with ctx.db.session() as s:
        s.execute(insert(DatasetRecord), rows)
    return {r["id"] for r in rows}


def test_project_pages_and_strangers(ctx: Context, make_caller: Callable[..., Caller]) -> None:
    owner, member, stranger, admin = (make_caller(r) for r in ("user", "user", "user", "admin"))
    projects: ProjectService = ctx.services.projects
    catalog: DatasetCatalog = ctx.services.datasets
    full = projects.create(_principal(owner), name="full", domain="healthcare")["id"]
    empty = projects.create(_principal(owner), name="empty", domain="healthcare")["id"]
    projects.add_member(_principal(owner), full, member.username, "viewer")
    projects.add_member(_principal(owner), empty, member.username, "viewer")
    ids = _seed(ctx, owner, full, 7)

    seen: list[str] = []
    cursor: str | None = None
    while True:
        page, cursor = catalog.list_for(_principal(member), 3, cursor, full)
        seen += [d["id"] for d in page]
        if cursor is None:
            break
    assert len(seen) == 7 and set(seen) == ids
    assert catalog.list_for(_principal(member), 10, None, empty) == ([], None)
    assert len(catalog.list_for(_principal(admin), 10, None, full)[0]) == 7
    for project in (full, empty):
        with pytest.raises(NotFound):
            catalog.list_for(_principal(stranger), 10, None, project)
    with pytest.raises(NotFound):
        catalog.list_for(_principal(stranger), 3, cursor_of(catalog, member, full), full)
    for who in (member, admin):
        with pytest.raises(NotFound):
            catalog.list_for(_principal(who), 10, None, new_id())
    mine = {d["id"] for d in catalog.list_for(_principal(member), 100)[0]}
    assert mine == ids and catalog.list_for(_principal(stranger), 100)[0] == []


def cursor_of(catalog: DatasetCatalog, who: Caller, project: str) -> str:
    cursor = catalog.list_for(_principal(who), 3, None, project)[1]
    assert cursor is not None
    return cursor
