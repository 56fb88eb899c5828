"""``bastion worker``: run job workers without the API, against the configured database.

Several of these (on several machines sharing one PostgreSQL and one vault directory) split the
queue between them; ``bastion serve --no-worker`` then only answers the API.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Annotated

import typer

from bastion.cli.output import err_console, fail
from bastion.cli.server import open_context
from bastion.config import load_settings
from bastion.errors import BastionError


def worker(
    concurrency: Annotated[
        int | None,
        typer.Option(
            "--concurrency", "-c", min=1, help="Jobs at once (default BASTION_MAX_CONCURRENT_JOBS)."
        ),
    ] = None,
    insecure_ray: Annotated[
        bool,
        typer.Option(
            "--insecure-ray", help="Allow a Ray cluster without token auth, on a loopback address only."
        ),
    ] = False,
) -> None:
    """Run a standalone job worker until SIGTERM or Ctrl-C (running jobs go back to the queue)."""
    from bastion.jobs.config import JobConfig
    from bastion.jobs.hooks import make_worker

    try:
        settings = load_settings(
            embedded_worker=False, max_concurrent_jobs=concurrency, ray_insecure=insecure_ray or None
        )
        ctx = open_context(settings)
        job_worker = make_worker(ctx, JobConfig.from_settings(ctx.settings))
    except BastionError as exc:
        raise fail(exc.message, 2) from exc
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    job_worker.start()
    err_console.print(f"Bastion worker {job_worker.id} running up to {job_worker.config.max_concurrent} jobs")
    try:
        stop.wait()
    finally:
        job_worker.close()
        ctx.close()
        err_console.print("worker stopped")
