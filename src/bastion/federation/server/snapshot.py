"""The federation and its current round as site requests see them, held in memory between transitions.

Every site request (``/site/info``, ``/site/model``, each update, each secure-aggregation poll) needs
the federation's state and its current round; an ORM query for them was the largest single cost of a
plain round. :class:`Snapshots` keeps one immutable copy per federation, tagged with the coordinator's
epoch. Every transition commits first and then bumps the epoch (``Coordinator.changed``), which makes
the copy stale: the next reader reads the rows again, and so does ``changed`` itself, under the same
per-federation lock, so the long polls it wakes find the new state in memory. A copy is never used for
longer than ``ttl`` seconds, which bounds what a change made elsewhere (another process) can hide.
Decisions that must be exact stay in the database: admission counts an update only with a conditional
``UPDATE ... WHERE state = 'open'``, and closing claims the round the same way.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Table, and_, bindparam, select
from sqlalchemy.sql import Select

from bastion.errors import NotFound
from bastion.federation.server.epochs import Epochs
from bastion.store import Database
from bastion.store.tables import Federation, FederationRound


@dataclass(frozen=True, slots=True)
class FederationNow:
    id: str
    state: str
    failure_reason: str | None
    current_round: int
    rounds: int
    completed_rounds: int
    min_clients: int
    target_clients: int
    signing_public_key: str
    sealing_public_key: str


@dataclass(frozen=True, slots=True)
class RoundNow:
    id: str
    number: int
    state: str
    attempt: int
    deadline: datetime | None
    base_version: int


@dataclass(frozen=True, slots=True)
class Snapshot:
    federation: FederationNow
    round: RoundNow | None
    epoch: int
    taken: float  # time.monotonic()


def _table(model: type[Federation] | type[FederationRound]) -> Table:
    table = model.__table__
    assert isinstance(table, Table)
    return table


_F, _R = _table(Federation), _table(FederationRound)
_FED_COLUMNS = [getattr(_F.c, name) for name in FederationNow.__slots__]
_ROUND_COLUMNS = [getattr(_R.c, name) for name in RoundNow.__slots__]
# One Core statement, built once: the federation and its current round (outer join: none once finished).
_CURRENT: Select[tuple[object, ...]] = (
    select(*_FED_COLUMNS, *_ROUND_COLUMNS)
    .select_from(_F.outerjoin(_R, and_(_R.c.federation_id == _F.c.id, _R.c.number == _F.c.current_round)))
    .where(_F.c.id == bindparam("fid"))
)


class Snapshots:
    def __init__(self, db: Database, epochs: Epochs, ttl: float = 1.0) -> None:
        self.db, self.epochs, self.ttl = db, epochs, ttl
        self._held: dict[str, Snapshot] = {}
        self._guard = threading.Lock()
        self._locks: dict[str, threading.Lock] = {}

    def _lock(self, federation_id: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(federation_id, threading.Lock())

    def cached(self, federation_id: str) -> Snapshot | None:
        """The held copy if it is still current (no I/O, no lock: callable on the event loop)."""
        held = self._held.get(federation_id)
        if (
            held is None
            or held.epoch != self.epochs.get(federation_id)
            or time.monotonic() - held.taken > self.ttl
        ):
            return None
        return held

    def get(self, federation_id: str) -> Snapshot:
        """The current copy, read from the database when the held one is stale (NotFound if none)."""
        held = self.cached(federation_id)
        if held is not None:
            return held
        with self._lock(federation_id):
            held = self.cached(federation_id)  # another thread may just have read it
            if held is not None:
                return held
            return self._read(federation_id, self.epochs.get(federation_id))

    def bump(self, federation_id: str) -> None:
        """Move the epoch on (after a committed transition) with the new state already in memory."""
        with self._lock(federation_id):
            epoch = self.epochs.get(federation_id) + 1
            try:
                self._read(federation_id, epoch)
            except NotFound:
                self._held.pop(federation_id, None)
            finally:
                self.epochs.bump(federation_id)  # wakes the long polls: the copy they will read is in

    def forget(self, federation_id: str) -> None:
        self._held.pop(federation_id, None)

    def _read(self, federation_id: str, epoch: int) -> Snapshot:
        """Read the rows (the epoch was taken before, so a transition committed meanwhile makes it stale)."""
        taken = time.monotonic()
        with self.db.session() as s:
            row = s.connection().execute(_CURRENT, {"fid": federation_id}).first()
        if row is None:
            self._held.pop(federation_id, None)
            raise NotFound("federation not found")
        values = tuple(row)
        split = len(_FED_COLUMNS)
        fed = FederationNow(*values[:split])  # type: ignore[arg-type]
        rnd = RoundNow(*values[split:]) if values[split] is not None else None  # type: ignore[arg-type]
        snapshot = Snapshot(fed, rnd, epoch, taken)
        self._held[federation_id] = snapshot
        return snapshot
