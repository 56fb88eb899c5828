"""registered base language models (fine-tuning)

Revision ID: 0005_h12
Revises: 0004_federation
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_h12"
down_revision = "0004_federation"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "llm_base_models",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("architecture", sa.String(100), nullable=False),
        sa.Column("model_type", sa.String(64), nullable=False),
        sa.Column("parameter_count", _BIGINT, nullable=False),
        sa.Column("weights_sha256", sa.String(64), nullable=False),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(36), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("llm_base_models")
