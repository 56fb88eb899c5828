"""Segmented streaming AES-256-GCM (the STREAM construction of Hoang, Reyhanitabar, Rogaway and Vizár).

A payload is cut into fixed-size plaintext segments, each sealed on its own, so any size streams in
constant memory and a reader can reject a bad segment before it has read the rest. Segment ``i`` is
sealed with the nonce ``prefix (7 random bytes) || i (32-bit big-endian) || last (1 byte: 0 or 1)``
and the same associated data (the caller binds its immutable header there). Because the counter and
the last-segment flag are inside the nonce, reordering, swapping, dropping or appending segments, and
truncating the stream at a segment boundary, all make a tag fail.

The ciphertext length determines the segment count, so decryption needs it up front; a file's size
gives it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import CryptoError, IntegrityError

KEY_LEN = 32
NONCE_PREFIX_LEN = 7
NONCE_LEN = 12
TAG_LEN = 16
MAX_SEGMENTS = 2**32
MIN_SEGMENT_SIZE = 16
MAX_SEGMENT_SIZE = 64 * 1024 * 1024
DEFAULT_SEGMENT_SIZE = 1024 * 1024

Buffer = bytes | bytearray | memoryview


def new_key() -> bytes:
    return os.urandom(KEY_LEN)


def new_nonce_prefix() -> bytes:
    return os.urandom(NONCE_PREFIX_LEN)


def segment_nonce(prefix: bytes, index: int, last: bool) -> bytes:
    if not 0 <= index < MAX_SEGMENTS:
        raise CryptoError("stream too long for one key (2^32 segments)")
    return prefix + index.to_bytes(4, "big") + (b"\x01" if last else b"\x00")


def check_segment_size(segment_size: int) -> int:
    if isinstance(segment_size, bool) or not isinstance(segment_size, int):
        raise CryptoError("segment size must be an integer")
    if not MIN_SEGMENT_SIZE <= segment_size <= MAX_SEGMENT_SIZE:
        raise CryptoError(f"segment size must be between {MIN_SEGMENT_SIZE} and {MAX_SEGMENT_SIZE} bytes")
    return segment_size


def segment_count(plaintext_len: int, segment_size: int) -> int:
    """Number of segments for ``plaintext_len`` bytes: an empty payload is one empty last segment."""
    return max(1, -(-plaintext_len // segment_size))


def ciphertext_length(plaintext_len: int, segment_size: int) -> int:
    return plaintext_len + TAG_LEN * segment_count(plaintext_len, segment_size)


def _check_params(key: bytes, prefix: bytes, segment_size: int) -> None:
    if len(key) != KEY_LEN:
        raise CryptoError("stream key must be 32 bytes")
    if len(prefix) != NONCE_PREFIX_LEN:
        raise CryptoError(f"nonce prefix must be {NONCE_PREFIX_LEN} bytes")
    check_segment_size(segment_size)


def resegment(chunks: Iterable[Buffer], segment_size: int) -> Iterator[tuple[bytes, bool]]:
    """Regroup arbitrary chunks into ``(segment, is_last)`` pairs of exactly ``segment_size`` bytes.

    One segment is held back so the last one can be marked; at most two segments are in memory.
    """
    buf = bytearray()
    pending: bytes | None = None
    for chunk in chunks:
        view = memoryview(chunk).cast("B")
        offset = 0
        while offset < len(view):
            if not buf and len(view) - offset >= segment_size:
                if offset == 0 and len(view) == segment_size and isinstance(chunk, bytes):
                    seg = chunk
                else:
                    seg = bytes(view[offset : offset + segment_size])
                offset += segment_size
            else:
                take = min(segment_size - len(buf), len(view) - offset)
                buf += view[offset : offset + take]
                offset += take
                if len(buf) < segment_size:
                    continue
                seg = bytes(buf)
                buf.clear()
            if pending is not None:
                yield pending, False
            pending = seg
    if buf:
        if pending is not None:
            yield pending, False
        pending = bytes(buf)
    yield (pending if pending is not None else b""), True


def encrypt_stream(
    key: bytes, nonce_prefix: bytes, aad: bytes, chunks: Iterable[Buffer], segment_size: int
) -> Iterator[tuple[bytes, bytes]]:
    """Yield ``(plaintext_segment, sealed_segment)`` pairs; the caller writes the second, may hash the first."""
    _check_params(key, nonce_prefix, segment_size)
    aead = AESGCM(key)
    for index, (segment, last) in enumerate(resegment(chunks, segment_size)):
        yield segment, aead.encrypt(segment_nonce(nonce_prefix, index, last), segment, aad)


def decrypt_stream(
    key: bytes,
    nonce_prefix: bytes,
    aad: bytes,
    read: Callable[[int], bytes],
    length: int,
    segment_size: int,
) -> Iterator[bytes]:
    """Yield plaintext segments read through ``read`` from exactly ``length`` bytes of sealed segments.

    Each segment is authenticated before it is yielded; the first failure raises IntegrityError with
    the segment index in ``details``, so no unauthenticated byte ever reaches the caller.
    """
    _check_params(key, nonce_prefix, segment_size)
    sealed_size = segment_size + TAG_LEN
    count, tail = divmod(length, sealed_size)
    if tail:
        count += 1
    if length < TAG_LEN or (tail and tail < TAG_LEN):
        raise IntegrityError("sealed stream has an impossible length (truncated?)", segment=count - 1)
    if count > MAX_SEGMENTS:
        raise IntegrityError("sealed stream is too long", segment=MAX_SEGMENTS)
    aead = AESGCM(key)
    for index in range(count):
        last = index == count - 1
        want = (tail or sealed_size) if last else sealed_size
        sealed = read(want)
        if len(sealed) != want:
            raise IntegrityError(f"segment {index} is truncated", segment=index)
        try:
            yield aead.decrypt(segment_nonce(nonce_prefix, index, last), sealed, aad)
        except InvalidTag:
            raise IntegrityError(
                f"segment {index} failed authentication (altered, reordered or truncated)", segment=index
            ) from None
