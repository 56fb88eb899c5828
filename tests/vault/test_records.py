"""Records: one file per blob under an anchor artifact; every integrity check of a version, no key slot."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.errors import Conflict, IntegrityError, Invalid, NotFound
from bastion.vault import VaultStore, rotate, verify
from bastion.vault.records import ANCHOR_KIND, Records
from tests.vault.support import open_store

PAYLOAD = os.urandom(1000)  # spans many 64-byte segments


def _file(root: Path, anchor: str, name: str) -> Path:
    return root / "artifacts" / anchor / f"r-{name}.rec"


def test_a_record_survives_reopening_the_vault(store: VaultStore, root: Path) -> None:
    records = Records(store)
    info = records.put("anchor-1", "u1", PAYLOAD, meta={"kind": "fl-update", "round": 3})
    records.put("anchor-1", "u2", b"")
    assert (info.anchor_version, info.size) == (1, len(PAYLOAD))
    fresh = Records(open_store(root))  # a new process: nothing cached
    read_info, data = fresh.read("anchor-1", "u1")
    assert data == PAYLOAD and read_info.meta == {"kind": "fl-update", "round": 3}
    assert read_info.digest == info.digest
    assert fresh.get_bytes("anchor-1", "u2") == b""
    assert fresh.names("anchor-1") == ["u1", "u2"]
    # The anchor is an ordinary version; the records are no versions of it and leave nothing half-written.
    assert store.versions("anchor-1") == [1] and store.info("anchor-1").meta == {"kind": ANCHOR_KIND}
    assert [(a, c, i) for a, c, i in store.scan()] == [("anchor-1", [1], [])]
    assert not [p for p in (root / "artifacts" / "anchor-1").iterdir() if p.name.startswith(".tmp-")]


def test_a_record_is_written_once_and_names_are_checked(store: VaultStore) -> None:
    records = Records(store)
    records.put("anchor-1", "u1", b"first")
    with pytest.raises(Conflict):
        records.put("anchor-1", "u1", b"second")
    assert records.get_bytes("anchor-1", "u1") == b"first"
    for bad in ("../x", "", ".hidden", "a/b", "x" * 101):
        with pytest.raises(Invalid):
            records.put("anchor-1", bad, b"x")
    with pytest.raises(NotFound):
        records.get_bytes("anchor-1", "absent")


@pytest.mark.parametrize(
    "damage",
    [
        "torn",  # a write cut short (the file never gets its final name that way, but a disk may lose it)
        "cut at a segment boundary",
        "extended",
        "flipped ciphertext",
        "flipped header",
        "flipped trailer digest",
    ],
)
def test_a_damaged_record_is_an_integrity_error(store: VaultStore, root: Path, damage: str) -> None:
    records = Records(store)
    records.put("anchor-1", "u1", PAYLOAD)
    path = _file(root, "anchor-1", "u1")
    raw = bytearray(path.read_bytes())
    if damage == "torn":
        raw = raw[: len(raw) // 2]
    elif damage == "cut at a segment boundary":
        raw = raw[: len(raw) - 44 - (64 + 16)] + raw[-44:]
    elif damage == "extended":
        raw += b"\0" * 80
    elif damage == "flipped ciphertext":
        raw[len(raw) // 2] ^= 1
    elif damage == "flipped header":
        raw[raw.index(b'"created":"') + 12] ^= 1
    else:
        raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(IntegrityError) as info:
        Records(open_store(root)).get_bytes("anchor-1", "u1")
    assert "'u1'" in info.value.message
    assert [r.status for r in verify(store) if r.artifact_id == "anchor-1/u1"] == ["corrupt"]


def test_a_record_moved_to_another_name_or_anchor_does_not_open(store: VaultStore, root: Path) -> None:
    records = Records(store)
    records.put("anchor-1", "u1", PAYLOAD)
    records.put("anchor-2", "u2", b"other")
    moved = _file(root, "anchor-1", "u9")
    moved.write_bytes(_file(root, "anchor-1", "u1").read_bytes())
    _file(root, "anchor-2", "u1").write_bytes(_file(root, "anchor-1", "u1").read_bytes())
    for anchor, name in (("anchor-1", "u9"), ("anchor-2", "u1")):
        with pytest.raises(IntegrityError):
            records.get_bytes(anchor, name)


def test_records_outlive_a_key_rotation_and_go_with_their_anchor(store: VaultStore, root: Path) -> None:
    records = Records(store)
    records.put("anchor-1", "u1", PAYLOAD)
    before = _file(root, "anchor-1", "u1").read_bytes()
    report = rotate(store)
    assert report.completed and report.rewrapped == 1 and report.retired_versions == [1]
    assert _file(root, "anchor-1", "u1").read_bytes() == before, "a rotation never rewrites a record"
    assert Records(open_store(root)).get_bytes("anchor-1", "u1") == PAYLOAD
    by_id = {r.artifact_id: r for r in verify(store)}
    assert by_id["anchor-1/u1"].status == "ok" and by_id["anchor-1/u1"].version == 1
    store.delete("anchor-1")
    records.forget("anchor-1")
    with pytest.raises(NotFound):
        records.get_bytes("anchor-1", "u1")
    records.put("anchor-1", "u2", b"after")  # a deleted anchor is made afresh, never reused
    assert Records(open_store(root)).get_bytes("anchor-1", "u2") == b"after"


def test_an_artifact_that_is_no_anchor_keys_no_record(store: VaultStore, root: Path) -> None:
    store.put_bytes("plain", os.urandom(32))
    (root / "artifacts" / "plain" / "r-u1.rec").write_bytes(b"BSTV")
    with pytest.raises(IntegrityError):
        Records(store).put("plain", "u2", b"x")
    with pytest.raises(IntegrityError):
        Records(store).get_bytes("plain", "u1")
