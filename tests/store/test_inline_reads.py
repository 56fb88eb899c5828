"""Inline reads (``Database.inline``/``reader`` and ``bastion.api.reads.read``): run on the calling
thread through a read-only connection, and give way to the threadpool rather than wait on a lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest
from sqlalchemy import text
from sqlalchemy.exc import OperationalError

from bastion.api.reads import read
from bastion.store.db import Database, InlineBusy


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'b.db'}")
    with database.engine.begin() as conn:
        conn.execute(text("CREATE TABLE t (x INTEGER)"))
        conn.execute(text("INSERT INTO t VALUES (1), (2)"))
    yield database
    database.dispose()


def _count(database: Database) -> int:
    with database.reader() as conn:
        return int(conn.execute(text("SELECT count(*) FROM t")).scalar_one())


def _exclusive_writer(path: Path) -> sqlite3.Connection:
    """A connection holding SQLite's exclusive lock: even WAL readers must wait for it."""
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA locking_mode=EXCLUSIVE")
    conn.execute("INSERT INTO t VALUES (3)")
    return conn


def test_only_sqlite_files_read_inline(tmp_path: Path) -> None:
    assert Database(f"sqlite:///{tmp_path / 'a.db'}").inline_reads
    assert not Database("postgresql+psycopg://nobody@127.0.0.1:1/none").inline_reads  # never connects


def test_an_inline_reader_cannot_write(db: Database) -> None:
    with db.inline(), db.reader() as conn:
        assert conn.execute(text("SELECT count(*) FROM t")).scalar_one() == 2
        with pytest.raises(OperationalError, match="readonly"):
            conn.execute(text("INSERT INTO t VALUES (9)"))
    with db.reader() as conn:  # outside ``inline``: the ordinary pool
        conn.execute(text("INSERT INTO t VALUES (9)"))
        conn.commit()
    assert _count(db) == 3


def test_an_inline_read_gives_way_to_a_lock(db: Database, tmp_path: Path) -> None:
    db.dispose()  # the exclusive lock needs the file to itself
    writer = _exclusive_writer(tmp_path / "b.db")
    try:
        with db.inline(), pytest.raises(InlineBusy):
            _count(db)
    finally:
        writer.close()
    with db.inline():
        assert _count(db) == 3  # the same thread's inline connection works once the lock is gone


def test_read_falls_back_to_the_threadpool_on_a_lock(db: Database, tmp_path: Path) -> None:
    db.dispose()
    writer = _exclusive_writer(tmp_path / "b.db")
    loop_thread: list[threading.Thread] = []
    where: list[threading.Thread] = []
    retried = threading.Event()

    def count() -> int:
        where.append(threading.current_thread())
        if len(where) == 2:  # the retry, in a worker thread: now let the writer go
            retried.set()
        return _count(db)

    def release() -> None:
        retried.wait(30)
        writer.close()

    releaser = threading.Thread(target=release)
    releaser.start()

    async def main() -> int:
        loop_thread.append(threading.current_thread())
        return await read(db, count)

    try:
        assert anyio.run(main) == 3
    finally:
        retried.set()
        releaser.join()
    assert where[0] is loop_thread[0] and where[1] is not loop_thread[0] and len(where) == 2


def _threads_of_one_read(db: Database) -> tuple[list[threading.Thread], threading.Thread]:
    """Where ``read`` ran its function (each attempt), and the event loop's thread."""
    seen: list[threading.Thread] = []

    def count() -> int:
        seen.append(threading.current_thread())
        return _count(db)

    async def main() -> threading.Thread:
        assert await read(db, count) == 2
        return threading.current_thread()

    return seen, anyio.run(main)


def test_read_runs_on_the_loop_without_a_lock(db: Database) -> None:
    seen, loop_thread = _threads_of_one_read(db)
    assert seen == [loop_thread]


def test_read_uses_the_threadpool_for_a_server_database(
    monkeypatch: pytest.MonkeyPatch, db: Database
) -> None:
    monkeypatch.setattr(db, "_inline", None)  # what a PostgreSQL URL gives
    seen, loop_thread = _threads_of_one_read(db)
    assert len(seen) == 1 and seen[0] is not loop_thread
