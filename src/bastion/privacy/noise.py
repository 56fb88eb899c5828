"""Gaussian noise from a cryptographically secure source.

Why not ``numpy.random``: its generators (Mersenne Twister, PCG64) are predictable from their outputs
or their seed, and noise that can be predicted can be subtracted. Here every call draws a fresh 256-bit
AES key from ``os.urandom`` (the kernel CSPRNG), expands it with AES-256-CTR into uniform 64-bit words
in one vectorised call, keeps 53 bits of each as a double in (0, 1) and applies the Box-Muller
transform. Without the key the words are indistinguishable from random; the key lives only for the
call.

Known limit: this is floating-point noise. Mironov (2012) showed that the low-order bits of textbook
floating-point samplers can leak; in Bastion the noisy update is quantized (see secagg/quantize.py)
before it leaves the site, which discards those bits, but a discrete Gaussian would be the rigorous fix.
"""

from __future__ import annotations

import math
import os

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bastion.errors import Invalid

_KEY_BYTES = 32


def secure_uniform(n: int) -> np.ndarray:
    """``n`` doubles uniform in the open interval (0, 1) from AES-256-CTR under a fresh OS key."""
    encryptor = Cipher(algorithms.AES(os.urandom(_KEY_BYTES)), modes.CTR(bytes(16))).encryptor()
    words = np.frombuffer(encryptor.update(bytes(8 * n)), dtype="<u8")
    return ((words >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53


def secure_gaussian(shape: int | tuple[int, ...], std: float) -> np.ndarray:
    """Samples of N(0, std**2) with the given shape, from the secure uniform source."""
    if not (math.isfinite(std) and std >= 0):
        raise Invalid("noise standard deviation must be a non-negative number")
    dims = (shape,) if isinstance(shape, int) else tuple(shape)
    n = math.prod(dims)
    half = (n + 1) // 2
    u = secure_uniform(2 * half)
    radius = np.sqrt(-2.0 * np.log(u[:half]))
    angle = 2.0 * math.pi * u[half:]
    z = np.concatenate([radius * np.cos(angle), radius * np.sin(angle)])[:n]
    return (z * std).reshape(dims)


def central_noise_std(noise_multiplier: float, clip_norm: float) -> float:
    """Std of the noise the server adds to the sum in central DP: sigma * S."""
    return noise_multiplier * clip_norm


def distributed_noise_std(noise_multiplier: float, clip_norm: float, min_clients: int) -> float:
    """Std of each site's share so that any ``min_clients`` shares add up to at least N(0, (sigma S)^2)."""
    if min_clients < 1:
        raise Invalid("min_clients must be at least 1")
    return noise_multiplier * clip_norm / math.sqrt(min_clients)
