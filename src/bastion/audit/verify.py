"""Walking the chain: the first row whose link or content does not match is reported."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import select

from bastion.audit.canonical import GENESIS, HASHED_FIELDS, row_hash
from bastion.store import Database
from bastion.store.tables import AuditEvent, AuditHead


@dataclass(frozen=True)
class VerifyResult:
    ok: bool
    checked: int
    first_bad_seq: int | None = None
    reason: str | None = None


def verify_chain(db: Database, batch: int = 5000) -> VerifyResult:
    prev_hash, expected_seq, checked = GENESIS, 1, 0
    with db.session() as s:
        head = s.get(AuditHead, 1)
        last = 0
        while True:
            rows = s.scalars(
                select(AuditEvent).where(AuditEvent.seq > last).order_by(AuditEvent.seq).limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                if row.seq != expected_seq:
                    return VerifyResult(False, checked, expected_seq, f"row {expected_seq} is missing")
                if row.prev_hash != prev_hash:
                    return VerifyResult(False, checked, row.seq, "link to the previous row is broken")
                fields = {name: getattr(row, name) for name in HASHED_FIELDS}
                if row_hash(prev_hash, fields) != row.hash:
                    return VerifyResult(False, checked, row.seq, "row content does not match its hash")
                prev_hash, expected_seq, checked = row.hash, expected_seq + 1, checked + 1
                last = row.seq
            s.expunge_all()
        if head is None:
            return VerifyResult(False, checked, None, "chain head is missing")
        if head.seq != checked or head.hash != prev_hash:
            return VerifyResult(
                False,
                checked,
                checked + 1 if head.seq > checked else head.seq,
                f"chain head says {head.seq} rows but {checked} rows chain correctly (rows deleted at the end?)",
            )
    return VerifyResult(True, checked)
