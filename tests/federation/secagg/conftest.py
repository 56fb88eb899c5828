"""Fixtures for the secure-aggregation tests."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.federation.secagg.support import Setup, make_setup


@pytest.fixture(name="make_setup")
def make_setup_fixture() -> Callable[..., Setup]:
    return make_setup
