"""Per-user storage quota: everything a user keeps in the vault, counted from the catalog's rows.

Counted: uploaded datasets and fine-tuning files (``datasets``), every version of the user's models
(``model_versions``, which holds trained models, published global models and LoRA adapters), and
the updates received by the user's federations that are not archived (``fl_updates``; archiving
deletes them). A version shares its bytes with the job's package or the federation's global model
(bastion.catalog.stored), so those are not counted again: each model counts once. Checked before a new upload is parsed and before a job that will store a model is
queued (``BASTION_USER_STORAGE_QUOTA_BYTES``, 413 ``storage_quota_exceeded``).
"""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bastion.errors import PayloadTooLarge
from bastion.store import Database
from bastion.store.tables import DatasetRecord, ModelRecord, ModelVersionRecord
from bastion.store.tables.federation import Federation, FederationUpdate

ARCHIVED = "archived"


def used_bytes(s: Session, user_id: str) -> dict[str, int]:
    """Bytes kept by ``user_id``, by kind."""
    datasets = s.scalar(
        select(func.coalesce(func.sum(DatasetRecord.size_bytes), 0)).where(
            DatasetRecord.owner_id == user_id, DatasetRecord.deleted_at.is_(None)
        )
    )
    models = s.scalar(
        select(func.coalesce(func.sum(ModelVersionRecord.size_bytes), 0))
        .join(ModelRecord, ModelRecord.id == ModelVersionRecord.model_id)
        .where(ModelRecord.owner_id == user_id)
    )
    updates = s.scalar(
        select(func.coalesce(func.sum(FederationUpdate.size_bytes), 0))
        .join(Federation, Federation.id == FederationUpdate.federation_id)
        .where(Federation.owner_id == user_id, Federation.state != ARCHIVED)
    )
    return {
        "datasets": int(datasets or 0),
        "models": int(models or 0),
        "federation_updates": int(updates or 0),
    }


def check(db: Database, user_id: str, quota: int | None, incoming: int) -> None:
    """Refuse (413) when what the user keeps plus ``incoming`` bytes would pass ``quota``."""
    if quota is None:
        return
    with db.session() as s:
        parts = used_bytes(s, user_id)
    used = sum(parts.values())
    if used + incoming > quota:
        raise PayloadTooLarge(
            f"storage quota exceeded: {used} of {quota} bytes used (datasets {parts['datasets']}, "
            f"models {parts['models']}, federation updates {parts['federation_updates']}); "
            "delete something to make room",
            code="storage_quota_exceeded",
            used_bytes=used,
            quota_bytes=quota,
            **{f"{k}_bytes": v for k, v in parts.items()},
        )
