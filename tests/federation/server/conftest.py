from __future__ import annotations

import pytest

from bastion.context import Context
from tests.federation.server.support import FakeClock, World, principal_for


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def world(ctx: Context, clock: FakeClock) -> World:
    return World(ctx, principal_for(ctx, "coordinator"), clock)
