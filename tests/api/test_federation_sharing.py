"""Federations across users: a coordinator invites a user of another project to enrol their own
sites; what the guest sees of the other parties follows the federation's visibility setting
(aggregates only by default); strangers still get 404 and guests change nothing but their enrolment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import select

from bastion.context import Context
from bastion.store.tables import AuditEvent, FederationUpdate
from tests.api.test_federation_routes import TINY
from tests.conftest import Caller
from tests.projects.test_project_routes import add, new_project

F = "/api/v1/federations"


def _sites(client: TestClient, who: Caller, fid: str) -> dict[str, dict[str, Any]]:
    r = client.get(f"{F}/{fid}/participants", headers=who.headers)
    assert r.status_code == 200, r.text
    listed = {p["name"]: p for p in r.json()["data"]}
    detail = {p["name"]: p for p in client.get(f"{F}/{fid}", headers=who.headers).json()["participants"]}
    assert listed == detail, "the list and the federation's detail show the same"
    return listed


def test_guest_enrols_and_sees_what_visibility_allows(
    client: TestClient, ctx: Context, make_caller: Callable[..., Caller]
) -> None:
    alice, bob, dave, erin = (make_caller("user", n) for n in ("alice", "bob", "dave", "erin"))
    a = new_project(client, alice, "Cardiology consortium")
    add(client, alice, a, bob, "member")
    body = {"name": "fed", "model": TINY, "rounds": 2, "min_clients": 2}
    fid = client.post(F, params={"project": a}, json=body, headers=alice.headers).json()["id"]
    mine = client.post(f"{F}/{fid}/participants", json={"name": "hospital-a"}, headers=alice.headers).json()
    assert client.get(f"{F}/{fid}/sharing", headers=bob.headers).json() == {
        "visibility": "aggregates",
        "guests": [],
    }

    # not invited: nothing
    assert client.get(f"{F}/{fid}", headers=dave.headers).status_code == 404
    assert (
        client.post(f"{F}/{fid}/participants", json={"name": "clinic-d"}, headers=dave.headers).status_code
        == 404
    )
    assert client.post(f"{F}/{fid}/guests", json={"user": "erin"}, headers=dave.headers).status_code == 404

    r = client.post(f"{F}/{fid}/guests", json={"user": "dave"}, headers=alice.headers)
    assert r.status_code == 201 and [g["username"] for g in r.json()["guests"]] == ["dave"]
    assert client.post(f"{F}/{fid}/guests", json={"user": "dave"}, headers=alice.headers).status_code == 409
    theirs = client.post(f"{F}/{fid}/participants", json={"name": "clinic-d"}, headers=dave.headers)
    assert theirs.status_code == 201 and theirs.json()["token"].startswith("bsp_")
    assert fid in [f["id"] for f in client.get(F, headers=dave.headers).json()["data"]]

    # default: aggregates only -- the guest sees the rounds and their own site, not the others
    assert set(_sites(client, dave, fid)) == {"clinic-d"}
    assert client.get(f"{F}/{fid}/participants/{mine['id']}", headers=dave.headers).status_code == 404
    assert client.get(f"{F}/{fid}/rounds", headers=dave.headers).status_code == 200
    assert client.get(f"{F}/{fid}/status", headers=dave.headers).json()["participants"] == 2
    # the coordinator's project sees every site in full
    full = _sites(client, bob, fid)
    assert set(full) == {"hospital-a", "clinic-d"} and full["clinic-d"]["credential_prefix"]

    # a guest changes nothing but their enrolment; another party's site is not theirs to revoke (404)
    r = client.delete(f"{F}/{fid}/participants/{mine['id']}", headers=dave.headers)
    assert r.status_code == 404, r.text
    for method, path, json in (
        ("DELETE", f"{F}/{fid}", None),
        ("PUT", f"{F}/{fid}/sharing", {"visibility": "metrics"}),
        ("GET", f"{F}/{fid}/sharing", None),
        ("POST", f"{F}/{fid}/guests", {"user": "erin"}),
    ):
        r = client.request(method, path, json=json, headers=dave.headers)
        assert r.status_code == 403, (method, path, r.text)

    # per-site metrics as the server records them with each accepted update
    with ctx.db.session() as s:
        s.add(
            FederationUpdate(
                federation_id=fid,
                round=1,
                participant_id=mine["id"],
                nonce="n" * 32,
                artifact_id="x",
                num_samples=10,
                metrics_json={"val_accuracy": 0.75},
            )
        )

    assert (
        client.put(f"{F}/{fid}/sharing", json={"visibility": "sites"}, headers=alice.headers).status_code
        == 200
    )
    seen = _sites(client, dave, fid)
    assert set(seen) == {"hospital-a", "clinic-d"}
    assert seen["hospital-a"]["credential_prefix"] is None and seen["hospital-a"]["metrics"] is None
    assert seen["clinic-d"]["yours"] is True and seen["clinic-d"]["credential_prefix"]

    client.put(f"{F}/{fid}/sharing", json={"visibility": "metrics"}, headers=alice.headers)
    seen = _sites(client, dave, fid)
    assert (
        seen["hospital-a"]["metrics"] == {"val_accuracy": 0.75}
        and seen["hospital-a"]["signing_public_key"] is None
    )
    assert _sites(client, bob, fid)["hospital-a"]["metrics"] == {"val_accuracy": 0.75}

    # a guest withdraws their own site (audited); the coordinator's sites stay untouched
    r = client.delete(f"{F}/{fid}/participants/{theirs.json()['id']}", headers=dave.headers)
    assert r.status_code == 200 and r.json()["revoked_at"], r.text
    assert _sites(client, bob, fid)["hospital-a"]["revoked_at"] is None
    assert _sites(client, bob, fid)["clinic-d"]["revoked_at"]
    with ctx.db.session() as s:
        actions = s.scalars(select(AuditEvent.action).where(AuditEvent.actor_id == dave.user_id)).all()
    assert "fl.participant.revoke" in actions

    # strangers stay out; a withdrawn invitation ends the guest's access
    assert client.get(f"{F}/{fid}", headers=erin.headers).status_code == 404
    assert client.get(F, headers=erin.headers).json()["data"] == []
    assert client.delete(f"{F}/{fid}/guests/dave", headers=alice.headers).status_code == 200
    assert client.get(f"{F}/{fid}", headers=dave.headers).status_code == 404
    assert client.get(F, headers=dave.headers).json()["data"] == []
    with ctx.db.session() as s:
        actions = list(s.scalars(select(AuditEvent.action).where(AuditEvent.target_id == fid)))
    assert {"fl.guest.invite", "fl.guest.remove", "fl.federation.visibility"} <= set(actions)
