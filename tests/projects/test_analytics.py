"""Project analytics checked against the rows that produced them: uploads, jobs with known run
times and reserved resources, model versions with metrics, federation updates from members' sites."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import numpy as np
import pytest
from fastapi.testclient import TestClient
from safetensors.numpy import save

from bastion.context import Context
from bastion.jobs.pricing import PriceTable
from bastion.store.base import utcnow
from bastion.store.tables import FederationUpdate, TrainingJob
from tests.api.test_federation_routes import TINY
from tests.conftest import Caller
from tests.projects.test_project_routes import _upload, add, new_project

A = "/api/v1/projects/{}/analytics/{}"


def _job(
    ctx: Context, owner: str, project: str, profile: str, minutes: float, resources: dict[str, float] | None
) -> str:
    start = utcnow() - timedelta(hours=3)
    job = TrainingJob(
        owner_id=owner,
        project_id=project,
        model_type="alzheimer_classifier",
        dataset_source="synthetic_test_data",
        resource_profile=profile,
        max_runtime_seconds=3600.0,
        state="completed",
        progress=1.0,
        started_at=start,
        completed_at=start + timedelta(minutes=minutes),
        resources=resources,
        results={"accuracy": 0.8, "model_type": "alzheimer_classifier"},
    )
    with ctx.db.session() as s:
        s.add(job)
        s.flush()
        return job.id


def test_analytics_figures_match_their_rows(
    client: TestClient, ctx: Context, make_caller: Callable[..., Caller]
) -> None:
    alice, bob, carol, vic = (make_caller("user", n) for n in ("alice", "bob", "carol", "vic"))
    p = new_project(client, alice, "Cardiology study")
    add(client, alice, p, bob, "member")
    add(client, alice, p, vic, "viewer")
    assert _upload(client, alice, p).status_code == 201
    assert _upload(client, bob, p).status_code == 201
    assert _upload(client, bob, None).status_code == 201, "a personal upload does not count for the project"

    # jobs: alice 30 min on cpu-small (2 cpus); bob 90 min asking 4 cpus + 1 gpu on gpu-small
    _job(ctx, alice.user_id, p, "cpu-small", 30, None)
    _job(ctx, bob.user_id, p, "gpu-small", 90, {"cpus": 4.0, "gpus": 1.0, "memory_mb": 1024.0})
    prices = PriceTable(ctx.db).all()

    blob = save({"w": np.zeros((2, 2), dtype=np.float32)})
    models = ctx.services.models
    for acc in (0.6, 0.7):
        models.register(
            alice.user_id, "risk", blob, "safetensors", config={}, metrics={"accuracy": acc}, project_id=p
        )

    fed = client.post(
        "/api/v1/federations", params={"project": p}, json={"name": "f", "model": TINY}, headers=alice.headers
    ).json()
    site = client.post(
        f"/api/v1/federations/{fed['id']}/participants", json={"name": "s"}, headers=bob.headers
    )
    with ctx.db.session() as s:
        for rnd in (1, 2):
            s.add(
                FederationUpdate(
                    federation_id=fed["id"],
                    round=rnd,
                    participant_id=site.json()["id"],
                    nonce=f"{rnd}" * 32,
                    artifact_id="x",
                    num_samples=5,
                )
            )

    # contributions
    rows = client.get(A.format(p, "contributions"), headers=vic.headers).json()["data"]
    by = {r["username"]: r for r in rows}
    assert (
        by["alice"]["datasets"],
        by["alice"]["rows"],
        by["alice"]["jobs"],
        by["alice"]["federation_rounds"],
    ) == (1, 40, 1, 0)
    assert (by["bob"]["datasets"], by["bob"]["rows"], by["bob"]["jobs"], by["bob"]["federation_rounds"]) == (
        1,
        40,
        1,
        2,
    )
    assert by["vic"]["role"] == "viewer" and by["vic"]["jobs"] == 0

    # resources: CPU-hours = cpus x hours, GPU-hours = gpus x hours, cost = hourly price x hours
    use = client.get(A.format(p, "resources"), headers=bob.headers).json()
    expected_cost = prices["cpu-small"].hourly_cost * 0.5 + prices["gpu-small"].hourly_cost * 1.5
    assert use["total"] == {
        "cpu_hours": pytest.approx(2 * 0.5 + 4 * 1.5),
        "gpu_hours": pytest.approx(1.5),
        "cost": pytest.approx(expected_cost, rel=1e-5),
    }
    assert {m["username"]: m["gpu_hours"] for m in use["by_member"]} == {
        "alice": 0.0,
        "bob": pytest.approx(1.5),
    }

    # models over time, training history, federations
    got = {m["name"]: m for m in client.get(A.format(p, "models"), headers=alice.headers).json()["data"]}
    assert set(got) == {"risk", "fl-f"}, "the federation's initial global model joined the project too"
    risk = got["risk"]
    assert [(v["version"], v["metrics"]["accuracy"]) for v in risk["versions"]] == [(1, 0.6), (2, 0.7)]
    history = client.get(A.format(p, "training"), headers=alice.headers).json()
    assert history["by_state"] == {"completed": 2}
    assert sorted(j["duration_seconds"] for j in history["jobs"]) == [1800.0, 5400.0]
    (f,) = client.get(A.format(p, "federations"), headers=alice.headers).json()["data"]
    assert (
        f["sites"],
        f["guests"],
        f["rounds_by_member"][0]["username"],
        f["rounds_by_member"][0]["rounds"],
    ) == (1, 0, "bob", 2)

    # a stranger reads none of it
    for view in ("contributions", "models", "training", "resources", "federations"):
        assert client.get(A.format(p, view), headers=carol.headers).status_code == 404
