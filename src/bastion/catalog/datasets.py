"""Uploaded datasets: parsed, de-identified, described, then stored encrypted as Parquet.

Nothing identifying is stored: de-identification runs on the parsed frame before the vault sees a
byte, and the statistics are computed on the de-identified frame.
"""

from __future__ import annotations

import contextlib
import io
import json
from datetime import datetime
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import select

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.principal import Principal
from bastion.errors import Invalid, NotFound
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.models import DatasetRecord
from bastion.store.paging import Keyset
from bastion.vault.store import VaultStore

DATASETS = Keyset(DatasetRecord.created_at, DatasetRecord.id, descending=False)


def pseudonym_key(master_secret: bytes) -> bytes:
    """A key for keyed-HMAC pseudonyms, separate from every encryption key."""
    return HKDF(hashes.SHA256(), 32, salt=b"bastion-dataset-pseudonyms", info=b"v1").derive(master_secret)


def _view(row: DatasetRecord) -> dict[str, Any]:
    return {
        "id": row.id,
        "name": row.name,
        "format": row.source_format,
        "size_bytes": row.size_bytes,
        "rows": row.rows,
        "columns": row.columns,
        "created_at": row.created_at,
        "schema": json.loads(row.schema_json),
        "deidentification": json.loads(row.deid_json),
    }


class DatasetCatalog:
    def __init__(
        self, db: Database, vault: VaultStore, audit: AuditLog, hmac_key: bytes, max_bytes: int
    ) -> None:
        self.db = db
        self.vault = vault
        self.audit = audit
        self.hmac_key = hmac_key
        self.max_bytes = max_bytes

    def upload(self, principal: Principal, data: bytes, *, name: str, policy: str | None) -> dict[str, Any]:
        from bastion.data.deid import deidentify, hidden_value_columns, load_policy
        from bastion.data.ingest import describe, read_upload

        if not name or len(name) > 200:
            raise Invalid("dataset name must be 1-200 characters")
        parsed_policy = load_policy(policy)
        fmt, frame = read_upload(data, max_bytes=self.max_bytes)
        clean, actions = deidentify(frame, parsed_policy, hmac_key=self.hmac_key)
        if clean.shape[1] == 0:
            raise Invalid(
                "nothing is left after de-identification: every column was an identifier",
                code="empty_after_deid",
            )
        stats = describe(clean, hide_values=hidden_value_columns(actions))
        buf = io.BytesIO()
        clean.to_parquet(buf, index=False)
        record = DatasetRecord(
            owner_id=principal.user_id,
            name=name,
            source_format=fmt,
            size_bytes=len(data),
            rows=int(clean.shape[0]),
            columns=int(clean.shape[1]),
            schema_json=json.dumps([s.model_dump(mode="json") for s in stats]),
            deid_json=json.dumps([a.model_dump(mode="json") for a in actions]),
            artifact_id="",
        )
        with self.db.session() as s:
            s.add(record)
            s.flush()
            record.artifact_id = f"dataset-{record.id}"
            self.vault.put_bytes(
                record.artifact_id, buf.getvalue(), meta={"kind": "dataset", "format": "parquet"}
            )
            self.audit.append(
                AuditRecord(
                    "dataset.upload",
                    actor_id=principal.user_id,
                    actor=principal.username,
                    target_type="dataset",
                    target_id=record.id,
                    details={
                        "rows": record.rows,
                        "columns": record.columns,
                        "format": fmt,
                        "deid_actions": {a.column: a.action for a in actions if a.action != "keep"},
                    },
                ),
                s,
            )
            return _view(record)

    def _owned(self, principal: Principal, dataset_id: str, *, deleted: bool = False) -> DatasetRecord:
        """The caller's dataset (a deleted one only when ``deleted``); anyone else's is not found."""
        with self.db.session() as s:
            row = s.get(DatasetRecord, dataset_id)
        if row is None or row.owner_id != principal.user_id or (row.deleted_at and not deleted):
            raise NotFound("dataset not found")
        return row

    def list_for(
        self, principal: Principal, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The caller's datasets, oldest first, and the next page's cursor."""
        stmt = select(DatasetRecord).where(
            DatasetRecord.owner_id == principal.user_id, DatasetRecord.deleted_at.is_(None)
        )
        with self.db.session() as s:
            rows = list(s.scalars(DATASETS.apply(stmt, cursor, limit)))
        return [_view(r) for r in rows[:limit]], DATASETS.next_cursor(rows, limit)

    def get(self, principal: Principal, dataset_id: str) -> dict[str, Any]:
        return _view(self._owned(principal, dataset_id))

    def delete(self, principal: Principal, dataset_id: str) -> datetime:
        """Delete the payload; the row stays as a tombstone so a repeated DELETE answers alike."""
        row = self._owned(principal, dataset_id, deleted=True)
        if row.deleted_at is not None:
            return row.deleted_at
        now = utcnow()
        with self.db.session() as s:
            obj = s.get(DatasetRecord, row.id)
            if obj is not None:
                obj.deleted_at = now
            self.audit.append(
                AuditRecord(
                    "dataset.delete",
                    actor_id=principal.user_id,
                    actor=principal.username,
                    target_type="dataset",
                    target_id=row.id,
                ),
                s,
            )
        with contextlib.suppress(NotFound):
            self.vault.delete(row.artifact_id)
        return now

    def load_frame(self, principal: Principal | str, dataset_id: str) -> Any:
        """The de-identified frame, for a training job of the owner (``principal`` may be a user id)."""
        import pandas as pd

        owner_id = principal if isinstance(principal, str) else principal.user_id
        with self.db.session() as s:
            row = s.get(DatasetRecord, dataset_id)
        if row is None or row.owner_id != owner_id or row.deleted_at is not None:
            raise NotFound("dataset not found")
        return pd.read_parquet(io.BytesIO(self.vault.get_bytes(row.artifact_id)))
