"""Records: many small immutable blobs under one anchor artifact, at one file fsync and one directory fsync each.

Why: a vault version costs a new directory (for a new artifact), a data file, a key slot and a KEK wrap,
three fsyncs in all. A federation stores every received update; as versions that was the largest
share of the server's cost per update (docs/performance.md, h41). A record keeps every integrity check
of a version but needs no key slot of its own.

Layout: the records of anchor ``A`` sit beside A's own versions::

    artifacts/A/v1.data  artifacts/A/v1.key     <- the anchor: an ordinary version (kind "record-key")
    artifacts/A/r-<name>.rec                    <- one record

The anchor's plaintext is a 32-byte random secret, written on the first put like any other version
(key slot, KEK wrap): a rotation rewraps its slot and never touches a record; deleting the anchor
deletes its records with it (and its secret is what they need: crypto-shredding). A backup copies the
record files with the anchor's directory; ``vault verify`` checks each one.

A record file is exactly a vault data file (:mod:`bastion.vault.envelope`: header | sealed segments |
trailer) whose header names the record (``artifact``) and the anchor version whose secret keyed it
(``version``), encrypted under its own key ``HKDF-SHA256(secret, domain | anchor | version | name)``:
a record renamed, or moved to another anchor, does not open.

Integrity without a key slot (checked on every read, as :func:`envelope.open_with_key` with no binding
describes): the header is the associated data of every segment, so each tag authenticates it; the
segment count and order are in the nonces (STREAM, last-segment flag), the file length must match the
trailer's size, and the trailer's plaintext digest is compared after the last segment. A torn, cut,
extended or edited record is an IntegrityError naming it.

Durability: :meth:`Records.put` writes a temporary file, fsyncs it, links it to its final name (never
over an existing record) and fsyncs the directory, under the vault's shared lock (so a backup sees it
whole or not at all). When put returns the record survives a crash; before, a crash leaves at most an
ignored ``.tmp-*`` file and no record.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from bastion.clock import aware_utcnow
from bastion.crypto import _fs, aead
from bastion.errors import Conflict, IntegrityError, Invalid, NotFound
from bastion.vault import envelope as env
from bastion.vault.store import VaultStore, check_artifact_id, check_meta, read_segments, write_version_file

RECORD_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,99}")
RECORD_FILE = re.compile(r"r-([A-Za-z0-9][A-Za-z0-9_-]{0,99})\.rec")
ANCHOR_KIND = "record-key"
SECRET_LEN = 32
_DOMAIN = b"bastion.vault.record.v1\x00"


def check_record_name(name: object) -> str:
    if not isinstance(name, str) or not RECORD_NAME.fullmatch(name):
        raise Invalid(
            "record name must be 1-100 letters, digits, '_' or '-', starting with a letter or digit",
            code="invalid_record_name",
        )
    return name


def record_key(secret: bytes, anchor: str, version: int, name: str) -> bytes:
    """The record's own data key: bound to its anchor, the anchor version and its name."""
    info = _DOMAIN + f"{anchor}\x00{version}\x00{name}".encode()
    return HKDF(algorithm=hashes.SHA256(), length=aead.KEY_LEN, salt=None, info=info).derive(secret)


@dataclass(frozen=True)
class RecordInfo:
    anchor: str
    name: str
    anchor_version: int
    size: int
    digest: str  # hex, the format's digest (BLAKE3 for format 2)
    meta: dict[str, Any]


class Records:
    """Put, read and delete records under anchor artifacts of one vault. Thread-safe.

    Anchor secrets are cached in memory once read (as the coordinator caches a federation's private
    keys); a put checks that its anchor's key slot still exists, so a deleted anchor is re-created
    rather than used.
    """

    def __init__(self, store: VaultStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, int], bytes] = {}
        self._current: dict[str, int] = {}

    def _dir(self, anchor: str) -> Path:
        return self.store.root / "artifacts" / check_artifact_id(anchor)

    def _path(self, anchor: str, name: str) -> Path:
        return self._dir(anchor) / f"r-{check_record_name(name)}.rec"

    # -- the anchor ---------------------------------------------------------------------------------
    def _secret(self, anchor: str, version: int) -> bytes:
        secret = self._secrets.get((anchor, version))
        if secret is None:
            info = self.store.info(anchor, version)
            secret = self.store.get_bytes(anchor, version)
            if info.meta.get("kind") != ANCHOR_KIND or len(secret) != SECRET_LEN:
                raise IntegrityError(f"artifact {anchor!r} version {version} is not a record anchor")
            self._secrets[(anchor, version)] = secret
        return secret

    def _anchor(self, anchor: str) -> tuple[int, bytes]:
        """The anchor version new records use (its latest), created on first use."""
        version = self._current.get(anchor)
        if version is not None and (self._dir(anchor) / f"v{version}.key").exists():
            return version, self._secret(anchor, version)
        with self._lock:
            try:
                version = self.store.versions(anchor)[-1]
            except NotFound:
                version = self.store.put_bytes(
                    anchor, os.urandom(SECRET_LEN), meta={"kind": ANCHOR_KIND}
                ).version
            secret = self._secret(anchor, version)
            self._current[anchor] = version
        return version, secret

    def forget(self, anchor: str) -> None:
        """Drop the cached secrets of ``anchor`` (after deleting it)."""
        with self._lock:
            self._current.pop(anchor, None)
            for key in [k for k in list(self._secrets) if k[0] == anchor]:
                del self._secrets[key]

    # -- records --------------------------------------------------------------------------------------
    def put(self, anchor: str, name: str, data: bytes, *, meta: dict[str, Any] | None = None) -> RecordInfo:
        """Encrypt ``data`` as the new record ``name`` of ``anchor``, durably; Conflict if it exists."""
        path = self._path(anchor, name)
        meta = check_meta(meta)
        version, secret = self._anchor(anchor)
        header = env.ArtifactHeader(
            artifact=name,
            version=version,
            segment_size=self.store.segment_size,
            nonce_prefix=aead.new_nonce_prefix(),
            created=aware_utcnow().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            meta=meta,
            format=self.store.write_format,
        )
        key = record_key(secret, anchor, version, name)
        tmp = _fs.temp_path(path.parent)
        try:
            trailer = env.Trailer.decode(write_version_file(tmp, header.encode(), header, key, [data]))
            with self.store.keyring.locked(exclusive=False):
                try:
                    _fs.publish_new(tmp, path)
                except FileExistsError:
                    raise Conflict(f"record {name!r} of {anchor!r} exists", code="record_exists") from None
                _fs.fsync_dir(path.parent)
        finally:
            tmp.unlink(missing_ok=True)
        return RecordInfo(anchor, name, version, trailer.size, trailer.digest.hex(), meta)

    def read(self, anchor: str, name: str) -> tuple[RecordInfo, bytes]:
        """A record's info and plaintext, every check done (IntegrityError naming it on any failure)."""
        path = self._path(anchor, name)
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed by read_segments or below
        except FileNotFoundError:
            raise NotFound(f"record {name!r} of {anchor!r} not found") from None
        try:
            # The header says which anchor version keyed the record; it is parsed here only to pick that
            # key, and authenticated below (a wrong claim means a wrong key: every tag fails).
            version = env.ArtifactHeader.decode(env.read_header(f)).version
            if isinstance(version, bool) or version < 1:
                raise IntegrityError("header names no anchor version")
            key = record_key(self._secret(anchor, version), anchor, version, name)
            f.seek(0)
            opened = env.open_with_key(f, name, version, key, expected_binding=None)
        except IntegrityError as exc:
            f.close()
            raise IntegrityError(f"record {name!r} of {anchor!r}: {exc.message}", code=exc.code) from None
        except BaseException:
            f.close()
            raise
        try:
            data = b"".join(read_segments(opened, name, version, verify_digest=True))
        except IntegrityError as exc:
            raise IntegrityError(f"record {name!r} of {anchor!r}: {exc.message}", code=exc.code) from None
        header, trailer = opened.header, opened.trailer
        return RecordInfo(anchor, name, version, trailer.size, trailer.digest.hex(), header.meta), data

    def get_bytes(self, anchor: str, name: str) -> bytes:
        return self.read(anchor, name)[1]

    def delete(self, anchor: str, name: str) -> None:
        """Remove one record (no error if it is already gone)."""
        path = self._path(anchor, name)
        with self.store.keyring.locked(exclusive=False):
            path.unlink(missing_ok=True)
            with contextlib.suppress(FileNotFoundError):
                _fs.fsync_dir(path.parent)

    def names(self, anchor: str) -> list[str]:
        """The records of ``anchor``, sorted."""
        found: list[str] = []
        with contextlib.suppress(FileNotFoundError):
            for entry in os.listdir(self._dir(anchor)):
                m = RECORD_FILE.fullmatch(entry)
                if m:
                    found.append(m.group(1))
        return sorted(found)

    def scan(self) -> Iterator[tuple[str, list[str]]]:
        """``(anchor, record names)`` for every artifact that has records."""
        for anchor, _committed, _incomplete in self.store.scan():
            names = self.names(anchor)
            if names:
                yield anchor, names
