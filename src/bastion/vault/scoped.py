"""The vault as a job process sees it: only the versions it was granted, and no key ring.

A job process never gets the master key. The server (the holder of the key ring) unwraps the data
key of each version the job may read and hands over ``{artifact, version, key, binding, path}``;
:class:`ScopedVault` opens exactly those, checking the data file against the binding the server
authenticated (as :func:`bastion.vault.envelope.open_version` checks it against a key slot), then
every segment's tag and the plaintext digest. Anything else is "not found", whatever is on disk.

Writes go through the key ring's holder too: ``put_bytes`` asks it (``call``) to reserve the next
version of an artifact it may write, receives a fresh data key and a temporary file, encrypts the
version into that file here, and asks the holder to commit it. The holder checks the file end to end
with the key it issued, wraps the key under the key ring and publishes the version; only then does
``put_bytes`` return. The on-disk format is the vault's own: a committed version is indistinguishable
from one written by :meth:`bastion.vault.store.VaultStore.put_bytes`.
"""

from __future__ import annotations

import base64
import builtins
import dataclasses
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.clock import aware_utcnow
from bastion.crypto import aead
from bastion.errors import Invalid, NotFound
from bastion.vault import envelope as env
from bastion.vault.store import ArtifactInfo, check_artifact_id, check_meta, read_segments, write_version_file

Call = Callable[[dict[str, Any]], dict[str, Any]]


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


@dataclass(frozen=True)
class ReadGrant:
    """One version a job may read: its data key and the key slot's binding, as the server opened them."""

    artifact: str
    version: int
    key: bytes
    binding: bytes
    path: str

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "version": self.version,
            "key": b64(self.key),
            "binding": b64(self.binding),
            "path": self.path,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> ReadGrant:
        return cls(
            str(doc["artifact"]),
            int(doc["version"]),
            unb64(doc["key"]),
            unb64(doc["binding"]),
            str(doc["path"]),
        )


def _not_found(artifact_id: str) -> NotFound:
    return NotFound(f"artifact {artifact_id!r} not found (or not granted to this job)")


class ScopedVault:
    """Read the granted versions, write the allowed artifacts through ``call``; nothing else."""

    def __init__(self, grant: dict[str, Any], call: Call | None = None) -> None:
        self._reads = {g.artifact: g for g in (ReadGrant.from_json(doc) for doc in grant.get("reads") or [])}
        self._writes = frozenset(str(a) for a in grant.get("writes") or [])
        self._written: dict[str, int] = {}
        self._call = call

    def list(self) -> builtins.list[str]:
        """The artifacts this job can see: those granted for reading and those it has written."""
        return sorted(set(self._reads) | set(self._written))

    def versions(self, artifact_id: str) -> builtins.list[int]:
        grant = self._reads.get(artifact_id)
        if grant is None:
            raise _not_found(artifact_id)
        return [grant.version]

    def open_stream(
        self,
        artifact_id: str,
        version: int | None = None,
        *,
        access_code: str | bytes | None = None,
        verify_digest: bool = False,
    ) -> Iterator[bytes]:
        """Decrypt a granted version segment by segment (``access_code`` is the server's business)."""
        grant = self._reads.get(artifact_id)
        if grant is None or (version is not None and version != grant.version):
            raise _not_found(artifact_id)
        f = open(grant.path, "rb")  # noqa: SIM115 - closed by read_segments
        try:
            opened = env.open_with_key(
                f, grant.artifact, grant.version, grant.key, expected_binding=grant.binding
            )
        except BaseException:
            f.close()
            raise
        return read_segments(opened, grant.artifact, grant.version, verify_digest)

    def get_bytes(
        self, artifact_id: str, version: int | None = None, *, access_code: str | bytes | None = None
    ) -> bytes:
        return b"".join(self.open_stream(artifact_id, version, verify_digest=True))

    def put_bytes(
        self,
        artifact_id: str,
        data: bytes,
        *,
        access_code: str | bytes | None = None,
        meta: dict[str, Any] | None = None,
    ) -> ArtifactInfo:
        """Write a new version of an artifact this job may write; its info once the server committed it."""
        check_artifact_id(artifact_id)
        if access_code is not None:
            raise Invalid("a job cannot protect what it writes with an access code")
        if artifact_id not in self._writes or self._call is None:
            raise Invalid(f"this job may not write artifact {artifact_id!r}", code="artifact_not_granted")
        meta = check_meta(meta)
        staged = self._call({"op": "reserve", "artifact": artifact_id})
        version = int(staged["version"])
        header = env.ArtifactHeader(
            artifact=artifact_id,
            version=version,
            segment_size=int(staged["segment_size"]),
            nonce_prefix=aead.new_nonce_prefix(),
            created=aware_utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            meta=meta,
            format=int(staged["format"]),
        )
        write_version_file(Path(staged["path"]), header.encode(), header, unb64(staged["key"]), [data])
        info = self._call({"op": "commit", "artifact": artifact_id, "version": version})
        self._written[artifact_id] = version
        names = {f.name for f in dataclasses.fields(ArtifactInfo)}
        return ArtifactInfo(**{k: v for k, v in info.items() if k in names})
