"""What runs on a Ray node: a job target driven as a streaming generator, with no keys at hand.

The task receives the job spec (no secrets, no vault path) and its inputs (the decrypted dataset,
put in Ray's object store by the Bastion worker). It yields the same JSON-shaped messages a local
job process writes on its pipe (bastion.jobs.child): first ``started`` (the task left the
resource queue), then ``progress``/``log`` while the target runs, then one ``result`` or
``error``. A spec with ``interactive`` also gets a command queue (a Ray queue actor the worker
owns; it dies with the worker): ``ctx.receive()``, as a local job reads commands from stdin.
The default target trains and returns the packed model as bytes; the worker, not
the node, seals it into the vault. Anything the target prints becomes log lines of the job.
"""

from __future__ import annotations

import contextlib
import io
import os
import queue
import sys
import threading
import traceback
from collections.abc import Callable, Iterator
from typing import Any

from bastion.jobs.child import MAX_MESSAGE_CHARS, _jsonable, _short, resolve_target

DEFAULT_REMOTE_TARGET = "bastion.jobs.executors.ray_task:train_on_inputs"


class RayTaskContext:
    """The JobContext a target sees on Ray: spec, progress, logs and inputs; no vault."""

    def __init__(
        self,
        spec: dict[str, Any],
        inputs: dict[str, Any],
        emit: Callable[[dict[str, Any]], None],
        commands: Any = None,
    ) -> None:
        self.spec = spec
        self.inputs = inputs
        self._emit = emit
        self._commands = commands

    def send(self, message: dict[str, Any]) -> None:
        self._emit(_jsonable(message))

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next command from the worker (``queue.Empty`` after ``timeout``)."""
        if self._commands is None:
            raise RuntimeError("this job was started without a command channel")
        from ray.util.queue import Empty

        try:
            command: dict[str, Any] = self._commands.get(block=True, timeout=timeout)
        except Empty as exc:  # Ray's is not queue.Empty
            raise queue.Empty from exc
        return command

    def put_artifact(self, artifact_id: str, data: bytes) -> None:
        """Ask the worker to write ``data`` through its vault (it decides whether this task may)."""
        self._emit({"type": "vault_put", "artifact_id": str(artifact_id), "data": bytes(data)})

    def progress(self, fraction: float, event: dict[str, Any] | None = None) -> None:
        self._emit({"type": "progress", "progress": float(fraction), "event": _jsonable(dict(event or {}))})

    def log(self, line: str) -> None:
        self._emit({"type": "log", "stream": "job", "line": str(line)[:MAX_MESSAGE_CHARS]})

    def flush(self) -> None:
        """Messages leave at once; nothing is held back."""

    def vault(self) -> Any:
        raise RuntimeError("the vault is not available on a Ray node: the Bastion worker keeps the keys")


class _Lines(io.TextIOBase):
    """A text stream that turns what is printed into log messages, line by line."""

    def __init__(self, stream: str, emit: Callable[[dict[str, Any]], None]) -> None:
        self.stream = stream
        self.emit = emit
        self.buffer_text = ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.buffer_text += text
        *lines, self.buffer_text = self.buffer_text.split("\n")
        for line in lines:
            self.emit({"type": "log", "stream": self.stream, "line": line[:MAX_MESSAGE_CHARS]})
        return len(text)

    def flush(self) -> None:
        if self.buffer_text:
            line, self.buffer_text = self.buffer_text, ""
            self.emit({"type": "log", "stream": self.stream, "line": line[:MAX_MESSAGE_CHARS]})


def run_job(
    target_path: str, spec: dict[str, Any], inputs: dict[str, Any], commands: Any = None
) -> Iterator[dict[str, Any]]:
    """The Ray task body (a generator): run the target in a thread and stream its messages."""
    messages: queue.Queue[dict[str, Any] | None] = queue.Queue()
    emit = messages.put
    ctx = RayTaskContext(spec, inputs, emit, commands)
    out, err = _Lines("stdout", emit), _Lines("stderr", emit)

    def body() -> None:
        try:
            with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
                try:
                    result = resolve_target(target_path)(ctx)  # type: ignore[arg-type]
                    emit({"type": "result", **(result or {})})
                except MemoryError:
                    emit({"type": "error", "code": "out_of_memory", "message": "the job ran out of memory"})
                except Exception as exc:
                    traceback.print_exc()
                    code = getattr(exc, "code", None)
                    message = getattr(exc, "message", None) or _short(exc)
                    emit(
                        {
                            "type": "error",
                            "code": code if isinstance(code, str) else "job_error",
                            "message": message,
                        }
                    )
                finally:
                    out.flush()
                    err.flush()
        finally:
            emit(None)

    yield {"type": "started", "pid": os.getpid(), "node": _node_id()}
    threading.Thread(target=body, name="bastion-job", daemon=True).start()
    while (message := messages.get()) is not None:
        yield message
    sys.stdout.flush()


def _node_id() -> str:
    try:
        import ray

        return str(ray.get_runtime_context().get_node_id())
    except Exception:
        return "unknown"


def train_on_inputs(ctx: RayTaskContext) -> dict[str, Any]:
    """The default target on Ray: train on the dataset the worker sent; return the packed model."""
    from bastion.jobs.rl import RL_MODEL_TYPES, pack_dqn, run_dqn
    from bastion.jobs.runner import train_package

    if ctx.spec["model_type"] == "llm_lora":  # fine-tuning: base model and text shipped by the worker
        from bastion.llm.on_ray import finetune_on_inputs

        return finetune_on_inputs(ctx)
    if ctx.spec["model_type"] in RL_MODEL_TYPES:  # DQN: the environment on the node, or the table sent
        out = run_dqn(ctx)  # type: ignore[arg-type]
        return {
            "results": out["metrics"],
            "history": out["history"],
            "model_package": pack_dqn(ctx.spec, out),
            "model_format": "safetensors",
        }
    dataset = ctx.inputs["dataset"]
    ctx.progress(0.0, {"stage": "load"})
    ctx.log(f"dataset: {dataset.n_samples} rows, {dataset.n_features} features, {dataset.task}")
    result, blob = train_package(ctx.spec, dataset, ctx.progress)
    return {
        "results": result.metrics,
        "history": result.history,
        "model_package": blob,
        "model_format": result.model_format,
    }


def auth_mode() -> str:
    """The authentication mode of the Ray node this runs on (the connect-time check)."""
    from ray._raylet import AuthenticationMode, get_authentication_mode  # type: ignore[attr-defined]

    return "token" if get_authentication_mode() == AuthenticationMode.TOKEN else "disabled"
