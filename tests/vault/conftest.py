"""Vault fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.vault import VaultStore
from tests.vault.support import open_store


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "vault"


@pytest.fixture
def store(root: Path) -> VaultStore:
    return open_store(root)
