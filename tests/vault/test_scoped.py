"""A key-ring-less reader and writer (a job process): granted versions only, staged writes checked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.errors import IntegrityError, Invalid, NotFound
from bastion.vault.scoped import ReadGrant, ScopedVault, b64
from bastion.vault.store import VaultStore


def _grant(store: VaultStore, artifact: str) -> dict[str, Any]:
    version, key, binding, path = store.data_key(artifact)
    return ReadGrant(artifact, version, key, binding, str(path)).to_json()


def _server(store: VaultStore) -> Any:
    """The key ring's side of a write, as the worker answers it."""
    pending: dict[tuple[str, int], Any] = {}

    def call(message: dict[str, Any]) -> dict[str, Any]:
        if message["op"] == "reserve":
            staged = store.reserve_staged(message["artifact"])
            pending[(staged.artifact_id, staged.version)] = staged
            return staged.for_writer()
        info = store.commit_staged(pending.pop((message["artifact"], message["version"])))
        return info.__dict__

    return call


def test_reads_only_what_was_granted(store: VaultStore) -> None:
    store.put_bytes("a", b"alpha" * 1000)
    store.put_bytes("b", b"bravo")
    scoped = ScopedVault({"reads": [_grant(store, "a")]})
    assert scoped.get_bytes("a") == b"alpha" * 1000 and scoped.list() == ["a"]
    with pytest.raises(NotFound):
        scoped.get_bytes("b")
    with pytest.raises(NotFound):
        scoped.get_bytes("a", 2)
    with pytest.raises(Invalid):
        scoped.put_bytes("a", b"x")


def test_a_grant_opens_only_its_own_unaltered_version(store: VaultStore) -> None:
    store.put_bytes("a", b"alpha")
    store.put_bytes("b", b"bravo")
    grant = _grant(store, "a")
    # Pointed at another artifact's file, or with another binding: refused before decryption.
    for bad in (
        {**grant, "path": _grant(store, "b")["path"]},
        {**grant, "binding": _grant(store, "b")["binding"]},
    ):
        with pytest.raises(IntegrityError):
            ScopedVault({"reads": [bad]}).get_bytes("a")


def test_staged_write_round_trip(store: VaultStore) -> None:
    scoped = ScopedVault({"writes": ["out"]}, _server(store))
    info = scoped.put_bytes("out", b"model bytes" * 100, meta={"kind": "job-model"})
    assert (info.artifact_id, info.version) == ("out", 1)
    assert store.get_bytes("out") == b"model bytes" * 100 and store.info("out").meta == {"kind": "job-model"}
    assert scoped.list() == ["out"]


def test_a_staged_file_not_made_with_the_issued_key_is_refused(store: VaultStore, root: Path) -> None:
    staged = store.reserve_staged("out")
    other = store.reserve_staged("other")
    # A writer that encrypted under some other key (here: the other reservation's) cannot commit.
    scoped = ScopedVault(
        {"writes": ["out"]},
        lambda m: (
            staged.for_writer() | {"key": b64(other.key)}
            if m["op"] == "reserve"
            else store.commit_staged(staged).__dict__
        ),
    )
    with pytest.raises(IntegrityError):
        scoped.put_bytes("out", b"forged")
    store.abandon_staged(other)
    with pytest.raises(NotFound):
        store.versions("out")
    assert all(not incomplete for _, _, incomplete in store.scan())
