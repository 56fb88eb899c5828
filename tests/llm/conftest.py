"""A tiny model shared by the session (built offline, random weights)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.llm.support import build_model


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_model(tmp_path_factory.mktemp("llm"))
