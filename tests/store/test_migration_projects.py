"""Migration 0006_h20 on a database with objects from before projects: each user gets a personal
project that takes over their rows."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from bastion.store import Database
from bastion.store.db import MIGRATIONS_DIR

BEFORE = ["0005_h12", "0005_h14", "0005_h15", "0005_h17", "0005_h18"]


def test_existing_rows_move_into_personal_projects(tmp_path: Path) -> None:
    """SQLite from scratch (PostgreSQL runs the same migration on every test session's database)."""
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        for rev in BEFORE:
            command.upgrade(cfg, rev)
        conn.execute(
            text(
                "INSERT INTO users (id, username, role, disabled, created_at) VALUES ('u1', 'ann', 'user', false, '2026-01-01')"
            )
        )
        conn.execute(
            text(
                "INSERT INTO datasets (id, owner_id, name, source_format, size_bytes, rows, columns, schema_json,"
                " deid_json, artifact_id, created_at) VALUES ('d1', 'u1', 'x', 'csv', 1, 1, 1, '[]', '[]', 'a',"
                " '2026-01-01')"
            )
        )
    db.migrate()
    with db.engine.begin() as conn:
        project = conn.execute(text("SELECT id, name, domain FROM projects WHERE personal_of = 'u1'")).one()
        assert project[1:] == ("ann", "personal")
        assert conn.execute(text("SELECT project_id FROM datasets WHERE id = 'd1'")).scalar() == project[0]
        role = conn.execute(text("SELECT role FROM project_members WHERE user_id = 'u1'")).scalar()
        assert role == "owner"
    db.dispose()
