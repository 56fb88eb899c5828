import itertools
import json
from typing import Any

import numpy as np
import pytest
import torch

from bastion.data.builtin import load_dataset
from bastion.ml.train import TrainResult, train

torch.set_num_threads(1)

PARAMS = {"epochs": 40, "patience": 40, "lr_patience": 2, "importance_repeats": 1}


@pytest.fixture(scope="module")
def trained() -> tuple[TrainResult, list[tuple[float, dict[str, Any]]]]:
    calls: list[tuple[float, dict[str, Any]]] = []
    ds = load_dataset("synthetic_test_data", seed=0)
    result = train("adaptive_neural_net", ds, PARAMS, progress=lambda f, e: calls.append((f, e)), seed=0)
    return result, calls


def test_mlp_learns_the_synthetic_alzheimer_data(trained: tuple[TrainResult, list]) -> None:
    m = trained[0].metrics
    assert m["accuracy"] > 0.6
    assert m["roc_auc"] > 0.7
    assert np.array(m["confusion_matrix"]).sum() == m["test_samples"] == 80
    assert m["feature_importance"] and m["feature_importance"][0]["feature"] in {"MMSE", "CDR", "nWBV"}


def test_history_has_one_entry_per_epoch(trained: tuple[TrainResult, list]) -> None:
    result, calls = trained
    history = result.history
    assert [h["epoch"] for h in history] == list(range(1, len(history) + 1))
    assert len(history) == result.metrics["epochs_run"] == 40  # patience 40: no early stop
    for h in history:
        assert set(h) >= {"epoch", "train_loss", "val_loss", "val_accuracy", "lr"}
        assert 0.0 <= h["val_accuracy"] <= 1.0
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    epoch_events = [e for _, e in calls if "epoch" in e]
    assert [e["epoch"] for e in epoch_events] == list(range(1, 41))


def test_learning_rate_adapts_on_plateau(trained: tuple[TrainResult, list]) -> None:
    rates = [h["lr"] for h in trained[0].history]
    assert rates[0] == pytest.approx(0.01)
    assert min(rates) < rates[0]
    assert all(b <= a for a, b in itertools.pairwise(rates))  # only ever reduced


def test_progress_is_monotonic_and_ends_at_one(trained: tuple[TrainResult, list]) -> None:
    fractions = [f for f, _ in trained[1]]
    assert fractions == sorted(fractions)
    assert fractions[-1] == 1.0 and all(0.0 <= f <= 1.0 for f in fractions)


def test_config_holds_architecture_and_scaler_statistics(trained: tuple[TrainResult, list]) -> None:
    result = trained[0]
    assert result.model_format == "safetensors"
    cfg = result.model_config
    arch, prep = cfg["architecture"], cfg["preprocessing"]
    # 8 numeric columns + the two-level M/F category one-hot encoded.
    assert arch["n_inputs"] == 10 and arch["hidden"] == [64, 32] and arch["n_outputs"] == 3
    assert len(prep["mean"]) == len(prep["scale"]) == 10 and len(prep["fill"]) == 9
    assert prep["onehot"] == {0: 2}
    age = cfg["feature_names"].index("Age")
    assert 70 < prep["fill"][age] < 82  # median training age
    assert cfg["training"]["epochs_run"] == 40
    json.dumps([cfg, result.metrics, result.history], allow_nan=False)  # JSON-able, no NaN


def test_early_stopping_ends_training_before_the_epoch_limit() -> None:
    ds = load_dataset("wine")
    params = {"epochs": 300, "patience": 3, "learning_rate": 0.05, "importance_repeats": 0}
    result = train("adaptive_neural_net", ds, params)
    assert result.metrics["epochs_run"] < 300
    assert result.model_config["training"]["stopped_early"] is True
    assert result.metrics["accuracy"] > 0.8


def test_mlp_regression_on_diabetes() -> None:
    ds = load_dataset("diabetes")
    result = train("adaptive_neural_net", ds, {"epochs": 60, "importance_repeats": 0})
    assert result.metrics["r2"] > 0.2
    assert "val_rmse" in result.history[0]
    assert result.model_config["preprocessing"]["target_scale"] > 1.0


def test_same_seed_same_network() -> None:
    ds = load_dataset("wine")
    params = {"epochs": 5, "importance_repeats": 0}
    a = train("adaptive_neural_net", ds, params, seed=3)
    b = train("adaptive_neural_net", ds, params, seed=3)
    assert a.model_bytes == b.model_bytes
    assert a.history == b.history
