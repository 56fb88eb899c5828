"""The training API over HTTP: seeds/000's shapes, bad input, foreign jobs, cancel, SSE, logs, admin."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bastion.client import DecryptionError, open_download
from bastion.context import Context
from bastion.crypto import sealed
from tests.conftest import Caller
from tests.jobs.support import QUICK_PARAMS, ApiFactory, Harness, api_factory, wait_for

T = "/api/v1/training"
SUBMIT = {"model_type": "alzheimer_classifier", "dataset_source": "synthetic_test_data"}
SEEDS_STATUS_KEYS = {
    "job_id",
    "status",
    "progress",
    "created_at",
    "started_at",
    "completed_at",
    "results",
    "error_message",
}


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def submit(client: TestClient, who: Caller, **body: Any) -> str:
    r = client.post(f"{T}/submit", json={**SUBMIT, **body}, headers=who.headers)
    assert r.status_code == 200, r.text
    return str(r.json()["job_id"])


def wait_status(
    client: TestClient, who: Caller, job_id: str, *states: str, timeout: float = 90
) -> dict[str, Any]:
    def check() -> dict[str, Any] | None:
        body = client.get(f"{T}/status/{job_id}", headers=who.headers).json()
        return body if body["status"] in states else None

    return wait_for(check, timeout, 0.1, f"job {job_id} in {states}")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_quick_start_real_training_and_download(api: ApiFactory, alice: Caller, bob: Caller) -> None:
    client = api("bastion.jobs.runner:run_training")
    r = client.post(f"{T}/submit", json={**SUBMIT, "params": QUICK_PARAMS}, headers=alice.headers)
    assert r.status_code == 200
    body = r.json()
    assert body["success"] is True and body["message"] == "Training job submitted successfully"
    job_id = body["job_id"]
    assert str(uuid.UUID(job_id)) == job_id
    done = wait_status(client, alice, job_id, "completed", "failed")
    assert done["status"] == "completed", done["error_message"]
    assert set(done) >= SEEDS_STATUS_KEYS and done["progress"] == 1.0
    results = done["results"]
    assert results["model_type"] == "alzheimer_classifier" and results["feature_count"] == 9
    assert results["training_samples"] + results["test_samples"] == 400
    assert 0.0 < results["accuracy"] <= 1.0 and 0.0 < results["training_accuracy"] <= 1.0
    assert results["training_duration_seconds"] > 0
    assert done["params"]["estimator"] == "logistic_regression", "params are stored, defaults filled in"
    listed = client.get(f"{T}/jobs", params={"limit": 10}, headers=alice.headers).json()["jobs"]
    assert [j["job_id"] for j in listed] == [job_id]
    assert {"job_id", "status", "progress", "created_at", "results"} <= set(listed[0])

    model = client.get(f"{T}/model/{job_id}", headers=alice.headers)
    assert model.status_code == 200
    payload = model.json()
    assert payload["success"] is True and payload["job_id"] == job_id and payload["encrypted_model"]
    opened = open_download(payload, api_key=alice.key)
    predictor = opened.predictor()
    from bastion.data.builtin import load_dataset

    data = load_dataset("synthetic_test_data")
    rows = [
        {name: None if v != v else v for name, v in zip(data.feature_names, row, strict=True)}
        for row in data.X[:5]
    ]
    for name, labels in data.categories.items():  # categorical columns hold codes: give the labels back
        for row in rows:
            row[name] = None if row[name] is None else labels[int(row[name])]
    assert set(predictor.predict(rows)) <= set(data.target_names or [])
    with pytest.raises(DecryptionError):
        open_download(payload, api_key=bob.key)
    assert client.get(f"{T}/model/{job_id}", headers=bob.headers).status_code == 404

    # the finished job's model is a registry version whose lineage is the job
    registered = client.get("/api/v1/models", headers=alice.headers).json()["data"]
    # the registry names it <model_type>-<dataset> when the submit gave no model_name
    assert [m["name"] for m in registered] == ["alzheimer_classifier-synthetic_test_data"]
    detail = client.get(f"/api/v1/models/{registered[0]['id']}", headers=alice.headers).json()
    assert detail["history"][0]["lineage"]["job_id"] == job_id
    assert detail["history"][0]["metrics"]["accuracy"] == results["accuracy"]
    served = client.post(
        f"/api/v1/models/{registered[0]['id']}/predict", json={"rows": rows}, headers=alice.headers
    )
    assert served.status_code == 200 and served.json()["predictions"] == list(predictor.predict(rows))
    assert client.get("/api/v1/models", headers=bob.headers).json()["data"] == []


@pytest.mark.parametrize(
    ("body", "code", "needle"),
    [
        ({"model_type": "resnet"}, "invalid", "alzheimer_classifier"),
        ({"dataset_source": "imagenet"}, "unknown_dataset", "synthetic_test_data"),
        ({"params": {"n_trees": 5}}, "invalid", "n_estimators"),
        ({"params": {"n_estimators": -1}}, "invalid", "n_estimators"),
        ({"model_type": "tabular_regressor", "dataset_source": "wine"}, "invalid", "regression"),
        ({"dataset_source": "user_provided"}, "dataset_id_required", "dataset_id required"),
        ({"resource_profile": "quantum"}, "unknown_resource_profile", "cpu-small"),
        ({"colour": "blue"}, "validation_error", "colour"),
        ({"max_runtime_seconds": -5}, "validation_error", "max_runtime_seconds"),
        ({"resources": {"tpus": 1}}, "invalid_resources", "cpus, gpus, memory"),
        ({"resources": {"memory": "lots"}}, "invalid_resources", "8GiB"),
        ({"search": {"space": {"nope": [1]}}}, "invalid_search", "n_estimators"),
        ({"search": {"space": {"C": {"type": "float", "low": 1, "high": 0}}}}, "invalid_search", "low"),
    ],
)
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_bad_input_is_422_listing_choices(
    api: ApiFactory, alice: Caller, body: dict[str, Any], code: str, needle: str
) -> None:
    client = api()
    r = client.post(f"{T}/submit", json={**SUBMIT, **body}, headers=alice.headers)
    assert r.status_code == 422, r.text
    error = r.json()["error"]
    assert error["code"] == code and needle in json.dumps(error)
    assert client.get(f"{T}/jobs", headers=alice.headers).json()["jobs"] == []


def test_unknown_model_type_names_every_choice(api: ApiFactory, alice: Caller) -> None:
    client = api()
    r = client.post(f"{T}/submit", json={**SUBMIT, "model_type": "gpt"}, headers=alice.headers)
    assert set(r.json()["error"]["choices"]) == {
        "alzheimer_classifier",
        "adaptive_neural_net",
        "tabular_regressor",
        "he_mlp",
        "dqn",
    }
    r = client.post(f"{T}/submit", json={**SUBMIT, "params": {"nope": 1}}, headers=alice.headers)
    assert "n_estimators" in r.json()["error"]["valid_params"]


def test_roles_and_authentication(api: ApiFactory, viewer: Caller, alice: Caller) -> None:
    client = api()
    assert client.post(f"{T}/submit", json=SUBMIT).status_code == 401
    assert client.post(f"{T}/submit", json=SUBMIT, headers=viewer.headers).status_code == 403
    assert client.get("/api/v1/admin/training/status", headers=alice.headers).status_code == 403
    examples = client.get(f"{T}/examples").json()  # no authentication
    assert examples["examples"]["alzheimer_classifier_synthetic"]["dataset_source"] == "synthetic_test_data"
    assert "usage" in examples


def test_foreign_job_is_404_on_every_route(api: ApiFactory, alice: Caller, bob: Caller) -> None:
    client = api("packaged")
    job_id = submit(client, alice)
    wait_status(client, alice, job_id, "completed")
    routes = [
        ("GET", f"{T}/status/{job_id}"),
        ("POST", f"{T}/cancel/{job_id}"),
        ("GET", f"{T}/model/{job_id}"),
        ("GET", f"{T}/jobs/{job_id}/logs"),
        ("GET", f"{T}/jobs/{job_id}/events"),
    ]
    for method, path in routes:
        r = client.request(method, path, headers=bob.headers)
        assert r.status_code == 404, (path, r.status_code)
        assert r.json()["error"]["code"] == "job_not_found"
        missing = path.replace(job_id, str(uuid.uuid4()))
        assert client.request(method, missing, headers=alice.headers).status_code == 404
        assert (
            client.request(method, path.replace(job_id, "not-a-uuid"), headers=alice.headers).status_code
            == 404
        )
    assert client.get(f"{T}/jobs", headers=bob.headers).json()["jobs"] == []
    assert client.get(f"{T}/status/{job_id}", headers=alice.headers).json()["status"] == "completed"


def test_cancel_in_each_state(api: ApiFactory, alice: Caller) -> None:
    client = api("block", max_concurrent=1)
    harness: Harness = client.harness  # type: ignore[attr-defined]
    running = submit(client, alice)
    pending = submit(client, alice)
    harness.started_pid(running)
    assert client.get(f"{T}/status/{pending}", headers=alice.headers).json()["status"] == "pending"

    r = client.post(f"{T}/cancel/{pending}", headers=alice.headers)
    assert r.status_code == 200 and r.json() == {
        "success": True,
        "message": "Job cancelled successfully",
        "job_id": pending,
        "status": "cancelled",
    }
    r = client.post(f"{T}/cancel/{running}", headers=alice.headers)
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    again = client.post(f"{T}/cancel/{running}", headers=alice.headers)
    assert again.status_code == 200 and again.json()["message"] == "Job was already cancelled"
    status = client.get(f"{T}/status/{pending}", headers=alice.headers).json()
    assert status["attempt"] == 0 and status["started_at"] is None, "the pending job never ran"

    third = submit(client, alice)
    harness.release(third)
    wait_status(client, alice, third, "completed")
    r = client.post(f"{T}/cancel/{third}", headers=alice.headers)
    assert r.status_code == 409 and r.json()["error"]["code"] == "job_finished"
    assert (
        client.get(f"{T}/model/{pending}", headers=alice.headers).json()["error"]["code"] == "model_not_ready"
    )


def _events(client: TestClient, who: Caller, job_id: str, **headers: str) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    with client.stream("GET", f"{T}/jobs/{job_id}/events", headers={**who.headers, **headers}) as r:
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if not line:
                if current:
                    out.append(current)
                current = {}
            elif line.startswith("event: "):
                current["event"] = line[7:]
            elif line.startswith("id: "):
                current["id"] = int(line[4:])
            elif line.startswith("data: "):
                current["data"] = json.loads(line[6:])
    return out


def test_events_stream_progress_metrics_and_states(api: ApiFactory, alice: Caller) -> None:
    client = api("quick")
    job_id = submit(client, alice)
    events = _events(client, alice, job_id)  # streams until the job has ended
    kinds = [e["event"] for e in events]
    assert kinds[0] == "status" and kinds[-1] == "end"
    assert [e["data"]["state"] for e in events if e["event"] == "state"] == [
        "pending",
        "running",
        "completed",
    ]
    epochs = [e["data"] for e in events if e["event"] == "metrics"]
    assert [m["epoch"] for m in epochs] == [1, 2, 3] and epochs[0]["train_loss"] == 1.0
    assert any(e["event"] == "progress" for e in events)
    assert events[-1]["data"]["status"] == "completed" and events[-1]["data"]["progress"] == 1.0
    ids = [e["id"] for e in events if "id" in e]
    assert ids == sorted(ids)
    resumed = _events(client, alice, job_id, **{"Last-Event-ID": str(ids[1])})
    assert [e["id"] for e in resumed if "id" in e] == ids[2:]


def test_status_shows_history_while_running(api: ApiFactory, alice: Caller) -> None:
    client = api("block")
    harness: Harness = client.harness  # type: ignore[attr-defined]
    job_id = submit(client, alice)
    harness.started_pid(job_id)
    running = wait_for(
        lambda: (
            s if (s := client.get(f"{T}/status/{job_id}", headers=alice.headers).json())["history"] else None
        ),
        30,
        what="the first epoch in the status",
    )
    assert running["status"] == "running" and running["history"] == [{"epoch": 1, "train_loss": 0.5}]
    assert 0.25 <= running["progress"] <= 0.5 and running["stage"] in (None, "waiting")
    harness.release(job_id)
    wait_status(client, alice, job_id, "completed")


def test_logs_route(api: ApiFactory, alice: Caller) -> None:
    client = api("fail")
    job_id = submit(client, alice)
    failed = wait_status(client, alice, job_id, "failed")
    assert failed["error_message"] == "ValueError: boom: the data was bad"
    page = client.get(f"{T}/jobs/{job_id}/logs", headers=alice.headers).json()
    lines = [ln["line"] for ln in page["lines"]]
    assert "about to fail" in lines and not any("Traceback" in ln for ln in lines), "message, not trace"
    streams = {ln["stream"] for ln in page["lines"]}
    assert {"stdout", "system"} <= streams
    later = client.get(
        f"{T}/jobs/{job_id}/logs", params={"after": page["lines"][2]["seq"]}, headers=alice.headers
    )
    assert [ln["seq"] for ln in later.json()["lines"]] == [ln["seq"] for ln in page["lines"][3:]]
    text = client.get(f"{T}/jobs/{job_id}/logs", params={"format": "text"}, headers=alice.headers)
    assert text.headers["content-type"].startswith("text/plain") and "[stdout] about to fail" in text.text


def test_cost_estimate_and_admin_price_table(api: ApiFactory, alice: Caller, admin: Caller) -> None:
    client = api()
    q = {"model_type": "alzheimer_classifier", "dataset_source": "wine"}
    small = client.get(
        f"{T}/cost-estimate", params={**q, "resource_profile": "cpu-small"}, headers=alice.headers
    )
    assert small.status_code == 200, small.text
    est = small.json()
    assert est["n_samples"] == 178 and est["n_features"] == 13 and est["currency"] == "USD"
    assert est["total_estimated_cost"] == pytest.approx(est["estimated_hours"] * est["hourly_cost"], rel=1e-3)
    r = client.get(f"{T}/cost-estimate", params={**q, "resource_profile": "nope"}, headers=alice.headers)
    assert r.status_code == 422 and "cpu-large" in r.json()["error"]["choices"]
    r = client.get(f"{T}/cost-estimate", params={**q, "params": '{"n_trees": 1}'}, headers=alice.headers)
    assert r.status_code == 422 and "n_estimators" in r.json()["error"]["valid_params"]

    table = {"prices": {"cpu-small": {"hourly_cost": 3.6, "speedup": 2.0}, "gpu": {"hourly_cost": 36.0}}}
    assert client.put("/api/v1/admin/training/prices", json=table, headers=alice.headers).status_code == 403
    r = client.put("/api/v1/admin/training/prices", json=table, headers=admin.headers)
    assert r.status_code == 200 and set(r.json()["prices"]) == {"cpu-small", "gpu"}
    after = client.get(
        f"{T}/cost-estimate", params={**q, "resource_profile": "cpu-small"}, headers=alice.headers
    )
    new = after.json()
    assert new["hourly_cost"] == 3.6 and new["estimated_seconds"] < est["estimated_seconds"]
    listed = client.get(f"{T}/resource-profiles", headers=alice.headers).json()["resource_profiles"]
    assert {p["profile"] for p in listed} == {"cpu-small", "gpu"}
    bad = client.put(
        "/api/v1/admin/training/prices", json={"prices": {"x": {"hourly_cost": -1}}}, headers=admin.headers
    )
    assert bad.status_code == 422


def test_admin_status_real_counts_and_capacity(api: ApiFactory, alice: Caller, admin: Caller) -> None:
    client = api("block", max_concurrent=1)
    harness: Harness = client.harness  # type: ignore[attr-defined]
    first, second = submit(client, alice), submit(client, alice)
    harness.started_pid(first)
    status = client.get("/api/v1/admin/training/status", headers=admin.headers).json()
    seeds_keys = {"active_jobs", "pending_jobs", "completed_jobs", "failed_jobs", "max_concurrent_jobs"}
    assert seeds_keys | {"capacity_available", "system_healthy"} <= set(status)
    assert (status["active_jobs"], status["pending_jobs"], status["completed_jobs"]) == (1, 1, 0)
    assert status["max_concurrent_jobs"] == 1 and status["capacity_available"] == 0
    assert status["system_healthy"] is True and len(status["workers"]) == 1
    every = client.get("/api/v1/admin/training/jobs", headers=admin.headers).json()["data"]
    assert {j["job_id"] for j in every} == {first, second} and every[0]["owner_id"] == alice.user_id
    harness.release(first)
    harness.release(second)
    wait_status(client, alice, second, "completed")
    status = client.get("/api/v1/admin/training/status", headers=admin.headers).json()
    assert (status["active_jobs"], status["completed_jobs"], status["capacity_available"]) == (0, 2, 1)
    health = client.get("/api/v1/health").json()
    assert health["components"]["training_manager"] == "operational"


def test_download_schemes_for_key_and_token_callers(
    api: ApiFactory, make_caller: Callable[..., Caller], bob: Caller
) -> None:
    client = api("packaged")
    carol = make_caller("user", "carol", password="correct horse battery staple")
    job_id = submit(client, carol)
    wait_status(client, carol, job_id, "completed")
    token = client.post(
        "/api/v1/auth/login", json={"username": "carol", "password": "correct horse battery staple"}
    )
    jwt = {"Authorization": f"Bearer {token.json()['access_token']}"}

    r = client.get(f"{T}/model/{job_id}", headers=jwt)
    assert r.status_code == 409 and r.json()["error"]["code"] == "download_key_required"
    assert "PUT /api/v1/training/download-key" in r.json()["error"]["message"]

    by_key = client.get(f"{T}/model/{job_id}", headers=carol.headers).json()
    assert by_key["scheme"] == "api-key-hkdf-aes256gcm-v1" and by_key["salt"] and by_key["nonce"]
    assert open_download(by_key, api_key=carol.key).model_bytes == b"PK\x03\x04xyz"

    private = sealed.generate_private_key()
    bad = client.put(f"{T}/download-key", json={"public_key": "x" * 43}, headers=jwt)
    assert bad.status_code == 422
    put = client.put(f"{T}/download-key", json={"public_key": sealed.encode_public_key(private)}, headers=jwt)
    assert put.status_code == 200
    sealed_body = client.get(f"{T}/model/{job_id}", headers=jwt).json()
    assert sealed_body["scheme"] == "x25519-sealed-box-v1"
    assert open_download(sealed_body, private_key=private).model_bytes == b"PK\x03\x04xyz"
    with pytest.raises(DecryptionError):
        open_download(sealed_body, private_key=sealed.generate_private_key())
    forced = client.get(f"{T}/model/{job_id}", params={"scheme": "api-key"}, headers=carol.headers).json()
    assert forced["scheme"] == "api-key-hkdf-aes256gcm-v1"
    assert client.get(f"{T}/download-key", headers=bob.headers).status_code == 404
    assert client.delete(f"{T}/download-key", headers=jwt).status_code == 200
    assert client.get(f"{T}/model/{job_id}", headers=jwt).status_code == 409
