"""Helpers for the vault tests: a store with tiny segments (so small payloads span several) and a fast KDF."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bastion.crypto.kdf import FAST_TEST_PARAMS
from bastion.vault import VaultStore

MASTER = "vault-test-master-" + "m" * 40
SEG = 64


def open_store(root: Path, master: str = MASTER, **options: Any) -> VaultStore:
    options.setdefault("segment_size", SEG)
    options.setdefault("kdf_params", FAST_TEST_PARAMS)
    return VaultStore.open(root, master, **options)


def data_path(root: Path, artifact_id: str, version: int = 1) -> Path:
    return root / "artifacts" / artifact_id / f"v{version}.data"


def key_path(root: Path, artifact_id: str, version: int = 1) -> Path:
    return root / "artifacts" / artifact_id / f"v{version}.key"
