"""Faults at rest: every flipped byte, truncation, segment swap and header swap is an integrity error
that names the artifact, and the reader stops at the first bad segment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bastion.crypto import aead
from bastion.errors import IntegrityError
from bastion.vault import VaultStore, verify
from bastion.vault.envelope import TRAILER, read_header
from tests.vault.support import SEG, data_path, key_path

SEALED = SEG + aead.TAG_LEN


def expect_integrity_error(
    store: VaultStore, artifact_id: str, version: int = 1, **kw: object
) -> IntegrityError:
    with pytest.raises(IntegrityError) as err:
        store.get_bytes(artifact_id, version, **kw)  # type: ignore[arg-type]
    assert err.value.details["artifact"] == artifact_id
    assert repr(artifact_id) in err.value.message
    return err.value


def header_len(path: Path) -> int:
    with path.open("rb") as f:
        return len(read_header(f))


@pytest.mark.parametrize("which", ["data", "key"])
@pytest.mark.parametrize("code", [None, "s3cret"], ids=["plain", "access-code"])
def test_every_flipped_byte_is_caught(store: VaultStore, root: Path, which: str, code: str | None) -> None:
    store.put_bytes("scan", os.urandom(3 * SEG + 11), access_code=code, meta={"note": "flip me"})
    path = data_path(root, "scan") if which == "data" else key_path(root, "scan")
    original = path.read_bytes()
    for i in range(len(original)):
        bad = bytearray(original)
        bad[i] ^= 0x80 if i % 2 else 0x01  # low and high bits, so JSON and UTF-8 paths both get hit
        path.write_bytes(bytes(bad))
        expect_integrity_error(store, "scan", access_code=code)
    path.write_bytes(original)
    assert len(store.get_bytes("scan", access_code=code)) == 3 * SEG + 11


def test_every_truncation_and_any_extension_is_caught(store: VaultStore, root: Path) -> None:
    store.put_bytes("t", os.urandom(4 * SEG))
    path = data_path(root, "t")
    original = path.read_bytes()
    for n in range(len(original)):
        path.write_bytes(original[:n])
        expect_integrity_error(store, "t")
    for extra in (b"\x00", original[-SEALED:], os.urandom(SEALED)):
        path.write_bytes(original + extra)
        expect_integrity_error(store, "t")
    path.write_bytes(b"")
    expect_integrity_error(store, "t")
    path.unlink()
    expect_integrity_error(store, "t")


def test_swapped_segments_fail_at_the_first_bad_one_after_good_ones(store: VaultStore, root: Path) -> None:
    data = os.urandom(5 * SEG)
    store.put_bytes("s", data)
    path = data_path(root, "s")
    blob = bytearray(path.read_bytes())
    start = header_len(path)
    seg = [bytes(blob[start + i * SEALED : start + (i + 1) * SEALED]) for i in range(5)]
    blob[start + 2 * SEALED : start + 4 * SEALED] = seg[3] + seg[2]
    path.write_bytes(bytes(blob))
    stream = store.open_stream("s")
    assert next(stream) == data[:SEG]
    assert next(stream) == data[SEG : 2 * SEG]
    with pytest.raises(IntegrityError) as err:
        next(stream)
    assert err.value.details == {"artifact": "s", "version": 1, "segment": 2}
    report = {r.artifact_id: r for r in verify(store)}["s"]
    assert report.status == "corrupt" and "segment 2" in report.message


def test_a_segment_moved_in_from_another_artifact_fails(store: VaultStore, root: Path) -> None:
    store.put_bytes("a", os.urandom(3 * SEG))
    store.put_bytes("b", os.urandom(3 * SEG))
    pa, pb = data_path(root, "a"), data_path(root, "b")
    a, b = bytearray(pa.read_bytes()), pb.read_bytes()
    ha, hb = header_len(pa), header_len(pb)
    a[ha + SEALED : ha + 2 * SEALED] = b[hb + SEALED : hb + 2 * SEALED]
    pa.write_bytes(bytes(a))
    expect_integrity_error(store, "a")
    assert len(store.get_bytes("b")) == 3 * SEG


@pytest.mark.parametrize("ids", [("alpha", "bravo"), ("a", "a-much-longer-artifact-name")])
def test_swapped_headers_between_two_artifacts_fail_for_both(
    store: VaultStore, root: Path, ids: tuple[str, str]
) -> None:
    x, y = ids
    store.put_bytes(x, os.urandom(2 * SEG))
    store.put_bytes(y, os.urandom(2 * SEG))
    px, py = data_path(root, x), data_path(root, y)
    bx, by = px.read_bytes(), py.read_bytes()
    hx, hy = header_len(px), header_len(py)
    px.write_bytes(by[:hy] + bx[hx:])
    py.write_bytes(bx[:hx] + by[hy:])
    expect_integrity_error(store, x)
    expect_integrity_error(store, y)


@pytest.mark.parametrize("part", ["data", "key", "trailer", "both"])
def test_swapping_whole_files_or_trailers_between_artifacts_fails(
    store: VaultStore, root: Path, part: str
) -> None:
    store.put_bytes("left", os.urandom(2 * SEG))
    store.put_bytes("right", os.urandom(2 * SEG))
    pairs = []
    if part in ("data", "both"):
        pairs.append((data_path(root, "left"), data_path(root, "right")))
    if part in ("key", "both"):
        pairs.append((key_path(root, "left"), key_path(root, "right")))
    for p, q in pairs:
        a, b = p.read_bytes(), q.read_bytes()
        p.write_bytes(b)
        q.write_bytes(a)
    if part == "trailer":
        p, q = data_path(root, "left"), data_path(root, "right")
        a, b = p.read_bytes(), q.read_bytes()
        p.write_bytes(a[: -TRAILER.size] + b[-TRAILER.size :])
        q.write_bytes(b[: -TRAILER.size] + a[-TRAILER.size :])
    expect_integrity_error(store, "left")
    expect_integrity_error(store, "right")


def test_swapping_versions_of_one_artifact_fails(store: VaultStore, root: Path) -> None:
    store.put_bytes("m", b"version one" * 10)
    store.put_bytes("m", b"version two" * 10)
    p1, p2 = data_path(root, "m", 1), data_path(root, "m", 2)
    a, b = p1.read_bytes(), p2.read_bytes()
    p1.write_bytes(b)
    p2.write_bytes(a)
    expect_integrity_error(store, "m", 1)
    expect_integrity_error(store, "m", 2)


def test_open_stream_checks_key_and_header_before_returning(store: VaultStore, root: Path) -> None:
    store.put_bytes("h", os.urandom(SEG))
    path = data_path(root, "h")
    blob = bytearray(path.read_bytes())
    blob[12] ^= 1  # inside the header
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        store.open_stream("h")  # no next() needed


def test_info_and_verify_report_damage_per_artifact(store: VaultStore, root: Path) -> None:
    store.put_bytes("fine", b"ok" * 100)
    store.put_bytes("broken", b"ok" * 100)
    path = data_path(root, "broken")
    blob = bytearray(path.read_bytes())
    blob[-1] ^= 1  # the plaintext hash in the trailer
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        store.info("broken")
    reports = {r.artifact_id: r for r in verify(store)}
    assert reports["fine"].ok and reports["fine"].status == "ok"
    assert not reports["broken"].ok and reports["broken"].status == "corrupt"
    assert "'broken'" in reports["broken"].message
