"""Access codes: the data key is also sealed under a key derived from the code."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.crypto.kdf import KdfParams
from bastion.errors import Forbidden, Invalid
from bastion.vault import VaultStore, rotate, verify
from tests.vault.support import SEG, open_store

DATA = b"protected model weights" * 20


def test_right_code_reads_wrong_or_missing_code_is_forbidden(store: VaultStore) -> None:
    info = store.put_bytes("m", DATA, access_code="correct horse")
    assert info.access_code_required
    assert store.get_bytes("m", access_code="correct horse") == DATA
    for wrong in ("correct horse ", "Correct horse", "x"):
        with pytest.raises(Forbidden) as err:
            store.get_bytes("m", access_code=wrong)
        assert err.value.code == "wrong_access_code" and err.value.status_code == 403
        assert "correct horse" not in err.value.message and wrong not in err.value.message
    with pytest.raises(Forbidden) as err:
        store.open_stream("m")  # raised at the call, before any byte streams
    assert err.value.code == "access_code_required"


def test_info_needs_no_code(store: VaultStore) -> None:
    store.put_bytes("m", DATA, access_code="1234", meta={"owner": "u1"})
    info = store.info("m")
    assert info.size == len(DATA) and info.meta == {"owner": "u1"} and info.access_code_required


def test_codes_are_per_version(store: VaultStore) -> None:
    store.put_bytes("m", b"open", access_code=None)
    store.put_bytes("m", b"locked", access_code="v2-code")
    assert store.get_bytes("m", 1) == b"open"
    assert store.get_bytes("m", 1, access_code="anything") == b"open"  # a code on an open artifact is ignored
    with pytest.raises(Forbidden):
        store.get_bytes("m", 2)


def test_scrypt_codes_work_too(root: Path) -> None:
    store = open_store(root, kdf_params=KdfParams("scrypt", n=16, r=1, p=1))
    store.put_bytes("m", DATA, access_code="pin")
    assert store.get_bytes("m", access_code="pin") == DATA
    with pytest.raises(Forbidden):
        store.get_bytes("m", access_code="nip")


def test_empty_code_is_invalid_and_writes_nothing(store: VaultStore) -> None:
    with pytest.raises(Invalid):
        store.put_bytes("m", DATA, access_code="")
    assert store.list() == []


def test_rotation_keeps_the_code_without_knowing_it(store: VaultStore) -> None:
    store.put_bytes("m", DATA * 3, access_code="pin")
    report = rotate(store)
    assert report.completed and report.rewrapped == 1
    assert store.info("m").kek_version == 2
    assert store.get_bytes("m", access_code="pin") == DATA * 3
    with pytest.raises(Forbidden):
        store.get_bytes("m", access_code="nope")


def test_verify_with_and_without_codes(store: VaultStore) -> None:
    store.put_bytes("m", DATA * 2 + b"x" * SEG, access_code="pin")
    assert [r.status for r in verify(store)] == ["key_only"]
    assert [r.status for r in verify(store, access_codes={"m": "pin"})] == ["ok"]
    bad = verify(store, access_codes={"m": "nip"})
    assert [r.status for r in bad] == ["wrong_access_code"] and not bad[0].ok
