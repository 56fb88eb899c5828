"""idempotency records; dataset tombstones (a repeated DELETE answers like the first)

Revision ID: 0005_h15
Revises: 0004_federation
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_h15"
down_revision = "0004_federation"
branch_labels = None
depends_on = "0003_catalog"


def upgrade() -> None:
    op.create_table(
        "idempotency_records",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("operation", sa.String(200), nullable=False),
        sa.Column("key", sa.String(255), nullable=False),
        sa.Column("request_hash", sa.String(64), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=False),
        sa.Column("response_json", sa.Text(), nullable=False),
        sa.Column("location", sa.String(500), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("owner_id", "operation", "key", name="uq_idempotency_owner_op_key"),
    )
    op.create_index("ix_idempotency_records_owner_id", "idempotency_records", ["owner_id"])
    op.create_index("ix_idempotency_records_created_at", "idempotency_records", ["created_at"])
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("deleted_at", sa.DateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("deleted_at")
    op.drop_table("idempotency_records")
