"""Progress, per-epoch metrics and log lines of a running job, written to the store in batches.

The job process may report thousands of ticks a second; the store sees at most one write every
``interval`` seconds per job, and a progress event only when the fraction moved by a percent, the
stage changed or a few seconds passed. Every epoch becomes a ``metrics`` event (the SSE stream and
the status ``history``). Log lines are kept up to ``cap`` per job: the newest win, the count of
every line ever written is on the job row so a reader knows what was dropped.
"""

from __future__ import annotations

import time
from typing import Any

from sqlalchemy import delete, select, update

from bastion.jobs import states
from bastion.logs import redact_text
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.tables import JobEvent, JobLogLine, TrainingJob

MAX_LINE_CHARS = 4000
MAX_HISTORY = 5000
PROGRESS_STEP = 0.01
PROGRESS_EVERY = 5.0


class Recorder:
    def __init__(
        self,
        db: Database,
        job_id: str,
        worker_id: str,
        attempt: int,
        *,
        cap: int = 5000,
        interval: float = 0.25,
    ) -> None:
        self.db = db
        self.job_id = job_id
        self.worker_id = worker_id
        self.attempt = attempt
        self.cap = max(10, cap)
        self.interval = interval
        self.progress = 0.0
        self.stage: str | None = None
        self.history: list[dict[str, Any]] = []
        self.lost = False
        self._dirty = False
        self._new_metrics: list[dict[str, Any]] = []
        self._logs: list[tuple[str, str, Any]] = []
        self._event_progress = -1.0
        self._event_stage: str | None = None
        self._event_at = 0.0
        self._flushed_at = time.monotonic()
        self.last_stderr: str | None = None

    # -- collecting (called from the supervising thread) --------------------------------------------

    def on_progress(self, fraction: float, event: dict[str, Any]) -> None:
        self.progress = min(1.0, max(self.progress, float(fraction)))
        stage = event.get("stage")
        if isinstance(stage, str):
            self.stage = stage[:32]
        if "epoch" in event and len(self.history) < MAX_HISTORY:
            self.history.append(event)
            self._new_metrics.append(event)
        self._dirty = True

    def on_log(self, stream: str, line: str) -> None:
        text = redact_text(line.rstrip("\r\n"))[:MAX_LINE_CHARS]
        if stream == "stderr" and text.strip():
            self.last_stderr = text.strip()
        self._logs.append((stream, text, utcnow()))

    def due(self) -> bool:
        return time.monotonic() - self._flushed_at >= self.interval

    # -- writing ----------------------------------------------------------------------------------

    def _progress_event(self) -> dict[str, Any] | None:
        now = time.monotonic()
        if (
            self.progress - self._event_progress >= PROGRESS_STEP
            or self.stage != self._event_stage
            or (now - self._event_at >= PROGRESS_EVERY and self.progress != self._event_progress)
        ):
            self._event_progress, self._event_stage, self._event_at = self.progress, self.stage, now
            return {"progress": round(self.progress, 4), "stage": self.stage}
        return None

    def flush(self) -> None:
        """Write what was collected; a fenced UPDATE tells us if the job is no longer ours."""
        self._flushed_at = time.monotonic()
        logs, self._logs = self._logs, []
        metrics, self._new_metrics = self._new_metrics, []
        dirty, self._dirty = self._dirty, False
        if not (logs or dirty):
            return
        with self.db.session() as s:
            if dirty and not self.lost:
                moved = s.execute(
                    update(TrainingJob)
                    .where(
                        TrainingJob.id == self.job_id,
                        TrainingJob.state == states.RUNNING.value,
                        TrainingJob.worker_id == self.worker_id,
                        TrainingJob.attempt == self.attempt,
                    )
                    .values(
                        progress=self.progress,
                        stage=self.stage,
                        history=self.history,
                        updated_at=utcnow(),
                    )
                )
                if moved.rowcount != 1:  # type: ignore[attr-defined]
                    self.lost = True
                else:
                    event = self._progress_event()
                    if event is not None:
                        s.add(JobEvent(job_id=self.job_id, ts=utcnow(), kind="progress", data=event))
                    for m in metrics:
                        s.add(
                            JobEvent(
                                job_id=self.job_id,
                                ts=utcnow(),
                                kind="metrics",
                                data=m,
                            )
                        )
            if logs:
                self._write_logs(s, logs)

    def _write_logs(self, s: Any, logs: list[tuple[str, str, Any]]) -> None:
        s.add_all(
            [JobLogLine(job_id=self.job_id, ts=ts, stream=stream, line=line) for stream, line, ts in logs]
        )
        s.execute(
            update(TrainingJob)
            .where(TrainingJob.id == self.job_id)
            .values(log_lines=TrainingJob.log_lines + len(logs))
        )
        s.flush()
        # Keep the newest ``cap`` lines: find the id just past them and drop everything older.
        boundary = s.scalar(
            select(JobLogLine.id)
            .where(JobLogLine.job_id == self.job_id)
            .order_by(JobLogLine.id.desc())
            .offset(self.cap)
            .limit(1)
        )
        if boundary is not None:
            s.execute(delete(JobLogLine).where(JobLogLine.job_id == self.job_id, JobLogLine.id <= boundary))
