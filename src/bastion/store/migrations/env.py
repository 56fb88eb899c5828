"""Alembic environment: runs on the connection Database.migrate() hands over."""

from alembic import context

from bastion.store import tables  # noqa: F401  (registers tables)
from bastion.store.base import Base

config = context.config
connection = config.attributes.get("connection")
if connection is None:
    raise RuntimeError("run migrations through bastion.store.Database.migrate()")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
