"""federations, participants, rounds and accepted updates

Revision ID: 0004_federation
Revises: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_federation"
down_revision = "0001"
branch_labels = None
depends_on = None

_BIGINT = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "federations",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("owner_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("failure_reason", sa.Text(), nullable=True),
        sa.Column("config_json", sa.Text(), nullable=False),
        sa.Column("spec_json", sa.Text(), nullable=False),
        sa.Column("strategy", sa.String(32), nullable=False),
        sa.Column("rounds", sa.Integer(), nullable=False),
        sa.Column("min_clients", sa.Integer(), nullable=False),
        sa.Column("target_clients", sa.Integer(), nullable=False),
        sa.Column("round_timeout_s", sa.Float(), nullable=False),
        sa.Column("max_round_attempts", sa.Integer(), nullable=False),
        sa.Column("current_round", sa.Integer(), nullable=False),
        sa.Column("completed_rounds", sa.Integer(), nullable=False),
        sa.Column("global_version", sa.Integer(), nullable=False),
        sa.Column("sealing_public_key", sa.String(64), nullable=False),
        sa.Column("signing_public_key", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.Column("finished_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("owner_id", "name", name="uq_federations_owner_name"),
    )
    op.create_index("ix_federations_owner_id", "federations", ["owner_id"])
    op.create_table(
        "fl_participants",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "federation_id",
            sa.String(36),
            sa.ForeignKey("federations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("credential_hash", sa.String(64), nullable=False),
        sa.Column("credential_prefix", sa.String(16), nullable=False),
        sa.Column("signing_public_key", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("registered_at", sa.DateTime(), nullable=True),
        sa.Column("last_seen_at", sa.DateTime(), nullable=True),
        sa.Column("revoked_at", sa.DateTime(), nullable=True),
        sa.UniqueConstraint("federation_id", "name", name="uq_fl_participants_federation_name"),
        sa.UniqueConstraint("credential_hash", name="uq_fl_participants_credential_hash"),
    )
    op.create_index("ix_fl_participants_federation_id", "fl_participants", ["federation_id"])
    op.create_table(
        "fl_rounds",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "federation_id",
            sa.String(36),
            sa.ForeignKey("federations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("opened_at", sa.DateTime(), nullable=False),
        sa.Column("deadline", sa.DateTime(), nullable=True),
        sa.Column("closed_at", sa.DateTime(), nullable=True),
        sa.Column("close_reason", sa.String(32), nullable=True),
        sa.Column("base_version", sa.Integer(), nullable=False),
        sa.Column("result_version", sa.Integer(), nullable=True),
        sa.Column("strategy_state_version", sa.Integer(), nullable=True),
        sa.Column("model_version", sa.Integer(), nullable=True),
        sa.Column("accepted", sa.Integer(), nullable=False),
        sa.Column("num_samples", _BIGINT, nullable=False),
        sa.Column("metrics_json", sa.Text(), nullable=False),
        sa.UniqueConstraint("federation_id", "number", name="uq_fl_rounds_federation_number"),
    )
    op.create_index("ix_fl_rounds_federation_id", "fl_rounds", ["federation_id"])
    op.create_index("ix_fl_rounds_state_deadline", "fl_rounds", ["state", "deadline"])
    op.create_table(
        "fl_updates",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column(
            "federation_id",
            sa.String(36),
            sa.ForeignKey("federations.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column(
            "participant_id",
            sa.String(36),
            sa.ForeignKey("fl_participants.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("nonce", sa.String(32), nullable=False),
        sa.Column("artifact_id", sa.String(100), nullable=False),
        sa.Column("num_samples", _BIGINT, nullable=False),
        sa.Column("size_bytes", _BIGINT, nullable=False),
        sa.Column("metrics_json", sa.Text(), nullable=False),
        sa.Column("accepted_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint(
            "federation_id", "round", "participant_id", name="uq_fl_updates_round_participant"
        ),
        sa.UniqueConstraint("nonce", name="uq_fl_updates_nonce"),
    )
    op.create_index("ix_fl_updates_federation_id", "fl_updates", ["federation_id"])


def downgrade() -> None:
    op.drop_table("fl_updates")
    op.drop_table("fl_rounds")
    op.drop_table("fl_participants")
    op.drop_table("federations")
