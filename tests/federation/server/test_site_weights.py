"""One site cannot decide the global model: its self-declared sample count is bounded by what it
registered and by the federation's maximum share, and the effective weights are in the round's metrics."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.crypto import signing
from bastion.federation.server.weights import WeightCap
from tests.federation.server.support import Site, World


def _enroll(world: World, fid: str, name: str, samples: int) -> Site:
    site = world.enroll(fid, name, register=False)
    world.sites_svc.register(site.identity, signing.encode_public_key(site.key), "127.0.0.1", samples)
    return Site(name, site.token, site.key, world.identity(fid, site.token))


@pytest.mark.parametrize("evil_registered", [100, 10**9])
def test_a_site_claiming_huge_counts_cannot_take_over(world: World, evil_registered: int) -> None:
    fid = world.create(min_clients=3, rounds=2)["id"]  # max_site_share defaults to 0.5
    a, b = _enroll(world, fid, "a", 100), _enroll(world, fid, "b", 100)
    evil = _enroll(world, fid, "evil", evil_registered)
    base = world.global_params(fid)
    world.submit(a, world.seal(a, fid, 1, {k: v * 0 for k, v in base.items()}, num_samples=100))
    world.submit(b, world.seal(b, fid, 1, {k: v * 0 for k, v in base.items()}, num_samples=100))
    poisoned = {k: np.full_like(v, 1000.0) for k, v in base.items()}
    world.submit(evil, world.seal(evil, fid, 1, poisoned, num_samples=10**12))

    # registered 100: bounded to 100 (a third); registered 10^9: bounded by the share cap (200, a half)
    evil_weight = 100 if evil_registered == 100 else 200
    share = evil_weight / (evil_weight + 200)
    for arr in world.global_params(fid).values():
        np.testing.assert_allclose(arr, 1000.0 * share, rtol=1e-5)
    metrics = world.rounds(fid)[0]["metrics"]
    assert metrics["site.evil.claimed_samples"] == 1e12
    assert metrics["site.evil.weight"] == evil_weight
    assert metrics["site.evil.share"] == pytest.approx(share) and metrics["site.evil.share"] <= 0.5
    assert metrics["site.a.weight"] == 100 and metrics["num_samples"] == evil_weight + 200


def test_a_registered_count_cannot_be_raised_later(world: World) -> None:
    fid = world.create(min_clients=1, rounds=1)["id"]
    site = _enroll(world, fid, "a", 50)
    world.sites_svc.register(site.identity, signing.encode_public_key(site.key), "127.0.0.1", 10**9)
    assert (
        WeightCap(1.0, {site.identity.participant_id: 50}).effective(site.identity.participant_id, 10**9)
        == 50
    )
    world.submit(site, world.seal(site, fid, 1, num_samples=10**9))
    assert world.rounds(fid)[0]["metrics"]["site.a.weight"] == 50


def test_weight_cap_rules() -> None:
    cap = WeightCap(0.5, {"a": 100, "b": 300})
    assert cap.limit("a") == 100 and cap.effective("a", 40) == 40
    assert cap.limit("b") == 100, "b may weigh no more than the others together (share 0.5)"
    assert cap.effective("c", 10**12) == 400, "unregistered: bounded by the share cap alone"
    assert WeightCap(1.0, {}).effective("x", 7) == 7, "no registration, no share cap: the claim"
    assert WeightCap(0.5, {"solo": 10}).effective("solo", 5) == 5, "a lone site is not capped to zero"
    assert WeightCap(0.25, {"a": 300, "b": 10}).limit("b") == 10
    assert WeightCap(0.25, {"a": 300, "b": 10}).limit("a") == 3, "others 10 x 0.25/0.75"
    assert WeightCap(0.5, {"a": 1}).effective("b", 0) == 1
