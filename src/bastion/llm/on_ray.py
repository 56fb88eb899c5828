"""Fine-tuning as a Ray task: the worker ships the base model and the scrubbed text, and writes back.

Keys stay home. The Bastion worker reads the registered base model directory (its files, as bytes)
and decrypts the job's PHI-scrubbed training (and validation) file, plus the newest epoch
checkpoint and optimizer state when an earlier attempt left them; all of it travels through Ray's
object store. On the node the task writes the base model into a private temporary directory
(``load_base`` checks its weights hash as on the server), trains with the same code as a local job
(bastion.llm.train), and sends every per-epoch checkpoint and optimizer state back on its stream as
a ``vault_put`` message; the worker writes them through the vault, under names it checks (this job's
checkpoints only) and metadata it sets itself. The final adapter returns as package bytes, which the
worker checks and seals like any other model. The task never sees the master key, the vault or the
server's path of the base model.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bastion.llm.modeldir import PICKLE_SUFFIXES

LORA_MODEL_TYPE = "llm_lora"
MAX_BASE_BYTES = 8 << 30  # the object store must hold it; a bigger base belongs on the local executor


def remote_spec(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec without the server's path of the base model (the node gets its files instead)."""
    params = dict(spec.get("params") or {})
    params["base_model"] = {k: v for k, v in dict(params.get("base_model") or {}).items() if k != "path"}
    return dict(spec, params=params)


def lora_inputs(spec: dict[str, Any], vault: Any) -> dict[str, Any]:
    """Worker side: the base model's files, and the decrypted artifacts the job reads (by id)."""
    from bastion.errors import Invalid
    from bastion.llm.train import _latest_checkpoint, optimizer_state_id

    directory = Path(dict(spec["params"])["base_model"]["path"])
    files = {
        p.name: p for p in sorted(directory.iterdir()) if p.is_file() and p.suffix not in PICKLE_SUFFIXES
    }
    if sum(p.stat().st_size for p in files.values()) > MAX_BASE_BYTES:
        raise Invalid("the base model is too large to ship to a Ray node", code="base_model_too_large")
    wanted = [str(spec["dataset"]["training_artifact"])]
    if spec["dataset"].get("validation_artifact"):
        wanted.append(str(spec["dataset"]["validation_artifact"]))
    latest = _latest_checkpoint(vault, str(spec["job_id"]))
    if latest is not None:
        wanted.append(latest[1])
        state = optimizer_state_id(str(spec["job_id"]), latest[0])
        if state in set(vault.list()):
            wanted.append(state)
    return {
        "base_files": {name: path.read_bytes() for name, path in files.items()},
        "artifacts": {artifact_id: vault.get_bytes(artifact_id) for artifact_id in wanted},
    }


class ShippedVault:
    """The task's view of the vault: reads what the worker shipped; writes go back on the stream."""

    def __init__(self, artifacts: dict[str, bytes], final_id: str, emit: Any) -> None:
        self.artifacts = dict(artifacts)
        self.final_id = final_id
        self.final: bytes | None = None
        self._emit = emit

    def list(self) -> list[str]:
        return list(self.artifacts)

    def get_bytes(self, artifact_id: str, version: int | None = None) -> bytes:
        return self.artifacts[artifact_id]

    def put_bytes(self, artifact_id: str, data: bytes, *, meta: dict[str, Any] | None = None) -> Any:
        if artifact_id == self.final_id:
            self.final = bytes(data)  # returned as the job's model package, sealed by the worker
        else:
            self._emit(artifact_id, bytes(data))
        self.artifacts[artifact_id] = bytes(data)
        return SimpleNamespace(artifact_id=artifact_id, version=None)


class _LoraContext:
    """What run_finetune sees on a node: the task's context, with the shipped vault."""

    def __init__(self, ctx: Any, spec: dict[str, Any], vault: ShippedVault) -> None:
        self.spec, self._ctx, self._vault = spec, ctx, vault

    def vault(self) -> ShippedVault:
        return self._vault

    def progress(self, fraction: float, event: dict[str, Any] | None = None) -> None:
        self._ctx.progress(fraction, event)

    def log(self, line: str) -> None:
        self._ctx.log(line)

    def flush(self) -> None:
        self._ctx.flush()


def run_shipped(
    ctx: Any, spec: dict[str, Any], inputs: dict[str, Any], vault: ShippedVault
) -> dict[str, Any]:
    """Train from shipped inputs: the base model's files in a private temporary directory."""
    from bastion.llm.train import run_finetune

    with tempfile.TemporaryDirectory(prefix="bastion-base-") as tmp:
        for name, data in inputs["base_files"].items():
            (Path(tmp) / Path(name).name).write_bytes(data)
        params = dict(spec["params"])
        params["base_model"] = dict(params["base_model"], path=tmp)
        return run_finetune(_LoraContext(ctx, dict(spec, params=params), vault))  # type: ignore[arg-type]


def final_artifact_id(spec: dict[str, Any]) -> str:
    from bastion.jobs.runner import artifact_id_for

    return artifact_id_for(str(spec["job_id"]), int(spec.get("attempt") or 1))


def finetune_on_inputs(ctx: Any) -> dict[str, Any]:
    """Task side: train from the shipped inputs; return the adapter as package bytes."""
    spec = dict(ctx.spec)
    if int(dict(spec["params"]).get("num_workers") or 1) > 1:
        from bastion.llm.data_parallel import finetune_data_parallel

        return finetune_data_parallel(ctx, spec)
    vault = ShippedVault(ctx.inputs["artifacts"], final_artifact_id(spec), ctx.put_artifact)
    out = run_shipped(ctx, spec, ctx.inputs, vault)
    if vault.final is None:
        raise RuntimeError("the fine-tuning run returned no adapter")
    return {"results": out["results"], "model_package": vault.final, "model_format": "safetensors"}


def checkpoint_kind(job_id: str, artifact_id: str) -> str | None:
    """Worker side: the vault kind of a write the task asked for, or None when it may not write it."""
    job = re.escape(job_id)
    if re.fullmatch(rf"ftckpt-{job}-e\d+", artifact_id):
        return "ft-checkpoint"
    if re.fullmatch(rf"ftopt-{job}-e\d+", artifact_id):
        return "ft-optimizer-state"
    return None
