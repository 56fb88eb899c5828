"""Rotation: new KEK version, every slot rewrapped, payloads untouched, old version retired; a rotation
killed at any point (a real SIGKILL) is finished by running it again."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bastion.errors import IntegrityError
from bastion.vault import VaultStore, rotate, verify
from tests.vault.support import SEG, data_path, key_path, open_store

REPO = Path(__file__).resolve().parents[2]


def fill(store: VaultStore) -> dict[tuple[str, int], bytes]:
    contents: dict[tuple[str, int], bytes] = {}
    for i in range(5):
        data = os.urandom(i * SEG + 3)
        contents[(f"art-{i}", store.put_bytes(f"art-{i}", data).version)] = data
    data = os.urandom(2 * SEG)
    contents[("art-0", store.put_bytes("art-0", data).version)] = data
    contents[("coded", store.put_bytes("coded", b"secret" * 30, access_code="pin").version)] = b"secret" * 30
    return contents


def payload_digests(root: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.data"))}


def assert_all_readable(store: VaultStore, contents: dict[tuple[str, int], bytes]) -> None:
    for (artifact_id, version), data in contents.items():
        code = "pin" if artifact_id == "coded" else None
        assert store.get_bytes(artifact_id, version, access_code=code) == data


def kek_versions(store: VaultStore, contents: dict[tuple[str, int], bytes]) -> set[int]:
    return {store.info(a, v).kek_version for a, v in contents}


def test_rotation_rewraps_slots_only_and_retires_the_old_version(store: VaultStore, root: Path) -> None:
    contents = fill(store)
    before = payload_digests(root)
    report = rotate(store)
    assert report.completed and report.active_version == 2
    assert (report.rewrapped, report.unchanged, report.retired_versions) == (len(contents), 0, [1])
    assert payload_digests(root) == before
    assert kek_versions(store, contents) == {2}
    assert_all_readable(store, contents)
    assert_all_readable(open_store(root), contents)  # a freshly started process too
    again = rotate(store)
    assert again.active_version == 3 and again.rewrapped == len(contents) and again.retired_versions == [2]


def test_injected_crash_then_rerun_completes(store: VaultStore, root: Path) -> None:
    contents = fill(store)
    seen: list[tuple[str, int]] = []

    def crash(artifact_id: str, version: int) -> None:
        seen.append((artifact_id, version))
        if len(seen) == 3:
            raise RuntimeError("injected crash")

    with pytest.raises(RuntimeError):
        rotate(store, on_rewrap=crash)
    restarted = open_store(root)
    assert restarted.keyring.retiring_versions == [1] and restarted.keyring.rotation_pending
    assert kek_versions(restarted, contents) == {1, 2}  # mixed, and every one reads
    assert_all_readable(restarted, contents)
    report = rotate(restarted)
    assert report.completed and report.active_version == 2  # resumed, no third version
    assert (report.rewrapped, report.unchanged, report.retired_versions) == (len(contents) - 3, 3, [1])
    assert kek_versions(restarted, contents) == {2}
    assert_all_readable(restarted, contents)


CHILD = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from bastion.crypto import _fs
    from bastion.vault import rotate
    from tests.vault.support import open_store

    root, target, when = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    store = open_store(root)
    real = _fs.atomic_write
    calls = 0

    def pause():
        print("paused", flush=True)
        sys.stdin.read()  # blocks until the parent kills us

    def atomic_write(path, data):
        global calls
        calls += 1
        if calls == target and when == "before-rename":
            _fs.write_temp(path.parent, data)  # temp file written and fsynced, rename never happens
            pause()
        real(path, data)
        print("wrote", path.name, flush=True)
        if calls == target and when == "after-rename":
            pause()

    _fs.atomic_write = atomic_write
    rotate(store)
    print("finished", flush=True)
    """
)


@pytest.mark.parametrize(
    ("target", "when"),
    [
        (1, "before-rename"),  # killed while saving the key ring's new version
        (1, "after-rename"),  # new version saved, no slot rewrapped yet
        (3, "before-rename"),  # killed in the middle of writing a slot
        (4, "after-rename"),  # some slots rewrapped, some not
        (9, "before-rename"),  # every slot rewrapped, killed while retiring the old version
    ],
)
def test_sigkill_mid_rotation_then_rerun_completes(root: Path, target: int, when: str) -> None:
    store = open_store(root)
    contents = fill(store)  # 7 slots: key ring write is call 1, slots 2..8, retirement 9
    before = payload_digests(root)
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(root), str(target), when],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    lines = []
    for line in child.stdout:
        lines.append(line.strip())
        if line.strip() == "paused":
            break
    assert lines[-1:] == ["paused"], (lines, child.stderr.read() if child.stderr else "")
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL

    restarted = open_store(root)
    assert_all_readable(restarted, contents)  # under the old or the new version, mid-rotation
    assert all(r.ok for r in verify(restarted))
    report = rotate(restarted)
    assert report.completed and report.active_version == 2 and report.retired_versions == [1]
    assert kek_versions(restarted, contents) == {2}
    assert [v.status for v in restarted.keyring.versions] == ["retired", "active"]
    assert payload_digests(root) == before
    assert_all_readable(open_store(root), contents)


def test_a_damaged_slot_is_reported_and_blocks_retirement(store: VaultStore, root: Path) -> None:
    contents = fill(store)
    path = key_path(root, "art-2")
    path.write_bytes(path.read_bytes().replace(b'"wrapped":"', b'"wrapped":"AAAA'))
    report = rotate(store)
    assert not report.completed and report.retired_versions == []
    assert [(f.artifact_id, f.version) for f in report.failures] == [("art-2", 1)]
    assert store.keyring.retiring_versions == [1]
    del contents[("art-2", 1)]
    assert_all_readable(store, contents)
    store.delete("art-2")
    assert rotate(store).retired_versions == [1]


def test_another_process_sees_the_rotation(root: Path) -> None:
    admin, server = open_store(root), open_store(root)  # two independent key ring instances
    server.put_bytes("before", b"x" * 100)
    rotate(admin)
    info = server.put_bytes("after", b"y" * 100)
    assert info.kek_version == 2  # reloads the ring before wrapping: never under the retired version
    assert admin.get_bytes("after") == b"y" * 100
    reader = open_store(root)
    rotate(admin)  # "before" is now on v3, which the reader's ring has never seen
    assert reader.get_bytes("before") == b"x" * 100


def test_a_slot_wrapped_under_a_retired_version_does_not_open(store: VaultStore, root: Path) -> None:
    store.put_bytes("a", b"data")
    old_slot = key_path(root, "a").read_bytes()
    rotate(store)
    key_path(root, "a").write_bytes(old_slot)  # e.g. restored from an old backup
    with pytest.raises(IntegrityError) as err:
        store.get_bytes("a")
    assert err.value.code == "key_unavailable" and err.value.details["artifact"] == "a"
    assert data_path(root, "a").exists()
