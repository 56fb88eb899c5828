"""DP-FedAvg inside federation rounds (sealed updates, central noise): clipping, epsilon, budget, sampling."""

from __future__ import annotations

import json

import dp_accounting
import numpy as np
import pytest
from dp_accounting.rdp import rdp_privacy_accountant as rdp
from sqlalchemy import select

from bastion.errors import Conflict, Forbidden
from bastion.federation.secagg.vector import flatten
from bastion.store.tables import AuditEvent
from tests.federation.server.support import Site, World


def dp(**kw: float | str) -> dict[str, object]:
    return {"dp": {"clip_norm": 0.5, "noise_multiplier": 1.0, "mode": "central", **kw}}


def reference_epsilon(sigma: float, q: float, rounds: int, delta: float) -> float:
    acc = rdp.RdpAccountant()
    acc.compose(dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), rounds)
    return float(acc.get_epsilon(delta))


def run_round(world: World, fid: str, number: int, sites: list[Site], deltas: list[float]) -> None:
    """Each site sends the global model moved by its scalar delta; sites are enrolled on first use."""
    base = world.global_params(fid)
    while len(sites) < len(deltas):
        sites.append(world.enroll(fid, f"s{len(sites)}"))
    for site, scale in zip(sites, deltas, strict=False):
        tensors = {k: v + np.float32(scale) for k, v in base.items()}
        world.submit(site, world.seal(site, fid, number, tensors))


def test_the_server_clips_each_update_and_adds_noise_once(world: World) -> None:
    fid = world.create(rounds=2, min_clients=2, privacy=dp(noise_multiplier=1e-3))["id"]
    base = flatten(world.global_params(fid))[0]
    run_round(world, fid, 1, [], [10.0, 0.01])  # the first site's delta is far beyond the clip norm
    got = flatten(world.global_params(fid))[0] - base
    d = base.size
    clipped = np.full(d, 10.0) * (0.5 / (10.0 * np.sqrt(d)))
    want = (clipped + np.full(d, 0.01)) / 2  # fixed denominator: the expected 2 sites
    assert np.max(np.abs(got - want)) < 5e-3
    assert np.linalg.norm(got) < 0.5  # unclipped, the mean would have norm 5 * sqrt(d)


def test_every_round_reports_epsilon_as_dp_accounting_computes_it(world: World) -> None:
    fid = world.create(rounds=3, min_clients=2, privacy=dp(noise_multiplier=1.3, delta=1e-6))["id"]
    sites: list[Site] = []
    for number in (1, 2, 3):
        run_round(world, fid, number, sites, [0.01, -0.01])
    rounds = world.rounds(fid)
    for r in rounds:
        assert r["metrics"]["dp_epsilon"] == pytest.approx(
            reference_epsilon(1.3, 1.0, r["round"], 1e-6), rel=1e-9
        )
        assert r["metrics"]["dp_delta"] == 1e-6
    privacy = world.status(fid)["privacy"]
    assert privacy["epsilon"] == pytest.approx(rounds[-1]["metrics"]["dp_epsilon"])
    assert privacy["rounds"] == 3 and privacy["stopped_by_budget"] is False


def test_the_budget_stops_the_federation_before_it_is_exceeded(world: World) -> None:
    eps2, eps3 = (reference_epsilon(1.0, 1.0, r, 1e-5) for r in (2, 3))
    budget = (eps2 + eps3) / 2
    fid = world.create(rounds=10, min_clients=2, privacy=dp(budget_epsilon=budget))["id"]
    status = world.status(fid)
    assert status["privacy"]["rounds_left_in_budget"] == 2
    sites: list[Site] = []
    run_round(world, fid, 1, sites, [0.01, 0.02])
    run_round(world, fid, 2, sites, [0.01, 0.02])
    status = world.status(fid)
    assert status["state"] == "completed" and status["completed_rounds"] == 2
    assert status["privacy"]["stopped_by_budget"] is True
    assert status["privacy"]["epsilon"] == pytest.approx(eps2) and eps2 <= budget
    assert status["privacy"]["rounds_left_in_budget"] == 0
    with pytest.raises(Conflict) as exc:
        world.submit(sites[0], world.seal(sites[0], fid, 3))
    assert exc.value.code == "federation_finished"
    with world.ctx.db.session() as s:
        done = s.scalars(select(AuditEvent).where(AuditEvent.action == "fl.federation.complete")).one()
    assert json.loads(done.details)["reason"] == "privacy_budget_exhausted"


def test_client_sampling_asks_only_the_drawn_sites(world: World) -> None:
    fid = world.create(rounds=2, min_clients=2, target_clients=16, privacy=dp(sampling_rate=0.5))["id"]
    sites = [world.enroll(fid, f"s{i}") for i in range(16)]
    drawn = [world.sites_svc.info(s.identity)["selected"] for s in sites]
    for site, chosen in zip(sites, drawn, strict=True):
        message = world.seal(site, fid, 1)
        if chosen:
            assert world.submit(site, message)["accepted"]
        else:
            with pytest.raises(Forbidden) as exc:
                world.submit(site, message)
            assert exc.value.code == "not_selected"


def test_the_draw_is_unpredictable_without_the_secret_but_repeatable_with_it() -> None:
    from bastion.federation.server.privacy import selected

    ids = [f"site-{i}" for i in range(4000)]
    first = [selected(b"k" * 32, "fed", 3, 1, pid, 0.25) for pid in ids]
    assert first == [selected(b"k" * 32, "fed", 3, 1, pid, 0.25) for pid in ids]  # restarts agree
    assert abs(sum(first) / len(ids) - 0.25) < 0.03
    other_key = [selected(b"j" * 32, "fed", 3, 1, pid, 0.25) for pid in ids]
    retry = [selected(b"k" * 32, "fed", 3, 2, pid, 0.25) for pid in ids]
    # another secret, or another attempt of the round, draws an unrelated set
    for draw in (other_key, retry):
        overlap = sum(a and b for a, b in zip(first, draw, strict=True)) / len(ids)
        assert abs(overlap - 0.25 * 0.25) < 0.02
    assert all(selected(b"k" * 32, "fed", 3, 1, pid, 1.0) for pid in ids[:10])
