"""Secure aggregation (SecAgg+, Bell et al. 2020, on Bonawitz et al. 2017).

The server learns the sum of the sites' updates and nothing else about them. Drive a round with
:class:`SecAggServer` on the coordinator and one :class:`SecAggClient` per site, exchanging the JSON
messages of :mod:`bastion.federation.secagg.messages`. See docs/privacy.md for the threat model.
"""

from bastion.federation.secagg.client import ClientStage, SecAggClient
from bastion.federation.secagg.config import SecAggConfig
from bastion.federation.secagg.errors import RoundAborted
from bastion.federation.secagg.messages import (
    AdvertiseKeys,
    KeysBroadcast,
    MaskedInput,
    ShareKeys,
    SharesDelivery,
    UnmaskRequest,
    UnmaskResponse,
)
from bastion.federation.secagg.quantize import Quantizer
from bastion.federation.secagg.server import AggregateResult, SecAggServer, ServerStage

__all__ = [
    "AdvertiseKeys",
    "AggregateResult",
    "ClientStage",
    "KeysBroadcast",
    "MaskedInput",
    "Quantizer",
    "RoundAborted",
    "SecAggClient",
    "SecAggConfig",
    "SecAggServer",
    "ServerStage",
    "ShareKeys",
    "SharesDelivery",
    "UnmaskRequest",
    "UnmaskResponse",
]
