"""Model updates as one flat vector and back: SecAgg masks a single vector of fixed length.

The layout (names, shapes, in sorted name order) is public and the same for every site, so the server
can rebuild named tensors from the unmasked sum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from bastion.errors import Invalid

Layout = list[tuple[str, tuple[int, ...]]]


def layout_of(arrays: Mapping[str, np.ndarray]) -> Layout:
    return [(name, tuple(int(d) for d in np.shape(arrays[name]))) for name in sorted(arrays)]


def flatten(arrays: Mapping[str, np.ndarray]) -> tuple[np.ndarray, Layout]:
    """Concatenate named tensors (sorted by name) into one float64 vector, with the layout to undo it."""
    layout = layout_of(arrays)
    if not layout:
        return np.zeros(0), layout
    return np.concatenate([np.asarray(arrays[n], dtype=np.float64).ravel() for n, _ in layout]), layout


def unflatten(vector: np.ndarray, layout: Layout) -> dict[str, np.ndarray]:
    """Split a flat vector back into named tensors of the layout's shapes."""
    sizes = [math.prod(shape) for _, shape in layout]
    if vector.shape != (sum(sizes),):
        raise Invalid("vector length does not match the layout")
    out, pos = {}, 0
    for (name, shape), size in zip(layout, sizes, strict=True):
        out[name] = vector[pos : pos + size].reshape(shape)
        pos += size
    return out
