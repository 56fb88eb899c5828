"""One job, one process: start ``python -m bastion.jobs.child``, pump its pipes, kill it on demand.

The child runs in its own session (process group), so cancel and timeouts kill everything it
started with one ``killpg``. Its messages arrive as JSON lines on a dedicated pipe; stdout and
stderr are read line by line into the job's log, so a job that crashes or is killed by the kernel
keeps every line it printed. Keys reach it on stdin, never on the command line or in the
environment, and stdin stays open for its whole life: if this process dies, the child sees EOF
and exits (no orphan keeps training). The keys are the job's own (``secrets["scope"]``, a
bastion.jobs.keys.KeyScope): the data keys of its inputs; its writes come back as ``vault`` calls
that the scope answers on stdin. The master key never leaves this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import structlog

from bastion.jobs.config import JobConfig

_log = structlog.get_logger("bastion.jobs")

# Environment variables a job process must not inherit: it gets what it needs on stdin.
_SECRET_ENV = (
    "BASTION_MASTER_KEY",
    "DUETMIND_MASTER_KEY",
    "MODEL_ENCRYPTION_KEY",
    "BASTION_JWT_SECRET",
    "JWT_SECRET",
    "BASTION_DATABASE_URL",
    "BASTION_API_KEY",
)
READ_CHUNK = 65536
# Seconds to keep reading pipes after the process itself has exited.
POST_EXIT_DRAIN = 2.0


@dataclass
class Outcome:
    """How the process ended: the message it sent last (if any) and why it was killed (if it was)."""

    returncode: int | None = None
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    killed: str | None = None
    protocol_errors: int = 0

    def reason(self, max_runtime: float, last_stderr: str | None = None) -> str:
        """A one-line reason for a failed job, for ``error_message``."""
        if self.killed == "timeout":
            return f"exceeded the maximum runtime of {max_runtime:g} s and was stopped"
        if self.error is not None:
            return str(self.error.get("message") or "the job failed")
        code = self.returncode
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (out of memory?)" if -code == signal.SIGKILL else ""
            return f"the job process was killed by {name}{hint}"
        tail = f": {last_stderr[:300]}" if last_stderr else ""
        return f"the job process exited with status {code} without a result{tail}"


@dataclass
class _Stream:
    name: str
    buffer: bytearray = field(default_factory=bytearray)


Sink = Callable[[str, Any], None]


class JobProcess:
    """A running job process. ``run`` blocks (in the worker's supervising thread) until it ends."""

    def __init__(self, spec: dict[str, Any], secrets: dict[str, Any], config: JobConfig) -> None:
        self.spec = spec
        self.secrets = secrets
        self.config = config
        self.proc: subprocess.Popen[bytes] | None = None
        self.killed: str | None = None
        self._lock = threading.Lock()
        self._msg_fd: int | None = None

    def _env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _SECRET_ENV}
        env["PYTHONUNBUFFERED"] = "1"
        for key, value in self.config.child_env.items():
            if key == "PYTHONPATH" and env.get("PYTHONPATH"):
                value = value + os.pathsep + env["PYTHONPATH"]
            env[key] = value
        return env

    def start(self) -> int | None:
        """Start the process, unless it was killed (cancelled) before it could start."""
        with self._lock:
            if self.killed is not None:
                return None
            return self._spawn()

    def _spawn(self) -> int:
        read_fd, write_fd = os.pipe()
        try:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bastion.jobs.child", str(write_fd)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                pass_fds=(write_fd,),
                env=self._env(),
                start_new_session=True,
                close_fds=True,
            )
        except BaseException:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
        self._msg_fd = read_fd
        assert self.proc.stdin is not None
        payload = dict(
            self.spec,
            target=self.config.target,
            memory_limit_mb=self.config.memory_limit_mb,
            limits={
                "cpu_seconds": self.config.cpu_limit_seconds,
                "open_files": self.config.open_files_limit,
                "output_mb": self.config.output_limit_mb,
            },
        )
        scope = self.secrets.get("scope")
        payload["secrets"] = {"vault": scope.child_grant()} if scope is not None else {}
        try:
            self.proc.stdin.write(json.dumps(payload).encode() + b"\n")
            self.proc.stdin.flush()
        except BrokenPipeError:
            pass  # the child died at once; run() reports how
        return self.proc.pid

    def send(self, command: dict[str, Any]) -> bool:
        """Write a command line to the process's stdin (read by ``JobContext.receive``); False if gone."""
        with self._lock:
            stdin = self.proc.stdin if self.proc is not None else None
            if stdin is None or self.killed is not None:
                return False
            try:
                stdin.write(json.dumps(command).encode() + b"\n")
                stdin.flush()
            except (BrokenPipeError, ValueError, OSError):
                return False
            return True

    def kill(self, reason: str) -> bool:
        """Kill the whole process group now. The first reason given is the one reported."""
        with self._lock:
            if self.proc is not None and self.proc.returncode is not None:
                return False
            if self.killed is None:
                self.killed = reason
            if self.proc is None:
                return True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            return True

    def run(self, sink: Sink, *, deadline: float, tick: Callable[[], None] | None = None) -> Outcome:
        """Pump messages and output into ``sink(kind, payload)`` until the process has ended.

        ``sink`` receives ("progress", (fraction, event)), ("log", (stream, line)) and is also how
        result and error messages are kept. ``tick`` runs a few times a second (batched writes).
        """
        if self.proc is None:
            return Outcome(killed=self.killed)
        assert self._msg_fd is not None
        assert self.proc.stdout is not None and self.proc.stderr is not None
        outcome = Outcome()
        sel = selectors.DefaultSelector()
        msg_file = os.fdopen(self._msg_fd, "rb", buffering=0)
        for f, name in ((msg_file, "msg"), (self.proc.stdout, "stdout"), (self.proc.stderr, "stderr")):
            os.set_blocking(f.fileno(), False)
            sel.register(f, selectors.EVENT_READ, _Stream(name))
        try:
            self._pump(sel, sink, outcome, deadline, tick)
            outcome.returncode = self._reap(deadline)
        finally:
            sel.close()
            msg_file.close()
            self._close_pipes()
        outcome.killed = self.killed
        return outcome

    def _pump(
        self,
        sel: selectors.BaseSelector,
        sink: Sink,
        outcome: Outcome,
        deadline: float,
        tick: Callable[[], None] | None,
    ) -> None:
        """Read the three pipes until all are closed, or a short drain after the process exited."""
        assert self.proc is not None
        exited_at: float | None = None
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                self.kill("timeout")
            if exited_at is None and self.proc.poll() is not None:
                exited_at = now
            elif exited_at is not None and now - exited_at > POST_EXIT_DRAIN:
                break  # something the job started still holds a pipe: stop listening
            for key, _ in sel.select(timeout=0.1):
                self._read(sel, key, sink, outcome)
            if tick is not None:
                tick()

    def _read(
        self, sel: selectors.BaseSelector, key: selectors.SelectorKey, sink: Sink, outcome: Outcome
    ) -> None:
        """One ready pipe: hand on its complete lines (the rest waits for more); unregister it at EOF."""
        stream: _Stream = key.data
        try:
            chunk = os.read(key.fd, READ_CHUNK)
        except BlockingIOError:
            return
        if not chunk:
            sel.unregister(key.fileobj)
            if stream.buffer:
                self._line(stream, bytes(stream.buffer), sink, outcome)
            return
        stream.buffer.extend(chunk)
        *lines, rest = stream.buffer.split(b"\n")
        stream.buffer = bytearray(rest)
        for line in lines:
            self._line(stream, bytes(line), sink, outcome)

    def _reap(self, deadline: float) -> int:
        """The exit status, killing the process group should it outlive the deadline."""
        assert self.proc is not None
        while True:
            try:
                return self.proc.wait(timeout=0.1)
            except subprocess.TimeoutExpired:
                if time.monotonic() >= deadline:
                    self.kill("timeout")

    def _close_pipes(self) -> None:
        assert self.proc is not None
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            with contextlib.suppress(OSError):
                if pipe is not None:
                    pipe.close()

    def _answer(self, message: dict[str, Any]) -> None:
        """Answer the job's vault call (reserve or commit one of its outputs) on its stdin."""
        from bastion.errors import BastionError

        scope = self.secrets.get("scope")
        reply: dict[str, Any] = {"type": "vault_reply", "id": message.get("id")}
        try:
            if scope is None:
                raise BastionError("this job has no vault access", code="artifact_not_granted")
            reply["ok"] = scope.handle(message)
        except BastionError as exc:
            reply["error"] = {"code": exc.code, "message": exc.message}
        except OSError as exc:
            _log.warning("job_vault_call_failed", job_id=self.spec.get("job_id"), error=type(exc).__name__)
            reply["error"] = {"code": "vault_error", "message": "the vault write failed"}
        self.send(reply)  # under the lock that keeps these lines whole beside a search's commands

    def _line(self, stream: _Stream, raw: bytes, sink: Sink, outcome: Outcome) -> None:
        text = raw.decode("utf-8", "replace")
        if stream.name != "msg":
            sink("log", (stream.name, text))
            return
        try:
            message = json.loads(text)
            kind = message.get("type")
        except (ValueError, AttributeError):
            outcome.protocol_errors += 1
            return
        if kind == "progress":
            event = message.get("event")
            sink(
                "progress", (float(message.get("progress") or 0.0), event if isinstance(event, dict) else {})
            )
        elif kind == "log":
            sink("log", ("job", str(message.get("line", ""))))
        elif kind == "vault":
            self._answer(message)
        elif kind == "result":
            outcome.result = message
        elif kind == "error":
            outcome.error = message
        elif kind == "trace":  # the failing job's traceback: for the operator's log, not the owner's
            _log.error(
                "job_traceback", job_id=self.spec.get("job_id"), trace=str(message.get("text", ""))[:20000]
            )
        else:
            outcome.protocol_errors += 1
