"""A short-lived, in-process memory of verified API keys: SHA-256 digest -> Principal.

Why: every authenticated request used to cost a database round trip (key, owner and source lockout)
before doing any work; on a small machine that was most of the request. A key that passed the full
check is remembered for ``ttl`` seconds (2 s by default), so a busy client pays the round trip at most
once per window.

What it may not weaken, and how it holds:
- *Revocation, disabling, role or expiry changes made in this process* take effect at once: the
  cache watches the sessions of the server's database and drops the affected entries when such a change
  is flushed and again when it commits (a generation counter stops a lookup that read the old row from
  putting it back afterwards).
- *Changes made elsewhere* (another replica, the ``bastion keys revoke`` CLI, raw SQL) take effect
  within ``ttl`` seconds: that is the documented revocation window.
- *Key expiry* is checked on every hit against the key's ``expires_at``.
- *Failures never enter*: only verified keys are remembered, so every bad key still reaches the
  database, the lockout counters and the audit log.
- *Source lockout*: a hit also needs the caller's source address to have been seen unlocked within
  ``ttl``; a failure counted in this process forgets that at once, so a lock it triggers applies to the
  very next request; a lock set by another replica applies within ``ttl``.
- Only digests are kept, never a key; the memory is bounded (``max_entries``).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import event, inspect
from sqlalchemy.orm import InstanceState, Session, sessionmaker

from bastion.auth.principal import Principal
from bastion.store.tables import ApiKey, User

API_KEY_CACHE_TTL = 2.0
"""Seconds a verified key (and an unlocked source) is trusted without asking the database."""

_PENDING = "bastion.auth.cache.pending"
_CLEAR_ALL = "*"
# The one column authentication itself writes; it cannot change who a key authenticates as.
_IRRELEVANT = frozenset({"last_used_at"})


@dataclass(frozen=True, slots=True)
class Ticket:
    """Taken before a database read: the read's result is no older than ``moment``, and is stale
    if anything was invalidated after ``generation``."""

    generation: int
    moment: float


@dataclass(frozen=True, slots=True)
class _Entry:
    principal: Principal
    expires_at: datetime | None
    born: float


class PrincipalCache:
    """Thread-safe: hits are read on the event loop, misses filled from worker threads.

    An entry is served while younger than ``ttl`` (its age counts from the start of the database read
    that produced it) and reported *due* once older than ``refresh_after`` (half the ttl), so a caller
    can refresh it ahead of expiry while everyone else keeps using it.
    """

    def __init__(
        self,
        ttl: float = API_KEY_CACHE_TTL,
        *,
        refresh_after: float | None = None,
        max_entries: int = 4096,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl = ttl
        self.refresh_after = ttl / 2 if refresh_after is None else refresh_after
        self.max_entries = max_entries
        self._clock = clock
        self._keys: dict[str, _Entry] = {}
        self._sources: dict[str, float] = {}
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self.ttl > 0

    def ticket(self) -> Ticket:
        """Take this before reading the database; hand it to ``put`` afterwards."""
        return Ticket(self._generation, self._clock())

    def lookup(self, digest: str, source: str, now: datetime) -> tuple[Principal | None, bool]:
        """(principal, due): the principal if the key was verified within ``ttl`` from a source seen
        unlocked within ``ttl`` and has not expired (``now``, naive UTC); due once either check is
        older than ``refresh_after``."""
        entry = self._keys.get(digest)
        seen = self._sources.get(source)
        if entry is None or seen is None:
            return None, True
        age = self._clock() - min(entry.born, seen)
        if age >= self.ttl or (entry.expires_at is not None and entry.expires_at <= now):
            return None, True
        return entry.principal, age >= self.refresh_after

    def get(self, digest: str, source: str, now: datetime) -> Principal | None:
        return self.lookup(digest, source, now)[0]

    def put(
        self,
        digest: str,
        principal: Principal,
        expires_at: datetime | None,
        source: str,
        ticket: Ticket,
    ) -> None:
        """Remember a key verified from an unlocked source, unless anything was invalidated since."""
        if not self.enabled:
            return
        with self._lock:
            if ticket.generation != self._generation:
                return
            moment = self._clock()
            if len(self._keys) >= self.max_entries and digest not in self._keys:
                self._evict(self._keys, lambda e: e.born, moment)
            if len(self._sources) >= self.max_entries and source not in self._sources:
                self._evict(self._sources, lambda born: born, moment)
            self._keys[digest] = _Entry(principal, expires_at, ticket.moment)
            self._sources[source] = max(ticket.moment, self._sources.get(source, ticket.moment))

    def _evict(self, table: dict[str, Any], born: Callable[[Any], float], moment: float) -> None:
        stale = [k for k, v in table.items() if moment - born(v) >= self.ttl]
        for k in stale or list(table)[: max(1, len(table) // 2)]:
            del table[k]

    def forget_source(self, source: str) -> None:
        """A failure was counted against this source: look its lockout up again next time."""
        with self._lock:
            self._generation += 1
            self._sources.pop(source, None)

    def invalidate(self, *, key_ids: Iterable[str] = (), user_ids: Iterable[str] = ()) -> None:
        keys, users = set(key_ids), set(user_ids)
        with self._lock:
            self._generation += 1
            for digest, entry in list(self._keys.items()):
                p = entry.principal
                if p.key_id in keys or p.user_id in users:
                    del self._keys[digest]

    def clear(self) -> None:
        with self._lock:
            self._generation += 1
            self._keys.clear()
            self._sources.clear()

    # -- invalidation from the database's sessions ------------------------------------------------
    def watch(self, factory: sessionmaker[Session]) -> None:
        """Invalidate on every flushed or committed change to a key or a user made through ``factory``."""
        event.listen(factory, "after_flush", self._after_flush)
        event.listen(factory, "do_orm_execute", self._on_execute)
        event.listen(factory, "after_commit", self._after_commit)
        event.listen(factory, "after_soft_rollback", self._after_rollback)

    def _apply(self, pending: set[tuple[str, str]]) -> None:
        if (_CLEAR_ALL, _CLEAR_ALL) in pending:
            self.clear()
            return
        self.invalidate(
            key_ids=(i for kind, i in pending if kind == "key"),
            user_ids=(i for kind, i in pending if kind == "user"),
        )

    def _after_flush(self, session: Session, _flush_context: Any) -> None:
        found: set[tuple[str, str]] = set()
        for obj in (*session.dirty, *session.deleted):
            if isinstance(obj, ApiKey | User) and (obj in session.deleted or _changed(obj)):
                found.add(("key", obj.id) if isinstance(obj, ApiKey) else ("user", obj.id))
        if found:
            session.info.setdefault(_PENDING, set()).update(found)
            self._apply(found)  # at once, and again on commit (see _after_commit)

    def _on_execute(self, state: Any) -> None:
        """Bulk ``update(User)``/``delete(ApiKey)`` statements name no rows we could pick: drop all."""
        if not (state.is_update or state.is_delete):
            return
        mapper = state.bind_mapper
        if mapper is not None and mapper.class_ in (ApiKey, User):
            state.session.info.setdefault(_PENDING, set()).add((_CLEAR_ALL, _CLEAR_ALL))
            self.clear()

    def _after_commit(self, session: Session) -> None:
        pending: set[tuple[str, str]] | None = session.info.pop(_PENDING, None)
        if pending:
            self._apply(pending)

    def _after_rollback(self, session: Session, _previous: Any) -> None:
        session.info.pop(_PENDING, None)


def _changed(obj: ApiKey | User) -> bool:
    state: InstanceState[ApiKey | User] = inspect(obj)
    return any(attr.history.has_changes() for attr in state.attrs if attr.key not in _IRRELEVANT)
