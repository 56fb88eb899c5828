"""Job fixtures: a harness over the shared ``ctx`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.context import Context
from tests.jobs.ray_cluster import RayCluster, start_cluster, stop_cluster
from tests.jobs.support import Harness


@pytest.fixture
def harness(ctx: Context, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(ctx, tmp_path)
    yield h
    h.close()


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[RayCluster]:
    """One real Ray cluster (token auth, 127.0.0.1) for the whole session; this process connects with
    its token, as a Bastion worker would."""
    import os

    cluster = start_cluster()
    saved = {k: os.environ.get(k) for k in cluster.env()}
    os.environ.update(cluster.env())
    try:
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_cluster(cluster)
