"""FedProx (Li et al. 2020): FedAvg on the server, a proximal term on each site.

Sites add ``(mu / 2) * ||w - w_global||^2`` to their local loss, which keeps heterogeneous sites from
drifting far from the global model. The server side is plain sample-weighted averaging; the strategy's
only job is to hand ``proximal_mu`` to the sites through :meth:`client_config`.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from bastion.federation.strategies.fedavg import FedAvg, FedAvgOptions


class FedProxOptions(FedAvgOptions):
    proximal_mu: float = Field(default=0.01, ge=0.0, le=1e4)


class FedProx(FedAvg):
    name = "fedprox"
    options_model = FedProxOptions
    options: FedProxOptions

    @property
    def proximal_mu(self) -> float:
        return self.options.proximal_mu

    def client_config(self) -> dict[str, Any]:
        return {"proximal_mu": self.options.proximal_mu}
