"""Clipping bounds a site's influence; noise is Gaussian, fresh, and drawn from the OS CSPRNG only."""

from __future__ import annotations

import math
import os

import numpy as np
import pytest
from scipy import stats

from bastion.errors import Invalid
from bastion.privacy import clip_arrays, clip_l2, l2_norm, secure_gaussian
from bastion.privacy.noise import distributed_noise_std, secure_uniform


def test_clip_scales_long_updates_down_and_leaves_short_ones() -> None:
    long = np.array([3.0, 4.0])
    assert np.allclose(clip_l2(long, 1.0), [0.6, 0.8])
    short = np.array([0.3, 0.4])
    assert np.array_equal(clip_l2(short, 1.0), short)
    with pytest.raises(Invalid):
        clip_l2(np.array([np.inf, 0.0]), 1.0)
    with pytest.raises(Invalid):
        clip_l2(long, 0.0)


def test_clip_uses_the_global_norm_across_tensors() -> None:
    arrays = {"w": np.full((2, 2), 3.0), "b": np.array([4.0, 4.0, 4.0, 4.0])}
    assert math.isclose(l2_norm(arrays.values()), 10.0)
    clipped = clip_arrays(arrays, 2.0)
    assert math.isclose(l2_norm(clipped.values()), 2.0)
    assert np.allclose(clipped["w"] / clipped["b"][0], 3.0 / 4.0)


def test_noise_is_gaussian_with_the_requested_std() -> None:
    z = secure_gaussian(200_001, 2.5)
    assert z.shape == (200_001,)
    assert abs(float(z.mean())) < 6 * 2.5 / math.sqrt(z.size)
    assert abs(float(z.std()) / 2.5 - 1) < 0.01
    assert stats.kstest(z / 2.5, "norm").pvalue > 1e-6
    assert secure_gaussian((3, 4), 1.0).shape == (3, 4)
    assert np.array_equal(secure_gaussian(5, 0.0), np.zeros(5))


def test_uniforms_stay_strictly_inside_zero_one() -> None:
    u = secure_uniform(100_000)
    assert u.min() > 0 and u.max() < 1
    assert stats.kstest(u, "uniform").pvalue > 1e-6


def test_noise_is_fresh_on_every_call() -> None:
    assert not np.array_equal(secure_gaussian(16, 1.0), secure_gaussian(16, 1.0))


def test_noise_entropy_comes_from_os_urandom(monkeypatch: pytest.MonkeyPatch) -> None:
    """With os.urandom pinned, the noise repeats: no other (seedable, predictable) source is mixed in."""
    monkeypatch.setattr(os, "urandom", lambda n: b"\x07" * n)
    assert np.array_equal(secure_gaussian(64, 1.0), secure_gaussian(64, 1.0))


def test_distributed_shares_add_up_to_the_central_noise() -> None:
    sigma, clip, sites = 1.2, 0.5, 8
    share = distributed_noise_std(sigma, clip, sites)
    total = np.sum([secure_gaussian(50_000, share) for _ in range(sites)], axis=0)
    assert abs(float(total.std()) / (sigma * clip) - 1) < 0.02
