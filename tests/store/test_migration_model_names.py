"""Migration 0008_h30: model names unique per project instead of per owner, up and down, on SQLite
and PostgreSQL (each from an empty database of its own)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, create_engine, text
from sqlalchemy.exc import IntegrityError

from bastion.store import Database
from bastion.store.db import MIGRATIONS_DIR
from tests.conftest import PG_ADMIN_URL, _pg_reachable
from tests.store.test_migration_projects import BEFORE


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'm.db'}"
        return
    if reason := _pg_reachable():
        pytest.skip(reason)
    name = f"bastion_mig_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    yield PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _model(conn: Connection, mid: str, owner: str, project: str, name: str) -> None:
    conn.execute(
        text(
            "INSERT INTO models (id, owner_id, project_id, name, created_at)"
            " VALUES (:id, :o, :p, :n, '2026-01-01')"
        ),
        {"id": mid, "o": owner, "p": project, "n": name},
    )


def test_names_unique_per_project_up_and_down(empty_url: str) -> None:
    db = Database(empty_url)
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        for rev in (*BEFORE, "0006_h20"):
            command.upgrade(cfg, rev)
        conn.execute(
            text(
                "INSERT INTO users (id, username, role, disabled, created_at)"
                " VALUES ('u1', 'ann', 'user', false, '2026-01-01'), ('u2', 'bo', 'user', false, '2026-01-01')"
            )
        )
        for pid in ("p1", "p2"):
            conn.execute(
                text(
                    "INSERT INTO projects (id, name, domain, created_at, updated_at)"
                    " VALUES (:p, :p, 'healthcare', '2026-01-01', '2026-01-01')"
                ),
                {"p": pid},
            )
        _model(conn, "m1", "u1", "p1", "baseline")
    db.migrate()
    with db.engine.begin() as conn:
        _model(conn, "m2", "u1", "p2", "baseline")  # same owner, same name, another project
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        _model(conn, "m3", "u2", "p1", "baseline")  # another owner, same name, same project
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM models WHERE id = 'm2'"))
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0008_h30@-1")
    with pytest.raises(IntegrityError), db.engine.begin() as conn:
        _model(conn, "m4", "u1", "p2", "baseline")  # per owner again after the downgrade
    db.dispose()
