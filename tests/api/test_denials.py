"""Anonymous requests are rate-limited per address; identical denials and 404 reads are audited, coalesced."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.context import Context
from bastion.store.tables import AuditEvent
from tests.conftest import Caller

ME = "/api/v1/auth/me"


def _rows(ctx: Context, action: str) -> list[AuditEvent]:
    with ctx.db.session() as s:
        return list(s.scalars(select(AuditEvent).where(AuditEvent.action == action).order_by(AuditEvent.seq)))


def test_anonymous_requests_are_rate_limited_and_coalesced(client: TestClient, ctx: Context) -> None:
    limit = int(ctx.settings.anonymous_rate_limit.split("/")[0])
    codes = [client.get(ME).status_code for _ in range(limit + 20)]
    assert codes[:limit] == [401] * limit and set(codes[limit:]) == {429}
    r = client.get(ME)
    assert r.status_code == 429 and int(r.headers["Retry-After"]) > 0
    assert len(_rows(ctx, "auth.denied")) == 1, "one row for a burst of identical denials"
    for _ in range(30):
        client.post("/api/v1/training/cancel/x")
    assert len(_rows(ctx, "http.post")) == 1


def test_a_coalesced_row_reports_how_many_it_folded(client: TestClient, ctx: Context) -> None:
    for _ in range(10):
        client.get(ME)
    ctx.denials.window = 0.0  # the window has passed: the next identical denial closes it
    client.get(ME)
    rows = _rows(ctx, "auth.denied")
    assert [json.loads(r.details).get("repeated") for r in rows] == [None, 9]


def test_reads_of_someone_elses_object_are_audited_coalesced(
    client: TestClient, ctx: Context, alice: Caller, bob: Caller
) -> None:
    up = client.post(
        "/api/v1/datasets",
        content=b"age,score\n30,1\n40,2\n",
        headers={**alice.headers, "content-type": "text/csv"},
    )
    assert up.status_code == 201, up.text
    dataset = up.json()["id"]
    assert client.get(f"/api/v1/datasets/{dataset}", headers=alice.headers).status_code == 200
    for i in range(20):
        target = dataset if i % 2 else f"{dataset[:-4]}{i:04d}"
        assert client.get(f"/api/v1/datasets/{target}", headers=bob.headers).status_code == 404
    rows = [r for r in _rows(ctx, "http.get") if r.outcome == "denied"]
    assert len(rows) == 1
    row = rows[0]
    assert (row.actor, row.target_id, json.loads(row.details)["status"]) == (
        "bob",
        "/api/v1/datasets/{dataset_id}",
        404,
    )
    assert client.get("/api/v1/datasets/nope", headers=bob.headers).status_code == 404
    assert len([r for r in _rows(ctx, "http.get") if r.actor == "alice"]) == 0, (
        "successful reads are not audited"
    )
