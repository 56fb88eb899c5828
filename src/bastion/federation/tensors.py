"""Model tensors on the wire: safetensors bytes in, validated float32 arrays out.

Updates come from other organisations, so the decoder trusts nothing: the safetensors header is parsed
as strict JSON (no duplicate keys, exact fields), every tensor must be little-endian float32, the data
offsets must tile the buffer exactly, and the result is a set of zero-copy read-only views over the
received bytes (no second copy of a 100 MB update). :func:`validate` then checks the tensors against
the federation's :class:`TensorSpec` (names, shapes, finiteness) and names the offending tensor.
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from bastion.errors import Invalid, PayloadTooLarge

DTYPE = np.dtype("<f4")
MAX_HEADER_BYTES = 8 * 1024 * 1024
MAX_NAME_CHARS = 512
Buffer = bytes | bytearray | memoryview


@dataclass(frozen=True)
class TensorSpec:
    """Names and shapes every update of a federation must have (dtype is always float32)."""

    shapes: Mapping[str, tuple[int, ...]]

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, np.ndarray]) -> TensorSpec:
        return cls({name: tuple(int(d) for d in arr.shape) for name, arr in tensors.items()})

    @classmethod
    def from_json(cls, obj: Any) -> TensorSpec:
        if not isinstance(obj, dict) or not obj:
            raise Invalid("tensor spec must be a non-empty object of name -> shape")
        shapes: dict[str, tuple[int, ...]] = {}
        for name, shape in obj.items():
            _check_name(name)
            if not isinstance(shape, list) or not all(_is_dim(d) for d in shape):
                raise Invalid(f"tensor spec for {name!r} must be a list of non-negative integers")
            shapes[name] = tuple(shape)
        return cls(shapes)

    def to_json(self) -> dict[str, list[int]]:
        return {name: list(shape) for name, shape in self.shapes.items()}

    @property
    def num_params(self) -> int:
        return sum(math.prod(shape) for shape in self.shapes.values())

    @property
    def nbytes(self) -> int:
        return self.num_params * DTYPE.itemsize

    def max_encoded_bytes(self) -> int:
        """Upper bound on a well-formed safetensors encoding of a tensor set matching this spec."""
        header = 64 + sum(len(json.dumps(n)) + 96 + 22 * len(s) for n, s in self.shapes.items())
        return 8 + header + 8 + self.nbytes


def _is_dim(d: Any) -> bool:
    return isinstance(d, int) and not isinstance(d, bool) and d >= 0


def _check_name(name: Any) -> None:
    if not isinstance(name, str) or not name or len(name) > MAX_NAME_CHARS or name == "__metadata__":
        raise Invalid("tensor names must be non-empty strings of at most 512 characters")


def as_float32(tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """C-contiguous little-endian float32 arrays; floating inputs are cast, anything else is refused."""
    out: dict[str, np.ndarray] = {}
    for name, arr in tensors.items():
        _check_name(name)
        a = np.asarray(arr)
        if a.dtype.kind != "f":
            raise Invalid(f"tensor {name!r} has dtype {a.dtype}, expected a floating type", tensor=name)
        out[name] = np.asarray(a, dtype=DTYPE, order="C")
    return out


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Safetensors encoding in the given tensor order, with one copy of the data."""
    arrays = as_float32(tensors)
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    offset = 0
    for name, arr in arrays.items():
        header[name] = {
            "dtype": "F32",
            "shape": list(arr.shape),
            "data_offsets": [offset, offset + arr.nbytes],
        }
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # keep the data 8-byte aligned, as the reference writer does
    parts: list[Any] = [struct.pack("<Q", len(raw)), raw]
    parts.extend(arr.reshape(-1).view(np.uint8).data for arr in arrays.values())
    return b"".join(parts)


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise Invalid(f"safetensors header repeats the key {key!r}")
        out[key] = value
    return out


def _parse_entry(name: str, entry: Any) -> tuple[tuple[int, ...], int, int]:
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise Invalid(f"tensor {name!r} has a malformed safetensors entry", tensor=name)
    if entry["dtype"] != "F32":
        raise Invalid(f"tensor {name!r} has dtype {entry['dtype']!r}, expected F32 (float32)", tensor=name)
    shape, offsets = entry["shape"], entry["data_offsets"]
    if not isinstance(shape, list) or not all(_is_dim(d) for d in shape):
        raise Invalid(f"tensor {name!r} has an invalid shape", tensor=name)
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_dim(o) for o in offsets)):
        raise Invalid(f"tensor {name!r} has invalid data offsets", tensor=name)
    begin, end = offsets
    if end - begin != math.prod(shape) * DTYPE.itemsize:
        raise Invalid(f"tensor {name!r}: data length does not match its shape", tensor=name)
    return tuple(shape), begin, end


def decode(data: Buffer, *, max_bytes: int | None = None) -> dict[str, np.ndarray]:
    """Parse safetensors bytes into float32 views over ``data`` (read-only when ``data`` is bytes)."""
    view = memoryview(data).cast("B")
    if max_bytes is not None and len(view) > max_bytes:
        raise PayloadTooLarge(f"tensor payload is {len(view)} bytes, the limit is {max_bytes}")
    if len(view) < 8:
        raise Invalid("tensor payload is truncated: no safetensors header")
    (header_len,) = struct.unpack("<Q", view[:8])
    if header_len > MAX_HEADER_BYTES or 8 + header_len > len(view):
        raise Invalid("tensor payload has an impossible safetensors header length")
    try:
        header = json.loads(bytes(view[8 : 8 + header_len]).decode("utf-8"), object_pairs_hook=_no_duplicates)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise Invalid("tensor payload has a safetensors header that is not valid JSON") from exc
    if not isinstance(header, dict):
        raise Invalid("safetensors header must be a JSON object")
    metadata = header.pop("__metadata__", None)
    if metadata is not None and not (
        isinstance(metadata, dict) and all(isinstance(v, str) for v in metadata.values())
    ):
        raise Invalid("safetensors __metadata__ must map strings to strings")
    entries = []
    for name, entry in header.items():
        _check_name(name)
        entries.append((name, *_parse_entry(name, entry)))
    body = 8 + header_len
    cursor = 0
    for name, _shape, begin, end in sorted(entries, key=lambda e: (e[2], e[3])):
        if begin != cursor:
            raise Invalid(f"tensor {name!r}: data offsets overlap or leave a gap", tensor=name)
        cursor = end
    if cursor != len(view) - body:
        raise Invalid("tensor payload has trailing bytes or is truncated")
    return {
        name: np.frombuffer(view, dtype=DTYPE, count=(end - begin) // 4, offset=body + begin).reshape(shape)
        for name, shape, begin, end in entries
    }


def check_finite(name: str, arr: np.ndarray) -> None:
    # A float64 sum of float32 values cannot overflow, so it is finite exactly when every element is;
    # one pass, no boolean temporary the size of the tensor.
    if not math.isfinite(float(arr.sum(dtype=np.float64))):
        raise Invalid(f"tensor {name!r} contains NaN or Inf", tensor=name, code="non_finite")


def validate(tensors: Mapping[str, np.ndarray], spec: TensorSpec, *, check_values: bool = True) -> None:
    """Raise :class:`Invalid` naming the first tensor that does not match ``spec``."""
    missing = [n for n in spec.shapes if n not in tensors]
    if missing:
        raise Invalid(f"update is missing tensor {missing[0]!r}", tensor=missing[0], code="tensor_missing")
    extra = [n for n in tensors if n not in spec.shapes]
    if extra:
        raise Invalid(f"update has unexpected tensor {extra[0]!r}", tensor=extra[0], code="tensor_unexpected")
    for name, expected in spec.shapes.items():
        arr = tensors[name]
        if arr.dtype != DTYPE:
            raise Invalid(f"tensor {name!r} has dtype {arr.dtype}, expected float32", tensor=name)
        if tuple(arr.shape) != tuple(expected):
            raise Invalid(
                f"tensor {name!r} has shape {tuple(arr.shape)}, expected {tuple(expected)}",
                tensor=name,
                code="tensor_shape",
            )
        if check_values:
            check_finite(name, arr)


def decode_validated(data: Buffer, spec: TensorSpec) -> dict[str, np.ndarray]:
    """Decode and check against ``spec`` in one call: what the server does with an opened update."""
    tensors = decode(data, max_bytes=spec.max_encoded_bytes())
    validate(tensors, spec)
    return tensors


def total_bytes(arrays: Iterable[np.ndarray]) -> int:
    return sum(a.nbytes for a in arrays)
