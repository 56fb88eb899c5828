"""Key ring: versioned KEKs, a verifier that catches a wrong master key, rotation states."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from bastion.crypto.keyring import FILE_NAME, KeyRing
from bastion.errors import ConfigError, IntegrityError

MASTER = "master-" + "k" * 40
NEW_MASTER = "new-master-" + "n" * 40


def test_first_open_creates_a_private_ring_without_secrets(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "vault", MASTER)
    path = tmp_path / "vault" / FILE_NAME
    assert ring.created and ring.active_version == 1
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "vault").stat().st_mode) == 0o700
    assert MASTER.encode() not in path.read_bytes()
    again = KeyRing.open(tmp_path / "vault", MASTER.encode())
    assert not again.created and again.ring_id == ring.ring_id
    wrapped = ring.wrap(b"k" * 32, b"context")
    assert again.unwrap(wrapped, b"context") == b"k" * 32


def test_wrong_master_key_is_a_config_error(tmp_path: Path) -> None:
    KeyRing.open(tmp_path, MASTER)
    with pytest.raises(ConfigError, match="does not match"):
        KeyRing.open(tmp_path, "some-other-key-" + "x" * 40)
    with pytest.raises(ConfigError, match="empty"):
        KeyRing.open(tmp_path, b"")


def test_a_new_ring_is_not_created_over_existing_data(tmp_path: Path) -> None:
    (tmp_path / "artifacts").mkdir()
    with pytest.raises(ConfigError, match=r"no keyring\.json"):
        KeyRing.open(tmp_path, MASTER)


@pytest.mark.parametrize(
    "content", [b"not json", b"{}", b'{"format": 1, "kdf": "hkdf-sha256", "ring_id": "x", "versions": []}']
)
def test_a_damaged_ring_file_is_a_config_error(tmp_path: Path, content: bytes) -> None:
    KeyRing.open(tmp_path, MASTER)
    (tmp_path / FILE_NAME).write_bytes(content)
    with pytest.raises(ConfigError):
        KeyRing.open(tmp_path, MASTER)


def test_unwrap_binds_context_ring_and_ciphertext(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path / "a", MASTER)
    other = KeyRing.open(tmp_path / "b", MASTER)  # same master, different ring
    wrapped = ring.wrap(b"secret", b"artifact-1")
    with pytest.raises(IntegrityError):
        ring.unwrap(wrapped, b"artifact-2")
    with pytest.raises(IntegrityError, match="another key ring"):
        other.unwrap(wrapped, b"artifact-1")
    tampered = type(wrapped)(
        wrapped.ring_id, 1, wrapped.nonce, bytes([wrapped.ciphertext[0] ^ 1]) + wrapped.ciphertext[1:]
    )
    with pytest.raises(IntegrityError):
        ring.unwrap(tampered, b"artifact-1")


def test_rotation_states_and_resume(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, MASTER)
    old = ring.wrap(b"dek", b"c")
    with ring.locked(exclusive=True):
        assert ring.rotate_begin() == 2
        assert ring.rotate_begin() == 2  # an interrupted rotation resumes, it does not mint v3
    assert ring.active_version == 2 and ring.retiring_versions == [1] and ring.rotation_pending
    assert ring.unwrap(old, b"c") == b"dek"  # retiring still unwraps
    assert ring.wrap(b"dek", b"c").kek_version == 2
    reopened = KeyRing.open(tmp_path, MASTER)
    assert reopened.retiring_versions == [1]
    with ring.locked(exclusive=True):
        assert ring.rotate_finish() == [1]
    assert not ring.rotation_pending
    doc = json.loads((tmp_path / FILE_NAME).read_text())
    retired = next(v for v in doc["versions"] if v["version"] == 1)
    assert retired["status"] == "retired" and "salt" not in retired
    with pytest.raises(IntegrityError) as err:
        ring.unwrap(old, b"c")
    assert err.value.code == "key_unavailable"
    with ring.locked(exclusive=True):
        assert ring.rotate_begin() == 3


def test_another_instance_sees_a_rotation_through_refresh(tmp_path: Path) -> None:
    writer = KeyRing.open(tmp_path, MASTER)
    reader = KeyRing.open(tmp_path, MASTER)
    with writer.locked(exclusive=True):
        writer.rotate_begin()
        writer.rotate_finish()
    fresh = writer.wrap(b"dek", b"c")
    assert reader.active_version == 1
    assert reader.unwrap(fresh, b"c") == b"dek"  # unknown version -> reload, then unwrap
    assert reader.active_version == 2


def test_changing_the_master_key_through_a_rotation(tmp_path: Path) -> None:
    ring = KeyRing.open(tmp_path, MASTER)
    old = ring.wrap(b"dek", b"c")
    with pytest.raises(ConfigError):
        KeyRing.open(tmp_path, NEW_MASTER)
    moving = KeyRing.open(tmp_path, NEW_MASTER, previous_secrets=[MASTER])
    assert moving.rotation_pending
    assert moving.unwrap(old, b"c") == b"dek"
    with moving.locked(exclusive=True):
        assert moving.rotate_begin() == 2
        # interrupted here: the rerun needs the old key for version 1, and says so
        with pytest.raises(ConfigError, match="previous master key"):
            KeyRing.open(tmp_path, NEW_MASTER)
        rewrapped = moving.wrap(moving.unwrap(old, b"c"), b"c")
        moving.rotate_finish()
    alone = KeyRing.open(tmp_path, NEW_MASTER)
    assert not alone.rotation_pending
    assert alone.unwrap(rewrapped, b"c") == b"dek"
    with pytest.raises(ConfigError):
        KeyRing.open(tmp_path, MASTER)
