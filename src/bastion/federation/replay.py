"""Replay and duplicate protection for federation updates.

An update is identified twice: by its nonce (a captured message sent again is a *replay*) and by
(federation, round, participant) (a second, different update for the same round is a *duplicate*).
The server checks before decrypting and records only after the update has been fully validated, so a
rejected update does not lock its participant out of the round. ``record`` must be atomic: the
database-backed guard relies on a unique constraint, the in-memory one on a lock.
"""

from __future__ import annotations

import threading
from typing import Protocol, runtime_checkable

from bastion.errors import Conflict


@runtime_checkable
class ReplayGuard(Protocol):
    def check(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        """Raise :class:`Conflict` (``replayed_update`` / ``duplicate_update``) if already seen."""

    def record(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        """Atomically remember the update; raise :class:`Conflict` if a concurrent one got there first."""


def replayed() -> Conflict:
    return Conflict("this update has already been received (replay)", code="replayed_update")


def duplicate(round: int) -> Conflict:
    return Conflict(f"this participant has already sent an update for round {round}", code="duplicate_update")


class InMemoryReplayGuard:
    """Process-local guard for tests and single-process simulations; forgets everything on restart."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nonces: set[tuple[str, str, str]] = set()
        self._submitted: set[tuple[str, int, str]] = set()

    def _raise_if_seen(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        if (federation_id, participant_id, nonce) in self._nonces:
            raise replayed()
        if (federation_id, round, participant_id) in self._submitted:
            raise duplicate(round)

    def check(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        with self._lock:
            self._raise_if_seen(federation_id, round, participant_id, nonce)

    def record(self, federation_id: str, round: int, participant_id: str, nonce: str) -> None:
        with self._lock:
            self._raise_if_seen(federation_id, round, participant_id, nonce)
            self._nonces.add((federation_id, participant_id, nonce))
            self._submitted.add((federation_id, round, participant_id))
