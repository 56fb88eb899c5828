"""Every project-scoped list (one mechanism, policy.ScopedList) seen through the API.

Two projects with an overlapping member: a member of A alone sees none of B's objects and gets 404
for ``?project=B``; the member of both pages through A and B along the cursor, each object once, in
the list's own order; a stranger and an unknown project get 404. Runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.llm.train import LORA_MODEL_TYPE
from bastion.store.base import new_id
from bastion.store.tables import DatasetRecord, Federation, ModelRecord, ModelVersionRecord, TrainingJob
from tests.conftest import Caller


@dataclass(frozen=True)
class Listing:
    url: str
    rows: str  # the body's key holding the page
    id: str  # each item's id key


LISTS = {
    "datasets": Listing("/api/v1/datasets", "data", "id"),
    "models": Listing("/api/v1/models", "data", "id"),
    "training": Listing("/api/v1/training/jobs", "jobs", "job_id"),
    "fine_tuning": Listing("/api/v1/fine_tuning/jobs", "data", "id"),
    "federations": Listing("/api/v1/federations", "data", "id"),
}


def _principal(c: Caller) -> Principal:
    return Principal(user_id=c.user_id, username=c.username, role=c.role, via="api_key")


def _objects(kind: str, owner: str, project: str, i: int) -> list[Any]:
    """One object of ``kind`` (a model comes with two versions) in ``project``."""
    if kind == "datasets":
        return [
            DatasetRecord(
                owner_id=owner,
                project_id=project,
                name=f"d{i}",
                source_format="csv",
                size_bytes=1,
                rows=1,
                columns=1,
                schema_json=[],
                deid_json=[],
                artifact_id=f"a-{new_id()}",
            )
        ]
    if kind == "models":
        model = ModelRecord(id=new_id(), owner_id=owner, project_id=project, name=f"m{i}")
        return [model] + [
            ModelVersionRecord(
                model_id=model.id,
                version=v,
                artifact_id=f"a-{new_id()}",
                model_format="skops",
                metrics_json={"accuracy": 0.5 + 0.1 * v * (-1) ** i},
            )
            for v in (1, 2)
        ]
    if kind in ("training", "fine_tuning"):
        return [
            TrainingJob(
                owner_id=owner,
                project_id=project,
                model_type=LORA_MODEL_TYPE if kind == "fine_tuning" else "logistic_regression",
                dataset_source="builtin",
                resource_profile="cpu-small",
                max_runtime_seconds=60.0,
                state="completed" if i % 2 else "failed",  # states no worker touches
            )
        ]
    return [
        Federation(
            owner_id=owner,
            project_id=project,
            name=f"f{i}-{new_id()[:8]}",
            config_json="{}",
            spec_json={},
            strategy="fedavg",
            rounds=1,
            min_clients=1,
            target_clients=1,
            round_timeout_s=60.0,
            max_round_attempts=1,
            sealing_public_key="k",
            signing_public_key="k",
        )
    ]


def _seed(ctx: Context, owner: Caller, project: str, n: int) -> set[str]:
    """n objects of every kind in ``project``; their ids by kind, flattened with the kind as prefix."""
    ids: set[str] = set()
    with ctx.db.session() as s:
        for kind in LISTS:
            for i in range(n):
                objs = _objects(kind, owner.user_id, project, i)
                s.add_all(objs)
                s.flush()
                ids.add(f"{kind}:{objs[0].id}")
    return ids


def _ids(client: TestClient, who: Caller, kind: str, **params: Any) -> list[str]:
    listing = LISTS[kind]
    r = client.get(listing.url, headers=who.headers, params=params)
    assert r.status_code == 200, (kind, r.text)
    return [item[listing.id] for item in r.json()[listing.rows]]


def _walk(client: TestClient, who: Caller, kind: str, limit: int, **params: Any) -> list[str]:
    """Every id along the cursor, ``limit`` at a time."""
    listing = LISTS[kind]
    seen: list[str] = []
    cursor: str | None = None
    for _ in range(20):
        query = {"limit": limit, **params} | ({"cursor": cursor} if cursor else {})
        r = client.get(listing.url, headers=who.headers, params=query)
        assert r.status_code == 200, (kind, r.text)
        body = r.json()
        page = [item[listing.id] for item in body[listing.rows]]
        assert len(page) <= limit
        seen += page
        cursor = body["next_cursor"]
        if cursor is None:
            return seen
    raise AssertionError(f"{kind}: the cursor never ended")


def _of(ids: set[str], kind: str) -> set[str]:
    """The ids a list shows: the training list shows fine-tuning jobs too (they are jobs)."""
    kinds = {kind, "fine_tuning"} if kind == "training" else {kind}
    return {i.split(":", 1)[1] for i in ids if i.split(":", 1)[0] in kinds}


def test_two_projects_overlapping_members(
    ctx: Context, client: TestClient, make_caller: Callable[..., Caller]
) -> None:
    owner, only_a, both, stranger, admin = (make_caller(r) for r in ("user",) * 4 + ("admin",))
    projects = ctx.services.projects
    a = projects.create(_principal(owner), name="a", domain="healthcare")["id"]
    b = projects.create(_principal(owner), name="b", domain="healthcare")["id"]
    projects.add_member(_principal(owner), a, only_a.username, "viewer")
    projects.add_member(_principal(owner), a, both.username, "viewer")
    projects.add_member(_principal(owner), b, both.username, "member")
    in_a, in_b = _seed(ctx, owner, a, 3), _seed(ctx, owner, b, 2)

    for kind in LISTS:
        of_a, of_b = _of(in_a, kind), _of(in_b, kind)
        assert set(_ids(client, only_a, kind)) == of_a, kind
        assert set(_ids(client, only_a, kind, project=a)) == of_a, kind
        everything = _ids(client, both, kind)
        assert set(everything) == of_a | of_b and len(everything) == len(of_a | of_b), kind
        # A page boundary: two at a time, each object once, in the unpaged order.
        assert _walk(client, both, kind, 2) == everything, kind
        assert _walk(client, both, kind, 2, project=b) == [i for i in everything if i in of_b], kind
        for who, project in ((only_a, b), (stranger, a), (stranger, b), (both, new_id()), (admin, new_id())):
            r = client.get(LISTS[kind].url, headers=who.headers, params={"project": project})
            assert r.status_code == 404, (kind, r.text)
            assert r.json()["error"]["code"] == "project_not_found", kind
        assert _ids(client, stranger, kind) == [], kind
        assert set(_ids(client, admin, kind, project=b)) == of_b, kind  # an admin reads any project


def test_training_status_filter_is_scoped(
    ctx: Context, client: TestClient, make_caller: Callable[..., Caller]
) -> None:
    owner, only_a = make_caller("user"), make_caller("user")
    projects = ctx.services.projects
    a = projects.create(_principal(owner), name="a", domain="healthcare")["id"]
    b = projects.create(_principal(owner), name="b", domain="healthcare")["id"]
    projects.add_member(_principal(owner), a, only_a.username, "viewer")
    _seed(ctx, owner, a, 5)
    _seed(ctx, owner, b, 5)
    with ctx.db.session() as s:
        done_a = set(
            s.scalars(
                select(TrainingJob.id).where(
                    TrainingJob.project_id == a,
                    TrainingJob.state == "completed",
                )
            )
        )
    assert len(done_a) == 4  # two training jobs, two fine-tuning jobs
    assert set(_ids(client, only_a, "training", status="completed")) == done_a
    assert set(_walk(client, only_a, "training", 1, status="completed", project=a)) == done_a
    assert len(_walk(client, owner, "training", 5, status="failed")) == 12  # 3 + 3 of A and of B
    assert _ids(client, only_a, "training", status="running") == []
    r = client.get("/api/v1/training/jobs", headers=only_a.headers, params={"project": b, "status": "failed"})
    assert r.status_code == 404


def test_fine_tuning_cursor_of_the_previous_code_still_pages(
    ctx: Context, client: TestClient, make_caller: Callable[..., Caller]
) -> None:
    """The fine-tuning list wrote ``[<ISO time>, <id>]`` cursors before it used Keyset."""
    owner = make_caller("user")
    project = ctx.services.projects.create(_principal(owner), name="a", domain="healthcare")["id"]
    _seed(ctx, owner, project, 5)
    url = LISTS["fine_tuning"].url
    first = client.get(url, headers=owner.headers, params={"limit": 2}).json()
    last_id = first["data"][-1]["id"]
    with ctx.db.session() as s:
        created = s.scalar(select(TrainingJob.created_at).where(TrainingJob.id == last_id))
    assert created is not None
    old = base64.urlsafe_b64encode(json.dumps([created.isoformat(), last_id]).encode()).decode().rstrip("=")
    by_new = client.get(url, headers=owner.headers, params={"limit": 2, "cursor": first["next_cursor"]})
    by_old = client.get(url, headers=owner.headers, params={"limit": 2, "cursor": old})
    assert by_new.status_code == by_old.status_code == 200
    assert by_new.json() == by_old.json() and len(by_new.json()["data"]) == 2
    bad = client.get(url, headers=owner.headers, params={"limit": 2, "cursor": "W10"})  # []
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_cursor"


def test_a_stranger_with_a_bad_cursor_still_gets_404(
    ctx: Context, client: TestClient, make_caller: Callable[..., Caller]
) -> None:
    owner, stranger = make_caller("user"), make_caller("user")
    project = ctx.services.projects.create(_principal(owner), name="a", domain="healthcare")["id"]
    for kind, listing in LISTS.items():
        for who, status in ((stranger, 404), (owner, 422)):
            r = client.get(listing.url, headers=who.headers, params={"project": project, "cursor": "W10"})
            assert r.status_code == status, (kind, r.text)
