"""Federation and round states and the transitions between them: the only place that says what may
follow what (the federation counterpart of ``bastion.jobs.states``).

State changes in the store are guarded ``UPDATE … WHERE state IN (…)`` statements, so two actors
racing for the same round (the deadline ticker and a site's update, two API workers) can never both
win; ``check_move`` is for the changes made on a loaded row, and raises ``Conflict`` with code
``invalid_transition`` on a move the table does not allow.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import Generic, TypeVar

from bastion.errors import Conflict


class FederationState(StrEnum):
    WAITING = "waiting"  # created; the first round is open but has no deadline until enough sites enrol
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    ARCHIVED = "archived"  # ended by its owner: sites refused, vault artifacts deleted, rows kept


class RoundState(StrEnum):
    OPEN = "open"  # admits updates (a retry keeps it open with a new attempt and deadline)
    CLOSING = "closing"  # claimed by one closer: admits nothing; back to open if a secure sum was lost
    CLOSED = "closed"
    FAILED = "failed"
    SUPERSEDED = "superseded"  # the owner uploaded a new global model while it was open


S = TypeVar("S", FederationState, RoundState)


class Transitions(Generic[S]):
    """A transition table: which states may follow which."""

    def __init__(self, noun: str, table: Mapping[S, frozenset[S]]) -> None:
        self.noun = noun
        self.table: dict[S, frozenset[S]] = dict(table)

    def can_move(self, current: str, target: S) -> bool:
        return target in self.table[self._state(current)]

    def sources(self, target: S) -> tuple[S, ...]:
        """States a row may be in for a move to ``target``: the guard of the UPDATE."""
        return tuple(s for s, nexts in self.table.items() if target in nexts)

    def check_move(self, current: str, target: S) -> S:
        """``target`` if the table allows ``current`` -> ``target``; else ``Conflict``."""
        if not self.can_move(current, target):
            raise Conflict(
                f"a {current} {self.noun} cannot become {target}", code="invalid_transition", state=current
            )
        return target

    def is_terminal(self, state: str) -> bool:
        return not self.table[self._state(state)]

    def _state(self, value: str) -> S:
        for state in self.table:
            if state == value:
                return state
        raise Conflict(f"unknown {self.noun} state {value!r}", code="invalid_transition", state=value)


W, R, DONE, FAIL, ARCH = (
    FederationState.WAITING,
    FederationState.RUNNING,
    FederationState.COMPLETED,
    FederationState.FAILED,
    FederationState.ARCHIVED,
)
# A round closes while the federation is waiting too (its first round is open and takes updates), so
# waiting -> completed/failed are real; every state but archived may be archived by the owner.
FEDERATION = Transitions[FederationState](
    "federation",
    {
        W: frozenset({R, DONE, FAIL, ARCH}),
        R: frozenset({R, DONE, FAIL, ARCH}),  # running -> running: a round closed, the next one opened
        DONE: frozenset({ARCH}),
        FAIL: frozenset({ARCH}),
        ARCH: frozenset(),
    },
)
LIVE: tuple[FederationState, ...] = (W, R)

OPEN, CLOSING, CLOSED, RFAIL, SUPERSEDED = (
    RoundState.OPEN,
    RoundState.CLOSING,
    RoundState.CLOSED,
    RoundState.FAILED,
    RoundState.SUPERSEDED,
)
# closing -> closing: a closer recovering after a restart re-claims a round left mid-close.
ROUND = Transitions[RoundState](
    "round",
    {
        OPEN: frozenset({CLOSING, RFAIL, SUPERSEDED}),
        CLOSING: frozenset({CLOSING, CLOSED, OPEN, RFAIL}),
        CLOSED: frozenset(),
        RFAIL: frozenset(),
        SUPERSEDED: frozenset(),
    },
)
