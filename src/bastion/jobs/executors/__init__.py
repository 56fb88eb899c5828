"""Where a claimed job runs: the executor interface the worker drives, and the choice between them.

The worker claims jobs from the database the same way whatever the executor; for each claim it
asks the executor for a :class:`JobRun` and drives it exactly as it drove a local process:
``start()`` (None if it was killed before it could start), ``run(sink, deadline, tick)`` until it
ends, ``kill(reason)`` from any thread. Two executors exist: ``local`` (a process per job on this
machine, bastion.jobs.executor) and ``ray`` (a Ray task per job, bastion.jobs.executors.ray),
chosen by ``BASTION_EXECUTOR``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from bastion.jobs.config import JobConfig
from bastion.jobs.executor import JobProcess, Outcome, Sink

EXECUTORS = ("local", "ray")
# Outcome.killed when the machine or process running the job died under it: the worker re-queues
# the job while attempts remain (the attempt counter), then fails it with the reason.
NODE_DIED = "node_died"


class JobRun(Protocol):
    def start(self) -> int | None: ...

    def kill(self, reason: str) -> bool: ...

    def run(self, sink: Sink, *, deadline: float, tick: Callable[[], None] | None = None) -> Outcome: ...


class Executor(Protocol):
    name: str

    def prepare(self, spec: dict[str, Any], secrets: dict[str, Any], config: JobConfig) -> JobRun: ...

    def close(self) -> None: ...


class LocalExecutor:
    """One process per job on this machine (the default)."""

    name = "local"

    def prepare(self, spec: dict[str, Any], secrets: dict[str, Any], config: JobConfig) -> JobRun:
        return JobProcess(spec, secrets, config)

    def close(self) -> None:
        """Nothing is held between jobs."""


def make_executor(settings: Any, *, vault: Any) -> Executor:
    """The executor ``settings.executor`` names; Ray connects (and checks its security) here."""
    name = str(getattr(settings, "executor", None) or "local")
    if name == "ray":
        from bastion.jobs.executors.ray import RayExecutor

        return RayExecutor.connect(
            getattr(settings, "ray_address", None),
            insecure=bool(getattr(settings, "ray_insecure", False)),
            vault=vault,
        )
    return LocalExecutor()
