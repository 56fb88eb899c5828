"""training jobs, their events and logs, workers, prices, download keys

Revision ID: 0002_jobs
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0002_jobs"
down_revision = "0001"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "training_jobs",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("owner_id", sa.String(length=36), nullable=False),
        sa.Column("model_type", sa.String(length=64), nullable=False),
        sa.Column("dataset_source", sa.String(length=64), nullable=False),
        sa.Column("dataset_id", sa.String(length=64), nullable=True),
        sa.Column("target", sa.String(length=200), nullable=True),
        sa.Column("dataset_ref", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), nullable=False),
        sa.Column("resource_profile", sa.String(length=32), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("max_runtime_seconds", sa.Float(), nullable=False),
        sa.Column("estimated_seconds", sa.Float(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("progress", sa.Float(), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column("history", sa.Text(), nullable=False),
        sa.Column("results", sa.Text(), nullable=True),
        sa.Column("error_message", sa.Text(), nullable=True),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("worker_id", sa.String(length=128), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=True),
        sa.Column("completed_at", sa.DateTime(), nullable=True),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("log_lines", sa.Integer(), nullable=False),
        sa.Column("model_artifact_id", sa.String(length=128), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("model_format", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["owner_id"], ["users.id"], name=op.f("fk_training_jobs_owner_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_training_jobs")),
    )
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_training_jobs_owner_id"), ["owner_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_training_jobs_worker_id"), ["worker_id"], unique=False)
        batch_op.create_index("ix_training_jobs_state_created", ["state", "created_at"], unique=False)

    for table in ("job_events", "job_logs"):
        extra = (
            [
                sa.Column("kind", sa.String(length=16), nullable=False),
                sa.Column("data", sa.Text(), nullable=False),
            ]
            if table == "job_events"
            else [
                sa.Column("stream", sa.String(length=8), nullable=False),
                sa.Column("line", sa.Text(), nullable=False),
            ]
        )
        op.create_table(
            table,
            sa.Column("id", _BIGINT, autoincrement=True, nullable=False),
            sa.Column("job_id", sa.String(length=36), nullable=False),
            sa.Column("ts", sa.DateTime(), nullable=False),
            *extra,
            sa.ForeignKeyConstraint(
                ["job_id"],
                ["training_jobs.id"],
                name=op.f(f"fk_{table}_job_id_training_jobs"),
                ondelete="CASCADE",
            ),
            sa.PrimaryKeyConstraint("id", name=op.f(f"pk_{table}")),
        )
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(batch_op.f(f"ix_{table}_job_id"), ["job_id"], unique=False)

    op.create_table(
        "job_workers",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("hostname", sa.String(length=255), nullable=False),
        sa.Column("host_key", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("max_concurrent", sa.Integer(), nullable=False),
        sa.Column("started_at", sa.DateTime(), nullable=False),
        sa.Column("heartbeat_at", sa.DateTime(), nullable=False),
        sa.Column("stopped_at", sa.DateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_workers")),
    )
    op.create_table(
        "training_prices",
        sa.Column("profile", sa.String(length=32), nullable=False),
        sa.Column("hourly_cost", sa.Float(), nullable=False),
        sa.Column("currency", sa.String(length=8), nullable=False),
        sa.Column("speedup", sa.Float(), nullable=False),
        sa.Column("description", sa.String(length=200), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("updated_by", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("profile", name=op.f("pk_training_prices")),
    )
    op.create_table(
        "download_keys",
        sa.Column("user_id", sa.String(length=36), nullable=False),
        sa.Column("public_key", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["user_id"], ["users.id"], name=op.f("fk_download_keys_user_id_users"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_download_keys")),
    )


def downgrade() -> None:
    op.drop_table("download_keys")
    op.drop_table("training_prices")
    op.drop_table("job_workers")
    for table in ("job_logs", "job_events"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(batch_op.f(f"ix_{table}_job_id"))
        op.drop_table(table)
    with op.batch_alter_table("training_jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_training_jobs_state_created")
        batch_op.drop_index(batch_op.f("ix_training_jobs_worker_id"))
        batch_op.drop_index(batch_op.f("ix_training_jobs_owner_id"))
    op.drop_table("training_jobs")
