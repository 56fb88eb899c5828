"""Pieces of the job subsystem that ``bastion.wiring`` and the worker command build over a Context.

``ctx.services.worker`` is the embedded Worker when ``settings.embedded_worker`` is true (``bastion
serve`` without ``--no-worker``). The app's lifespan calls ``Services.start()`` and ``close()``, so
the worker runs exactly as long as the server.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bastion.context import Context
from bastion.jobs import queue
from bastion.jobs.config import JobConfig
from bastion.jobs.registration import registrar
from bastion.jobs.worker import Worker


def make_worker(ctx: Context, config: JobConfig, **options: Any) -> Worker:
    from bastion.jobs.executors import make_executor

    settings = ctx.settings
    if options.get("executor") is None:
        options["executor"] = make_executor(settings, vault=ctx.vault)
    return Worker(
        ctx.db,
        config,
        kaggle_path=settings.kaggle_alzheimer_path,
        vault=ctx.vault,
        registrar=options.pop("registrar", registrar(ctx)),
        **options,
    )


def watch_training(ctx: Context, config: JobConfig) -> Callable[[], bool]:
    """The ``training_manager`` health check: the embedded worker, else any live standalone one."""

    def training_manager() -> bool:
        worker = ctx.services.worker
        if worker is not None and worker.alive:
            return True
        return bool(queue.live_workers(ctx.db, config.stale_after_seconds))

    return training_manager
