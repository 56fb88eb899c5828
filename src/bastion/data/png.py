"""A minimal, bounded PNG codec for when Pillow is not installed.

Enough for image-folder datasets of MRI slices: reads non-interlaced 8-bit greyscale, grey+alpha,
RGB, RGBA and palette images and 16-bit greyscale; writes 8-bit greyscale. Every size is checked
before allocation and decompression is capped at the size the header announces, so a hostile file
cannot exhaust memory. Anything else (interlacing, other depths, JPEG) raises :class:`Invalid`
asking for Pillow.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np

from bastion.errors import Invalid

SIGNATURE = b"\x89PNG\r\n\x1a\n"
MAX_PIXELS = 64 * 1024 * 1024
_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}


def _chunks(data: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    pos = len(SIGNATURE)
    while pos + 12 <= len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind = data[pos + 4 : pos + 8]
        body = data[pos + 8 : pos + 8 + length]
        if len(body) != length or pos + 12 + length > len(data):
            raise Invalid("PNG file is truncated")
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        if zlib.crc32(kind + body) != crc:
            raise Invalid("PNG chunk checksum mismatch")
        out.append((kind, body))
        pos += 12 + length
        if kind == b"IEND":
            break
    return out


def _paeth(a: int, b: int, c: int) -> int:
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def _unfilter(raw: np.ndarray, height: int, stride: int, bpp: int) -> np.ndarray:
    rows = raw.reshape(height, stride + 1)
    out = np.zeros((height, stride), np.uint8)
    prior = np.zeros(stride, np.uint8)
    for r in range(height):
        kind, line = int(rows[r, 0]), rows[r, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: running sum per channel, modulo 256
            cur = np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            cur = line + prior
        elif kind in (3, 4):
            cur = np.zeros(stride, np.uint8)
            vals, up = line.tolist(), prior.tolist()
            res = [0] * stride
            for i in range(stride):
                left = res[i - bpp] if i >= bpp else 0
                if kind == 3:
                    res[i] = (vals[i] + ((left + up[i]) >> 1)) & 0xFF
                else:
                    diag = up[i - bpp] if i >= bpp else 0
                    res[i] = (vals[i] + _paeth(left, up[i], diag)) & 0xFF
            cur[:] = res
        else:
            raise Invalid(f"PNG row uses unknown filter type {kind}")
        out[r] = cur
        prior = cur
    return out


def decode_png(data: bytes) -> np.ndarray:
    """PNG bytes -> uint8 array (H, W) or (H, W, C); 16-bit greyscale is scaled to 8 bits."""
    if not data.startswith(SIGNATURE):
        raise Invalid("not a PNG file")
    chunks = _chunks(data)
    if not chunks or chunks[0][0] != b"IHDR" or len(chunks[0][1]) != 13:
        raise Invalid("PNG file has no valid IHDR header")
    width, height, depth, color, _comp, _filt, interlace = struct.unpack(">IIBBBBB", chunks[0][1])
    if color not in _CHANNELS or interlace != 0 or depth not in (8, 16) or (depth == 16 and color != 0):
        raise Invalid("this PNG variant (interlaced, or unusual bit depth/colour type) needs Pillow")
    if width == 0 or height == 0 or width * height > MAX_PIXELS:
        raise Invalid(f"PNG size {width}x{height} is out of bounds")
    channels = _CHANNELS[color]
    bpp = channels * depth // 8
    stride = width * bpp
    expected = height * (stride + 1)
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(b"".join(body for kind, body in chunks if kind == b"IDAT"), expected + 1)
    except zlib.error as exc:
        raise Invalid("PNG image data is corrupt") from exc
    if len(raw) != expected:
        raise Invalid("PNG image data has the wrong size")
    pixels = _unfilter(np.frombuffer(raw, np.uint8), height, stride, bpp)
    if depth == 16:
        return (pixels.reshape(height, width, 2)[:, :, 0]).copy()  # high byte
    if color == 3:
        plte = next((body for kind, body in chunks if kind == b"PLTE"), None)
        if plte is None or len(plte) % 3:
            raise Invalid("palette PNG has no valid palette")
        palette = np.frombuffer(plte, np.uint8).reshape(-1, 3)
        if pixels.max(initial=0) >= len(palette):
            raise Invalid("palette PNG indexes past its palette")
        result: np.ndarray = palette[pixels.reshape(height, width)]
        return result
    img = pixels.reshape(height, width, channels)
    return img[:, :, 0] if channels == 1 else img


def encode_png(image: np.ndarray) -> bytes:
    """uint8 greyscale (H, W) -> PNG bytes (no filtering; zlib level 6)."""
    img = np.asarray(image)
    if img.ndim != 2 or img.dtype != np.uint8:
        raise Invalid("encode_png takes a 2-D uint8 greyscale image")
    height, width = img.shape

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    rows = np.concatenate([np.zeros((height, 1), np.uint8), img], axis=1)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (
        SIGNATURE
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6))
        + chunk(b"IEND", b"")
    )
