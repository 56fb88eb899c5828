"""model names unique per project (was per owner): two projects may each hold a model "baseline"

Revision ID: 0008_h30
Revises: 0007_h35
"""

from alembic import op

revision = "0008_h30"
down_revision = "0007_h35"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Every model has a project since 0006_h20 (personal projects took over the existing rows, where
    # names were unique per owner), so no existing pair can collide.
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint("uq_models_owner_name", type_="unique")
        batch.create_unique_constraint("uq_models_project_name", ["project_id", "name"])


def downgrade() -> None:
    with op.batch_alter_table("models") as batch:
        batch.drop_constraint("uq_models_project_name", type_="unique")
        batch.create_unique_constraint("uq_models_owner_name", ["owner_id", "name"])
