"""Fine-tuning files: JSONL uploads, validated, scrubbed and token-counted before one vault write.

They are datasets of the one catalog (``DatasetRecord`` with format ``jsonl``); what the record keeps
in plaintext is numbers only: the shape, token statistics and how many PHI spans of each kind the
scrubber replaced. The text itself is in the vault, already scrubbed.
"""

from __future__ import annotations

from typing import Any, Literal

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.principal import Principal
from bastion.errors import Invalid, NotFound, PayloadTooLarge
from bastion.projects import policy as project_policy
from bastion.store import Database
from bastion.store.tables import DatasetRecord
from bastion.vault.store import VaultStore

FORMAT = "jsonl"
DEFAULT_MAX_TOKENS = 4096
ScrubMode = Literal["placeholder", "surrogate"]


def file_view(row: DatasetRecord) -> dict[str, Any]:
    stats = row.schema_json
    return {
        "id": row.id,
        "object": "file",
        "purpose": "fine-tune",
        "filename": row.name,
        "bytes": row.size_bytes,
        "created_at": int(row.created_at.timestamp()),
        "shape": stats.get("shape"),
        "base_model": stats.get("base_model"),
        "statistics": stats.get("tokens"),
        "deidentification": row.deid_json,
        "project_id": row.project_id,
    }


class FineTuneFiles:
    def __init__(
        self,
        db: Database,
        vault: VaultStore,
        audit: AuditLog,
        surrogate_key: bytes,
        max_bytes: int,
        *,
        quota_bytes: int | None = None,
    ) -> None:
        self.quota_bytes = quota_bytes
        self.db = db
        self.vault = vault
        self.audit = audit
        self.surrogate_key = surrogate_key
        self.max_bytes = max_bytes

    def upload(
        self,
        principal: Principal,
        data: bytes,
        *,
        name: str,
        base: Any,
        scrub: ScrubMode = "placeholder",
        project: str | None = None,
    ) -> dict[str, Any]:
        """Validate, scrub, count and store ``data`` (raises before storing anything) in ``project``
        (the caller must be able to write there) or the caller's personal project."""
        from transformers import AutoTokenizer

        from bastion.data.textscrub import TextPolicy
        from bastion.llm.base_models import context_length
        from bastion.llm.textdata import parse_jsonl, scrub_records, to_jsonl, token_stats

        if len(data) > self.max_bytes:
            raise PayloadTooLarge(f"the file is over {self.max_bytes} bytes", code="upload_too_large")
        if not data.strip():
            raise Invalid("the file is empty", code="empty_file")
        from bastion.catalog import quota

        quota.check(self.db, principal.user_id, self.quota_bytes, len(data))
        with self.db.session() as s:  # 404 / 403 before any parsing work
            project_id = project_policy.target(s, principal, project)
        if not name or len(name) > 200:
            raise Invalid("file name must be 1-200 characters")
        parsed = parse_jsonl(data)
        policy = TextPolicy(mode=scrub, key=self.surrogate_key if scrub == "surrogate" else None)
        clean = scrub_records(parsed, policy)
        tokenizer = AutoTokenizer.from_pretrained(base.path, local_files_only=True, trust_remote_code=False)
        positions = context_length(base.config_json, DEFAULT_MAX_TOKENS)
        stats = token_stats(tokenizer, clean, min(positions, DEFAULT_MAX_TOKENS))
        stored = to_jsonl(clean.records)
        record = DatasetRecord(
            owner_id=principal.user_id,
            project_id=project_id,
            name=name,
            source_format=FORMAT,
            size_bytes=len(data),
            rows=len(clean.records),
            columns=0,
            schema_json={"shape": clean.shape, "base_model": base.name, "tokens": stats},
            deid_json={"policy": scrub, "replaced": clean.scrub_counts},
            artifact_id="",
        )
        with self.db.session() as s:
            s.add(record)
            s.flush()
            record.artifact_id = f"dataset-{record.id}"
            self.vault.put_bytes(record.artifact_id, stored, meta={"kind": "dataset", "format": FORMAT})
            self.audit.append(
                AuditRecord(
                    "fine_tuning.file.upload",
                    actor_id=principal.user_id,
                    actor=principal.username,
                    target_type="dataset",
                    target_id=record.id,
                    details={
                        "examples": record.rows,
                        "shape": clean.shape,
                        "phi_replaced": clean.scrub_counts,
                    },
                ),
                s,
            )
            return file_view(record)

    def owned(self, principal: Principal | str, file_id: str) -> DatasetRecord:
        """A training file the project policy lets the caller read (``principal`` may be a job's owner id)."""
        missing = NotFound("file not found", code="file_not_found")
        with self.db.session() as s:
            row = s.get(DatasetRecord, file_id[:36])
            if row is None or row.source_format != FORMAT:
                raise missing
            project_policy.authorize(
                s, principal, row.project_id, project_policy.Action.READ, missing, owner_id=row.owner_id
            )
        return row

    def get(self, principal: Principal, file_id: str) -> dict[str, Any]:
        return file_view(self.owned(principal, file_id))

    def read(self, principal: Principal | str, file_id: str) -> bytes:
        return self.vault.get_bytes(self.owned(principal, file_id).artifact_id)
