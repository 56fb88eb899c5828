"""Job states and the transitions between them: the only place that says what may follow what.

Every state change in the store is a guarded ``UPDATE … WHERE state IN sources(target)``, so two
actors racing (a cancel and a worker finishing, two workers recovering the same job) can never both
win, and a finished job never moves again.
"""

from __future__ import annotations

from enum import StrEnum

from bastion.errors import Conflict


class JobState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"


PENDING, RUNNING, COMPLETED, FAILED, CANCELLED = (
    JobState.PENDING,
    JobState.RUNNING,
    JobState.COMPLETED,
    JobState.FAILED,
    JobState.CANCELLED,
)
ACTIVE: frozenset[JobState] = frozenset({PENDING, RUNNING})
TERMINAL: frozenset[JobState] = frozenset({COMPLETED, FAILED, CANCELLED})
ALL_STATES: tuple[str, ...] = tuple(s.value for s in JobState)

# running -> pending is the one way back: a job whose worker died is re-queued (attempt counter).
TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    PENDING: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({COMPLETED, FAILED, CANCELLED, PENDING}),
    COMPLETED: frozenset(),
    FAILED: frozenset(),
    CANCELLED: frozenset(),
}


def can_move(current: str, target: str) -> bool:
    return JobState(target) in TRANSITIONS[JobState(current)]


def sources(target: str) -> tuple[str, ...]:
    """States a job may be in for a move to ``target``: the guard of the UPDATE."""
    goal = JobState(target)
    return tuple(s.value for s, nexts in TRANSITIONS.items() if goal in nexts)


def check_move(current: str, target: str) -> None:
    if not can_move(current, target):
        raise Conflict(f"a {current} job cannot become {target}", code="invalid_transition", state=current)


def is_terminal(state: str) -> bool:
    return JobState(state) in TERMINAL
