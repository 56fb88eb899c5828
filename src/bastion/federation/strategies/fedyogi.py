"""FedYogi (Reddi et al. 2021): FedAdam with Yogi's additive second-moment update.

``v = v - (1 - beta2) * delta**2 * sign(v - delta**2)`` grows ``v`` no faster than the squared
pseudo-gradient, which keeps the effective server step from collapsing when site updates are noisy
(the usual case with non-IID hospitals). Everything else, memory and state included, is FedAdam's.
"""

from __future__ import annotations

import numpy as np

from bastion.federation.strategies.fedadam import FedAdam


class FedYogi(FedAdam):
    name = "fedyogi"

    def _second_moment(self, v: np.ndarray, delta_sq: np.ndarray, scratch: np.ndarray) -> None:
        np.subtract(v, delta_sq, out=scratch)
        np.sign(scratch, out=scratch)
        scratch *= delta_sq
        scratch *= 1.0 - self.options.beta2
        v -= scratch
