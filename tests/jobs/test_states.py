"""The job state machine."""

from __future__ import annotations

import pytest

from bastion.errors import Conflict
from bastion.jobs import states


def test_seeds_states_exactly() -> None:
    assert set(states.ALL_STATES) == {"pending", "running", "completed", "failed", "cancelled"}


@pytest.mark.parametrize("final", ["completed", "failed", "cancelled"])
def test_finished_jobs_never_move(final: str) -> None:
    assert states.is_terminal(final)
    for target in states.ALL_STATES:
        assert not states.can_move(final, target)
        with pytest.raises(Conflict):
            states.check_move(final, target)


def test_allowed_moves() -> None:
    assert states.can_move("pending", "running") and states.can_move("pending", "cancelled")
    assert not states.can_move("pending", "completed"), "a job completes only after running"
    assert states.can_move("running", "pending"), "re-queue after a worker died"
    assert set(states.sources("cancelled")) == {"pending", "running"}
    assert set(states.sources("running")) == {"pending"}
    assert set(states.sources("completed")) == {"running"}
