"""Data-parallel training through Ray Train: two CPU workers match one worker's accuracy."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.data.builtin import load_dataset
from bastion.errors import Invalid
from bastion.ml.train import train

PARAMS = {"epochs": 25, "hidden_layers": [16], "batch_size": 32, "importance_repeats": 0, "patience": 25}


def test_more_than_one_worker_needs_a_ray_cluster() -> None:
    import ray

    assert not ray.is_initialized()
    with pytest.raises(Invalid, match="BASTION_EXECUTOR=ray"):
        train("adaptive_neural_net", load_dataset("wine"), {**PARAMS, "num_workers": 2})
    with pytest.raises(Invalid, match="dp cannot be combined"):
        train(
            "adaptive_neural_net", load_dataset("wine"), {**PARAMS, "num_workers": 2, "dp": {"enabled": True}}
        )


@pytest.mark.ray
def test_two_workers_match_one_worker(ray_cluster: Any) -> None:
    from bastion.jobs.executors.ray import RayExecutor

    executor = RayExecutor.connect(ray_cluster.address, insecure=False, vault=None)
    try:
        data = load_dataset("breast_cancer")
        one = train("adaptive_neural_net", data, PARAMS, seed=1)
        two = train("adaptive_neural_net", data, {**PARAMS, "num_workers": 2}, seed=1)
    finally:
        executor.close()
    assert two.model_config["training"]["num_workers"] == 2
    assert len(two.history) == len(one.history) or two.model_config["training"]["stopped_early"]
    # The same held-out rows (114); within noise = at most 4 rows apart.
    assert abs(two.metrics["accuracy"] - one.metrics["accuracy"]) <= 4 / 114 + 1e-9
    assert two.metrics["accuracy"] > 0.9 and set(two.metrics) == set(one.metrics)
