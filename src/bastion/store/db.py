"""Engine, sessions and migrations for one database URL."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, event, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from sqlalchemy.pool import SingletonThreadPool

from bastion.errors import ConfigError

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


SQLITE_POOL_SIZE = 40  # anyio's default threadpool size: one connection per worker thread
INLINE_BUSY_MS = 50  # how long an inline read waits for a lock before it gives way (InlineBusy)
_INLINE: ContextVar[bool] = ContextVar("bastion_inline_read", default=False)
_SQLITE_BUSY, _SQLITE_LOCKED = 5, 6


class InlineBusy(Exception):
    """An inline read met a lock: run it again where waiting costs nothing (a worker thread)."""


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=15000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _inline_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute(f"PRAGMA busy_timeout={INLINE_BUSY_MS}")
    cur.execute("PRAGMA query_only=ON")  # what runs on the event loop can never write
    cur.close()


class Database:
    """One engine and a session factory. ``session()`` is a unit of work: commit on success."""

    def __init__(self, url: str, *, echo: bool = False) -> None:
        self.url = url
        self._inline: Engine | None = None
        if url.startswith("sqlite"):
            path = url.split("///", 1)[-1]
            if path and path != ":memory:" and not path.startswith("file:"):
                _private_sqlite_file(Path(path))
                # Inline reads (see ``inline``): one read-only connection per thread that uses it.
                self._inline = create_engine(
                    url,
                    connect_args={"check_same_thread": False, "timeout": INLINE_BUSY_MS / 1000},
                    poolclass=SingletonThreadPool,
                )
                event.listen(self._inline, "connect", _inline_pragmas)
            # A pool as deep as the server's threadpool (40): with QueuePool's default 5 + 10 overflow,
            # busy threads opened and closed a connection per request (and its PRAGMAs with it).
            self.engine: Engine = create_engine(
                url,
                echo=echo,
                connect_args={"check_same_thread": False, "timeout": 15},
                pool_size=SQLITE_POOL_SIZE,
                max_overflow=10,
            )
            event.listen(self.engine, "connect", _sqlite_pragmas)
        elif url.startswith("postgresql"):
            self.engine = create_engine(url, echo=echo, pool_pre_ping=True, pool_size=10, max_overflow=20)
        else:
            raise ConfigError("BASTION_DATABASE_URL must be sqlite:///… or postgresql+psycopg://…")
        self._factory = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def session(self) -> Iterator[Session]:
        with self._factory() as s, s.begin():
            yield s

    @property
    def inline_reads(self) -> bool:
        """Whether a short read may run on the calling thread (the event loop): SQLite files only."""
        return self._inline is not None

    @contextmanager
    def inline(self) -> Iterator[None]:
        """Within this block, ``reader()`` gives this thread's read-only connection that waits at most
        ``INLINE_BUSY_MS`` for a lock and then raises ``InlineBusy`` (instead of 15 s)."""
        token = _INLINE.set(True)
        try:
            yield
        finally:
            _INLINE.reset(token)

    @contextmanager
    def reader(self) -> Iterator[Connection]:
        """A connection for one short read (a page of a list): no unit of work, nothing written."""
        engine = self._inline if self._inline is not None and _INLINE.get() else self.engine
        inline = engine is not self.engine
        with engine.connect() as conn:
            try:
                yield conn
            except OperationalError as exc:
                code = getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF
                if inline and code in (_SQLITE_BUSY, _SQLITE_LOCKED):
                    raise InlineBusy(str(exc.orig)) from exc
                raise

    def ping(self) -> bool:
        try:
            with self.engine.connect() as conn:
                conn.execute(text("SELECT 1"))
            return True
        except Exception:
            return False

    def migrate(self) -> None:
        """Bring every migration branch to its newest revision (idempotent; run at every start).

        Subsystems (vault, jobs, federations) each own a branch rooted at 0001, so they never race
        for the next revision number.
        """
        from alembic import command
        from alembic.config import Config

        cfg = Config()
        cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
        sqlite = self.dialect == "sqlite"
        with self.engine.connect() as conn:
            if sqlite:
                # A migration that changes a constraint rebuilds the table (copy, DROP, rename), and
                # with foreign keys on, that DROP would cascade into the rows that refer to it (model
                # versions of `models`, say). SQLite's own recipe: keys off around the rebuild (only
                # outside a transaction), then check every reference before committing.
                conn.exec_driver_sql("PRAGMA foreign_keys=OFF")
                conn.commit()
            try:
                with conn.begin():
                    if self.dialect == "postgresql":
                        # Two processes starting at once must not race each other's DDL.
                        conn.execute(text("SELECT pg_advisory_xact_lock(727274)"))
                    cfg.attributes["connection"] = conn
                    command.upgrade(cfg, "heads")
                    if sqlite and (broken := conn.exec_driver_sql("PRAGMA foreign_key_check").fetchall()):
                        raise ConfigError(f"migration left {len(broken)} broken references, e.g. {broken[0]}")
            finally:
                if sqlite:
                    conn.exec_driver_sql("PRAGMA foreign_keys=ON")
                    conn.commit()

    def dispose(self) -> None:
        self.engine.dispose()
        if self._inline is not None:
            self._inline.dispose()


def _private_sqlite_file(path: Path) -> None:
    """Create (or tighten) the database file as 0600 before SQLite opens it.

    SQLite gives its ``-wal`` and ``-shm`` files the main file's permissions, so those follow; ones
    left by an older version are tightened too.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(0o600)
