"""Projects through every resource route: two projects with overlapping members, each an attack.

alice owns project A (bob member, carol viewer); dave owns project B (bob member there too). bob's
membership overlaps both; nobody outside a project may see, change or list its objects (404),
a viewer may read but not write (403), and the last owner cannot leave (409).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save

from bastion.context import Context
from tests.api.test_federation_routes import TINY
from tests.conftest import Caller
from tests.jobs.support import QUICK_PARAMS, ApiFactory, api_factory, wait_for

P = "/api/v1/projects"
CSV = b"age,score,label\n" + b"".join(f"{20 + i % 50},{i % 7},{i % 2}\n".encode() for i in range(40))


def new_project(client: TestClient, owner: Caller, name: str, **extra: Any) -> str:
    r = client.post(P, json={"name": name, "domain": "healthcare", **extra}, headers=owner.headers)
    assert r.status_code == 201, r.text
    assert r.headers["Location"] == f"{P}/{r.json()['id']}"
    return str(r.json()["id"])


def add(client: TestClient, owner: Caller, pid: str, who: Caller, role: str) -> None:
    r = client.post(f"{P}/{pid}/members", json={"user": who.username, "role": role}, headers=owner.headers)
    assert r.status_code == 201, r.text


@pytest.fixture
def world(client: TestClient, make_caller: Callable[..., Caller]) -> dict[str, Any]:
    alice, bob, carol, dave = (make_caller("user", n) for n in ("alice", "bob", "carol", "dave"))
    a = new_project(client, alice, "Cardiology study", subdomain="cardiology")
    b = new_project(client, dave, "Fraud models")
    add(client, alice, a, bob, "member")
    add(client, alice, a, carol, "viewer")
    add(client, dave, b, bob, "member")
    return {"alice": alice, "bob": bob, "carol": carol, "dave": dave, "A": a, "B": b}


def test_project_routes_roles_and_last_owner(client: TestClient, world: dict[str, Any], ctx: Context) -> None:
    alice, bob, carol, dave, a = (world[k] for k in ("alice", "bob", "carol", "dave", "A"))
    got = client.get(f"{P}/{a}", headers=bob.headers).json()
    assert got["domain"] == "healthcare" and got["subdomain"] == "cardiology" and got["your_role"] == "member"
    assert {m["username"]: m["role"] for m in got["members"]} == {
        "alice": "owner",
        "bob": "member",
        "carol": "viewer",
    }
    mine = client.get(P, headers=bob.headers).json()["data"]
    assert {p["id"] for p in mine} == {a, world["B"], next(p["id"] for p in mine if p["personal"])}
    # outsiders see nothing; bad input is a clear 4xx
    assert client.get(f"{P}/{a}", headers=dave.headers).status_code == 404
    assert client.patch(f"{P}/{a}", json={"name": "x"}, headers=dave.headers).status_code == 404
    r = client.post(P, json={"name": "x", "domain": "astrology"}, headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "unknown_domain"
    # a member/viewer cannot manage; a maintainer cannot create owners
    assert client.patch(f"{P}/{a}", json={"name": "x"}, headers=carol.headers).status_code == 403
    assert client.post(f"{P}/{a}/members", json={"user": "dave"}, headers=bob.headers).status_code == 403
    assert (
        client.patch(f"{P}/{a}/members/bob", json={"role": "maintainer"}, headers=alice.headers).status_code
        == 200
    )
    r = client.patch(f"{P}/{a}/members/carol", json={"role": "owner"}, headers=bob.headers)
    assert r.status_code == 403
    # the last owner can neither step down nor be removed nor leave
    for r in (
        client.patch(f"{P}/{a}/members/alice", json={"role": "member"}, headers=alice.headers),
        client.delete(f"{P}/{a}/members/alice", headers=alice.headers),
    ):
        assert r.status_code == 409 and r.json()["error"]["code"] == "last_owner", r.text
    assert client.delete(f"{P}/{a}/members/alice", headers=bob.headers).status_code == 403
    # personal projects are not shared
    personal = next(p["id"] for p in mine if p["personal"])
    r = client.post(f"{P}/{personal}/members", json={"user": "dave"}, headers=bob.headers)
    assert r.status_code == 409
    # every membership change is in the audit chain
    actions = [e.action for e in ctx.audit_events()] if hasattr(ctx, "audit_events") else _audit_actions(ctx)
    assert actions.count("project.member.add") == 3 and "project.member.role" in actions
    assert "project.create" in actions


def _audit_actions(ctx: Context) -> list[str]:
    from sqlalchemy import select

    from bastion.store.tables import AuditEvent

    with ctx.db.session() as s:
        return list(s.scalars(select(AuditEvent.action).order_by(AuditEvent.seq)))


def _upload(client: TestClient, who: Caller, project: str | None) -> Any:
    params = {"name": "cohort"} | ({"project": project} if project else {})
    return client.post(
        "/api/v1/datasets",
        content=CSV,
        params=params,
        headers={**who.headers, "Content-Type": "application/octet-stream"},
    )


def test_datasets_models_and_federations_across_projects(
    client: TestClient, world: dict[str, Any], ctx: Context
) -> None:
    alice, bob, carol, dave, a, b = (world[k] for k in ("alice", "bob", "carol", "dave", "A", "B"))
    r = _upload(client, alice, a)
    assert r.status_code == 201, r.text
    ds = r.json()
    assert ds["project_id"] == a
    assert _upload(client, carol, a).status_code == 403, "a viewer writes nothing"
    assert _upload(client, dave, a).status_code == 404, "a stranger cannot even tell the project exists"
    mine = _upload(client, dave, None).json()
    assert mine["project_id"] not in (a, b), "no project named: the personal project"
    # read / change / list, per caller
    d = f"/api/v1/datasets/{ds['id']}"
    assert client.get(d, headers=bob.headers).status_code == 200, "a colleague reads the shared dataset"
    assert client.get(d, headers=carol.headers).status_code == 200
    assert client.get(d, headers=dave.headers).status_code == 404
    assert client.delete(d, headers=dave.headers).status_code == 404
    assert client.delete(d, headers=carol.headers).status_code == 403
    assert [x["id"] for x in client.get("/api/v1/datasets", headers=bob.headers).json()["data"]] == [ds["id"]]
    assert [x["id"] for x in client.get("/api/v1/datasets", headers=dave.headers).json()["data"]] == [
        mine["id"]
    ]
    assert client.get("/api/v1/datasets", params={"project": a}, headers=dave.headers).status_code == 404
    assert client.get("/api/v1/datasets", params={"project": b}, headers=bob.headers).json()["data"] == []
    ft = "/api/v1/fine_tuning/jobs"
    assert client.get(ft, params={"project": a}, headers=dave.headers).status_code == 404
    assert client.get(ft, params={"project": a}, headers=carol.headers).json()["data"] == []

    # models: a version registered for project A (as a job of A would)
    blob = save({"w": np.zeros((2, 2), dtype=np.float32)})
    ctx.services.models.register(
        alice.user_id, "shared-model", blob, "safetensors", config={}, metrics={"accuracy": 0.5}, project_id=a
    )
    models = client.get("/api/v1/models", headers=bob.headers).json()["data"]
    assert [(m["name"], m["project_id"]) for m in models] == [("shared-model", a)]
    mid = models[0]["id"]
    assert client.get(f"/api/v1/models/{mid}", headers=carol.headers).status_code == 200
    assert client.get(f"/api/v1/models/{mid}", headers=dave.headers).status_code == 404
    assert client.get("/api/v1/models", headers=dave.headers).json()["data"] == []
    code = {"access_code": "correct horse battery staple 9"}
    assert client.put(f"/api/v1/models/{mid}/access-code", json=code, headers=dave.headers).status_code == 404
    assert (
        client.put(f"/api/v1/models/{mid}/access-code", json=code, headers=carol.headers).status_code == 403
    )

    # federations
    body = {"name": "fed", "model": TINY, "rounds": 2, "min_clients": 2}
    r = client.post("/api/v1/federations", params={"project": a}, json=body, headers=bob.headers)
    assert r.status_code == 201, r.text
    fid = r.json()["id"]
    assert r.json()["project_id"] == a
    assert (
        client.post(
            "/api/v1/federations", params={"project": a}, json=body, headers=carol.headers
        ).status_code
        == 403
    )
    f = f"/api/v1/federations/{fid}"
    assert client.get(f, headers=alice.headers).status_code == 200
    assert client.get(f, headers=dave.headers).status_code == 404
    assert client.get(f"{f}/status", headers=dave.headers).status_code == 404
    enrol = {"name": "site-1"}
    assert client.post(f"{f}/participants", json=enrol, headers=dave.headers).status_code == 404
    assert client.post(f"{f}/participants", json=enrol, headers=carol.headers).status_code == 403
    assert client.post(f"{f}/participants", json=enrol, headers=alice.headers).status_code == 201
    assert [x["id"] for x in client.get("/api/v1/federations", headers=carol.headers).json()["data"]] == [fid]
    assert client.get("/api/v1/federations", headers=dave.headers).json()["data"] == []
    part = client.get(f"{f}/participants", headers=alice.headers).json()["data"][0]["id"]
    every_route(client, carol, dave, ds["id"], mid, fid, part)


CODE = {"access_code": "correct horse battery staple 9"}


def every_route(
    client: TestClient, viewer: Caller, stranger: Caller, ds: str, model: str, fed: str, part: str
) -> None:
    """Each object route of project A: a stranger gets 404 everywhere; a viewer reads (never 404/403)
    and is refused every write (403)."""
    d, m, f = f"/api/v1/datasets/{ds}", f"/api/v1/models/{model}", f"/api/v1/federations/{fed}"
    reads: list[tuple[str, str, dict[str, Any] | None]] = [
        ("GET", d, None),
        ("GET", f"{d}/preview", None),
        ("GET", m, None),
        ("GET", f"{m}/best", None),
        ("GET", f"{m}/download", None),
        ("POST", f"{m}/predict", {"rows": [{"a": 1}]}),
        ("GET", f, None),
        ("GET", f"{f}/status", None),
        ("GET", f"{f}/rounds", None),
        ("GET", f"{f}/participants", None),
        ("GET", f"{f}/participants/{part}", None),
        ("GET", f"{f}/model", None),
    ]
    writes: list[tuple[str, str, dict[str, Any] | None]] = [
        ("DELETE", d, None),
        ("PUT", f"{d}/access-code", CODE),
        ("DELETE", f"{d}/access-code", None),
        ("POST", f"{m}/quantize", {}),
        ("PUT", f"{m}/access-code", CODE),
        ("DELETE", f"{m}/access-code", None),
        ("POST", f"{f}/participants", {"name": "site-9"}),
        ("DELETE", f"{f}/participants/{part}", None),
        ("DELETE", f, None),
    ]
    for method, path, body in reads + writes:
        r = client.request(method, path, json=body, headers=stranger.headers)
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    for method, path, body in reads:
        r = client.request(method, path, json=body, headers=viewer.headers)
        assert r.status_code not in (403, 404), (method, path, r.status_code, r.text)
    for method, path, body in writes:
        r = client.request(method, path, json=body, headers=viewer.headers)
        assert r.status_code == 403, (method, path, r.status_code, r.text)


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_jobs_across_projects_and_member_removed_mid_job(
    api: ApiFactory, make_caller: Callable[..., Caller]
) -> None:
    client = api("bastion.jobs.runner:run_training")
    alice, bob, carol, dave = (make_caller("user", n) for n in ("alice", "bob", "carol", "dave"))
    a = new_project(client, alice, "Cardiology study")
    add(client, alice, a, bob, "member")
    add(client, alice, a, carol, "viewer")
    t = "/api/v1/training"
    submit = {
        "model_type": "alzheimer_classifier",
        "dataset_source": "synthetic_test_data",
        "params": QUICK_PARAMS,
    }
    r = client.post(f"{t}/submit", json={**submit, "project": a}, headers=carol.headers)
    assert r.status_code == 403, "a viewer cannot start jobs"
    r = client.post(f"{t}/submit", json={**submit, "project": a}, headers=dave.headers)
    assert r.status_code == 404
    r = client.post(f"{t}/submit", json={**submit, "project": a}, headers=bob.headers)
    assert r.status_code == 200, r.text
    job = r.json()["job_id"]
    assert client.get(f"{t}/status/{job}", headers=carol.headers).json()["project_id"] == a
    assert client.get(f"{t}/status/{job}", headers=dave.headers).status_code == 404
    assert client.post(f"{t}/cancel/{job}", headers=dave.headers).status_code == 404
    for path in (f"{t}/jobs/{job}/logs", f"{t}/jobs/{job}/events", f"{t}/model/{job}"):
        assert client.get(path, headers=dave.headers).status_code == 404, path
    assert client.get(f"{t}/jobs/{job}/logs", headers=carol.headers).status_code == 200
    assert client.post(f"{t}/cancel/{job}", headers=carol.headers).status_code == 403
    assert client.get(f"{t}/jobs", params={"project": a}, headers=dave.headers).status_code == 404
    assert client.get(f"{t}/jobs", headers=dave.headers).json()["jobs"] == []
    assert [j["job_id"] for j in client.get(f"{t}/jobs", headers=carol.headers).json()["jobs"]] == [job]
    # bob leaves the project while his job is queued or running: it still finishes ...
    assert client.delete(f"{P}/{a}/members/bob", headers=alice.headers).status_code == 200

    def finished() -> dict[str, Any] | None:
        body: dict[str, Any] = client.get(f"{t}/status/{job}", headers=alice.headers).json()
        return body if body["status"] in ("completed", "failed") else None

    done = wait_for(finished, 120, 0.1, "bob's job to finish")
    assert done["status"] == "completed", done["error_message"]
    # ... but bob has lost access to it and to its outputs; the project keeps them
    assert client.get(f"{t}/status/{job}", headers=bob.headers).status_code == 404
    assert client.get(f"{t}/model/{job}", headers=bob.headers).status_code == 404
    assert client.get(f"{t}/jobs", headers=bob.headers).json()["jobs"] == []
    models = client.get("/api/v1/models", params={"project": a}, headers=alice.headers).json()["data"]
    assert [m["project_id"] for m in models] == [a], "the job's model joined the job's project"
    assert client.get("/api/v1/models", headers=bob.headers).json()["data"] == []
    assert client.get(f"/api/v1/models/{models[0]['id']}", headers=bob.headers).status_code == 404
