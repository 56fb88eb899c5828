"""Models after training, through real jobs: versions grouped under a named model (best, predict and
quantize per name), target_epsilon as documented, quantize refused for scikit-learn, and the
quantized version downloaded and used."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from bastion.client import open_download
from bastion.context import Context
from bastion.data.builtin import load_dataset
from tests.api.test_training_routes import submit, wait_status
from tests.conftest import Caller
from tests.jobs.support import QUICK_PARAMS, ApiFactory, api_factory

M = "/api/v1/models"
NET = {"epochs": 3, "hidden_layers": [16], "importance_repeats": 0}


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)


def _done(client: TestClient, who: Caller, job_id: str) -> dict[str, Any]:
    status = wait_status(client, who, job_id, "completed", "failed", timeout=180)
    assert status["status"] == "completed", status["error_message"]
    return status


def _cancer_rows(n: int = 4) -> list[dict[str, float]]:
    data = load_dataset("breast_cancer")
    return [dict(zip(data.feature_names, map(float, data.X[i]), strict=True)) for i in range(n)]


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_named_models_best_predict_quantize_and_documented_target_epsilon(
    api: ApiFactory, alice: Caller
) -> None:
    client = api("bastion.jobs.runner:run_training")
    # The README's DP-SGD call with target_epsilon (it used to be refused when the job ran).
    dp = {**NET, "dp": {"enabled": True, "target_epsilon": 3.0}}
    jobs = [
        submit(client, alice, model_type="adaptive_neural_net", dataset_source="breast_cancer", params=dp),
        submit(client, alice, model_type="adaptive_neural_net", dataset_source="breast_cancer", params=NET),
        submit(client, alice, params=QUICK_PARAMS),  # alzheimer_classifier on synthetic_test_data
        submit(
            client,
            alice,
            model_type="adaptive_neural_net",
            dataset_source="breast_cancer",
            params=NET,
            model_name="cancer study",
        ),
    ]
    statuses = [_done(client, alice, j) for j in jobs]
    assert statuses[0]["results"]["dp"]["target_epsilon"] == 3.0
    assert statuses[0]["results"]["dp"]["epsilon"] <= 3.0
    assert statuses[0]["params"]["dp"]["noise_multiplier"] is None
    assert [s["model_name"] for s in statuses] == [
        "adaptive_neural_net-breast_cancer",
        "adaptive_neural_net-breast_cancer",
        "alzheimer_classifier-synthetic_test_data",
        "cancer study",
    ]

    models = {m["name"]: m for m in client.get(M, headers=alice.headers).json()["data"]}
    assert set(models) == {
        "adaptive_neural_net-breast_cancer",
        "alzheimer_classifier-synthetic_test_data",
        "cancer study",
    }
    assert models["adaptive_neural_net-breast_cancer"]["versions"] == 2
    # best compares only versions of one named model: both breast-cancer versions, nothing else
    best = client.get(f"{M}/adaptive_neural_net-breast_cancer/best", headers=alice.headers).json()
    assert best["name"] == "adaptive_neural_net-breast_cancer" and best["version"] in (1, 2)
    assert best["lineage"]["dataset_source"] == "breast_cancer"
    # default predict by name reads the caller's breast-cancer rows (no 422 for missing columns)
    r = client.post(
        f"{M}/adaptive_neural_net-breast_cancer/predict", json={"rows": _cancer_rows()}, headers=alice.headers
    )
    assert r.status_code == 200, r.text
    assert len(r.json()["predictions"]) == 4

    # quantize per named model; the quantized version joins the same name and downloads
    r = client.post(f"{M}/cancer study/quantize", json={}, headers=alice.headers)
    assert r.status_code == 201, r.text
    quantized = r.json()["version"]
    assert quantized["version"] == 2 and quantized["lineage"]["quantized_from"] == 1
    r = client.get(f"{M}/cancer study/download", params={"version": 2}, headers=alice.headers)
    assert r.status_code == 200, r.text
    model = open_download(r.json(), api_key=alice.key)
    assert model.model_config["quantization"]["scheme"]
    assert len(model.predictor().predict(_cancer_rows())) == 4

    # scikit-learn: a clear refusal, with a stable code
    r = client.post(f"{M}/alzheimer_classifier-synthetic_test_data/quantize", json={}, headers=alice.headers)
    assert r.status_code == 422 and r.json()["error"]["code"] == "not_quantizable"
    assert "scikit-learn" in r.json()["error"]["message"]


def test_model_name_is_validated(api: ApiFactory, alice: Caller) -> None:
    client = api("quick")
    for bad in ("", "../etc", "x" * 201, "name\n"):
        r = client.post(
            "/api/v1/training/submit",
            json={
                "model_type": "alzheimer_classifier",
                "dataset_source": "synthetic_test_data",
                "model_name": bad,
            },
            headers=alice.headers,
        )
        assert r.status_code == 422, bad
