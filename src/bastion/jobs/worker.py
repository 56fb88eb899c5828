"""A worker: claims pending jobs, runs each in its own process, and keeps the queue honest.

One loop thread claims up to ``max_concurrent`` jobs (woken at once by ``wake()`` after a submit,
else every ``poll_seconds``), beats its heart, notices jobs taken from it (a cancel made through
another server) and re-queues the jobs of dead workers. Each job has a supervising thread that
pumps the process's output into the store and records how it ended. ``close()`` stops claiming,
kills what runs and hands those jobs back to the queue without using up an attempt.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import structlog

from bastion.errors import BastionError
from bastion.jobs import queue
from bastion.jobs.config import JobConfig
from bastion.jobs.executor import Outcome
from bastion.jobs.executors import NODE_DIED, Executor, JobRun, LocalExecutor
from bastion.jobs.keys import KeyScope
from bastion.jobs.recorder import Recorder
from bastion.jobs.runner import artifact_id_for
from bastion.store import Database

if TYPE_CHECKING:
    from bastion.jobs.registration import Prepare

_log = structlog.get_logger("bastion.jobs.worker")


def _say(level: str, event: str, **fields: Any) -> None:
    """Log, but never let a broken log stream (a closed stdout) take the worker down."""
    with contextlib.suppress(OSError, ValueError):
        getattr(_log, level)(event, **fields)


@dataclass
class _Run:
    claim: queue.Claim
    process: JobRun
    recorder: Recorder
    scope: KeyScope
    thread: threading.Thread | None = None


class Worker:
    def __init__(
        self,
        db: Database,
        config: JobConfig,
        *,
        kaggle_path: Path | str | None = None,
        vault: Any = None,
        worker_id: str | None = None,
        registrar: Prepare | None = None,
        executor: Executor | None = None,
    ) -> None:
        import socket

        self.db = db
        self.config = config
        self.kaggle_path = str(Path(kaggle_path).resolve()) if kaggle_path else None
        self.vault = vault
        self.registrar = registrar
        self.executor: Executor = executor or LocalExecutor()
        self.id = worker_id or f"{socket.gethostname()[:60]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._runs: dict[str, _Run] = {}
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        queue.register_worker(self.db, self.id, self.config.max_concurrent)
        self._recover()
        self._thread = threading.Thread(target=self._loop, name=f"job-worker-{self.id}", daemon=True)
        self._thread.start()
        _say("info", "worker_started", worker=self.id, max_concurrent=self.config.max_concurrent)

    def close(self, timeout: float = 15.0) -> None:
        if self._thread is None:
            return
        self._stopping.set()
        self._wake.set()
        self._thread.join(timeout)
        for run in self._snapshot():
            run.process.kill("released")
        deadline = time.monotonic() + timeout
        for run in self._snapshot():
            if run.thread is not None:
                run.thread.join(max(0.1, deadline - time.monotonic()))
        try:
            queue.stop_worker(self.db, self.id)
        except Exception as exc:
            _say("warning", "worker_stop_not_recorded", worker=self.id, error=type(exc).__name__)
        self._thread = None
        self.executor.close()
        _say("info", "worker_stopped", worker=self.id)

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wake(self) -> None:
        """Claim now rather than at the next poll (called after a submit)."""
        self._wake.set()

    def running(self) -> list[str]:
        with self._lock:
            return list(self._runs)

    def kill(self, job_id: str, reason: str = "cancelled") -> bool:
        """Kill the job's process at once if this worker runs it."""
        with self._lock:
            run = self._runs.get(job_id)
        return run is not None and run.process.kill(reason)

    def _snapshot(self) -> list[_Run]:
        with self._lock:
            return list(self._runs.values())

    # -- the loop ---------------------------------------------------------------------------------

    def _loop(self) -> None:
        next_beat = 0.0
        next_reap = time.monotonic() + self.config.heartbeat_seconds * 2
        while not self._stopping.is_set():
            self._wake.clear()
            full = False
            try:
                now = time.monotonic()
                self._check_lost()
                if now >= next_beat:
                    queue.heartbeat(self.db, self.id, self.running())
                    next_beat = now + self.config.heartbeat_seconds
                if now >= next_reap:
                    self._recover()
                    next_reap = now + self.config.heartbeat_seconds * 2
                free = self.config.max_concurrent - len(self.running())
                if free > 0 and not self._stopping.is_set():
                    claims = queue.claim(self.db, self.id, free)
                    for claim in claims:
                        self._launch(claim)
                    full = len(claims) == free
            except Exception as exc:
                _say("error", "worker_loop_error", worker=self.id, error=f"{type(exc).__name__}: {exc}"[:300])
            if not full:
                self._wake.wait(self.config.poll_seconds)

    def _recover(self) -> None:
        for job_id, state in queue.recover(
            self.db,
            me=self.id,
            held=self.running(),
            stale_after=self.config.stale_after_seconds,
            max_attempts=self.config.max_attempts,
        ):
            _say("warning", "job_recovered", job_id=job_id, state=state, worker=self.id)
            if state == "pending":
                self._wake.set()

    def _check_lost(self) -> None:
        held = {run.claim.job_id: run.claim.attempt for run in self._snapshot()}
        for job_id, state in queue.lost_jobs(self.db, self.id, held).items():
            self.kill(job_id, "cancelled" if state == "cancelled" else "lost")

    def _launch(self, claim: queue.Claim) -> None:
        spec = {
            "job_id": claim.job_id,
            "attempt": claim.attempt,
            "model_type": claim.model_type,
            "dataset": claim.dataset,
            "params": claim.params,
            "seed": claim.seed,
            "kaggle_path": self.kaggle_path,
            "worker_id": self.id,
            "resources": claim.resources,
            "search": claim.search,
        }
        # The job's own keys (its inputs' data keys, its outputs' commits), never the master key.
        scope = KeyScope.for_job(self.vault, spec)
        secrets = {"scope": scope}
        recorder = Recorder(self.db, claim.job_id, self.id, claim.attempt, cap=self.config.log_line_cap)
        process: JobRun
        if claim.search is not None:
            from bastion.jobs.search import SearchRun

            process = SearchRun(self.db, self.executor, spec, secrets, self.config)
        else:
            process = self.executor.prepare(spec, secrets, self.config)
        run = _Run(claim, process, recorder, scope)
        run.thread = threading.Thread(
            target=self._supervise, args=(run,), name=f"job-{claim.job_id[:8]}", daemon=True
        )
        with self._lock:
            self._runs[claim.job_id] = run
        run.thread.start()

    # -- one job ----------------------------------------------------------------------------------

    def _supervise(self, run: _Run) -> None:
        claim, recorder = run.claim, run.recorder

        def sink(kind: str, payload: Any) -> None:
            if kind == "progress":
                recorder.on_progress(*payload)
            else:
                recorder.on_log(*payload)

        def tick() -> None:
            if recorder.due():
                self._safe_flush(recorder)

        try:
            started = time.monotonic()
            pid = run.process.start()
            if pid is not None:
                recorder.on_log("system", f"job process {pid} started")
            runtime = min(claim.max_runtime_seconds, self.config.max_runtime_seconds)
            outcome = run.process.run(sink, deadline=started + runtime, tick=tick)
            self._safe_flush(recorder)
            self._finish(run, outcome, runtime)
        except Exception as exc:
            _say(
                "error",
                "job_supervision_failed",
                job_id=claim.job_id,
                error=f"{type(exc).__name__}: {exc}"[:300],
            )
            run.process.kill("lost")
        finally:
            run.scope.close()
            with self._lock:
                self._runs.pop(claim.job_id, None)
            self._wake.set()

    def _safe_flush(self, recorder: Recorder) -> None:
        try:
            recorder.flush()
        except Exception as exc:
            _say("warning", "job_progress_not_recorded", job_id=recorder.job_id, error=type(exc).__name__)

    def _finish(self, run: _Run, outcome: Outcome, runtime: float) -> None:
        claim, rec = run.claim, run.recorder
        job_id, attempt = claim.job_id, claim.attempt
        model = (outcome.result or {}).get("model")
        if model is not None and (
            not isinstance(model, dict) or model.get("artifact_id") != artifact_id_for(job_id, attempt)
        ):
            # Only this attempt's own artifact may become the job's model (never, say, a dataset's).
            model, outcome.result, outcome.error = (
                None,
                None,
                {"message": "the job reported a model it did not write"},
            )
        kept = False  # the model stays in the vault only if the job completed with it
        if outcome.killed in ("cancelled", "lost"):
            note = "cancelled" if outcome.killed == "cancelled" else "taken from this worker"
            self._note(job_id, f"job process killed: the job was {note}")
        elif outcome.killed == "released":
            queue.requeue(self.db, job_id, self.id, attempt, "the worker shut down", count_attempt=False)
        elif outcome.killed == NODE_DIED:
            why = str((outcome.error or {}).get("message") or "the executor lost the job")
            if attempt < self.config.max_attempts:
                note = f"{why}; retrying, attempt {attempt + 1} of {self.config.max_attempts}"
                queue.requeue(self.db, job_id, self.id, attempt, note, count_attempt=True)
            else:
                note = f"{why} (attempt {attempt} of {self.config.max_attempts})"
                queue.fail(self.db, job_id, self.id, attempt, note)
        elif outcome.result is not None and outcome.returncode == 0:
            results = outcome.result.get("results") or {}
            history = outcome.result.get("history") or rec.history
            kept = self._complete(claim, results, history, model)
        else:
            queue.fail(self.db, job_id, self.id, attempt, outcome.reason(runtime, rec.last_stderr))
        if model and not kept:
            self._discard(model)

    def _complete(
        self,
        claim: queue.Claim,
        results: dict[str, Any],
        history: list[dict[str, Any]],
        model: dict[str, Any] | None,
    ) -> bool:
        """Complete the job and register its model in one transaction; whether it completed.

        A model the registry refuses fails the job instead (a completed job always has its version).
        A database error propagates: the job stays running until recovery re-queues it.
        """
        step = None
        if model is not None and self.registrar is not None:
            try:
                step = self.registrar(claim.job_id, results, model)
            except Exception as exc:  # an unreadable package, a refused format: retrying will not help
                self._unregistered(claim, exc)
                return False
        try:
            return queue.complete(
                self.db, claim.job_id, self.id, claim.attempt, results, history, model, then=step
            )
        except BastionError as exc:  # the registry refused the version inside the step (rolled back)
            self._unregistered(claim, exc)
            return False

    def _unregistered(self, claim: queue.Claim, exc: Exception) -> None:
        """Fail a job whose model could not be registered (nothing of the registration was kept)."""
        why = f"{type(exc).__name__}: {exc}" if isinstance(exc, BastionError) else type(exc).__name__
        _say("warning", "job_model_not_registered", job_id=claim.job_id, error=why[:300])
        reason = f"the job's model could not be registered ({why})"[:1000]
        queue.fail(self.db, claim.job_id, self.id, claim.attempt, reason)

    def _note(self, job_id: str, line: str) -> None:
        try:
            with self.db.session() as s:
                queue.add_log(s, job_id, line)
        except Exception as exc:
            _say("warning", "job_note_not_recorded", job_id=job_id, error=type(exc).__name__)

    def _discard(self, model: dict[str, Any]) -> None:
        """A model written by an attempt that does not count: do not keep it in the vault."""
        artifact = model.get("artifact_id")
        if self.vault is None or not isinstance(artifact, str):
            return
        try:
            self.vault.delete(artifact)
        except Exception as exc:
            _say("warning", "job_model_not_discarded", artifact=artifact, error=type(exc).__name__)
