"""What a secure round leaves in the audit log: one row per stage naming who answered it, a
``fl.update`` row per masked input, and a generic row only for a refused stage message."""

from __future__ import annotations

import json

from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.context import Context
from bastion.store.tables import AuditEvent
from tests.federation.server.test_secure_rounds import BASE, Federation, clock, fed  # noqa: F401


def test_each_stage_is_one_audit_row_naming_the_sites_that_answered(
    fed: Federation,  # noqa: F811
    ctx: Context,
    client: TestClient,
) -> None:
    fed.create(3)
    fed.drive(fed.round_closed(1))
    with ctx.db.session() as s:
        rows = [(e.action, e.outcome, e.target_id, e.details) for e in s.scalars(select(AuditEvent))]
    stages = [json.loads(str(d)) for a, _o, _t, d in rows if a == "fl.secagg.stage"]
    pids = {
        p["id"]
        for p in client.get(f"{BASE}/{fed.fid}/participants", headers=fed.owner.headers).json()["data"]
    }
    assert [d["stage"] for d in stages] == ["advertise", "share", "unmask"]
    assert all(set(d["answered"]) == pids and d["round"] == 1 for d in stages)
    assert len([r for r in rows if r[0] == "fl.update" and r[1] == "success"]) == 3  # masked inputs
    assert not [r for r in rows if r[0] == "http.post" and "secagg" in str(r[2])]
    # a refused stage message still gets the gateway's row
    site = next(iter(fed.sites.values()))
    headers = {**site.transport.auth_headers, "Content-Type": "application/json"}
    r = client.post(f"{BASE}/{fed.fid}/site/secagg/advertise", content=b"{}", headers=headers)
    assert r.status_code == 422
    with ctx.db.session() as s:
        refused = s.scalars(select(AuditEvent).where(AuditEvent.action == "http.post")).all()
    assert [e.target_id for e in refused][-1].endswith("/site/secagg/advertise")
