"""The plaintext digest of a stream of segments, computed on a helper thread one segment behind the caller."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

_INLINE_BELOW = 64 * 1024


class _Hash(Protocol):
    def update(self, data: bytes, /) -> object: ...

    def digest(self) -> bytes: ...


def new_hash(alg: str) -> _Hash:
    """A fresh hash object for a vault format's digest (``sha256`` for format 1, ``blake3`` for 2)."""
    if alg == "sha256":
        return hashlib.sha256()
    if alg == "blake3":
        import blake3

        h: _Hash = blake3.blake3()
        return h
    raise ValueError(f"unknown digest {alg!r}")


class PipelinedDigest:
    """Overlaps hashing with the caller's encryption/decryption and disk I/O.

    hashlib, blake3 and AES-GCM all release the GIL on large buffers, so with two cores the whole hash
    comes off the critical path. Segments must be immutable ``bytes``; small ones are hashed inline.
    Call :meth:`close` (or :meth:`digest`) to stop the helper thread.
    """

    def __init__(self, alg: str = "blake3") -> None:
        self._hash = new_hash(alg)
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[object] | None = None

    def update(self, data: bytes) -> None:
        self._wait()
        if len(data) < _INLINE_BELOW:
            self._hash.update(data)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vault-digest")
        self._pending = self._pool.submit(self._hash.update, data)

    def _wait(self) -> None:
        pending, self._pending = self._pending, None
        if pending is not None:
            pending.result()

    def digest(self) -> bytes:
        self.close()
        return self._hash.digest()

    def close(self) -> None:
        try:
            self._wait()
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None
