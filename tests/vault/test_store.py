"""VaultStore: round trips, versions, listing, deletion, ids, permissions, atomicity, memory."""

from __future__ import annotations

import os
import stat
import threading
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from bastion.errors import Invalid, NotFound
from bastion.vault import VaultStore
from tests.vault.support import SEG, open_store


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 5 * SEG, 5 * SEG + 17])
def test_round_trip_and_info(store: VaultStore, size: int) -> None:
    data = os.urandom(size)
    info = store.put_bytes("model-1", data, meta={"kind": "sklearn", "round": 3})
    assert store.get_bytes("model-1") == data
    assert b"".join(store.open_stream("model-1")) == data
    assert info == store.info("model-1")
    assert info.size == size and info.digest == blake3.blake3(data).hexdigest()
    assert info.meta == {"kind": "sklearn", "round": 3}
    assert info.version == 1 and info.kek_version == 1 and not info.access_code_required
    assert info.stored_size == (store.root / "artifacts" / "model-1" / "v1.data").stat().st_size


def test_stream_in_any_chunking_reads_back_in_segments(store: VaultStore) -> None:
    data = os.urandom(10 * SEG + 5)
    chunks: Iterator[bytes] = (data[i : i + 7] for i in range(0, len(data), 7))
    store.put_stream("ds", chunks)
    pieces = list(store.open_stream("ds"))
    assert [len(p) for p in pieces] == [SEG] * 10 + [5]
    assert b"".join(pieces) == data


def test_versions_keep_previous_ones(store: VaultStore) -> None:
    assert [store.put_bytes("a", b"one").version, store.put_bytes("a", b"two").version] == [1, 2]
    assert store.versions("a") == [1, 2]
    assert store.get_bytes("a") == b"two"
    assert store.get_bytes("a", 1) == b"one"
    assert store.info("a", 1).size == 3
    with pytest.raises(NotFound):
        store.get_bytes("a", 3)
    with pytest.raises(Invalid):
        store.get_bytes("a", 0)


def test_keep_versions_prunes_the_oldest(root: Path) -> None:
    store = open_store(root, keep_versions=2)
    for i in range(4):
        store.put_bytes("a", f"v{i}".encode())
    assert store.versions("a") == [3, 4]
    assert sorted(os.listdir(root / "artifacts" / "a")) == ["v3.data", "v3.key", "v4.data", "v4.key"]


def test_list_and_delete(store: VaultStore) -> None:
    store.put_bytes("b", b"x")
    store.put_bytes("a", b"y")
    assert store.list() == ["a", "b"]
    store.delete("a")
    assert store.list() == ["b"]
    for call in (lambda: store.get_bytes("a"), lambda: store.info("a"), lambda: store.versions("a")):
        with pytest.raises(NotFound):
            call()
    with pytest.raises(NotFound):
        store.delete("a")
    assert store.put_bytes("a", b"z").version == 1  # a deleted id starts over


def test_delete_some_versions_keeps_the_others_and_the_last_takes_the_artifact(store: VaultStore) -> None:
    for data in (b"one", b"two", b"three"):
        store.put_bytes("a", data)
    store.delete_versions("a", [1, 3])
    assert store.versions("a") == [2] and store.get_bytes("a", 2) == b"two"
    with pytest.raises(NotFound):
        store.get_bytes("a", 1)
    # the next number follows the highest one on disk (release deletes only versions no row names)
    assert store.put_bytes("a", b"four").version == 3
    store.delete_versions("a", [2, 3])
    assert store.list() == [] and not (store.root / "artifacts" / "a").exists()


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        "../escape",
        "a/b",
        "/etc/passwd",
        ".hidden",
        "a\x00b",
        "a b",
        "caf\u00e9",
        "x" * 129,
        "-x",
        None,
        7,
    ],
)
def test_unsafe_artifact_ids_never_reach_the_file_system(
    store: VaultStore, tmp_path: Path, bad: object
) -> None:
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    for call in (
        lambda: store.put_bytes(bad, b"data"),  # type: ignore[arg-type]
        lambda: store.get_bytes(bad),  # type: ignore[arg-type]
        lambda: store.info(bad),  # type: ignore[arg-type]
        lambda: store.delete(bad),  # type: ignore[arg-type]
    ):
        with pytest.raises(Invalid) as err:
            call()
        assert err.value.code == "invalid_artifact_id"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


@pytest.mark.parametrize(
    "meta", [{"x": object()}, {1: "x"}, ["list"], {"x": float("nan")}, {"x": "y" * 20000}]
)
def test_bad_meta_is_invalid(store: VaultStore, meta: object) -> None:
    with pytest.raises(Invalid):
        store.put_bytes("a", b"x", meta=meta)  # type: ignore[arg-type]
    assert store.list() == []


def test_files_are_private_whatever_the_umask(root: Path) -> None:
    old = os.umask(0)
    try:
        store = open_store(root)
        store.put_bytes("a", b"data", access_code="1234")
        store.put_bytes("a", b"data2")
    finally:
        os.umask(old)
    for path in [root, *root.rglob("*")]:
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode == (0o700 if path.is_dir() else 0o600), path


def test_no_plaintext_meta_aside_reaches_the_disk(store: VaultStore, root: Path) -> None:
    marker = b"PATIENT-RECORD-" * 50
    store.put_bytes("a", marker, access_code="code-123")
    for path in root.rglob("*"):
        if path.is_file():
            blob = path.read_bytes()
            assert b"PATIENT-RECORD" not in blob and b"code-123" not in blob


def test_a_failed_stream_leaves_no_trace_and_the_previous_version(store: VaultStore, root: Path) -> None:
    store.put_bytes("a", b"good")

    def broken() -> Iterator[bytes]:
        yield b"x" * (3 * SEG)
        raise RuntimeError("upload dropped")

    with pytest.raises(RuntimeError):
        store.put_stream("a", broken())
    assert store.versions("a") == [1]
    assert store.get_bytes("a") == b"good"
    assert sorted(os.listdir(root / "artifacts" / "a")) == ["v1.data", "v1.key"]
    assert store.put_bytes("a", b"next").version == 2


def test_concurrent_writers_get_distinct_versions(root: Path) -> None:
    stores = [open_store(root) for _ in range(4)]
    barrier = threading.Barrier(len(stores))
    errors: list[BaseException] = []

    def write(s: VaultStore, i: int) -> None:
        try:
            barrier.wait()
            s.put_bytes("shared", f"writer-{i}".encode() * 20)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(s, i)) for i, s in enumerate(stores)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert stores[0].versions("shared") == [1, 2, 3, 4]
    contents = {stores[0].get_bytes("shared", v) for v in (1, 2, 3, 4)}
    assert contents == {f"writer-{i}".encode() * 20 for i in range(4)}


def test_streaming_uses_constant_memory(root: Path) -> None:
    segment = 256 * 1024
    store = open_store(root, segment_size=segment)
    block = os.urandom(segment)
    total = 64  # 16 MiB through the store, 256 KiB at a time
    tracemalloc.start()
    try:
        store.put_stream("big", (block for _ in range(total)))
        _, write_peak = tracemalloc.get_traced_memory()
        tracemalloc.reset_peak()
        n = 0
        for piece in store.open_stream("big"):
            n += len(piece)
        _, read_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert n == total * segment
    assert write_peak < 8 * segment and read_peak < 8 * segment, (write_peak, read_peak)


def test_open_with_a_wrong_master_key_is_a_config_error(store: VaultStore, root: Path) -> None:
    from bastion.errors import ConfigError

    store.put_bytes("a", b"x")
    with pytest.raises(ConfigError):
        open_store(root, master="not-the-master-key-" + "z" * 40)
