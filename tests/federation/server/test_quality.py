"""The issue's quality figure: digits over 5 IID sites, 10 rounds of FedAvg, within 2 points of centralized."""

from __future__ import annotations

import pytest

from tests.federation.simulate import centralized, simulate

SPEC = {
    "name": "digits-quality",
    "model": {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [64]},
    "rounds": 10,
    "min_clients": 5,
    "strategy": "fedavg",
    "training": {"epochs": 1, "lr": 0.1, "batch_size": 32, "momentum": 0.9},
    "evaluation": {"local_validation_fraction": 0.1, "server_dataset": "builtin:digits"},
}


def test_fedavg_on_five_iid_sites_is_within_two_points_of_centralized() -> None:
    result = simulate(SPEC, "builtin:digits", sites=5)
    baseline = centralized(SPEC, "builtin:digits")
    assert len(result.rounds) == 10 and all(r["updates"] == 5 for r in result.rounds)
    assert result.final_metrics["server_accuracy"] == pytest.approx(result.test_accuracy)
    assert baseline > 0.9, "the baseline itself must have learned the task"
    assert result.test_accuracy >= baseline - 0.02, (result.test_accuracy, baseline)
    accuracies = [r["metrics"]["server_accuracy"] for r in result.rounds]
    assert accuracies[-1] > accuracies[0], "federated training improved the global model"
    assert 0 < result.final_metrics["val_accuracy"] <= 1 and result.final_metrics["val_num_samples"] > 0
