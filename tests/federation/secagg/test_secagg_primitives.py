"""The building blocks: Shamir sharing, the AES-CTR mask generator, the quantizer, the graph, the config."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest
from pydantic import ValidationError

from bastion.errors import CryptoError, Invalid
from bastion.federation.secagg import SecAggConfig, shamir
from bastion.federation.secagg.graph import neighbourhoods
from bastion.federation.secagg.prg import derive_key, expand
from bastion.federation.secagg.quantize import Quantizer, word_bits_for


def test_any_t_shares_rebuild_the_secret_and_fewer_do_not() -> None:
    secret = os.urandom(32)
    shares = shamir.split(secret, 3, [2, 5, 7, 11, 13])
    for subset in itertools.combinations(shares, 3):
        assert shamir.combine({x: shares[x] for x in subset}, 3, 32) == secret
    with pytest.raises(Invalid):
        shamir.combine({2: shares[2], 5: shares[5]}, 3, 32)
    # Two shares interpolated as if t were 2 give an unrelated value.
    with pytest.raises(CryptoError):
        shamir.combine({2: shares[2], 5: shares[5]}, 2, 32)


def test_shares_are_fresh_and_fit_66_bytes() -> None:
    secret = bytes(32)
    a, b = shamir.split(secret, 2, [1, 2]), shamir.split(secret, 2, [1, 2])
    assert a != b
    for y in a.values():
        assert shamir.share_from_bytes(shamir.share_to_bytes(y)) == y
        assert len(shamir.share_to_bytes(y)) == 66
    with pytest.raises(CryptoError):
        shamir.share_from_bytes(b"\xff" * 66)  # above the prime
    assert shamir.PRIME == 2**521 - 1 and shamir.PRIME > 2**256


def test_prg_is_deterministic_keyed_and_uniform() -> None:
    key = os.urandom(32)
    a = expand(key, 100_000, np.uint32)
    assert np.array_equal(a, expand(key, 100_000, np.uint32))
    assert not np.array_equal(a, expand(os.urandom(32), 100_000, np.uint32))
    assert a.dtype == np.dtype("<u4") and a.shape == (100_000,)
    # Uniform words: each byte value appears about equally often (chi-square far below 6 sigma).
    counts = np.bincount(a.view(np.uint8), minlength=256)
    expected = a.nbytes / 256
    chi2 = float(((counts - expected) ** 2 / expected).sum())
    assert chi2 < 255 + 6 * math.sqrt(2 * 255)
    b = expand(key, 10, np.uint64)
    assert b.dtype == np.dtype("<u8")
    assert b.view("<u4")[:10].tolist() == a[:10].tolist()  # one keystream, two word sizes
    with pytest.raises(CryptoError):
        expand(b"short", 10, np.uint32)


def test_derived_keys_depend_on_purpose_round_and_ids() -> None:
    secret = os.urandom(32)
    base = derive_key(secret, "self-mask", "r1", 1)
    assert base == derive_key(secret, "self-mask", "r1", 1)
    assert base != derive_key(secret, "pairwise-mask", "r1", 1)
    assert base != derive_key(secret, "self-mask", "r2", 1)
    assert base != derive_key(secret, "self-mask", "r1", 2)


def test_word_size_grows_with_clients_and_bits() -> None:
    assert word_bits_for(24, 100) == 32  # 24 + 7 bits
    assert word_bits_for(25, 128) == 32
    assert word_bits_for(25, 129) == 64
    assert word_bits_for(40, 1000) == 64
    with pytest.raises(Invalid, match="overflow"):
        word_bits_for(48, 2**17)


def test_sum_of_worst_case_inputs_does_not_overflow() -> None:
    q = Quantizer.for_clients(clip=2.0, bits=24, n_clients=128)
    top = q.encode(np.full(4, 5.0))  # clipped to +2.0: the largest code
    total = np.zeros(4, dtype=q.dtype)
    for _ in range(128):
        total += top
    assert np.allclose(q.decode_sum(total, 128), 256.0, atol=q.max_error(128))
    assert q.max_clients() >= 128


def test_quantization_error_is_bounded() -> None:
    q = Quantizer(clip=1.0, bits=16, word_bits=32)
    x = np.random.default_rng(1).uniform(-1, 1, 10_000)
    back = q.decode_sum(q.encode(x), 1)
    assert np.max(np.abs(back - x)) <= q.max_error(1) + 1e-12
    with pytest.raises(Invalid):
        q.encode(np.array([0.0, np.nan]))


def test_graph_is_regular_symmetric_and_deterministic() -> None:
    ids = list(range(1, 31))
    g = neighbourhoods("r1", ids, 7)
    assert g == neighbourhoods("r1", ids, 7)
    assert g != neighbourhoods("r2", ids, 7)
    for c, nb in g.items():
        assert c in nb and len(nb) == 7
        assert all(c in g[v] for v in nb)
    full = neighbourhoods("r1", ids, 30)
    assert all(nb == frozenset(ids) for nb in full.values())
    with pytest.raises(Invalid):
        neighbourhoods("r1", ids, 6)


def test_config_refuses_unsafe_or_impossible_settings() -> None:
    base = {"round_id": "r1", "participants": tuple(range(1, 11)), "vector_length": 8, "clip": 1.0}
    SecAggConfig(**base, threshold=6)
    with pytest.raises(ValidationError, match="more than half"):
        SecAggConfig(**base, threshold=5)
    with pytest.raises(ValidationError, match="exceeds"):
        SecAggConfig(**base, threshold=11)
    with pytest.raises(ValidationError, match="odd"):
        SecAggConfig(**base, threshold=4, neighbours=6)
    with pytest.raises(ValidationError, match="distinct"):
        SecAggConfig(**(base | {"participants": (1, 1, 2)}), threshold=2)
    with pytest.raises(ValidationError, match="overflow"):
        SecAggConfig(
            **(base | {"participants": tuple(range(1, 2**17 + 1))}), threshold=2, neighbours=3, quant_bits=48
        )
    assert SecAggConfig(**base, threshold=6).quantizer.word_bits == 32


def test_named_tensors_flatten_and_come_back() -> None:
    from bastion.federation.secagg.vector import flatten, unflatten

    arrays = {
        "layer.weight": np.arange(6.0).reshape(2, 3),
        "layer.bias": np.array([7.0, 8.0]),
        "scale": np.array(9.0),
    }
    vec, layout = flatten(arrays)
    assert vec.tolist() == [7.0, 8.0, 0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 9.0]
    back = unflatten(vec, layout)
    assert all(np.array_equal(back[k], arrays[k]) for k in arrays)
    with pytest.raises(Invalid):
        unflatten(vec[:-1], layout)
