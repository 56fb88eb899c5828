"""SHA-256 of a stream of segments, computed on a helper thread one segment behind the caller."""

from __future__ import annotations

import hashlib
from concurrent.futures import Future, ThreadPoolExecutor

_INLINE_BELOW = 64 * 1024


class PipelinedSha256:
    """Overlaps hashing with the caller's encryption/decryption and disk I/O.

    hashlib and AES-GCM both release the GIL on large buffers, so with two cores the whole hash comes
    off the critical path. Segments must be immutable ``bytes``; small ones are hashed inline.
    Call :meth:`close` (or :meth:`digest`) to stop the helper thread.
    """

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self._pool: ThreadPoolExecutor | None = None
        self._pending: Future[None] | None = None

    def update(self, data: bytes) -> None:
        self._wait()
        if len(data) < _INLINE_BELOW:
            self._hash.update(data)
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vault-sha256")
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
