"""CKKS parameters per model depth, at 128-bit security, and the check of a client's context.

A model of multiplicative depth ``d`` needs ``d`` rescaling primes of ``s`` bits between two
``OUTER_BITS`` primes (the first keeps the decrypted result's integer part, the last is the
key-switching prime). The total bit count must stay within the HE standard's bound for the ring
size at 128-bit classical security (``MAX_COEFF_BITS_128``, the values SEAL's
``CoeffModulus::MaxBitCount`` enforces), so the smallest ring that fits at ``s = MIN_SCALE`` is
chosen (depth 1-2: N = 8192, 4,096 slots; up to 7: 16,384; up to 19: 32,768), then the largest
``s <= MAX_SCALE`` that still fits: a bigger scale means a smaller CKKS error, and 60 - 45 = 15 bits
are left for the result's integer part (|score| < 16,384).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from bastion.errors import Invalid

MIN_SCALE, MAX_SCALE = 40, 45
OUTER_BITS = 60
MAX_COEFF_BITS_128: dict[int, int] = {8192: 218, 16384: 438, 32768: 881}
# A context's global scale must lie in this range (in bits) for 1e-3 agreement with plaintext.
MIN_SCALE_BITS, MAX_SCALE_BITS = 30, 60


@dataclass(frozen=True)
class CkksParams:
    poly_modulus_degree: int
    coeff_mod_bit_sizes: list[int]
    global_scale_bits: int

    @property
    def slots(self) -> int:
        return self.poly_modulus_degree // 2

    def to_json(self) -> dict[str, Any]:
        return {
            "poly_modulus_degree": self.poly_modulus_degree,
            "coeff_mod_bit_sizes": list(self.coeff_mod_bit_sizes),
            "global_scale_bits": self.global_scale_bits,
            "slots": self.slots,
            "security_bits": 128,
        }


def max_depth() -> int:
    largest = max(MAX_COEFF_BITS_128)
    return (MAX_COEFF_BITS_128[largest] - 2 * OUTER_BITS) // MIN_SCALE


def params_for_depth(depth: int) -> CkksParams:
    """The smallest 128-bit-secure ring for ``depth`` rescalings; Invalid when none is deep enough."""
    if depth < 1:
        raise ValueError("depth must be at least 1")
    for n in sorted(MAX_COEFF_BITS_128):
        room = MAX_COEFF_BITS_128[n] - 2 * OUTER_BITS
        if depth * MIN_SCALE <= room:
            scale = min(MAX_SCALE, room // depth)
            return CkksParams(n, [OUTER_BITS, *([scale] * depth), OUTER_BITS], scale)
    raise Invalid(
        f"the model needs multiplicative depth {depth}, more than the deepest 128-bit CKKS parameters "
        f"allow ({max_depth()}); use fewer layers",
        code="he_model_too_deep",
    )


@dataclass(frozen=True)
class ContextFacts:
    poly_modulus_degree: int
    levels: int
    key_bits: int
    scale_bits: float


def inspect_context(context: Any) -> ContextFacts:
    """What a deserialized TenSEAL context offers: ring size, rescaling levels, modulus, scale."""
    data = context.seal_context().data
    first, key = data.first_context_data(), data.key_context_data()
    scale = float(context.global_scale)
    return ContextFacts(
        poly_modulus_degree=int(first.parms().poly_modulus_degree()),
        levels=int(first.chain_index()),
        key_bits=int(key.total_coeff_modulus_bit_count()),
        scale_bits=math.log2(scale) if scale > 0 else 0.0,
    )


def check_context(facts: ContextFacts, depth: int) -> None:
    """Refuse a context below 128-bit security, with a bad scale, or too shallow for ``depth``."""
    bound = MAX_COEFF_BITS_128.get(facts.poly_modulus_degree)
    if bound is None:
        raise Invalid(
            f"poly modulus degree {facts.poly_modulus_degree} is not one of "
            f"{', '.join(map(str, sorted(MAX_COEFF_BITS_128)))}",
            code="he_bad_parameters",
        )
    if facts.key_bits > bound:
        raise Invalid(
            f"coefficient modulus of {facts.key_bits} bits is above the 128-bit security bound "
            f"({bound}) for N = {facts.poly_modulus_degree}",
            code="he_bad_parameters",
        )
    if not MIN_SCALE_BITS <= facts.scale_bits <= MAX_SCALE_BITS:
        raise Invalid(
            f"global scale 2^{facts.scale_bits:.1f} is outside 2^{MIN_SCALE_BITS}..2^{MAX_SCALE_BITS}",
            code="he_bad_parameters",
        )
    if facts.levels < depth:
        raise Invalid(
            f"the model is too deep for these parameters: it needs {depth} rescaling levels and the "
            f"context has {facts.levels}; use the parameters from the model's encryption spec",
            code="he_model_too_deep",
        )
