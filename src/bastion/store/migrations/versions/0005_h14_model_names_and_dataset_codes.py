"""named models for jobs, access codes on datasets, registered sample counts of federation sites

Revision ID: 0005_h14
Revises: 0004_federation
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_h14"
down_revision = "0004_federation"
branch_labels = None
# Alters tables of the jobs and catalog branches, which the lead chains before this one at merge.
depends_on = ("0002_jobs", "0003_catalog")


def upgrade() -> None:
    with op.batch_alter_table("fl_participants") as batch:
        batch.add_column(sa.Column("registered_samples", sa.Integer(), nullable=True))
    with op.batch_alter_table("training_jobs") as batch:
        batch.add_column(sa.Column("model_name", sa.String(200), nullable=True))
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(
            sa.Column("access_protected", sa.Boolean(), nullable=False, server_default=sa.false())
        )


def downgrade() -> None:
    with op.batch_alter_table("fl_participants") as batch:
        batch.drop_column("registered_samples")
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("access_protected")
    with op.batch_alter_table("training_jobs") as batch:
        batch.drop_column("model_name")
