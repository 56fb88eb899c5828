"""Vault format versions: new versions carry a BLAKE3 plaintext digest (format 2); format-1 versions
(SHA-256) written before stay readable and are verified with SHA-256, and the format byte is bound to
the key slot, so it cannot be edited to choose the other digest."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import blake3
import pytest

from bastion.errors import IntegrityError, Invalid
from bastion.vault import VaultStore, verify
from bastion.vault import store as store_module
from bastion.vault.digest import PipelinedDigest
from bastion.vault.envelope import FORMAT_BLAKE3, FORMAT_SHA256, TRAILER
from tests.vault.support import SEG, data_path, open_store


def test_new_versions_are_format_2_with_a_blake3_digest(store: VaultStore, root: Path) -> None:
    data = os.urandom(5 * SEG + 3)
    info = store.put_bytes("m", data)
    assert data_path(root, "m").read_bytes()[4] == FORMAT_BLAKE3
    assert (info.format, info.digest_alg) == (FORMAT_BLAKE3, "blake3")
    assert info.digest == blake3.blake3(data).hexdigest() and info.sha256 is None
    assert store.get_bytes("m") == data


def test_format_1_versions_stay_readable_and_verified(root: Path) -> None:
    old = open_store(root, write_format=FORMAT_SHA256)
    data = os.urandom(4 * SEG + 9)
    written = [old.put_bytes("m", data, access_code="c0de-c0de"), old.put_bytes("plain", data)]
    new = open_store(root)  # today's reader over yesterday's files
    written.append(new.put_bytes("m", data[::-1], access_code="c0de-c0de"))
    assert written == [new.info("m", 1), new.info("plain"), new.info("m", 2)]  # put's info = read-back
    assert data_path(root, "m", 1).read_bytes()[4] == FORMAT_SHA256
    v1, v2 = new.info("m", 1), new.info("m", 2)
    assert (v1.format, v1.digest_alg, v1.sha256) == (
        FORMAT_SHA256,
        "sha256",
        hashlib.sha256(data).hexdigest(),
    )
    assert (v2.format, v2.digest_alg) == (FORMAT_BLAKE3, "blake3")
    assert new.get_bytes("m", 1, access_code="c0de-c0de") == data
    assert new.get_bytes("m", 2, access_code="c0de-c0de") == data[::-1]
    assert new.get_bytes("plain") == data
    assert all(r.ok for r in verify(new, access_codes={"m": "c0de-c0de"}))


@pytest.mark.parametrize("written", [FORMAT_SHA256, FORMAT_BLAKE3])
def test_the_format_byte_cannot_be_switched(root: Path, written: int) -> None:
    store = open_store(root, write_format=written)
    store.put_bytes("m", os.urandom(3 * SEG))
    path = data_path(root, "m")
    raw = bytearray(path.read_bytes())
    for fmt in (FORMAT_SHA256, FORMAT_BLAKE3, 0, 3, 255):
        if fmt == written:
            continue
        raw[4] = fmt
        path.write_bytes(bytes(raw))
        with pytest.raises(IntegrityError):
            store.get_bytes("m")
        with pytest.raises(IntegrityError):
            store.info("m")


@pytest.mark.parametrize("written", [FORMAT_SHA256, FORMAT_BLAKE3])
def test_every_flipped_trailer_byte_is_caught(root: Path, written: int) -> None:
    store = open_store(root, write_format=written)
    store.put_bytes("m", os.urandom(2 * SEG + 1))
    path = data_path(root, "m")
    original = path.read_bytes()
    for i in range(len(original) - TRAILER.size, len(original)):
        bad = bytearray(original)
        bad[i] ^= 0x01
        path.write_bytes(bytes(bad))
        with pytest.raises(IntegrityError):
            store.get_bytes("m")


@pytest.mark.parametrize(("written", "wrong"), [(FORMAT_SHA256, "blake3"), (FORMAT_BLAKE3, "sha256")])
def test_the_digest_is_checked_with_the_formats_own_algorithm(
    root: Path, written: int, wrong: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A writer that put the other algorithm's digest in the trailer (slot and binding still valid)
    is caught by a verified read: the reader hashes with the format's algorithm, not the writer's."""
    store = open_store(root, write_format=written)
    monkeypatch.setattr(store_module, "PipelinedDigest", lambda _alg: PipelinedDigest(wrong))
    store.put_bytes("m", os.urandom(3 * SEG))
    monkeypatch.undo()
    assert b"".join(store.open_stream("m")) is not None  # segments themselves are intact
    with pytest.raises(IntegrityError, match="digest does not match"):
        store.get_bytes("m")
    assert not verify(store)[0].ok


def test_an_unknown_write_format_is_refused(root: Path) -> None:
    with pytest.raises(Invalid):
        open_store(root, write_format=3)
