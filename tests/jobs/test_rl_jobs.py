"""DQN jobs through the API: allow-list, transitions checks at submit, a real online and offline
job with progress events, registration as a model version, predict with Q-values, and cancel."""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bastion.context import Context
from tests.conftest import Caller
from tests.jobs.support import ApiFactory, api_factory, wait_for
from tests.ml.rl.cartpole_logs import logged_cartpole

T = "/api/v1/training"
TINY = {
    "total_timesteps": 600,
    "learning_starts": 100,
    "train_freq": 50,
    "gradient_steps": 5,
    "report_every": 200,
    "eval_episodes": 2,
    "net_arch": [16],
}
pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def _submit(client: TestClient, who: Caller, **body: Any) -> Any:
    return client.post(f"{T}/submit", json={"model_type": "dqn", **body}, headers=who.headers)


def _wait(client: TestClient, who: Caller, job_id: str, *states: str) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = client.get(f"{T}/status/{job_id}", headers=who.headers).json()
        return body if body["status"] in states else None

    return wait_for(check, 240, 0.2, f"job {job_id} in {states}")


def _upload(client: TestClient, who: Caller, frame: Any, name: str) -> Any:
    data = frame.to_csv(index=False).encode()
    return client.post(
        "/api/v1/datasets",
        files={"file": (f"{name}.csv", io.BytesIO(data), "text/csv")},
        data={"name": name},
        headers=who.headers,
    )


def test_online_job_events_registration_and_predict(api: ApiFactory, alice: Caller, bob: Caller) -> None:
    client = api("bastion.jobs.runner:run_training")
    r = _submit(client, alice, dataset_source="gymnasium", params={"env_id": "MountainCar-v0"})
    assert r.status_code == 422 and r.json()["error"]["code"] == "env_not_allowed"
    r = client.get(
        f"{T}/cost-estimate",
        params={"model_type": "dqn", "dataset_source": "gymnasium"},
        headers=alice.headers,
    )
    assert r.status_code == 200 and r.json()["estimated_seconds"] > 0, r.text
    r = _submit(client, alice, dataset_source="gymnasium", params=TINY)
    assert r.status_code == 200, r.text
    job_id = r.json()["job_id"]
    status = _wait(client, alice, job_id, "completed", "failed")
    assert status["status"] == "completed", status
    results = status["results"]
    assert results["returns"]["episodes"] == 2 and "random_mean_return" in results
    steps = [e["step"] for e in status.get("history", []) if "step" in e]
    assert steps == [200, 400, 600]
    model_id = wait_for(
        lambda: [
            m["id"]
            for m in client.get("/api/v1/models", headers=alice.headers).json()["data"]
            if m["name"] == "dqn-gymnasium"
        ],
        60,
        0.2,
        "the policy in the registry",
    )[0]
    state = {"state_0": 0.01, "state_1": 0.0, "state_2": -0.02, "state_3": 0.1}
    r = client.post(f"/api/v1/models/{model_id}/predict", json={"rows": [state]}, headers=alice.headers)
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"][0] in (0, 1) and len(body["q_values"][0]) == 2
    assert body["predictions"][0] == max(range(2), key=lambda a: body["q_values"][0][a])
    r = client.post(f"/api/v1/models/{model_id}/predict", json={"rows": [state]}, headers=bob.headers)
    assert r.status_code == 404
    r = client.post(
        f"/api/v1/models/{model_id}/predict", json={"rows": [{"state_0": 1}]}, headers=alice.headers
    )
    assert r.status_code == 422
    r = client.get(f"/api/v1/models/{model_id}/encrypted/spec", headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "he_unsupported_model"


def test_offline_job_checks_the_table_then_learns(api: ApiFactory, alice: Caller) -> None:
    client = api("bastion.jobs.runner:run_training")
    frame, _ = logged_cartpole(episodes=10, epsilon=0.5, seed=3)
    missing = _upload(client, alice, frame.drop(columns=["next_state_1"]), "missing").json()["id"]
    r = _submit(client, alice, dataset_source="user_provided", dataset_id=missing)
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_transitions"
    assert "next_state_1" in r.json()["error"]["message"]
    nan = frame.astype({"reward": float})
    nan.loc[5, "reward"] = float("nan")
    nan_id = _upload(client, alice, nan, "nan").json()["id"]
    r = _submit(client, alice, dataset_source="user_provided", dataset_id=nan_id)
    assert r.status_code == 422 and "reward" in r.json()["error"]["message"]

    good = _upload(client, alice, frame, "logs")
    assert good.status_code == 201, good.text
    params = {
        "offline_updates": 200,
        "report_every": 100,
        "net_arch": [16],
        "eval_env_id": "CartPole-v1",
        "eval_episodes": 2,
    }
    r = _submit(client, alice, dataset_source="user_provided", dataset_id=good.json()["id"], params=params)
    assert r.status_code == 200, r.text
    status = _wait(client, alice, r.json()["job_id"], "completed", "failed")
    assert status["status"] == "completed", status
    results = status["results"]
    assert results["mode"] == "offline" and results["transitions"] == len(frame)
    assert "direct method" in results["value_estimate_method"]
    assert results["logged_policy_value_method"].startswith("Monte Carlo")


def test_cancel_a_running_dqn_job(api: ApiFactory, alice: Caller) -> None:
    client = api("bastion.jobs.runner:run_training")
    r = _submit(
        client,
        alice,
        dataset_source="gymnasium",
        params={**TINY, "total_timesteps": 2_000_000, "stop_at_threshold": False},
    )
    job_id = r.json()["job_id"]
    wait_for(
        lambda: client.get(f"{T}/status/{job_id}", headers=alice.headers).json()["progress"] > 0,
        120,
        0.2,
        "first progress event",
    )
    assert client.post(f"{T}/cancel/{job_id}", headers=alice.headers).status_code == 200
    assert _wait(client, alice, job_id, "cancelled", "failed", "completed")["status"] == "cancelled"
