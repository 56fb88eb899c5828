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
from sqlalchemy import Row, select

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.principal import Principal
from bastion.catalog.access import AccessCodeGuard
from bastion.data.sandbox import ParseLimits, Sandbox
from bastion.errors import Invalid, NotFound
from bastion.projects.policy import Action, ScopedList, authorize
from bastion.projects.policy import target as policy_target
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.paging import Keyset
from bastion.store.tables import DatasetRecord
from bastion.vault.store import VaultStore

PSEUDONYM_KEY_ARTIFACT = "pseudonym-key"
DATASETS = Keyset(DatasetRecord.created_at, DatasetRecord.id, descending=False)
_LIST = ScopedList(
    select(DatasetRecord.__table__).where(DatasetRecord.deleted_at.is_(None)),
    DatasetRecord.project_id,
    DATASETS,
)


def pseudonym_key(master_secret: bytes) -> bytes:
    """A key for keyed-HMAC pseudonyms, separate from every encryption key."""
    return HKDF(hashes.SHA256(), 32, salt=b"bastion-dataset-pseudonyms", info=b"v1").derive(master_secret)


def stored_pseudonym_key(vault: VaultStore, master_secret: bytes) -> bytes:
    """The pseudonym key kept in the vault, so a master-key change (``vault rekey``) keeps every
    pseudonym stable; on first use it is derived as before and stored."""
    try:
        return vault.get_bytes(PSEUDONYM_KEY_ARTIFACT)
    except NotFound:
        key = pseudonym_key(master_secret)
        vault.put_bytes(PSEUDONYM_KEY_ARTIFACT, key, meta={"kind": "pseudonym-key"})
        return key


# Column facts that hold no value of the data: the only statistics the plain database keeps.
PLAIN_STAT_KEYS = ("name", "dtype", "non_null", "nulls", "distinct", "distinct_capped")


def meta_artifact(dataset_artifact: str) -> str:
    """The vault artifact holding the statistics that carry values (min/max/mean, top values)."""
    return f"{dataset_artifact}-meta"


def _view(row: DatasetRecord | Row[Any], schema: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "id": row.id,
        "project_id": row.project_id,
        "name": row.name,
        "format": row.source_format,
        "size_bytes": row.size_bytes,
        "rows": row.rows,
        "columns": row.columns,
        "created_at": row.created_at,
        "access_protected": bool(row.access_protected),
        "schema": schema if schema is not None else row.schema_json,
        "deidentification": row.deid_json,
    }


class DatasetCatalog:
    def __init__(
        self,
        db: Database,
        vault: VaultStore,
        audit: AuditLog,
        hmac_key: bytes,
        max_bytes: int,
        guard: AccessCodeGuard,
        *,
        limits: ParseLimits | None = None,
        quota_bytes: int | None = None,
    ) -> None:
        self.guard = guard
        self.db = db
        self.vault = vault
        self.audit = audit
        self.hmac_key = hmac_key
        self.max_bytes = max_bytes
        self.sandbox = Sandbox(limits or ParseLimits(max_bytes=max_bytes))
        self.quota_bytes = quota_bytes

    def _check_quota(self, principal: Principal, incoming: int) -> None:
        """Per-user storage quota over everything kept (bastion.catalog.quota)."""
        from bastion.catalog import quota

        quota.check(self.db, principal.user_id, self.quota_bytes, incoming)

    def upload(
        self, principal: Principal, data: bytes, *, name: str, policy: str | None, project: str | None = None
    ) -> dict[str, Any]:
        """Parse and de-identify in the sandbox process (bounded), then store; see bastion.data.sandbox."""
        if not name or len(name) > 200:
            raise Invalid("dataset name must be 1-200 characters")
        self._check_quota(principal, len(data))
        with self.db.session() as s:
            project_id = policy_target(s, principal, project)  # refuse before the parsing work
        prepared = self.sandbox.run(data, policy=policy, hmac_key=self.hmac_key)
        fmt = prepared.fmt
        stats = prepared.schema
        plain = [{k: s[k] for k in PLAIN_STAT_KEYS if k in s} for s in stats]
        record = DatasetRecord(
            owner_id=principal.user_id,
            project_id=project_id,
            name=name,
            source_format=fmt,
            size_bytes=len(data),
            rows=prepared.rows,
            columns=prepared.columns,
            schema_json=plain,
            deid_json=prepared.actions,
            artifact_id="",
        )
        with self.db.session() as s:
            s.add(record)
            s.flush()
            record.artifact_id = f"dataset-{record.id}"
            self.vault.put_bytes(
                record.artifact_id, prepared.parquet, meta={"kind": "dataset", "format": "parquet"}
            )
            self.vault.put_bytes(
                meta_artifact(record.artifact_id),
                json.dumps({"schema": stats}).encode(),
                meta={"kind": "dataset-meta", "format": "json"},
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
            return _view(record, stats)

    def _owned(
        self,
        principal: Principal | str,
        dataset_id: str,
        *,
        deleted: bool = False,
        action: Action = Action.READ,
    ) -> DatasetRecord:
        """A dataset the caller may ``action`` under the project policy (``principal`` may be a user
        id, for jobs; a deleted one only when ``deleted``); anything else is not found."""
        with self.db.session() as s:
            row = s.get(DatasetRecord, dataset_id) if len(dataset_id) <= 36 else None
            if row is None or (row.deleted_at and not deleted):
                raise NotFound("dataset not found")
            authorize(
                s, principal, row.project_id, action, NotFound("dataset not found"), owner_id=row.owner_id
            )
        return row

    def list_for(
        self, principal: Principal, limit: int = 100, cursor: str | None = None, project: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The datasets of the caller's projects (or of one), oldest first, and the next page's cursor."""
        # Plain rows on a bare connection (no ORM objects, no unit of work): this is the hot list.
        with self.db.reader() as conn:
            rows = _LIST.rows(conn, principal, project, cursor, limit)
        return [_view(r) for r in rows[:limit]], DATASETS.next_cursor(rows, limit)

    def get(self, principal: Principal, dataset_id: str) -> dict[str, Any]:
        """The record with its full statistics, read from the vault (the database keeps none)."""
        row = self._owned(principal, dataset_id)
        try:
            stored = json.loads(self.vault.get_bytes(meta_artifact(row.artifact_id)))
        except NotFound:  # uploaded before statistics moved to the vault
            return _view(row)
        return _view(row, stored["schema"])

    def delete(self, principal: Principal, dataset_id: str) -> datetime:
        """Delete the payload; the row stays as a tombstone so a repeated DELETE answers alike."""
        row = self._owned(principal, dataset_id, deleted=True, action=Action.WRITE)
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
        with contextlib.suppress(NotFound):
            self.vault.delete(meta_artifact(row.artifact_id))
        return now

    def load_frame(self, principal: Principal | str, dataset_id: str, access_code: str | None = None) -> Any:
        """The de-identified frame, for its owner (``principal`` may be a user id, for jobs); a
        protected dataset needs its code, and only a caller (a Principal) can give one."""
        import pandas as pd

        row = self._owned(principal, dataset_id)
        if row.source_format == "jsonl":
            raise Invalid("this dataset is a fine-tuning (JSONL) file, not a table", code="not_a_table")
        if not row.access_protected or isinstance(principal, str):
            return pd.read_parquet(io.BytesIO(self.vault.get_bytes(row.artifact_id)))
        raw = self.guard.run(
            principal,
            row.artifact_id,
            lambda: self.vault.get_bytes(row.artifact_id, access_code=access_code),
            has_code=access_code is not None,
        )
        return pd.read_parquet(io.BytesIO(raw))

    def preview(
        self, principal: Principal, dataset_id: str, limit: int, access_code: str | None = None
    ) -> dict[str, Any]:
        """The first ``limit`` stored (de-identified) rows with the per-column report: what a person
        reviews before the data is used. Values are exactly what training would read."""
        frame = self.load_frame(principal, dataset_id, access_code)
        head = frame.head(limit)
        rows = json.loads(head.to_json(orient="records", date_format="iso", default_handler=str))
        view = self.get(principal, dataset_id)
        return {
            "id": dataset_id,
            "rows_total": view["rows"],
            "columns": [str(c) for c in frame.columns],
            "rows": rows,
            "deidentification": view["deidentification"],
        }

    def set_access_code(
        self, principal: Principal, dataset_id: str, *, current: str | None, new: str | None
    ) -> dict[str, Any]:
        """Set, change or remove the dataset's access code (owner only; audited; lockout on wrong codes)."""
        row = self._owned(principal, dataset_id, action=Action.WRITE)
        self.guard.change(
            principal, self.vault, "dataset", row.id, [row.artifact_id], current=current, new=new
        )
        with self.db.session() as s:
            obj = s.get(DatasetRecord, row.id)
            if obj is not None:
                obj.access_protected = new is not None
        return {"dataset_id": row.id, "access_protected": new is not None}
