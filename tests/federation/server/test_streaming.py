"""Admitting updates keeps server memory O(model): nothing per site is retained while a round is open."""

from __future__ import annotations

import gc
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from bastion.federation.server import rounds
from tests.federation.server.support import World

WIDE = {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [512, 512]}  # ~300k params


def _peak_growth(world: World, fid: str, sites: int, offset: int) -> int:
    members = [world.enroll(fid, f"s{offset + i}") for i in range(sites)]
    messages = [world.seal(site, fid, 1) for site in members]
    gc.collect()
    tracemalloc.start()
    try:
        base, _ = tracemalloc.get_traced_memory()
        for site, message in zip(members, messages, strict=True):
            world.submit(site, message)
        gc.collect()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return peak - base


def test_open_round_memory_does_not_grow_with_the_number_of_sites(world: World) -> None:
    update_bytes = 4 * 301_066
    few = world.create(name="few", model=WIDE, min_clients=1, target_clients=100)["id"]
    many = world.create(name="many", model=WIDE, min_clients=1, target_clients=100)["id"]
    _peak_growth(world, few, 1, 0)  # warm-up: builds the running aggregate once
    _peak_growth(world, many, 1, 100)
    small = _peak_growth(world, few, 3, 10)
    large = _peak_growth(world, many, 12, 200)
    assert world.status(many)["pending_updates"] == 13
    assert large < small + 2 * update_bytes, (small, large)


def test_updates_waiting_for_the_lock_are_folded_from_memory_not_read_back(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three updates admitted while the round's lock is held (as when they arrive together): the one
    that closes the round folds the others from memory; none is read back from the vault."""
    fid = world.create(min_clients=3, rounds=2)["id"]
    sites = [world.enroll(fid, name) for name in ("a", "b", "c")]
    base = world.global_params(fid)
    messages = [
        world.seal(site, fid, 1, {k: v + float(i) for k, v in base.items()}, num_samples=1)
        for i, site in enumerate(sites)
    ]
    reads: list[str] = []
    monkeypatch.setattr(rounds, "update_bytes", lambda *args: reads.append(args[-1]) or b"")
    lock = world.coordinator.lock(fid)
    with ThreadPoolExecutor(3) as pool:
        with lock:
            futures = [pool.submit(world.submit, s, m) for s, m in zip(sites, messages, strict=True)]
            deadline = time.monotonic() + 30
            while len(world.coordinator._inbox.get(fid, {})) < 3:  # all three admitted, none folded
                assert time.monotonic() < deadline, "the updates were not admitted"
                time.sleep(0.01)
        for future in futures:
            future.result(timeout=30)
    assert world.status(fid)["round"] == 2 and reads == []
    for name, arr in world.global_params(fid).items():
        np.testing.assert_allclose(arr, base[name] + 1.0, rtol=1e-6, atol=1e-6)
