"""The audit chain detects edits, deletions and reordering, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor

from sqlalchemy import delete, select, update

from bastion.audit import AuditRecord
from bastion.audit.verify import verify_chain
from bastion.context import Context
from bastion.store.tables import AuditEvent, AuditHead


def fill(ctx: Context, n: int = 6) -> None:
    for i in range(n):
        ctx.audit.append(AuditRecord("test.event", actor="t", target_id=str(i), details={"i": i}))


def test_clean_chain_verifies(ctx: Context) -> None:
    fill(ctx)
    result = verify_chain(ctx.db)
    assert result.ok and result.checked == 6


def test_edited_row_is_named(ctx: Context) -> None:
    fill(ctx)
    with ctx.db.session() as s:
        s.execute(update(AuditEvent).where(AuditEvent.seq == 3).values(outcome="denied"))
    result = verify_chain(ctx.db)
    assert not result.ok and result.first_bad_seq == 3


def test_edit_that_recomputes_its_own_hash_breaks_the_next_link(ctx: Context) -> None:
    from bastion.audit.canonical import HASHED_FIELDS, row_hash

    fill(ctx)
    with ctx.db.session() as s:
        row = s.get(AuditEvent, 4)
        assert row is not None
        row.details = json.dumps({"i": 999})
        row.hash = row_hash(row.prev_hash, {f: getattr(row, f) for f in HASHED_FIELDS})
    result = verify_chain(ctx.db)
    assert not result.ok and result.first_bad_seq == 5


def test_deleted_row_is_named(ctx: Context) -> None:
    fill(ctx)
    with ctx.db.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 2))
    result = verify_chain(ctx.db)
    assert not result.ok and result.first_bad_seq == 2


def test_deleted_tail_is_detected(ctx: Context) -> None:
    fill(ctx)
    with ctx.db.session() as s:
        s.execute(delete(AuditEvent).where(AuditEvent.seq == 6))
    result = verify_chain(ctx.db)
    assert not result.ok and result.first_bad_seq == 6


def test_reordered_rows_are_detected(ctx: Context) -> None:
    fill(ctx)
    with ctx.db.session() as s:
        a, b = s.get(AuditEvent, 2), s.get(AuditEvent, 3)
        assert a is not None and b is not None
        fields = ("ts", "details", "target_id", "prev_hash", "hash")
        va, vb = {f: getattr(a, f) for f in fields}, {f: getattr(b, f) for f in fields}
        for f in fields:
            setattr(a, f, vb[f])
            setattr(b, f, va[f])
    result = verify_chain(ctx.db)
    assert not result.ok and result.first_bad_seq == 2


def test_concurrent_appends_never_fork_the_chain(ctx: Context) -> None:
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: ctx.audit.append(AuditRecord("race", details={"i": i})), range(80)))
    result = verify_chain(ctx.db)
    assert result.ok and result.checked == 80
    with ctx.db.session() as s:
        head = s.get(AuditHead, 1)
        assert head is not None and head.seq == 80
        seqs = s.scalars(select(AuditEvent.seq).order_by(AuditEvent.seq)).all()
    assert seqs == list(range(1, 81))


def test_secrets_are_scrubbed_from_details(ctx: Context) -> None:
    ctx.audit.append(
        AuditRecord("t", details={"password": "hunter2", "nested": {"api_key": "bst_x"}, "ok": 1})
    )
    with ctx.db.session() as s:
        details = s.scalars(select(AuditEvent.details)).one()
    assert "hunter2" not in details and "bst_x" not in details and '"ok":1' in details
