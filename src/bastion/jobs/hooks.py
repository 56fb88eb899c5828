"""Wiring the job subsystem into a Context (called by bastion.wiring.install_services).

``ctx.services['jobs']`` is the JobService; ``ctx.services['worker']`` the embedded Worker when
``settings.embedded_worker`` is true (``bastion serve`` without ``--no-worker``). The app's lifespan
calls ``start()`` and ``close()`` on services, so the worker runs exactly as long as the server.
"""

from __future__ import annotations

from typing import Any

from bastion.context import Context
from bastion.jobs import queue
from bastion.jobs.config import JobConfig
from bastion.jobs.registration import registrar
from bastion.jobs.service import JobService
from bastion.jobs.worker import Worker


def make_worker(ctx: Context, config: JobConfig, **options: Any) -> Worker:
    from bastion.jobs.executors import make_executor

    settings = ctx.settings
    if options.get("executor") is None:
        options["executor"] = make_executor(settings, vault=ctx.services.get("vault"))
    return Worker(
        ctx.db,
        config,
        kaggle_path=settings.kaggle_alzheimer_path,
        vault=ctx.services.get("vault"),
        on_complete=options.pop("on_complete", registrar(ctx)),
        **options,
    )


def install(ctx: Context, config: JobConfig | None = None) -> None:
    config = config or JobConfig.from_settings(ctx.settings)
    ctx.services["jobs"] = JobService(ctx, config)
    if ctx.settings.embedded_worker:
        ctx.services["worker"] = make_worker(ctx, config)

    def training_manager() -> bool:
        worker = ctx.services.get("worker")
        if isinstance(worker, Worker) and worker.alive:
            return True
        return bool(queue.live_workers(ctx.db, config.stale_after_seconds))

    ctx.health_checks["training_manager"] = training_manager
