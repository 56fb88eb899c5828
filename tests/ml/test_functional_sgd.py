"""fl_models.fit's SGD gives torch.optim.SGD's weights exactly, without importing torch._dynamo."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from torch import nn

from bastion.ml.fl_models import FunctionalSGD


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_same_steps_as_torch_optim_sgd(momentum: float) -> None:
    torch.manual_seed(0)
    a = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    b = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
    b.load_state_dict(a.state_dict())
    ref = torch.optim.SGD(a.parameters(), lr=0.05, momentum=momentum)
    ours = FunctionalSGD(list(b.parameters()), lr=0.05, momentum=momentum)
    x, y = torch.randn(32, 8), torch.randint(0, 3, (32,))
    for step in range(4):
        for model, opt in ((a, ref), (b, ours)):
            opt.zero_grad()
            head_only = step == 2  # a step where the first layer gets no gradient
            if head_only:
                model[0].requires_grad_(False)
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
            model[0].requires_grad_(True)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa, pb, rtol=0, atol=0)


def test_fit_does_not_import_dynamo() -> None:
    code = (
        "import sys, numpy as np; from bastion.ml import fl_models as M; "
        "m = M.build_model({'type': 'tabular_mlp', 'in_features': 4, 'num_classes': 2}, seed=0); "
        "M.fit(m, np.ones((8, 4)), np.array([0, 1] * 4), momentum=0.9); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
