"""The federation and round transition tables: what may follow what, and the error for the rest."""

from __future__ import annotations

import pytest

from bastion.errors import Conflict
from bastion.federation.server.states import FEDERATION, LIVE, ROUND, FederationState, RoundState


def test_round_table() -> None:
    assert ROUND.can_move("open", RoundState.CLOSING)
    assert ROUND.can_move("closing", RoundState.OPEN)  # a secure round whose sum was lost runs again
    assert ROUND.can_move("closing", RoundState.CLOSED)
    assert not ROUND.can_move("open", RoundState.CLOSED)  # a round is claimed before it closes
    assert ROUND.sources(RoundState.FAILED) == (RoundState.OPEN, RoundState.CLOSING)
    assert ROUND.sources(RoundState.SUPERSEDED) == (RoundState.OPEN,)
    for done in (RoundState.CLOSED, RoundState.FAILED, RoundState.SUPERSEDED):
        assert ROUND.is_terminal(done)
        assert not any(ROUND.can_move(done, target) for target in RoundState)


def test_federation_table() -> None:
    assert FEDERATION.sources(FederationState.RUNNING) == (FederationState.WAITING, FederationState.RUNNING)
    assert FEDERATION.sources(FederationState.COMPLETED) == LIVE
    assert set(FEDERATION.sources(FederationState.ARCHIVED)) == set(FederationState) - {
        FederationState.ARCHIVED
    }
    assert FEDERATION.is_terminal("archived")
    assert not FEDERATION.is_terminal("completed")  # a finished federation can still be archived


def test_illegal_moves_raise_a_conflict() -> None:
    assert FEDERATION.check_move("waiting", FederationState.RUNNING) is FederationState.RUNNING
    with pytest.raises(Conflict) as caught:
        FEDERATION.check_move("completed", FederationState.RUNNING)
    assert caught.value.code == "invalid_transition"
    with pytest.raises(Conflict):
        ROUND.check_move("closed", RoundState.OPEN)
    with pytest.raises(Conflict):
        ROUND.check_move("nonsense", RoundState.OPEN)


def test_states_are_the_stored_strings() -> None:
    """The enums are str: rows, views and JSON keep the literal values they had before the table."""
    assert FederationState.WAITING == "waiting" and RoundState.OPEN == "open"
    assert [s.value for s in RoundState] == ["open", "closing", "closed", "failed", "superseded"]
