"""Append-only, hash-chained audit log."""

from bastion.audit.log import AuditLog, AuditRecord

__all__ = ["AuditLog", "AuditRecord"]
