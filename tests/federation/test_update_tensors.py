"""Safetensors decoding of untrusted updates and validation against the federation's spec."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
import safetensors.numpy as st

from bastion.errors import Invalid, PayloadTooLarge
from bastion.federation import tensors as T


def _params() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "fc1.weight": rng.standard_normal((8, 4)).astype(np.float32),
        "fc1.bias": rng.standard_normal(8).astype(np.float32),
        "scale": np.array(2.5, dtype=np.float32),
    }


def _raw(header: dict[str, object], body: bytes) -> bytes:
    head = json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + body


def test_round_trip_and_interop_with_reference_library() -> None:
    params = _params()
    blob = T.encode(params)
    for decoded in (T.decode(blob), st.load(blob)):
        assert set(decoded) == set(params)
        for name, arr in params.items():
            np.testing.assert_array_equal(decoded[name], arr)
            assert decoded[name].shape == arr.shape
    ours = T.decode(st.save(params))
    np.testing.assert_array_equal(ours["fc1.weight"], params["fc1.weight"])


def test_decoded_arrays_are_read_only_views() -> None:
    decoded = T.decode(T.encode(_params()))
    with pytest.raises(ValueError):
        decoded["fc1.bias"][0] = 1.0


def test_floating_inputs_are_cast_and_others_refused() -> None:
    out = T.decode(T.encode({"w": np.ones((2, 2), np.float64)}))
    assert out["w"].dtype == np.float32
    with pytest.raises(Invalid, match="'ids'"):
        T.encode({"ids": np.arange(3)})


def test_spec_json_round_trip() -> None:
    spec = T.TensorSpec.from_tensors(_params())
    assert T.TensorSpec.from_json(spec.to_json()) == spec
    assert spec.num_params == 8 * 4 + 8 + 1
    with pytest.raises(Invalid):
        T.TensorSpec.from_json({"w": [2, -1]})
    with pytest.raises(Invalid):
        T.TensorSpec.from_json({})


def test_validate_names_the_offending_tensor() -> None:
    params = _params()
    spec = T.TensorSpec.from_tensors(params)
    T.validate(params, spec)

    missing = {k: v for k, v in params.items() if k != "fc1.bias"}
    with pytest.raises(Invalid, match=r"missing tensor 'fc1\.bias'") as info:
        T.validate(missing, spec)
    assert info.value.details["tensor"] == "fc1.bias"

    with pytest.raises(Invalid, match="unexpected tensor 'extra'"):
        T.validate({**params, "extra": np.zeros(1, np.float32)}, spec)

    with pytest.raises(Invalid, match=r"'fc1.weight' has shape \(4, 8\), expected \(8, 4\)"):
        T.validate({**params, "fc1.weight": params["fc1.weight"].T.copy()}, spec)

    with pytest.raises(Invalid, match="'scale' has dtype float64"):
        T.validate({**params, "scale": np.array(1.0)}, spec)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_values_are_rejected(bad: float) -> None:
    params = _params()
    w = params["fc1.weight"].copy()
    w[3, 2] = bad
    with pytest.raises(Invalid, match=r"'fc1\.weight' contains NaN or Inf") as info:
        T.validate({**params, "fc1.weight": w}, T.TensorSpec.from_tensors(params))
    assert info.value.code == "non_finite"


def test_huge_finite_values_are_not_mistaken_for_inf() -> None:
    big = np.full(1000, np.finfo(np.float32).max, np.float32)
    T.check_finite("big", big)


@pytest.mark.parametrize(
    ("header", "body", "message"),
    [
        ({"w": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, bytes(8), "dtype 'F64'"),
        ({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, bytes(4), "does not match its shape"),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, bytes(8), "trailing bytes"),
        (
            {
                "a": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "b": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
            },
            bytes(4),
            "overlap",
        ),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4], "x": 1}}, bytes(4), "malformed"),
        ({"w": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, bytes(4), "invalid shape"),
        ({"__metadata__": {"a": 1}}, b"", "__metadata__"),
    ],
)
def test_malformed_safetensors_are_invalid(header: dict[str, object], body: bytes, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        T.decode(_raw(header, body))


def test_structural_garbage_is_invalid() -> None:
    with pytest.raises(Invalid, match="truncated"):
        T.decode(b"abc")
    with pytest.raises(Invalid, match="header length"):
        T.decode(struct.pack("<Q", 2**40) + b"{}")
    with pytest.raises(Invalid, match="not valid JSON"):
        T.decode(struct.pack("<Q", 4) + b"{{{{")
    dup = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    with pytest.raises(Invalid, match="repeats"):
        T.decode(struct.pack("<Q", len(dup)) + dup + bytes(4))


def test_size_limit_is_checked_before_parsing() -> None:
    blob = T.encode(_params())
    with pytest.raises(PayloadTooLarge):
        T.decode(blob, max_bytes=len(blob) - 1)
    spec = T.TensorSpec.from_tensors(_params())
    assert len(blob) <= spec.max_encoded_bytes()
    T.decode_validated(blob, spec)
