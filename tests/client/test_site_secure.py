"""A site's privatization of its delta before secure aggregation."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.client.site.secure import privatize

BASE = {"w": np.zeros((3, 4), np.float32), "b": np.zeros(4, np.float32)}


def test_without_dp_the_delta_is_sent_as_is() -> None:
    params = {k: v + 2.0 for k, v in BASE.items()}
    np.testing.assert_allclose(privatize(params, BASE, {"secure_aggregation": True}), np.full(16, 2.0))


def test_with_dp_the_delta_is_clipped_then_noised_with_the_site_share() -> None:
    params = {k: v + 2.0 for k, v in BASE.items()}
    clipped = privatize(params, BASE, {"dp": {"clip_norm": 0.5, "site_noise_std": 0.0}})
    assert np.linalg.norm(clipped) == pytest.approx(0.5)
    noisy = np.stack(
        [privatize(params, BASE, {"dp": {"clip_norm": 0.5, "site_noise_std": 0.1}}) for _ in range(400)]
    )
    assert noisy.mean(axis=0) == pytest.approx(clipped, abs=0.03)
    assert noisy.std(axis=0).mean() == pytest.approx(0.1, rel=0.1)
