"""Leaving a finished CLI process without Python's teardown of everything it imported.

Tearing down the interpreter after ``bastion fl client`` (torch, NumPy, the client stack) took
0.6-1.1 s of CPU per site process here, spent after the federation had already completed; with three
sites on two cores that was ~1 s of ``bench/fl_vs_flower.py``'s whole run. A command whose work is
done and handed to the OS (the site state written and closed, the connection closed) calls
``skip_teardown()``; the real ``bastion`` process (``main``) then flushes its streams and logging
and ends with ``os._exit``. In-process callers (Typer's test runner) call ``app`` directly and are
unaffected.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from collections.abc import Callable
from typing import Any

_skip = False


def skip_teardown() -> None:
    """Ask ``run`` to end the process without interpreter teardown once the command returns."""
    global _skip
    _skip = True


def run(app: Callable[[], Any]) -> None:
    """Run a Typer app as the process's command (Typer ends it with ``SystemExit``)."""
    try:
        app()
    except SystemExit as exc:
        if not _skip or not isinstance(exc.code, int | None):
            raise
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        logging.shutdown()
        os._exit(exc.code or 0)
