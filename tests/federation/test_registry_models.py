"""Federated models are usable in the registry: feature names and preprocessing travel with every
global model version, so it predicts on raw rows, quantizes and downloads like a job's model; site
CSVs with text and categorical columns are encoded by the federation's declared features, numeric
columns standardised with statistics pooled from the sites' aggregates."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from bastion.api.app import create_app
from bastion.client import open_download
from bastion.client.site.trainer import TorchTrainer
from bastion.context import Context
from bastion.data.builtin import load_dataset
from bastion.federation.features import FeatureDeclaration, site_statistics
from bastion.federation.sitedata import load_site_data
from tests.conftest import Caller
from tests.federation.server.support import World

CANCER_MLP = {"type": "tabular_mlp", "in_features": 30, "num_classes": 2, "hidden": [8]}


@pytest.fixture
def alice_world(ctx: Context, alice: Caller) -> World:
    from bastion.auth.principal import Principal

    return World(ctx, Principal(alice.user_id, alice.username, alice.role, "api_key"))


def _one_round(world: World, fid: str) -> None:
    sites = [world.enroll(fid, name) for name in ("a", "b")]
    for site in sites:
        world.submit(site, world.seal(site, fid, 1, num_samples=50))
    assert world.rounds(fid)[0]["state"] == "closed"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_a_builtin_federation_version_predicts_quantizes_and_downloads(
    ctx: Context, alice: Caller, alice_world: World
) -> None:
    fid = alice_world.create(
        model=CANCER_MLP, min_clients=2, rounds=1, evaluation={"server_dataset": "builtin:breast_cancer"}
    )["id"]
    _one_round(alice_world, fid)
    data = load_dataset("breast_cancer")
    rows = [dict(zip(data.feature_names, map(float, data.X[i]), strict=True)) for i in range(5)]
    with TestClient(create_app(context=ctx)) as client:
        r = client.post(
            "/api/v1/models/fl-fed/predict", json={"rows": rows, "probabilities": True}, headers=alice.headers
        )
        assert r.status_code == 200, r.text
        assert r.json()["classes"] == ["malignant", "benign"] and len(r.json()["predictions"]) == 5
        r = client.post("/api/v1/models/fl-fed/quantize", json={}, headers=alice.headers)
        assert r.status_code == 201, r.text
        report = r.json()["report"]
        assert report["metric"] == "accuracy" and report["evaluated_rows"] > 0
        version = r.json()["version"]["version"]
        r = client.get("/api/v1/models/fl-fed/download", params={"version": version}, headers=alice.headers)
        assert r.status_code == 200, r.text
        model = open_download(r.json(), api_key=alice.key)
        assert len(model.predictor().predict(rows)) == 5


def _site_csv(path: Path, rng: np.random.Generator, n: int, shift: float) -> Path:
    lines = ["age,cholesterol,smoker,notes,outcome"]
    for i in range(n):
        age = 40 + shift + rng.normal(0, 10)
        chol = 200 + 40 * rng.normal()
        smoker = ["never", "former", "current"][i % 3]
        outcome = "sick" if chol + age * 2 > 290 else "well"
        lines.append(f'{age:.1f},{chol:.1f},{smoker},"seen by Dr. Mensah, note {i}",{outcome}')
    path.write_text("\n".join(lines) + "\n")
    return path


def _declaration(paths: list[Path]) -> dict[str, Any]:
    stats = [site_statistics(p, ["age", "cholesterol"], 10**7) for p in paths]
    return {
        "columns": [
            {"name": "age"},
            {"name": "cholesterol"},
            {"name": "smoker", "kind": "categorical", "categories": ["never", "former", "current"]},
            {"name": "notes", "kind": "drop"},
        ],
        "label": "outcome",
        "classes": ["well", "sick"],
        "site_statistics": stats,
    }


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_declared_csv_features_standardise_train_and_predict(
    ctx: Context, alice: Caller, alice_world: World, tmp_path: Path
) -> None:
    rng = np.random.default_rng(0)
    paths = [_site_csv(tmp_path / f"site{i}.csv", rng, 120, shift=10.0 * i) for i in range(2)]
    declared = _declaration(paths)
    # the statistics are aggregates only: three numbers per numeric column per site
    assert set(declared["site_statistics"][0]["age"]) == {"n", "sum", "sumsq"}
    model = {"type": "tabular_mlp", "in_features": 5, "num_classes": 2, "hidden": [8]}
    fed = alice_world.create(model=model, min_clients=2, rounds=1, features=declared)
    decl = FeatureDeclaration.model_validate(declared)
    pooled_age = np.concatenate([np.loadtxt(p, delimiter=",", skiprows=1, usecols=0) for p in paths])
    assert decl.mean["age"] == pytest.approx(pooled_age.mean()) and decl.scale["age"] == pytest.approx(
        pooled_age.std()
    )

    # a site reads its CSV by the declaration: numeric standardised, categorical one-hot, text dropped
    config = {"model": model, "evaluation": {"local_validation_fraction": 0.0}, "features": decl.model_dump()}
    site = load_site_data(str(paths[0]), model, config["evaluation"], features=config["features"])
    assert site.X_train.shape == (120, 5)
    assert abs(float(site.X_train[:, 0].mean())) < 1.0 and float(site.X_train[:, 1].std()) < 2.0
    assert set(np.unique(site.X_train[:, 2:])) <= {0.0, 1.0}
    trainer = TorchTrainer(str(paths[0]))
    trainer.prepare(config)
    assert trainer.train_samples() == 120
    from bastion.ml import fl_models

    start = fl_models.get_parameters(fl_models.build_model(model, seed=0))
    fit = trainer.fit(start, {**config, "training": {"epochs": 1, "lr": 0.05}, "round": 1})
    assert fit.metrics["train_loss"] < 2.0, "standardised inputs: no loss in the hundreds on raw values"

    _one_round(alice_world, fed["id"])
    rows = [
        {"age": 61, "cholesterol": 250.5, "smoker": "former", "notes": "ignored"},
        {"age": 35, "cholesterol": 170, "smoker": "never"},
    ]
    with TestClient(create_app(context=ctx)) as client:
        detail = client.get("/api/v1/models/fl-fed", headers=alice.headers).json()
        assert detail["history"][0]["input_schema"] == {"features": ["age", "cholesterol", "smoker"]}
        r = client.post(
            "/api/v1/models/fl-fed/predict",
            json={"rows": [{k: v for k, v in row.items() if k != "notes"} for row in rows]},
            headers=alice.headers,
        )
        assert r.status_code == 200, r.text
        assert set(r.json()["predictions"]) <= {"well", "sick"}
        r = client.post("/api/v1/models/fl-fed/quantize", json={}, headers=alice.headers)
        assert r.status_code == 201, r.text
        assert r.json()["report"]["metric"] is None and "not_measured" in r.json()["report"]


def test_bad_declarations_are_refused(alice_world: World) -> None:
    from bastion.errors import Invalid

    base = {
        "columns": [{"name": "a"}],
        "label": "y",
        "classes": ["0", "1"],
        "mean": {"a": 0.0},
        "scale": {"a": 1.0},
    }
    for bad in (
        {**base, "columns": [{"name": "a"}, {"name": "a"}]},
        {**base, "columns": [{"name": "y"}]},
        {**base, "mean": {}, "scale": {}},
        {**base, "columns": [{"name": "a"}, {"name": "c", "kind": "categorical"}]},
        {**base, "site_statistics": [{"a": {"n": 2, "sum": 1.0, "sumsq": 1.0}}]},
    ):
        with pytest.raises((Invalid, ValueError)):
            alice_world.create(model={**CANCER_MLP, "in_features": 1}, features=bad)
    with pytest.raises((Invalid, ValueError), match="in_features"):
        alice_world.create(model=CANCER_MLP, features=base)


def test_feature_stats_command_prints_aggregates_only(tmp_path: Path) -> None:
    import json

    from typer.testing import CliRunner

    from bastion.cli.main import app

    path = _site_csv(tmp_path / "s.csv", np.random.default_rng(1), 30, 0.0)
    result = CliRunner().invoke(
        app, ["fl", "feature-stats", "--data", str(path), "--columns", "age,cholesterol", "--json"]
    )
    assert result.exit_code == 0, result.output
    stats = json.loads(result.output)
    assert stats["age"]["n"] == 30 and set(stats["age"]) == {"n", "sum", "sumsq"}
    assert "Mensah" not in result.output and "former" not in result.output
    bad = CliRunner().invoke(app, ["fl", "feature-stats", "--data", str(path), "--columns", "notes"])
    assert bad.exit_code == 1 and "numbers" in bad.output
