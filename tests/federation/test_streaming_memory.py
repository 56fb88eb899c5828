"""Streaming strategies hold O(model) memory: nothing per client, however many clients send."""

from __future__ import annotations

import gc
import tracemalloc
import weakref

import numpy as np
import pytest

from bastion.federation import strategies as S

SIZE = 250_000  # 1 MB of float32 per update


def _peak_growth(strategy: S.Strategy, clients: int) -> int:
    """Peak traced memory of a whole round beyond the start, with updates made and dropped one by one."""
    glob = {"w": np.zeros(SIZE, np.float32)}
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        strategy.begin_round(glob, 0)
        for i in range(clients):
            update = {"w": np.full(SIZE, float(i % 7), np.float32)}
            strategy.accumulate(update, 10 + i)
            del update
        strategy.finalize()
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedadam", "fedyogi"])
def test_streaming_memory_does_not_grow_with_clients(name: str) -> None:
    few = _peak_growth(S.create_strategy(name), 3)
    many = _peak_growth(S.create_strategy(name), 30)
    assert many < few * 1.1 + 64 * 1024
    # FedAdam/FedYogi: float32 global + float64 sum, m, v + two float64 temporaries = 12 models' worth.
    assert many < 13 * SIZE * 4


def test_buffered_strategies_do_grow_so_the_measure_can_fail() -> None:
    few = _peak_growth(S.create_strategy("median"), 3)
    many = _peak_growth(S.create_strategy("median"), 30)
    assert many > few + 20 * SIZE * 4


@pytest.mark.parametrize("name", sorted(S.STRATEGIES))
def test_no_strategy_keeps_a_reference_to_the_callers_arrays(name: str) -> None:
    strategy = S.create_strategy(name, {"num_byzantine": 0} if "krum" in name else None)
    glob = {"w": np.zeros(16, np.float32)}
    strategy.begin_round(glob, 0)
    refs = []
    for i in range(3):
        arr = np.full(16, float(i), np.float32)
        refs.append(weakref.ref(arr))
        strategy.accumulate({"w": arr}, 5)
        del arr
    gc.collect()
    assert all(r() is None for r in refs)
    assert strategy.finalize()["w"].shape == (16,)


def test_round_buffers_are_freed_after_finalize() -> None:
    strategy = S.Median()
    strategy.begin_round({"w": np.zeros(8, np.float32)}, 0)
    for i in range(5):
        strategy.accumulate({"w": np.full(8, float(i), np.float32)}, 1)
    strategy.finalize()
    assert strategy.state_dict().tensors.keys() == set()
