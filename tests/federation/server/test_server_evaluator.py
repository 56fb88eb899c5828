"""``ServerEvaluator.prepare``: the holdout and the model code loaded ahead, the same scores after."""

from __future__ import annotations

import numpy as np

from bastion.federation.server.config import FederationConfig
from bastion.federation.server.rounds import ServerEvaluator
from bastion.ml.fl_init import initial_parameters

DIGITS = {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [16]}


def _cfg(**evaluation: object) -> FederationConfig:
    return FederationConfig.model_validate(
        {"name": "e", "model": DIGITS, "rounds": 1, "min_clients": 1, "evaluation": evaluation}
    )


def test_prepare_loads_the_holdout_once_and_scores_match() -> None:
    cfg = _cfg(server_dataset="builtin:digits")
    params = {k: np.asarray(v) for k, v in initial_parameters(cfg.model, seed=3).items()}
    cold = ServerEvaluator().evaluate("f1", cfg, params)

    warm = ServerEvaluator()
    thread = warm.prepare("f1", cfg)
    assert thread is not None
    thread.join(120)
    assert not thread.is_alive()
    held = warm._data["f1"]
    assert warm.evaluate("f1", cfg, params) == cold
    assert warm._data["f1"] is held  # the close used what prepare loaded
    assert cold["server_num_samples"] > 0


def test_nothing_to_prepare_without_server_evaluation() -> None:
    evaluator = ServerEvaluator()
    assert evaluator.prepare("f2", _cfg()) is None
    assert evaluator._data == {}
