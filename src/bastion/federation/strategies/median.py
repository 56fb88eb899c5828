"""Coordinate-wise median (Yin et al. 2018): each parameter is the median of the sites' values.

Tolerates up to half the sites being arbitrarily wrong, at the price of ignoring sample counts and
of keeping every update of the round (O(clients x model) memory, see ``buffered``).
"""

from __future__ import annotations

import numpy as np

from bastion.federation.strategies.base import Params
from bastion.federation.strategies.buffered import BufferedStrategy


class Median(BufferedStrategy):
    name = "median"

    def _aggregate(self) -> Params:
        return self._reduce(lambda stack: np.median(stack, axis=0))
