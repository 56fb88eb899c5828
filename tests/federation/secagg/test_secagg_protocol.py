"""End-to-end rounds: the unmasked aggregate is the sum of exactly the inputs that reached the server."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from bastion.federation.secagg import RoundAborted, ServerStage
from bastion.federation.secagg.local import Stage
from tests.federation.secagg.support import Setup


def _check_sum(setup: Setup, total: np.ndarray, included: tuple[int, ...], max_error: float) -> None:
    expected = setup.plain_sum(included)
    assert np.max(np.abs(total - expected)) <= max_error + 1e-9


def test_round_without_dropouts_gives_the_plain_sum(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    result = setup.local_round().run(setup.updates)
    assert result.included == (1, 2, 3, 4, 5)
    assert result.excluded == ()
    _check_sum(setup, result.total, result.included, result.max_error)
    encoded = [setup.config.quantizer.encode(setup.updates[c]) for c in result.included]
    assert np.array_equal(result.encoded_total, np.sum(encoded, axis=0, dtype=setup.config.quantizer.dtype))


def test_ten_sites_two_drop_after_sending_masked_input(make_setup: Callable[..., Setup]) -> None:
    """The issue's test: their inputs arrived, so they are in the sum; their self masks are rebuilt."""
    setup = make_setup(n=10, threshold=6)
    rnd = setup.local_round()
    result = rnd.run(setup.updates, drop={4: "unmask", 9: "unmask"})
    assert rnd.server.waiting_for() == frozenset()  # the round is over
    assert result.included == tuple(range(1, 11))
    assert 4 not in rnd.server._responders and 9 not in rnd.server._responders
    _check_sum(setup, result.total, result.included, result.max_error)
    assert result.max_error < 1e-4  # 20-bit quantization of [-1, 1], 10 inputs


def test_ten_sites_two_drop_before_sending_masked_input(make_setup: Callable[..., Setup]) -> None:
    """Their pairwise masks are already in the survivors' inputs: the server rebuilds their mask keys."""
    setup = make_setup(n=10, threshold=6)
    result = setup.local_round().run(setup.updates, drop={2: "mask", 7: "mask"})
    assert result.included == (1, 3, 4, 5, 6, 8, 9, 10)
    assert result.excluded == (2, 7)
    _check_sum(setup, result.total, result.included, result.max_error)
    assert not np.allclose(result.total, setup.plain_sum(range(1, 11)), atol=1e-3)


def test_dropouts_at_every_stage_together(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=10, threshold=6)
    drop: dict[int, Stage] = {1: "advertise", 2: "share", 3: "mask", 4: "unmask"}
    result = setup.local_round().run(setup.updates, drop=drop)
    assert result.included == (4, 5, 6, 7, 8, 9, 10)
    assert result.excluded == (1, 2, 3)
    _check_sum(setup, result.total, result.included, result.max_error)


def test_secagg_plus_sparse_graph_with_dropouts(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=15, threshold=4, neighbours=7, d=40)
    assert all(len(nb) == 7 for nb in setup.config.graph.values())
    rnd = setup.local_round()
    result = rnd.run(setup.updates, drop={3: "mask", 11: "unmask"})
    assert 3 not in result.included and 11 in result.included
    _check_sum(setup, result.total, result.included, result.max_error)
    # Each client only talked to its neighbours: 6 encrypted shares each.
    assert all(len(rnd.clients[c].peers()) == 7 for c in setup.config.participants)


def test_fewer_than_t_masked_inputs_fails_cleanly(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=10, threshold=6)
    rnd = setup.local_round()
    drop: dict[int, Stage] = dict.fromkeys((1, 2, 3, 4, 5), "mask")
    with pytest.raises(RoundAborted) as info:
        rnd.run(setup.updates, drop=drop)
    assert "only 5 masked inputs arrived, threshold is 6" in info.value.reason
    assert info.value.code == "secagg_round_aborted"
    assert info.value.details["stage"] == "mask"
    server = rnd.server
    assert server.stage is ServerStage.ABORTED
    assert server.failure_reason == info.value.reason
    assert server._masked_sum is None and not server._adverts
    with pytest.raises(RoundAborted):
        server.close_masked_input()


def test_fewer_than_t_unmask_answers_fails_cleanly(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=7, threshold=4)
    drop: dict[int, Stage] = dict.fromkeys((1, 2, 3, 4), "unmask")
    with pytest.raises(RoundAborted, match="only 3 clients answered the unmasking request, threshold is 4"):
        setup.local_round().run(setup.updates, drop=drop)


def test_fewer_than_t_key_adverts_fails_before_any_secret_moves(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3)
    drop: dict[int, Stage] = dict.fromkeys((1, 2, 3), "advertise")
    with pytest.raises(RoundAborted, match="only 2 clients advertised keys"):
        setup.local_round().run(setup.updates, drop=drop)


def test_sparse_graph_fails_when_one_neighbourhood_empties(make_setup: Callable[..., Setup]) -> None:
    """With k < n a round can fail locally: a client whose neighbours all vanished cannot be unmasked."""
    setup = make_setup(n=12, threshold=3, neighbours=5)
    victim = 6
    others = sorted(setup.config.graph[victim] - {victim})
    drop: dict[int, Stage] = {c: "mask" for c in others[:3]}
    with pytest.raises(RoundAborted, match=f"client {victim} cannot be removed"):
        setup.local_round().run(setup.updates, drop=drop)


def test_messages_survive_json_and_byte_counts_are_recorded(make_setup: Callable[..., Setup]) -> None:
    setup = make_setup(n=5, threshold=3, d=100)
    rnd = setup.local_round()
    rnd.run(setup.updates)
    word = setup.config.quantizer.dtype.itemsize
    for c in setup.config.participants:
        assert rnd.stats.bytes_sent[c] > 100 * word * 4 // 3  # masked vector, base64
        assert rnd.stats.bytes_sent[c] < 100 * word * 4 // 3 + 4000
