"""model versions may share one vault version with the job or federation that produced them

Old rows keep their own artifacts (``artifact_version`` NULL, layout ``raw``) and read exactly as
before; only versions registered from now on share bytes. No data is moved: a migration cannot open
the vault (it holds no master key), and the old copies are still each row's only reference.
Downgrading after versions were registered this way would make them read the wrong bytes.

Revision ID: 0007_h35
Revises: 0006_h20
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_h35"
down_revision = "0006_h20"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.add_column(sa.Column("artifact_version", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("artifact_layout", sa.String(16), nullable=False, server_default="raw"))
        batch.create_index("ix_model_versions_artifact_id", ["artifact_id"])


def downgrade() -> None:
    with op.batch_alter_table("model_versions") as batch:
        batch.drop_index("ix_model_versions_artifact_id")
        batch.drop_column("artifact_layout")
        batch.drop_column("artifact_version")
