"""Migration 0007_h35 on a database with model versions from before: they keep their own artifacts
(``artifact_version`` NULL, layout ``raw``), which is how the registry reads an unshared version."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from sqlalchemy import text

from bastion.store import Database
from bastion.store.db import MIGRATIONS_DIR


def test_old_versions_keep_their_own_artifacts(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        for rev in ["0005_h12", "0005_h14", "0005_h15", "0005_h17", "0005_h18", "0006_h20"]:
            command.upgrade(cfg, rev)
        conn.execute(
            text(
                "INSERT INTO users (id, username, role, disabled, created_at)"
                " VALUES ('u1', 'ann', 'user', false, '2026-01-01')"
            )
        )
        conn.execute(
            text("INSERT INTO models (id, owner_id, name, created_at) VALUES ('m1', 'u1', 'x', '2026-01-01')")
        )
        conn.execute(
            text(
                "INSERT INTO model_versions (id, model_id, version, artifact_id, model_format, config_json,"
                " metrics_json, lineage_json, input_schema_json, size_bytes, access_protected, created_at)"
                " VALUES ('v1', 'm1', 1, 'model-m1-v1', 'skops', '{}', '{}', '{}', '{}', 9, false, '2026-01-01')"
            )
        )
    db.migrate()
    with db.engine.begin() as conn:
        row = conn.execute(
            text("SELECT artifact_id, artifact_version, artifact_layout FROM model_versions WHERE id = 'v1'")
        ).one()
        assert tuple(row) == ("model-m1-v1", None, "raw")
        indexes = conn.execute(text("PRAGMA index_list('model_versions')")).all()
        assert "ix_model_versions_artifact_id" in {i[1] for i in indexes}
    db.dispose()
