"""``bastion serve``'s warm-up thread: route state built and first-request imports loaded before use."""

from __future__ import annotations

import gc
import sys

from fastapi.testclient import TestClient

from bastion.cli import server


def test_warm_up_prepares_routes_and_loads_lazy_imports(client: TestClient) -> None:
    try:
        server._warm(client.app)
    finally:
        gc.unfreeze()  # the test process keeps collecting as usual
    assert all(name in sys.modules for name in server._PRELOAD)
    from bastion.api.routing import warm

    assert warm(client.app) > 100  # every API route (and the dashboard's) has its request state
