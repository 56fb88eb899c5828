"""Brain-tumour MRI data for sites: a deterministic synthetic generator and an image-folder loader.

Classes follow the public 4-class brain-tumour datasets, in folder (alphabetical) order: glioma,
meningioma, notumor, pituitary. The synthetic slices are *not* medical data; they mimic the visual
cues that separate the classes (an irregular ring-enhancing mass with oedema inside a hemisphere; a
round homogeneous mass against the skull; a small bright mass at the sella; no mass) so that tests can
train and evaluate the CNN end to end without any patient image.

The loader reads ``root/<class>/<image>`` with Pillow when installed, otherwise PNG through the
bounded codec in :mod:`bastion.data.png` and ``.npy`` without pickle. Files are found by listing the
class folders, never by joining user-supplied names, and symlinks are skipped.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bastion.data.png import decode_png, encode_png
from bastion.errors import Invalid

CLASSES = ("glioma", "meningioma", "notumor", "pituitary")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".npy")
MAX_FILE_BYTES = 64 * 1024 * 1024


def pillow_available() -> bool:
    return importlib.util.find_spec("PIL") is not None


def _blob(xx: np.ndarray, yy: np.ndarray, cx: float, cy: float, r: float, wobble: np.ndarray) -> np.ndarray:
    """Signed radial distance (<0 inside) of a star-shaped blob whose radius varies with angle."""
    dx, dy = xx - cx, yy - cy
    angle = np.arctan2(dy, dx)
    radius = r * (1.0 + sum(a * np.cos((k + 2) * angle + p) for k, (a, p) in enumerate(wobble)))
    result: np.ndarray = np.hypot(dx, dy) - radius
    return result


def _slice(rng: np.random.Generator, label: str, size: int) -> np.ndarray:
    lin = np.linspace(-1.0, 1.0, size, dtype=np.float64)
    yy, xx = np.meshgrid(lin, lin, indexing="ij")
    ax, ay = rng.uniform(0.72, 0.82), rng.uniform(0.82, 0.92)
    theta = rng.uniform(-0.15, 0.15)
    xr = xx * np.cos(theta) + yy * np.sin(theta)
    yr = -xx * np.sin(theta) + yy * np.cos(theta)
    rho = np.sqrt((xr / ax) ** 2 + (yr / ay) ** 2)
    brain = rho < 0.92
    img = np.where((rho >= 0.92) & (rho < 1.0), 0.85, 0.0)  # skull
    texture = sum(
        rng.uniform(0.02, 0.05)
        * np.sin(rng.uniform(3, 9) * xr + rng.uniform(0, 6))
        * np.cos(rng.uniform(3, 9) * yr)
        for _ in range(3)
    )
    img = np.where(brain, 0.42 + texture + 0.06 * np.cos(6 * rho), img)
    for side in (-1.0, 1.0):  # lateral ventricles
        vent = ((xr - side * 0.12) / 0.07) ** 2 + ((yr + 0.05) / 0.2) ** 2 < 1.0
        img = np.where(vent, 0.15, img)
    if label == "glioma":
        side = rng.choice([-1.0, 1.0])
        cx, cy = side * rng.uniform(0.25, 0.45) * ax, rng.uniform(-0.4, 0.3) * ay
        r = rng.uniform(0.13, 0.22)
        d = _blob(xr, yr, cx, cy, r, rng.uniform(-0.18, 0.18, size=(3, 2)) * [1.0, 10.0])
        img = np.where(brain & (d < 0.12), img + 0.12, img)  # oedema
        img = np.where(d < 0.0, 0.88, img)  # enhancing rim
        img = np.where(d < -0.35 * r, 0.25, img)  # necrotic core
    elif label == "meningioma":
        angle = rng.uniform(0, 2 * np.pi)
        r = rng.uniform(0.1, 0.17)
        cx, cy = (0.9 - r) * ax * np.cos(angle), (0.9 - r) * ay * np.sin(angle)
        d = _blob(xr, yr, cx, cy, r, rng.uniform(-0.03, 0.03, size=(2, 2)))
        img = np.where(brain & (d < 0.0), 0.78, img)
    elif label == "pituitary":
        r = rng.uniform(0.05, 0.09)
        cx, cy = rng.uniform(-0.03, 0.03), rng.uniform(0.3, 0.42) * ay
        d = _blob(xr, yr, cx, cy, r, rng.uniform(-0.05, 0.05, size=(2, 2)))
        img = np.where(d < 0.0, 0.95, img)
    img = img + rng.normal(0.0, 0.03, size=img.shape)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def synthetic_mri(
    n_per_class: int, *, size: int = 128, seed: int = 0, classes: Sequence[str] = CLASSES
) -> tuple[np.ndarray, np.ndarray]:
    """``n_per_class`` slices per class: X float32 (N, 1, size, size) in [0, 1], y int64, class-interleaved.

    Deterministic: the same arguments always give the same arrays.
    """
    if n_per_class < 1 or size < 16:
        raise Invalid("n_per_class must be >= 1 and size >= 16")
    unknown = [c for c in classes if c not in CLASSES]
    if unknown:
        raise Invalid(f"unknown MRI class {unknown[0]!r}")
    rng = np.random.default_rng(seed)
    images, labels = [], []
    for _ in range(n_per_class):
        for k, label in enumerate(classes):
            images.append(_slice(rng, label, size))
            labels.append(k)
    return np.stack(images)[:, None, :, :], np.asarray(labels, np.int64)


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    """Area-average when shrinking by an integer factor, otherwise nearest-neighbour sampling."""
    h, w = img.shape
    if (h, w) == (size, size):
        return img
    if h % size == 0 and w % size == 0:
        result: np.ndarray = img.reshape(size, h // size, size, w // size).mean(axis=(1, 3))
        return result
    rows = np.minimum((np.arange(size) + 0.5) * h / size, h - 1).astype(np.int64)
    cols = np.minimum((np.arange(size) + 0.5) * w / size, w - 1).astype(np.int64)
    return img[np.ix_(rows, cols)]


def _to_grey(arr: np.ndarray) -> np.ndarray:
    a = np.asarray(arr, dtype=np.float32)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        a = a[:, :, :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    elif a.ndim == 3 and a.shape[2] == 2:
        a = a[:, :, 0]
    if a.ndim != 2:
        raise Invalid("image must be 2-D greyscale or colour")
    return a


def read_image(path: Path, size: int) -> np.ndarray:
    """One image as float32 (size, size) in [0, 1]."""
    if path.stat().st_size > MAX_FILE_BYTES:
        raise Invalid(f"image {path.name!r} is larger than {MAX_FILE_BYTES} bytes")
    suffix = path.suffix.lower()
    if suffix == ".npy":
        try:
            arr = np.load(path, allow_pickle=False)
        except ValueError as exc:  # object arrays need pickle, which is never allowed here
            raise Invalid(f"{path.name!r} is not a plain numeric .npy array") from exc
        if arr.dtype.kind not in "uif":
            raise Invalid(f"{path.name!r} does not hold a numeric image")
        grey = _to_grey(arr)
        peak = float(grey.max(initial=0.0))
        grey = grey / 255.0 if peak > 1.0 else grey
        result: np.ndarray = np.clip(_resize(grey, size), 0.0, 1.0).astype(np.float32)
        return result
    if pillow_available():
        from PIL import Image

        with Image.open(path) as im:
            grey_im = im.convert("L").resize((size, size), Image.Resampling.BILINEAR)
            return np.asarray(grey_im, dtype=np.float32) / 255.0
    if suffix != ".png":
        raise Invalid(
            f"reading {suffix} images needs Pillow (pip install pillow); PNG and .npy work without it"
        )
    grey = _to_grey(decode_png(path.read_bytes()))
    return (_resize(grey, size) / 255.0).astype(np.float32)


def load_image_folder(
    root: str | Path,
    *,
    size: int = 128,
    classes: Sequence[str] | None = None,
    max_per_class: int | None = None,
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Read ``root/<class>/<image>``; returns X (N, 1, size, size) float32, y int64 and the class names.

    Classes are the sub-folders in sorted order unless ``classes`` fixes them (then a missing folder is
    an error). Hidden files, symlinks and unknown suffixes are skipped.
    """
    base = Path(root)
    if not base.is_dir():
        raise Invalid("image folder does not exist or is not a directory")
    found = sorted(
        p.name for p in base.iterdir() if p.is_dir() and not p.is_symlink() and not p.name.startswith(".")
    )
    names = list(classes) if classes is not None else found
    missing = [c for c in names if c not in found]
    if missing:
        raise Invalid(f"image folder has no sub-folder for class {missing[0]!r}")
    if not names:
        raise Invalid("image folder has no class sub-folders")
    images: list[np.ndarray] = []
    labels: list[int] = []
    for k, name in enumerate(names):
        files = sorted(
            p
            for p in (base / name).iterdir()
            if p.is_file()
            and not p.is_symlink()
            and not p.name.startswith(".")
            and p.suffix.lower() in IMAGE_SUFFIXES
        )
        for path in files[:max_per_class]:
            images.append(read_image(path, size))
            labels.append(k)
    if not images:
        raise Invalid("image folder contains no readable images")
    return np.stack(images)[:, None, :, :], np.asarray(labels, np.int64), names


def write_image_folder(
    root: str | Path, X: np.ndarray, y: np.ndarray, classes: Sequence[str] = CLASSES
) -> Path:
    """Write images in [0, 1] as 8-bit PNGs into ``root/<class>/NNNNN.png`` (e.g. synthetic test data)."""
    base = Path(root)
    for name in classes:
        (base / name).mkdir(parents=True, exist_ok=True)
    for i, (img, label) in enumerate(zip(X, y, strict=True)):
        grey = np.clip(np.rint(np.asarray(img).reshape(img.shape[-2:]) * 255.0), 0, 255).astype(np.uint8)
        (base / classes[int(label)] / f"{i:05d}.png").write_bytes(encode_png(grey))
    return base
