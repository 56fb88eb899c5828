"""SDK fixtures: a TestClient-backed server whose worker runs real job processes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from bastion.context import Context
from tests.jobs.support import ApiFactory, api_factory


@pytest.fixture
def api(ctx: Context, tmp_path: Path) -> Iterator[ApiFactory]:
    yield from api_factory(ctx, tmp_path)
