"""Optuna's journal in Bastion's own database: a search's study survives restarts and resumes.

Optuna's JournalStorage replays an append-only log of operations; this backend keeps that log as
rows of ``search_journal`` (one study per search job, numbered from 0). The unique (study, seq)
constraint makes two writers that raced for a number fail loudly instead of interleaving.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Any

from optuna.storages.journal import BaseJournalBackend
from sqlalchemy import delete, func, select

from bastion.store import Database
from bastion.store.tables import SearchJournalEntry


class DatabaseJournal(BaseJournalBackend):
    def __init__(self, db: Database, study: str) -> None:
        self.db = db
        self.study = study
        self._lock = threading.Lock()

    def read_logs(self, log_number_from: int) -> Iterable[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(SearchJournalEntry.entry)
                .where(SearchJournalEntry.study == self.study, SearchJournalEntry.seq >= log_number_from)
                .order_by(SearchJournalEntry.seq)
            ).all()
        return list(rows)

    def append_logs(self, logs: list[dict[str, Any]]) -> None:
        with self._lock, self.db.session() as s:
            last = s.scalar(
                select(func.max(SearchJournalEntry.seq)).where(SearchJournalEntry.study == self.study)
            )
            start = -1 if last is None else int(last)
            s.add_all(
                SearchJournalEntry(study=self.study, seq=start + 1 + i, entry=log)
                for i, log in enumerate(logs)
            )

    def drop(self) -> None:
        with self.db.session() as s:
            s.execute(delete(SearchJournalEntry).where(SearchJournalEntry.study == self.study))


def storage(db: Database, study: str) -> Any:
    from optuna.storages import JournalStorage

    return JournalStorage(DatabaseJournal(db, study))
