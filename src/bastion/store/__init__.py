"""Persistence: SQLAlchemy 2 tables, sessions and Alembic migrations (SQLite or PostgreSQL)."""

from bastion.store.db import Database

__all__ = ["Database"]
