"""Data-parallel training needs a Ray cluster (the 2-vs-1-worker comparison runs as a Ray job in
tests/jobs/executors/test_ray.py)."""

from __future__ import annotations

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
