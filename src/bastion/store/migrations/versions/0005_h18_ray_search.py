"""job resources, search specs, and the Optuna journal of hyper-parameter searches

Revision ID: 0005_h18
Revises: 0004_federation
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_h18"
down_revision = "0004_federation"
branch_labels = None
# training_jobs comes from 0002 (a sibling branch of 0004 until the lead chains them).
depends_on = "0002_jobs"

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("resources", sa.Text(), nullable=True))
        batch.add_column(sa.Column("search_spec", sa.Text(), nullable=True))
    op.create_table(
        "search_journal",
        sa.Column("id", _BIGINT, primary_key=True, autoincrement=True),
        sa.Column("study", sa.String(64), nullable=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("entry", sa.Text(), nullable=False),
        sa.UniqueConstraint("study", "seq", name="uq_search_journal_study_seq"),
    )


def downgrade() -> None:
    op.drop_table("search_journal")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("search_spec")
        batch.drop_column("resources")
