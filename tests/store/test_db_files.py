"""The SQLite database and its -wal/-shm files are private to the server's user (0600); migrations keep
foreign keys enforced."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError

from bastion.store import Database


@pytest.fixture
def open_umask() -> Iterator[None]:
    old = os.umask(0o022)  # what most services run with: files would be 0644
    yield
    os.umask(old)


def test_database_wal_and_shm_are_0600(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "data" / "bastion.db"
    db = Database(f"sqlite:///{path}")
    db.migrate()
    with db.engine.begin() as conn:  # a write keeps -wal and -shm around while the pool is open
        conn.execute(text("CREATE TABLE probe (x INTEGER)"))
    files = [path, path.with_name("bastion.db-wal"), path.with_name("bastion.db-shm")]
    assert all(f.exists() for f in files)
    assert {f.name: oct(f.stat().st_mode & 0o777) for f in files} == {f.name: "0o600" for f in files}
    db.dispose()


def test_an_existing_loose_database_is_tightened(tmp_path: Path, open_umask: None) -> None:
    path = tmp_path / "bastion.db"
    path.touch(mode=0o644)
    path.chmod(0o644)
    Database(f"sqlite:///{path}").dispose()
    assert path.stat().st_mode & 0o777 == 0o600


def test_foreign_keys_are_back_on_after_migrating(tmp_path: Path) -> None:
    """migrate() turns SQLite's foreign keys off around table rebuilds; every connection after it
    must enforce them again (a model version pointing at no model is refused)."""
    db = Database(f"sqlite:///{tmp_path / 'fk.db'}")
    db.migrate()
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO model_versions (id, model_id, version, artifact_id, model_format, config_json,"
                " metrics_json, lineage_json, input_schema_json, size_bytes, access_protected, created_at)"
                " VALUES ('v1', 'nope', 1, 'a', 'skops', '{}', '{}', '{}', '{}', 9, false, '2026-01-01')"
            )
        )
    db.dispose()
