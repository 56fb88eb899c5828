"""The models list reads a page's versions in one query, not one per model (no N+1).

Statements are counted with a ``before_cursor_execute`` listener on the engine: a page costs the
same two statements with three models as with nine, and the summaries still name the latest and
the best version of each.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event

from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.store.base import new_id
from bastion.store.tables import ModelRecord, ModelVersionRecord
from tests.conftest import Caller


@contextmanager
def counted(ctx: Context) -> Iterator[list[str]]:
    statements: list[str] = []

    def record(*args: Any) -> None:
        statements.append(args[2])

    event.listen(ctx.db.engine, "before_cursor_execute", record)
    try:
        yield statements
    finally:
        event.remove(ctx.db.engine, "before_cursor_execute", record)


def _seed(ctx: Context, owner: str, project: str, n: int) -> None:
    """``n`` models; model i has i+1 versions whose accuracy peaks at version 1."""
    with ctx.db.session() as s:
        for i in range(n):
            model = ModelRecord(id=new_id(), owner_id=owner, project_id=project, name=f"m{i}-{new_id()[:8]}")
            s.add(model)
            s.flush()
            s.add_all(
                ModelVersionRecord(
                    model_id=model.id,
                    version=v,
                    artifact_id=f"a-{new_id()}",
                    model_format="skops",
                    metrics_json={"accuracy": 1.0 if v == 1 else 0.5},
                )
                for v in range(1, i + 2)
            )


def test_models_list_is_two_queries(ctx: Context, make_caller: Callable[..., Caller]) -> None:
    caller = make_caller("user")
    who = Principal(user_id=caller.user_id, username=caller.username, role="user", via="api_key")
    project = ctx.services.projects.create(who, name="p", domain="healthcare")["id"]
    models = ctx.services.models
    _seed(ctx, caller.user_id, project, 3)
    with counted(ctx) as few:
        page, _ = models.list_for(who, 100, None, project)
    _seed(ctx, caller.user_id, project, 6)
    with counted(ctx) as many:
        full, cursor = models.list_for(who, 100, None, project)
    assert len(page) == 3 and len(full) == 9 and cursor is None
    selects = [s for s in many if s.lstrip().upper().startswith("SELECT")]
    assert len(few) == len(many) == len(selects) == 2, many
    for summary in full:
        assert summary["versions"] == summary["latest_version"] >= 1
        assert summary["best_version"] == 1
    # The same answer as the model's own view, which reads its versions alone.
    for summary in full:
        detail = models.get(who, summary["id"])
        assert {k: detail[k] for k in summary} == summary
    with counted(ctx) as paged:
        second, _ = models.list_for(who, 4, models.list_for(who, 4, None, project)[1], project)
    assert len(second) == 4 and len(paged) == 4  # two pages, two statements each
