"""projects and members; a personal project per existing user owns that user's existing objects

Revision ID: 0006_h20
Revises: 0005_h14
"""

import uuid
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0006_h20"
down_revision = "0005_h14"
branch_labels = None
depends_on = ("0002_jobs", "0003_catalog", "0004_federation", "0005_h18")

OWNED = ("datasets", "models", "training_jobs", "federations")


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(36), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("domain", sa.String(64), nullable=False),
        sa.Column("subdomain", sa.String(64), nullable=True),
        sa.Column(
            "personal_of",
            sa.String(36),
            sa.ForeignKey("users.id", ondelete="CASCADE"),
            nullable=True,
            unique=True,
        ),
        sa.Column("created_by", sa.String(36), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
    )
    op.create_table(
        "project_members",
        sa.Column(
            "project_id", sa.String(36), sa.ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("added_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_project_members_user_id", "project_members", ["user_id"])
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("project_id", sa.String(36), nullable=True))
            batch.create_foreign_key(
                f"fk_{table}_project_id_projects", "projects", ["project_id"], ["id"], ondelete="CASCADE"
            )
            # Keyset pages of one project's objects: one range scan (created_at, id order).
            batch.create_index(f"ix_{table}_project_created", ["project_id", "created_at", "id"])
    _personal_projects()
    _federation_sharing()


def _federation_sharing() -> None:
    """Federations across users: invited guests, who enrolled each site, and what guests may see."""
    op.create_table(
        "fl_guests",
        sa.Column(
            "federation_id",
            sa.String(36),
            sa.ForeignKey("federations.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("user_id", sa.String(36), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("invited_by", sa.String(36), sa.ForeignKey("users.id", ondelete="SET NULL"), nullable=True),
        sa.Column("invited_at", sa.DateTime(), nullable=False),
    )
    op.create_index("ix_fl_guests_user_id", "fl_guests", ["user_id"])
    with op.batch_alter_table("federations") as batch:
        batch.add_column(sa.Column("visibility", sa.String(16), nullable=False, server_default="aggregates"))
    with op.batch_alter_table("fl_participants") as batch:
        batch.add_column(sa.Column("enrolled_by", sa.String(36), nullable=True))
        batch.create_foreign_key(
            "fk_fl_participants_enrolled_by_users", "users", ["enrolled_by"], ["id"], ondelete="SET NULL"
        )
    op.execute(
        "UPDATE fl_participants SET enrolled_by ="
        " (SELECT f.owner_id FROM federations f WHERE f.id = fl_participants.federation_id)"
    )


def _personal_projects() -> None:
    """Every existing user gets a personal project (owner) that takes over their existing objects."""
    conn = op.get_bind()
    now = datetime.now(UTC).replace(tzinfo=None)
    users = conn.execute(sa.text("SELECT id, username FROM users")).all()
    for user_id, username in users:
        pid = str(uuid.uuid4())
        conn.execute(
            sa.text(
                "INSERT INTO projects (id, name, domain, subdomain, personal_of, created_by, created_at, updated_at)"
                " VALUES (:id, :name, 'personal', NULL, :uid, :uid, :now, :now)"
            ),
            {"id": pid, "name": username, "uid": user_id, "now": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO project_members (project_id, user_id, role, added_at) VALUES (:p, :u, 'owner', :now)"
            ),
            {"p": pid, "u": user_id, "now": now},
        )
    projects = sa.table("projects", sa.column("id"), sa.column("personal_of"))
    for name in OWNED:
        table = sa.table(name, sa.column("project_id"), sa.column("owner_id"))
        personal = (
            sa.select(projects.c.id).where(projects.c.personal_of == table.c.owner_id).scalar_subquery()
        )
        conn.execute(sa.update(table).where(table.c.project_id.is_(None)).values(project_id=personal))


def downgrade() -> None:
    with op.batch_alter_table("fl_participants") as batch:
        batch.drop_constraint("fk_fl_participants_enrolled_by_users", type_="foreignkey")
        batch.drop_column("enrolled_by")
    with op.batch_alter_table("federations") as batch:
        batch.drop_column("visibility")
    op.drop_index("ix_fl_guests_user_id", "fl_guests")
    op.drop_table("fl_guests")
    for table in OWNED:
        with op.batch_alter_table(table) as batch:
            batch.drop_index(f"ix_{table}_project_created")
            batch.drop_constraint(f"fk_{table}_project_id_projects", type_="foreignkey")
            batch.drop_column("project_id")
    op.drop_index("ix_project_members_user_id", "project_members")
    op.drop_table("project_members")
    op.drop_table("projects")
