"""Uploaded datasets: parsed, de-identified, described, then stored encrypted as Parquet.

Nothing identifying is stored: de-identification runs on the parsed frame before the vault sees a
byte, and the statistics are computed on the de-identified frame.
"""

from __future__ import annotations

import io
import json
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import func, select

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.principal import Principal
from bastion.data.sandbox import ParseLimits, Sandbox
from bastion.errors import Invalid, NotFound, PayloadTooLarge
from bastion.store import Database
from bastion.store.models import DatasetRecord
from bastion.vault.store import VaultStore


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
        "created_at": row.created_at.isoformat(),
        "schema": json.loads(row.schema_json),
        "deidentification": json.loads(row.deid_json),
    }


class DatasetCatalog:
    def __init__(
        self,
        db: Database,
        vault: VaultStore,
        audit: AuditLog,
        hmac_key: bytes,
        max_bytes: int,
        *,
        limits: ParseLimits | None = None,
        quota_bytes: int | None = None,
    ) -> None:
        self.db = db
        self.vault = vault
        self.audit = audit
        self.hmac_key = hmac_key
        self.max_bytes = max_bytes
        self.sandbox = Sandbox(limits or ParseLimits(max_bytes=max_bytes))
        self.quota_bytes = quota_bytes

    def _check_quota(self, principal: Principal, incoming: int) -> None:
        """Per-user storage quota over the uploads kept (``BASTION_USER_STORAGE_QUOTA_BYTES``)."""
        if self.quota_bytes is None:
            return
        with self.db.session() as s:
            used = s.scalar(
                select(func.coalesce(func.sum(DatasetRecord.size_bytes), 0)).where(
                    DatasetRecord.owner_id == principal.user_id
                )
            )
        if int(used or 0) + incoming > self.quota_bytes:
            raise PayloadTooLarge(
                f"storage quota exceeded: {int(used or 0)} of {self.quota_bytes} bytes used",
                code="storage_quota_exceeded",
                used_bytes=int(used or 0),
                quota_bytes=self.quota_bytes,
            )

    def upload(self, principal: Principal, data: bytes, *, name: str, policy: str | None) -> dict[str, Any]:
        """Parse and de-identify in the sandbox process (bounded), then store; see bastion.data.sandbox."""
        if not name or len(name) > 200:
            raise Invalid("dataset name must be 1-200 characters")
        self._check_quota(principal, len(data))
        prepared = self.sandbox.run(data, policy=policy, hmac_key=self.hmac_key)
        fmt = prepared.fmt
        record = DatasetRecord(
            owner_id=principal.user_id,
            name=name,
            source_format=fmt,
            size_bytes=len(data),
            rows=prepared.rows,
            columns=prepared.columns,
            schema_json=json.dumps(prepared.schema),
            deid_json=json.dumps(prepared.actions),
            artifact_id="",
        )
        with self.db.session() as s:
            s.add(record)
            s.flush()
            record.artifact_id = f"dataset-{record.id}"
            self.vault.put_bytes(
                record.artifact_id, prepared.parquet, meta={"kind": "dataset", "format": "parquet"}
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
                        "deid_actions": prepared.deid_actions,
                    },
                ),
                s,
            )
            return _view(record)

    def _owned(self, principal: Principal, dataset_id: str) -> DatasetRecord:
        with self.db.session() as s:
            row = s.get(DatasetRecord, dataset_id)
        if row is None or row.owner_id != principal.user_id:
            raise NotFound("dataset not found")
        return row

    def list_for(self, principal: Principal) -> list[dict[str, Any]]:
        with self.db.session() as s:
            rows = s.scalars(
                select(DatasetRecord)
                .where(DatasetRecord.owner_id == principal.user_id)
                .order_by(DatasetRecord.created_at)
            ).all()
        return [_view(r) for r in rows]

    def get(self, principal: Principal, dataset_id: str) -> dict[str, Any]:
        return _view(self._owned(principal, dataset_id))

    def delete(self, principal: Principal, dataset_id: str) -> None:
        row = self._owned(principal, dataset_id)
        with self.db.session() as s:
            obj = s.get(DatasetRecord, row.id)
            if obj is not None:
                s.delete(obj)
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
        self.vault.delete(row.artifact_id)

    def load_frame(self, principal: Principal | str, dataset_id: str) -> Any:
        """The de-identified frame, for a training job of the owner (``principal`` may be a user id)."""
        import pandas as pd

        owner_id = principal if isinstance(principal, str) else principal.user_id
        with self.db.session() as s:
            row = s.get(DatasetRecord, dataset_id)
        if row is None or row.owner_id != owner_id:
            raise NotFound("dataset not found")
        return pd.read_parquet(io.BytesIO(self.vault.get_bytes(row.artifact_id)))
