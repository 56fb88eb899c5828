"""The job process: ``python -m bastion.jobs.child FD``.

The worker writes one JSON line to our stdin (the job spec, with ``secrets.vault``: the data keys
of this job's inputs only, never the master key; see bastion.jobs.keys) and keeps stdin open: when
it closes (the worker exited or was killed), we exit at once, so no job outlives its worker. Further
lines on stdin are either answers to our vault calls (``"type": "vault_reply"``) or commands for
targets that take them (a search's warm trial process, bastion.jobs.search_trial):
``JobContext.receive``. We answer on file descriptor FD with JSON lines only::

    {"type": "progress", "progress": 0.4, "event": {...}}
    {"type": "log", "line": "..."}
    {"type": "vault", "id": 1, "op": "reserve" | "commit", ...}   (a write; the answer comes on stdin)
    {"type": "result", "results": {...}, "history": [...], "model": {...}}
    {"type": "error", "message": "...", "code": "..."}
    {"type": "trace", "text": "..."}   (a failure's traceback: the server logs it; the owner never sees it)

The worker answers a ``vault`` call with one line on stdin: ``{"id": 1, "ok": {...}}`` or
``{"id": 1, "error": {"code": ..., "message": ...}}``.

Nothing is pickled either way. stdout and stderr are captured by the worker as the job's log.
This module imports only the standard library until the target runs.
"""

from __future__ import annotations

import importlib
import json
import os
import queue
import sys
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, TextIO

EXIT_ERROR = 1
EXIT_REPORTED = 2
EXIT_ORPHANED = 70
MAX_MESSAGE_CHARS = 2000
# Progress without a new stage or epoch is forwarded at most this often.
PROGRESS_INTERVAL = 0.1


def _jsonable(value: Any) -> Any:
    """Numbers from numpy and friends become plain floats/ints; anything else becomes text."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    for cast in (int, float):
        try:
            if cast is int and not float(value).is_integer():
                continue
            return cast(value)
        except (TypeError, ValueError, OverflowError):
            continue
    return str(value)


class JobContext:
    """What a job target receives: its spec, progress and log reporting, and the vault."""

    def __init__(self, spec: dict[str, Any], secrets: dict[str, Any], out: TextIO) -> None:
        self.spec = spec
        self._secrets = secrets
        self._out = out
        self._lock = threading.Lock()
        self._last_sent = 0.0
        self._last_key: tuple[Any, ...] = ()
        self._pending: dict[str, Any] | None = None
        self._vault: Any = None
        self._calls = 0
        self._replies: dict[int, dict[str, Any]] = {}
        self._replied = threading.Condition()
        self._commands: queue.Queue[dict[str, Any]] = queue.Queue()

    def receive(self, timeout: float | None = None) -> dict[str, Any]:
        """The next command the worker wrote on stdin (blocks; ``queue.Empty`` after ``timeout``)."""
        return self._commands.get(timeout=timeout)

    def send(self, message: dict[str, Any]) -> None:
        line = json.dumps(_jsonable(message), separators=(",", ":"), allow_nan=False, default=str)
        with self._lock:
            self._out.write(line + "\n")
            self._out.flush()

    def progress(self, fraction: float, event: dict[str, Any] | None = None) -> None:
        """Forward progress; epochs and stage changes always, plain ticks at most every 0.1 s."""
        event = dict(event or {})
        message = {"type": "progress", "progress": float(fraction), "event": event}
        key = (event.get("stage"), event.get("epoch"))
        now = time.monotonic()
        if "epoch" in event or key != self._last_key or now - self._last_sent >= PROGRESS_INTERVAL:
            self._pending = None
            self._last_key, self._last_sent = key, now
            self.send(message)
        else:
            self._pending = message

    def flush(self) -> None:
        if self._pending is not None:
            message, self._pending = self._pending, None
            self.send(message)

    def log(self, line: str) -> None:
        self.send({"type": "log", "line": str(line)[:MAX_MESSAGE_CHARS]})

    def vault(self) -> Any:
        """This job's view of the vault: its granted inputs, and writes the worker commits."""
        if self._vault is None:
            from bastion.vault.scoped import ScopedVault

            self._vault = ScopedVault(self._secrets.get("vault") or {}, self.call)
        return self._vault

    def call(self, request: dict[str, Any]) -> dict[str, Any]:
        """Ask the worker (a vault write) and wait for its answer on stdin."""
        with self._replied:
            self._calls += 1
            call_id = self._calls
        self.send({"type": "vault", "id": call_id, **request})
        with self._replied:
            while call_id not in self._replies:
                self._replied.wait()
            reply = self._replies.pop(call_id)
        if "error" in reply:
            from bastion.errors import BastionError

            error = reply["error"] or {}
            raise BastionError(str(error.get("message") or "the worker refused"), code=error.get("code"))
        return dict(reply.get("ok") or {})

    def on_reply(self, reply: dict[str, Any]) -> None:
        with self._replied:
            self._replies[int(reply.get("id") or 0)] = reply
            self._replied.notify_all()


def resolve_target(path: str) -> Callable[[JobContext], dict[str, Any]]:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise ValueError(f"job target must be 'module:function', got {path!r}")
    target: Callable[[JobContext], dict[str, Any]] = getattr(importlib.import_module(module_name), attr)
    return target


def _exit_when_orphaned(stdin: Any, ctx: JobContext) -> None:
    """Read the worker's lines from stdin (answers to vault calls, commands); EOF means the worker is
    gone (or wants us gone): leave without cleanup."""
    try:
        while line := stdin.readline():
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if not isinstance(message, dict):
                continue
            if message.get("type") == "vault_reply":
                ctx.on_reply(message)
            else:
                ctx._commands.put(message)
    finally:
        os._exit(EXIT_ORPHANED)


def _limit_memory(megabytes: int | None) -> None:
    if megabytes:
        import resource

        limit = int(megabytes) * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def _limit_resources(limits: dict[str, Any]) -> None:
    """CPU seconds (SIGXCPU past it), open files, and the largest file the job may write (SIGXFSZ)."""
    import resource

    for name, key, scale in (
        ("RLIMIT_CPU", "cpu_seconds", 1),
        ("RLIMIT_NOFILE", "open_files", 1),
        ("RLIMIT_FSIZE", "output_mb", 1024 * 1024),
    ):
        value = limits.get(key)
        if value:
            limit = int(value) * scale
            _, hard = resource.getrlimit(getattr(resource, name))
            if hard != resource.RLIM_INFINITY:
                limit = min(limit, hard)
            # CPU: the soft limit sends SIGXCPU (named in the job's failure), the hard one SIGKILL.
            grace = 5 if name == "RLIMIT_CPU" and hard == resource.RLIM_INFINITY else 0
            resource.setrlimit(getattr(resource, name), (limit, limit + grace))


def _short(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_MESSAGE_CHARS]


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out = os.fdopen(int(args[0]), "w", encoding="utf-8", buffering=1)
    stdin = sys.stdin.buffer
    raw = json.loads(stdin.readline())
    secrets = raw.pop("secrets", {})
    ctx = JobContext(raw, secrets, out)
    threading.Thread(target=_exit_when_orphaned, args=(stdin, ctx), name="orphan-watch", daemon=True).start()
    try:
        _limit_memory(raw.get("memory_limit_mb"))
        _limit_resources(raw.get("limits") or {})
        target = resolve_target(str(raw["target"]))
        result = target(ctx)
        ctx.flush()
        ctx.send({"type": "result", **(result or {})})
        return 0
    except MemoryError:
        ctx.send({"type": "error", "code": "out_of_memory", "message": "the job ran out of memory"})
        return EXIT_REPORTED
    except Exception as exc:
        # The owner sees the message; the trace (server paths, code) goes to the server's log only.
        ctx.send({"type": "trace", "text": traceback.format_exc()[-20000:]})
        code = getattr(exc, "code", None)
        message = getattr(exc, "message", None) or _short(exc)
        ctx.send(
            {"type": "error", "code": code if isinstance(code, str) else "job_error", "message": message}
        )
        return EXIT_REPORTED


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
