"""The knobs of the job subsystem, read from Settings once, so tests can build them directly.

Only ``max_concurrent_jobs`` is a Settings field today; the rest are read with ``getattr`` and a
default so that adding them to Settings later (as BASTION_* variables) needs no change here.
``BASTION_JOB_TARGET`` (``module:function``, read from the environment) replaces the built-in trainer
in every job process: an operator's extension point, and how end-to-end tests run controlled jobs.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

DEFAULT_TARGET = "bastion.jobs.runner:run_training"


@dataclass(frozen=True)
class JobConfig:
    max_concurrent: int = 3
    max_active_per_user: int = 10
    max_runtime_seconds: float = 6 * 3600.0
    # A job whose worker died is re-queued while attempt < max_attempts, then failed as interrupted.
    max_attempts: int = 2
    heartbeat_seconds: float = 2.0
    stale_after_seconds: float = 30.0
    poll_seconds: float = 0.5
    # Resource limits of each job process (setrlimit in the child); see docs/jobs.md.
    memory_limit_mb: int | None = 16384  # address space: torch + sklearn map ~1 GiB before any data
    cpu_limit_seconds: int | None = 4 * 6 * 3600  # CPU time across threads (4 cores x the runtime)
    open_files_limit: int | None = 1024
    output_limit_mb: int | None = 4096  # largest file a job may write (RLIMIT_FSIZE)
    log_line_cap: int = 5000
    target: str = DEFAULT_TARGET
    # Extra environment for job processes (tests point PYTHONPATH at their fake targets).
    child_env: dict[str, str] = field(default_factory=dict)

    @classmethod
    def from_settings(cls, settings: Any, **overrides: Any) -> JobConfig:
        def pick(name: str, default: Any) -> Any:
            value = getattr(settings, name, None)
            return default if value is None else value

        values: dict[str, Any] = {
            "max_concurrent": int(pick("max_concurrent_jobs", cls.max_concurrent)),
            "max_active_per_user": int(pick("max_active_jobs_per_user", cls.max_active_per_user)),
            "max_runtime_seconds": float(pick("job_max_runtime_seconds", cls.max_runtime_seconds)),
            "max_attempts": int(pick("job_max_attempts", cls.max_attempts)),
            "heartbeat_seconds": float(pick("job_heartbeat_seconds", cls.heartbeat_seconds)),
            "stale_after_seconds": float(pick("job_stale_after_seconds", cls.stale_after_seconds)),
            "poll_seconds": float(pick("job_poll_seconds", cls.poll_seconds)),
            "memory_limit_mb": pick("job_memory_limit_mb", cls.memory_limit_mb),
            "cpu_limit_seconds": pick("job_cpu_limit_seconds", cls.cpu_limit_seconds),
            "open_files_limit": pick("job_open_files_limit", cls.open_files_limit),
            "output_limit_mb": pick("job_output_limit_mb", cls.output_limit_mb),
            "log_line_cap": int(pick("job_log_line_cap", cls.log_line_cap)),
            "target": str(pick("job_target", os.environ.get("BASTION_JOB_TARGET") or DEFAULT_TARGET)),
        }
        values.update(overrides)
        return cls(**values)
