"""DP-FedAvg (McMahan et al. 2018) around secure aggregation: what a site and the server each do.

The only implementation: sites call :func:`privatize_update` (``bastion.client.site.secure``), the
server's private strategy calls it for updates it sees one by one, then :func:`privatize_sum` and
:func:`dp_mean` (``bastion.federation.strategies.private``). Each takes plain numbers, which a
:class:`~bastion.privacy.config.DPConfig` supplies (``site_noise_std``, ``server_noise_std``,
``expected_clients``) on the server and the signed site config supplies on a site.

Site: clip the update to L2 norm S; in *distributed* mode also add its share of the noise before
masking, so the server only ever sees noisy data. Server: in *central* mode add N(0, (sigma S)^2) to the
unmasked sum (the sites trust the server with the noiseless sum); then divide by the *expected* number
of sites (fixed denominator), so one site's presence changes the average by at most S / expected.
"""

from __future__ import annotations

import numpy as np

from bastion.errors import Invalid
from bastion.privacy.clip import clip_l2
from bastion.privacy.noise import secure_gaussian


def privatize_update(update: np.ndarray, clip_norm: float, noise_std: float = 0.0) -> np.ndarray:
    """One delta, flattened: clipped to ``clip_norm``, plus N(0, noise_std^2) when ``noise_std`` > 0."""
    clipped = clip_l2(np.asarray(update, dtype=np.float64).ravel(), clip_norm)
    return clipped + secure_gaussian(clipped.shape, noise_std) if noise_std > 0 else clipped


def privatize_sum(total: np.ndarray, noise_std: float) -> np.ndarray:
    """The sum of deltas plus N(0, noise_std^2) (central DP; ``noise_std`` 0 returns it unchanged)."""
    vec = np.asarray(total, dtype=np.float64)
    return vec + secure_gaussian(vec.shape, noise_std) if noise_std > 0 else vec


def dp_mean(total: np.ndarray, denominator: int) -> np.ndarray:
    """The average of a sum of deltas over a fixed denominator (DP: the *expected* number of sites)."""
    if denominator < 1:
        raise Invalid("the mean needs a positive denominator")
    return np.asarray(total, dtype=np.float64) / float(denominator)
