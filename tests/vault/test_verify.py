"""`verify`: one report per artifact version, healthy, damaged or half-written."""

from __future__ import annotations

import os
from pathlib import Path

from bastion.vault import VaultStore, verify
from tests.vault.support import SEG, data_path


def test_healthy_vault_verifies_every_version(store: VaultStore) -> None:
    store.put_bytes("a", os.urandom(3 * SEG))
    store.put_bytes("a", b"")
    store.put_bytes("b", os.urandom(7))
    reports = verify(store)
    assert [(r.artifact_id, r.version, r.status) for r in reports] == [
        ("a", 1, "ok"),
        ("a", 2, "ok"),
        ("b", 1, "ok"),
    ]
    assert [r.size for r in reports] == [3 * SEG, 0, 7]
    assert all(r.ok and r.kek_version == 1 for r in reports)


def test_interrupted_writes_are_reported_not_listed(store: VaultStore, root: Path) -> None:
    store.put_bytes("a", b"done")
    data_path(root, "a", 2).write_bytes(b"half a write")  # data without a key slot
    (root / "artifacts" / "ghost").mkdir()
    data_path(root, "ghost", 1).write_bytes(b"")
    assert store.list() == ["a"] and store.versions("a") == [1]
    by_key = {(r.artifact_id, r.version): r.status for r in verify(store)}
    assert by_key == {("a", 1): "ok", ("a", 2): "incomplete", ("ghost", 1): "incomplete"}
    assert store.put_bytes("a", b"next").version == 3  # never reuses the half-written number


def test_missing_data_file_is_corrupt(store: VaultStore, root: Path) -> None:
    store.put_bytes("a", b"x")
    data_path(root, "a").unlink()
    (report,) = verify(store)
    assert report.status == "corrupt" and "missing" in report.message
