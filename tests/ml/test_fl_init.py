"""The server's NumPy initialiser gives the torch models' parameters: names, order, shapes, ranges."""

from __future__ import annotations

import math
import subprocess
import sys
from typing import Any

import numpy as np
import pytest

from bastion.errors import Invalid
from bastion.ml import fl_init
from bastion.ml import fl_models as M

CONFIGS: list[dict[str, Any]] = [
    {"type": "tabular_mlp", "in_features": 64, "num_classes": 10},
    {"type": "tabular_mlp", "in_features": 30, "num_classes": 2, "hidden": [32, 16], "dropout": 0.2},
    {"type": "brain_tumour_cnn", "image_size": 32, "channels": [4, 8], "hidden": 16},
]


@pytest.mark.parametrize("config", CONFIGS)
def test_same_names_order_and_shapes_as_the_torch_model(config: dict[str, Any]) -> None:
    torch_params = M.get_parameters(M.build_model(config, seed=0))
    numpy_params = fl_init.initial_parameters(config, seed=0)
    assert list(numpy_params) == list(torch_params)
    for name, arr in numpy_params.items():
        assert arr.dtype == np.float32 and arr.shape == torch_params[name].shape, name


@pytest.mark.parametrize("config", CONFIGS)
def test_values_follow_torch_default_init(config: dict[str, Any]) -> None:
    params = fl_init.initial_parameters(config, seed=3)
    torch_params = M.get_parameters(M.build_model(config, seed=3))
    for name, arr in params.items():
        ref = torch_params[name]
        if np.all(ref == ref.flat[0]):  # GroupNorm: constant ones / zeros
            np.testing.assert_array_equal(arr, ref)
            continue
        # Uniform in +-1/sqrt(fan_in), fan_in from the layer's weight: torch's draw obeys it too.
        weight = params[name.rsplit(".", 1)[0] + ".weight"]
        bound = 1.0 / math.sqrt(math.prod(weight.shape[1:]))
        assert float(np.abs(ref).max()) <= bound + 1e-7, name
        assert float(np.abs(arr).max()) <= bound + 1e-7, name
        if arr.size >= 1000:
            assert math.isclose(float(arr.std()), float(ref.std()), rel_tol=0.1), name


def test_seeded_draws_are_reproducible_and_distinct() -> None:
    a, b = fl_init.initial_parameters(CONFIGS[0], seed=1), fl_init.initial_parameters(CONFIGS[0], seed=1)
    c = fl_init.initial_parameters(CONFIGS[0], seed=2)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["net.0.weight"], c["net.0.weight"])


def test_bad_config_is_refused() -> None:
    with pytest.raises(Invalid):
        fl_init.initial_parameters({"type": "tabular_mlp", "in_features": 0, "num_classes": 2})


def test_does_not_import_torch() -> None:
    code = (
        "import sys; from bastion.federation.server.service import initial_parameters; "
        "from bastion.federation.server.config import FederationCreate; "
        "from bastion.ml.fl_init import initial_parameters as draw; "
        "draw({'type': 'tabular_mlp', 'in_features': 4, 'num_classes': 2}, seed=0); "
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
