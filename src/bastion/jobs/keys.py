"""What one job may decrypt and write, and the worker's side of the job process's vault calls.

A job process gets no master key. At launch the worker names the job's inputs (its dataset's
artifact; for a fine-tuning job its training and validation files and the checkpoints an earlier
attempt left) and unwraps just those versions' data keys (:meth:`KeyScope.child_grant`). Its outputs
are a fixed list of artifact ids (the attempt's model; for fine-tuning, each epoch's checkpoint and
optimizer state): for each write the process asks for a reservation (a fresh data key and a
temporary file) and then for a commit, which :meth:`KeyScope.handle` answers after checking the file
with that key and wrapping the key under the key ring. So a job can decrypt its own inputs and what
it wrote, and nothing else in the vault, even with its code replaced (``BASTION_JOB_TARGET``).
"""

from __future__ import annotations

import dataclasses
import threading
from typing import Any

import structlog

from bastion.errors import BastionError, Invalid
from bastion.jobs.runner import artifact_id_for
from bastion.vault.scoped import ReadGrant

_log = structlog.get_logger("bastion.jobs.keys")
LORA = "llm_lora"


def _lora_ids(job_id: str, epochs: int) -> list[str]:
    """Fine-tuning's per-epoch artifacts (names from bastion.llm.train, spelt here to keep torch out)."""
    return [f"{prefix}-{job_id}-e{e}" for e in range(1, epochs + 1) for prefix in ("ftckpt", "ftopt")]


def inputs_of(spec: dict[str, Any]) -> list[str]:
    """Artifacts the job reads (those that exist are granted at launch)."""
    dataset = spec.get("dataset") or {}
    if spec.get("model_type") == LORA:
        files = [dataset.get("training_artifact"), dataset.get("validation_artifact")]
        epochs = int((spec.get("params") or {}).get("n_epochs") or 0)
        return [str(a) for a in files if a] + _lora_ids(str(spec["job_id"]), epochs)
    artifact = dataset.get("artifact_id")
    return [str(artifact)] if artifact else []


def outputs_of(spec: dict[str, Any]) -> list[str]:
    """Artifacts the job may write: this attempt's model, plus fine-tuning's checkpoints."""
    job_id = str(spec["job_id"])
    out = [artifact_id_for(job_id, int(spec.get("attempt") or 0))]
    if spec.get("model_type") == LORA:
        out += _lora_ids(job_id, int((spec.get("params") or {}).get("n_epochs") or 0))
    return out


class KeyScope:
    """One job's keys, held by the worker; shared by every process of the job (search trials too)."""

    def __init__(self, vault: Any, reads: list[str], writes: list[str]) -> None:
        self.vault = vault
        self.reads = list(dict.fromkeys(reads))
        self.writes = frozenset(writes)
        self._lock = threading.Lock()
        self._grant: dict[str, Any] | None = None
        self._staged: dict[tuple[str, int], Any] = {}

    @classmethod
    def for_job(cls, vault: Any, spec: dict[str, Any]) -> KeyScope:
        return cls(vault, inputs_of(spec), outputs_of(spec))

    def child_grant(self) -> dict[str, Any]:
        """What the job process receives: read grants (data keys of its inputs) and its writable ids."""
        with self._lock:
            if self._grant is None:
                reads: list[dict[str, Any]] = []
                for artifact in self.reads if self.vault is not None else []:
                    try:
                        version, key, binding, path = self.vault.data_key(artifact)
                    except BastionError as exc:  # missing (a checkpoint not written yet), coded, damaged
                        if exc.code != "not_found":
                            _log.warning("job_input_not_granted", artifact=artifact, error=exc.code)
                        continue
                    reads.append(ReadGrant(artifact, version, key, binding, str(path)).to_json())
                self._grant = {"reads": reads, "writes": sorted(self.writes)}
            return self._grant

    def handle(self, message: dict[str, Any]) -> dict[str, Any]:
        """Answer a job process's ``reserve`` or ``commit``; refusals raise BastionError."""
        op, artifact = message.get("op"), message.get("artifact")
        if self.vault is None or artifact not in self.writes:
            raise Invalid(f"this job may not write artifact {artifact!r}", code="artifact_not_granted")
        if op == "reserve":
            staged = self.vault.reserve_staged(artifact)
            with self._lock:
                self._staged[(artifact, staged.version)] = staged
            grant: dict[str, Any] = staged.for_writer()
            return grant
        if op == "commit":
            with self._lock:
                staged = self._staged.pop((str(artifact), int(message.get("version") or 0)), None)
            if staged is None:
                raise Invalid("nothing reserved under that artifact and version", code="not_reserved")
            info = self.vault.commit_staged(staged)
            return dataclasses.asdict(info)
        raise Invalid(f"unknown vault call {op!r}", code="bad_call")

    def close(self) -> None:
        """Drop reservations a process took and never committed (it failed or was killed)."""
        with self._lock:
            staged, self._staged = list(self._staged.values()), {}
        for s in staged:
            try:
                self.vault.abandon_staged(s)
            except OSError as exc:
                _log.warning("job_reservation_not_dropped", artifact=s.artifact_id, error=type(exc).__name__)
