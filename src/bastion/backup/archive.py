"""The backup file: one encrypted, authenticated stream of named entries.

Format (checks on reading, in this order: magic, header length and JSON, the passphrase-derived key
opening the first segment, then every segment as it streams; entry digests; the end record)::

    b"BSTBAK1\\n" | header length (4 bytes, big-endian) | header (canonical JSON)
    | STREAM-sealed segments (crypto/aead.py; associated data = SHA-256 of magic + header)

The header holds the KDF (argon2id) parameters, salt, nonce prefix and segment size; the key is
derived from the operator's backup passphrase, never stored. The plaintext is a sequence of
entries, each ``length (4 bytes) | JSON {"path", "size"} | size bytes | SHA-256 of those bytes``,
closed by an entry ``{"end": true, "entries": N, "manifest": {...}}``: a stream cut short, reordered
or extended fails either a segment tag or the end record. Constant memory in both directions.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from bastion.crypto import aead, kdf
from bastion.errors import IntegrityError, Invalid

MAGIC = b"BSTBAK1\n"
MAX_HEADER = 64 * 1024
MAX_ENTRY_HEADER = 64 * 1024
SEGMENT = aead.DEFAULT_SEGMENT_SIZE
_LEN = struct.Struct(">I")


@dataclass(frozen=True)
class Entry:
    path: str
    size: int
    chunks: Iterable[bytes]


def _aad(header: bytes) -> bytes:
    return hashlib.sha256(MAGIC + header).digest()


def _plaintext(entries: Iterable[Entry], manifest: dict[str, Any]) -> Iterator[bytes]:
    count = 0
    for entry in entries:
        head = json.dumps({"path": entry.path, "size": entry.size}, sort_keys=True).encode()
        yield _LEN.pack(len(head)) + head
        digest, written = hashlib.sha256(), 0
        for chunk in entry.chunks:
            digest.update(chunk)
            written += len(chunk)
            yield chunk
        if written != entry.size:
            raise IntegrityError(f"{entry.path} changed size while it was backed up")
        yield digest.digest()
        count += 1
    end = json.dumps({"end": True, "entries": count, "manifest": manifest}, sort_keys=True).encode()
    yield _LEN.pack(len(end)) + end


def write(out: BinaryIO, passphrase: str, entries: Iterable[Entry], manifest: dict[str, Any]) -> None:
    """Encrypt ``entries`` (then the end record with ``manifest``) into ``out``."""
    salt, prefix = kdf.new_salt(), aead.new_nonce_prefix()
    params = kdf.DEFAULT_PARAMS
    header = json.dumps(
        {
            "format": 1,
            "kdf": params.to_dict(),
            "salt": salt.hex(),
            "nonce_prefix": prefix.hex(),
            "segment_size": SEGMENT,
        },
        sort_keys=True,
    ).encode()
    key = kdf.derive_key(passphrase, salt, params)
    out.write(MAGIC + _LEN.pack(len(header)) + header)
    for _plain, sealed in aead.encrypt_stream(
        key, prefix, _aad(header), _plaintext(entries, manifest), SEGMENT
    ):
        out.write(sealed)


class _Reader:
    """Pull exact byte counts out of a stream of decrypted segments."""

    def __init__(self, segments: Iterator[bytes]) -> None:
        self._segments = segments
        self._buf = bytearray()

    def read(self, n: int) -> bytes:
        while len(self._buf) < n:
            try:
                self._buf += next(self._segments)
            except StopIteration:
                raise IntegrityError("backup is truncated") from None
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    def chunks(self, n: int) -> Iterator[bytes]:
        while n > 0:
            piece = self.read(min(n, SEGMENT))
            n -= len(piece)
            yield piece

    def exhausted(self) -> bool:
        if self._buf:
            return False
        return next(self._segments, None) is None


def read(path: Path, passphrase: str) -> Iterator[tuple[dict[str, Any], Iterator[bytes]]]:
    """Yield ``(entry header, content chunks)`` in order; the caller must drain each entry's chunks
    before the next. The last item is ``({"end": True, ...}, empty)``; anything wrong raises
    IntegrityError (Invalid ``backup_passphrase`` when the first segment does not open)."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        if f.read(len(MAGIC)) != MAGIC:
            raise Invalid("not a Bastion backup (bad magic)", code="not_a_backup")
        (length,) = _LEN.unpack(f.read(_LEN.size))
        if length > MAX_HEADER:
            raise IntegrityError("backup header is out of range")
        header = f.read(length)
        try:
            doc = json.loads(header)
            params = kdf.KdfParams.from_dict(doc["kdf"])
            salt, prefix = bytes.fromhex(doc["salt"]), bytes.fromhex(doc["nonce_prefix"])
            segment = aead.check_segment_size(int(doc["segment_size"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise IntegrityError(f"backup header is unreadable ({type(exc).__name__})") from None
        key = kdf.derive_key(passphrase, salt, params)
        body = size - len(MAGIC) - _LEN.size - length
        segments = aead.decrypt_stream(key, prefix, _aad(header), f.read, body, segment)
        reader = _Reader(segments)
        first = True
        while True:
            try:
                (n,) = _LEN.unpack(reader.read(_LEN.size))
            except IntegrityError as exc:
                if first:
                    raise Invalid(
                        "the backup cannot be opened with this passphrase (or it was altered)",
                        code="backup_passphrase",
                    ) from exc
                raise
            first = False
            if n > MAX_ENTRY_HEADER:
                raise IntegrityError("backup entry header is out of range")
            head = json.loads(reader.read(n))
            if head.get("end"):
                if not reader.exhausted():
                    raise IntegrityError("backup has data after its end record")
                yield head, iter(())
                return
            digest = hashlib.sha256()

            def content(
                size: int = int(head["size"]), digest: Any = digest, name: str = str(head["path"])
            ) -> Iterator[bytes]:
                for chunk in reader.chunks(size):
                    digest.update(chunk)
                    yield chunk
                if digest.digest() != reader.read(32):
                    raise IntegrityError(f"backup entry {name!r} fails its SHA-256")

            yield head, content()
