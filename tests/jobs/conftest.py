"""Job fixtures: a harness over the shared ``ctx`` (SQLite and PostgreSQL)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.context import Context
from tests.jobs.support import Harness


@pytest.fixture
def harness(ctx: Context, tmp_path: Path) -> Iterator[Harness]:
    h = Harness(ctx, tmp_path)
    yield h
    h.close()
