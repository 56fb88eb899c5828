"""Synthetic MRI generator, the bounded PNG codec and the image-folder loader."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from bastion.data import mri
from bastion.data.png import decode_png, encode_png
from bastion.errors import Invalid


def test_generator_shapes_range_and_labels() -> None:
    X, y = mri.synthetic_mri(3, size=128, seed=0)
    assert X.shape == (12, 1, 128, 128) and X.dtype == np.float32
    assert y.dtype == np.int64 and np.array_equal(np.bincount(y), [3, 3, 3, 3])
    assert X.min() >= 0.0 and X.max() <= 1.0
    assert mri.CLASSES == ("glioma", "meningioma", "notumor", "pituitary")


def test_generator_is_deterministic() -> None:
    a, ya = mri.synthetic_mri(2, size=64, seed=7)
    b, yb = mri.synthetic_mri(2, size=64, seed=7)
    c, _ = mri.synthetic_mri(2, size=64, seed=8)
    assert np.array_equal(a, b) and np.array_equal(ya, yb)
    assert not np.array_equal(a, c)


def test_tumour_classes_add_bright_tissue_that_notumor_lacks() -> None:
    X, y = mri.synthetic_mri(20, size=64, seed=1)
    bright = (X[:, 0] > 0.7).sum(axis=(1, 2)).astype(float)
    skull_only = bright[y == mri.CLASSES.index("notumor")].mean()
    for name in ("glioma", "meningioma", "pituitary"):
        assert bright[y == mri.CLASSES.index(name)].mean() > skull_only + 5, name


def test_generator_rejects_bad_arguments() -> None:
    with pytest.raises(Invalid):
        mri.synthetic_mri(0)
    with pytest.raises(Invalid):
        mri.synthetic_mri(1, classes=("glioma", "astrocytoma"))


def _png(width: int, height: int, depth: int, colour: int, rows: bytes, interlace: int = 0) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, interlace)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", ihdr)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_png_round_trip() -> None:
    img = (np.arange(35 * 17) % 256).astype(np.uint8).reshape(35, 17)
    assert np.array_equal(decode_png(encode_png(img)), img)


def _filtered_rgb_rows(img: np.ndarray) -> bytes:
    """Encode RGB rows with filters Sub, Up, Average, Paeth, None in turn (PNG spec section 9)."""
    h, w, _ = img.shape
    raw = img.reshape(h, w * 3).astype(int)
    out = bytearray()
    for r in range(h):
        kind = r % 5
        line, up = raw[r], raw[r - 1] if r else np.zeros(w * 3, int)
        enc = []
        for i in range(w * 3):
            left = line[i - 3] if i >= 3 else 0
            diag = up[i - 3] if i >= 3 else 0
            if kind == 1:
                pred = left
            elif kind == 2:
                pred = up[i]
            elif kind == 3:
                pred = (left + up[i]) // 2
            elif kind == 4:
                p = left + up[i] - diag
                pa, pb, pc = abs(p - left), abs(p - up[i]), abs(p - diag)
                pred = left if pa <= pb and pa <= pc else (up[i] if pb <= pc else diag)
            else:
                pred = 0
            enc.append((line[i] - pred) % 256)
        out += bytes([kind if kind else 0]) + bytes(enc)
    return bytes(out)


def test_png_decoder_handles_every_filter_and_colour_images() -> None:
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(10, 7, 3), dtype=np.uint8)
    assert np.array_equal(decode_png(_png(7, 10, 8, 2, _filtered_rgb_rows(img))), img)


def test_png_decoder_refuses_hostile_or_unsupported_files() -> None:
    good = encode_png(np.zeros((4, 4), np.uint8))
    with pytest.raises(Invalid, match="not a PNG"):
        decode_png(b"GIF89a")
    corrupt = bytearray(good)
    corrupt[20] ^= 1
    with pytest.raises(Invalid, match="checksum"):
        decode_png(bytes(corrupt))
    with pytest.raises(Invalid, match="out of bounds"):
        decode_png(_png(100_000, 100_000, 8, 0, b""))
    with pytest.raises(Invalid, match="needs Pillow"):
        decode_png(_png(4, 4, 8, 0, bytes(20), interlace=1))
    # A bomb: header says 4x4 but the stream inflates to megabytes; decompression stops early.
    with pytest.raises(Invalid, match="wrong size"):
        decode_png(_png(4, 4, 8, 0, bytes(8_000_000)))


def test_image_folder_round_trip(tmp_path: Path) -> None:
    X, y = mri.synthetic_mri(2, size=64, seed=3)
    mri.write_image_folder(tmp_path, X, y)
    (tmp_path / "glioma" / "notes.txt").write_text("ignored")
    (tmp_path / ".cache").mkdir()
    got, labels, classes = mri.load_image_folder(tmp_path, size=64)
    assert classes == list(mri.CLASSES)
    assert got.shape == (8, 1, 64, 64) and got.dtype == np.float32
    assert np.array_equal(np.bincount(labels), [2, 2, 2, 2])
    order = np.argsort(y, kind="stable")
    assert np.abs(got - X[order]).max() <= 0.5 / 255 + 1e-6


def test_image_folder_resizes_and_caps(tmp_path: Path) -> None:
    X, y = mri.synthetic_mri(3, size=128, seed=4)
    mri.write_image_folder(tmp_path, X, y)
    got, labels, _ = mri.load_image_folder(tmp_path, size=32, max_per_class=2)
    assert got.shape == (8, 1, 32, 32) and np.array_equal(np.bincount(labels), [2, 2, 2, 2])


def test_image_folder_reads_npy_without_pickle(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    np.save(tmp_path / "a" / "x.npy", np.full((16, 16), 200, np.uint8))
    np.save(tmp_path / "b" / "y.npy", np.full((16, 16, 3), 0.5, np.float32))
    np.save(tmp_path / "b" / "evil.npy", np.array([{"x": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(Invalid, match=r"evil\.npy"):
        mri.load_image_folder(tmp_path, size=16)
    (tmp_path / "b" / "evil.npy").unlink()
    got, labels, classes = mri.load_image_folder(tmp_path, size=16)
    assert classes == ["a", "b"] and list(labels) == [0, 1]
    assert np.allclose(got[0], 200 / 255) and np.allclose(got[1], 0.5)


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(Invalid, match="does not exist"):
        mri.load_image_folder(tmp_path / "missing")
    with pytest.raises(Invalid, match="no class sub-folders"):
        mri.load_image_folder(tmp_path)
    (tmp_path / "glioma").mkdir()
    with pytest.raises(Invalid, match="no readable images"):
        mri.load_image_folder(tmp_path)
    with pytest.raises(Invalid, match="'pituitary'"):
        mri.load_image_folder(tmp_path, classes=["glioma", "pituitary"])


@pytest.mark.skipif(mri.pillow_available(), reason="Pillow is installed: JPEG is readable")
def test_jpeg_without_pillow_says_what_is_needed(tmp_path: Path) -> None:
    (tmp_path / "glioma").mkdir()
    (tmp_path / "glioma" / "scan.jpg").write_bytes(b"\xff\xd8\xff\xe0fake")
    with pytest.raises(Invalid, match="needs Pillow"):
        mri.load_image_folder(tmp_path)
