"""Segmented STREAM AES-GCM: round trips at every boundary, and every reordering or cut is caught."""

from __future__ import annotations

import io
import os
import random

import pytest

from bastion.crypto import aead
from bastion.errors import CryptoError, IntegrityError

SEG = 32
KEY = bytes(range(32))
PREFIX = b"\x01" * aead.NONCE_PREFIX_LEN
AAD = b"header-digest"


def seal(data: bytes, chunks: list[bytes] | None = None, aad: bytes = AAD) -> list[bytes]:
    return [c for _, c in aead.encrypt_stream(KEY, PREFIX, aad, chunks or [data], SEG)]


def open_all(sealed: bytes, aad: bytes = AAD) -> bytes:
    src = io.BytesIO(sealed)
    return b"".join(aead.decrypt_stream(KEY, PREFIX, aad, src.read, len(sealed), SEG))


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 2 * SEG, 3 * SEG + 7])
def test_round_trip_and_lengths_at_segment_boundaries(size: int) -> None:
    data = os.urandom(size)
    segments = seal(data)
    assert len(segments) == aead.segment_count(size, SEG)
    assert sum(map(len, segments)) == aead.ciphertext_length(size, SEG)
    assert open_all(b"".join(segments)) == data


def test_chunking_does_not_change_the_result_shape() -> None:
    data = os.urandom(5 * SEG + 3)
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, len(data)), 20))
    pieces = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    mixed = [bytearray(p) if i % 2 else memoryview(p) for i, p in enumerate(pieces)]
    one_byte = [data[i : i + 1] for i in range(len(data))]
    for chunks in (pieces, mixed, one_byte, [b"", data, b""]):
        plain = [p for p, _ in aead.encrypt_stream(KEY, PREFIX, AAD, chunks, SEG)]
        assert [len(p) for p in plain] == [SEG] * 5 + [3]
        assert open_all(b"".join(seal(data, chunks))) == data  # type: ignore[arg-type]


def test_nonce_is_prefix_counter_and_last_flag() -> None:
    assert aead.segment_nonce(PREFIX, 5, False) == PREFIX + b"\x00\x00\x00\x05\x00"
    assert aead.segment_nonce(PREFIX, 5, True) == PREFIX + b"\x00\x00\x00\x05\x01"
    with pytest.raises(CryptoError):
        aead.segment_nonce(PREFIX, 2**32, False)


def test_swapped_segments_fail_at_the_first_moved_one() -> None:
    segs = seal(os.urandom(4 * SEG))
    segs[1], segs[2] = segs[2], segs[1]
    src = io.BytesIO(b"".join(segs))
    out = aead.decrypt_stream(KEY, PREFIX, AAD, src.read, len(src.getvalue()), SEG)
    assert len(next(out)) == SEG  # segment 0 is intact and delivered
    with pytest.raises(IntegrityError) as err:
        next(out)
    assert err.value.details["segment"] == 1


@pytest.mark.parametrize("cut", ["drop_last", "drop_first", "append_copy", "last_as_middle"])
def test_cutting_or_extending_at_segment_boundaries_fails(cut: str) -> None:
    segs = seal(os.urandom(3 * SEG + 5))
    if cut == "drop_last":
        segs = segs[:-1]
    elif cut == "drop_first":
        segs = segs[1:]
    elif cut == "append_copy":
        segs = [*segs, segs[0]]
    else:
        segs = [segs[0], segs[-1], segs[1]]
    with pytest.raises(IntegrityError):
        open_all(b"".join(segs))


def test_every_flipped_byte_and_every_truncation_fails() -> None:
    sealed = b"".join(seal(os.urandom(2 * SEG + 9)))
    for i in range(len(sealed)):
        bad = bytearray(sealed)
        bad[i] ^= 0x01
        with pytest.raises(IntegrityError):
            open_all(bytes(bad))
    for n in range(len(sealed)):
        with pytest.raises(IntegrityError):
            open_all(sealed[:n])


def test_other_associated_data_or_key_fails() -> None:
    sealed = b"".join(seal(b"x" * 40))
    with pytest.raises(IntegrityError):
        open_all(sealed, aad=b"another header")
    src = io.BytesIO(sealed)
    with pytest.raises(IntegrityError):
        b"".join(aead.decrypt_stream(os.urandom(32), PREFIX, AAD, src.read, len(sealed), SEG))


def test_bad_parameters_are_refused() -> None:
    with pytest.raises(CryptoError):
        list(aead.encrypt_stream(b"short", PREFIX, AAD, [b"x"], SEG))
    with pytest.raises(CryptoError):
        list(aead.encrypt_stream(KEY, b"p", AAD, [b"x"], SEG))
    with pytest.raises(CryptoError):
        aead.check_segment_size(aead.MAX_SEGMENT_SIZE + 1)
    with pytest.raises(CryptoError):
        aead.check_segment_size(True)
