"""The SDK against a real app: error classes, submit/wait with events, download, save, load, predict."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.client import (
    AuthenticationError,
    BastionClient,
    ConflictError,
    Event,
    ModelFileError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    TransportError,
    ValidationError,
    load_model_file,
)
from bastion.client.sdk import parse_sse
from tests.conftest import Caller
from tests.jobs.support import QUICK_PARAMS, ApiFactory, Harness

sqlite_only = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@sqlite_only
def test_server_errors_map_to_one_hierarchy(api: ApiFactory, alice: Caller, viewer: Caller) -> None:
    http = api("quick", max_active_per_user=1)
    client = BastionClient(api_key=alice.key, http=http)
    with pytest.raises(ValidationError) as err:
        client.jobs.submit("resnet", "synthetic_test_data")
    assert err.value.status == 422 and "alzheimer_classifier" in err.value.details["choices"]
    with pytest.raises(ValidationError) as err:
        client.jobs.submit("alzheimer_classifier", "synthetic_test_data", params={"n_trees": 3})
    assert "n_estimators" in err.value.details["valid_params"]
    with pytest.raises(NotFoundError) as nf:
        client.jobs.get("00000000-0000-4000-8000-000000000000")
    assert nf.value.code == "job_not_found"
    with pytest.raises(AuthenticationError):
        BastionClient(api_key="bst_wrong", http=http).jobs.list()
    with pytest.raises(PermissionDeniedError):
        BastionClient(api_key=viewer.key, http=http).jobs.submit("alzheimer_classifier", "wine")
    job_id = client.jobs.submit("alzheimer_classifier", "synthetic_test_data")
    with pytest.raises(RateLimitError) as limited:
        client.jobs.submit("alzheimer_classifier", "synthetic_test_data")
    assert limited.value.code == "active_job_limit" and limited.value.retry_after == 30
    final = client.jobs.wait(job_id, timeout=60)
    assert final["status"] == "completed"
    with pytest.raises(ConflictError):
        client.jobs.cancel(job_id)
    with pytest.raises(TransportError):
        BastionClient("http://127.0.0.1:9", "bst_x", timeout=2).health()


@sqlite_only
def test_wait_streams_events_and_returns_the_final_status(api: ApiFactory, alice: Caller) -> None:
    client = BastionClient(api_key=alice.key, http=api("quick"))
    job_id = client.jobs.submit("adaptive_neural_net", "wine", params={"epochs": 3})
    seen: list[Event] = []
    final = client.jobs.wait(job_id, on_event=seen.append, timeout=60)
    assert final["status"] == "completed" and final["results"]["accuracy"] == 0.8
    assert [e.data["epoch"] for e in seen if e.kind == "metrics"] == [1, 2, 3]
    assert seen[0].kind == "status" and seen[-1].kind == "end"
    assert client.jobs.get(job_id)["params"]["epochs"] == 3
    assert [j["job_id"] for j in client.jobs.list()] == [job_id]
    assert "hello from the job" in [ln["line"] for ln in client.jobs.logs(job_id)["lines"]]
    assert client.health()["components"]["training_manager"] == "operational"


@sqlite_only
def test_cancel_and_estimate(api: ApiFactory, alice: Caller) -> None:
    http = api("block")
    harness: Harness = http.harness  # type: ignore[attr-defined]
    client = BastionClient(api_key=alice.key, http=http)
    job_id = client.jobs.submit("alzheimer_classifier", "wine")
    harness.started_pid(job_id)
    assert client.jobs.cancel(job_id)["status"] == "cancelled"
    assert client.jobs.cancel(job_id)["message"] == "Job was already cancelled"
    assert client.jobs.wait(job_id, timeout=30)["status"] == "cancelled"
    est = client.jobs.cost_estimate("alzheimer_classifier", "wine", "cpu-large", params={"n_estimators": 10})
    assert est["resource_profile"] == "cpu-large" and est["total_estimated_cost"] > 0


@sqlite_only
def test_download_save_load_predict_real_model(api: ApiFactory, alice: Caller, tmp_path: Path) -> None:
    client = BastionClient(api_key=alice.key, http=api("bastion.jobs.runner:run_training"))
    job_id = client.jobs.submit("alzheimer_classifier", "wine", params=QUICK_PARAMS)
    final = client.jobs.wait(job_id, timeout=180)
    assert final["status"] == "completed", final["error_message"]
    model = client.jobs.download(job_id)
    assert model.model_format == "skops" and model.job_id == job_id
    model_path, config_path = model.save(tmp_path / "wine.skops")
    assert (model_path.stat().st_mode & 0o777) == 0o600 and config_path.name == "wine.skops.json"
    assert model_path.read_bytes()[:4] == b"PK\x03\x04", "a skops (zip) file, loadable by skops itself"
    predictor = load_model_file(model_path)
    from bastion.data.builtin import load_dataset

    data = load_dataset("wine")
    rows = [dict(zip(data.feature_names, map(float, row), strict=True)) for row in data.X[:20]]
    predicted = list(predictor.predict(rows))
    truth = [data.target_names[i] for i in data.y[:20]]  # type: ignore[index]
    assert sum(p == t for p, t in zip(predicted, truth, strict=True)) >= 15, "a real model, not a stub"
    model_path.write_bytes(model_path.read_bytes() + b"x")
    with pytest.raises(ModelFileError):
        load_model_file(model_path)


def test_sse_parser() -> None:
    lines = iter(
        [
            "id: 4",
            "event: metrics",
            'data: {"epoch": 2}',
            "",
            ": keep-alive",
            "",
            "event: end",
            "data: {}",
            "",
        ]
    )
    events = list(parse_sse(lines))
    assert [(e.kind, e.id, e.data) for e in events] == [("metrics", 4, {"epoch": 2}), ("end", None, {})]
