"""DP-FedAvg through secure aggregation: sites clip and noise before masking; the sum carries the noise."""

from __future__ import annotations

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.federation.secagg import SecAggConfig
from bastion.federation.secagg.local import LocalRound
from bastion.privacy import DPConfig, dp_mean, privatize_sum, privatize_update
from bastion.privacy.clip import clip_l2


def test_distributed_noise_survives_masking_with_full_strength() -> None:
    n, d, sigma, clip = 6, 4000, 1.0, 0.5
    dp = DPConfig(
        clip_norm=clip, noise_multiplier=sigma, mode="distributed", expected_clients=n, min_clients=n
    )
    rng = np.random.default_rng(3)
    raw = {c: rng.normal(0, 1, d) for c in range(1, n + 1)}  # norms ~63: clipping matters
    clean = {c: clip_l2(raw[c], clip) for c in raw}
    noisy = {c: privatize_update(raw[c], dp.clip_norm, dp.site_noise_std()) for c in raw}
    # What leaves a site is far from its clean update: the server never sees a noiseless one.
    for c in raw:
        assert np.std(noisy[c] - clean[c]) > 0.5 * dp.site_noise_std()
    cfg = SecAggConfig(
        round_id="dp-1",
        participants=tuple(raw),
        threshold=4,
        vector_length=d,
        clip=clip + 6 * sigma * clip,
        quant_bits=24,
    )
    result = LocalRound(cfg, {c: Ed25519PrivateKey.generate() for c in raw}).run(noisy)
    assert np.max(np.abs(result.total - np.sum(list(noisy.values()), axis=0))) <= result.max_error + 1e-9
    total_noise = result.total - np.sum(list(clean.values()), axis=0)
    assert abs(float(total_noise.std()) / (sigma * clip) - 1) < 0.05
    assert np.array_equal(
        privatize_sum(result.total, dp.server_noise_std()), result.total
    )  # no extra server noise
    assert np.allclose(dp_mean(result.total, dp.expected_clients), result.total / n)


def test_central_noise_is_added_by_the_server_only() -> None:
    dp = DPConfig(clip_norm=1.0, noise_multiplier=2.0, mode="central", expected_clients=10)
    update = np.full(100, 0.05)
    assert np.array_equal(privatize_update(update, dp.clip_norm, dp.site_noise_std()), clip_l2(update, 1.0))
    total = np.zeros(50_000)
    noisy = privatize_sum(total, dp.server_noise_std())
    assert abs(float(noisy.std()) / 2.0 - 1) < 0.02
