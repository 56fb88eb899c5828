"""Run a whole round in one process: for simulations, tests and benchmarks.

Every message goes through its JSON form (as it would over HTTP) unless ``over_json`` is false, and the
time each party spends, serialization included, is recorded per party, as are the bytes each client
sends.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from typing import Literal, TypeVar

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from pydantic import BaseModel

from bastion.federation.secagg.client import SecAggClient
from bastion.federation.secagg.config import SecAggConfig
from bastion.federation.secagg.messages import (
    AdvertiseKeys,
    KeysBroadcast,
    MaskedInput,
    ShareKeys,
    SharesDelivery,
    UnmaskRequest,
    UnmaskResponse,
)
from bastion.federation.secagg.server import AggregateResult, SecAggServer

Stage = Literal["advertise", "share", "mask", "unmask"]
"""Where a simulated client stops: it sends nothing from that stage on."""

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


@dataclass
class RoundStats:
    server_seconds: float = 0.0
    client_seconds: dict[int, float] = field(default_factory=dict)
    bytes_sent: dict[int, int] = field(default_factory=dict)
    bytes_received: dict[int, int] = field(default_factory=dict)


@dataclass
class LocalRound:
    """Clients and server of one round, wired in memory."""

    config: SecAggConfig
    identities: Mapping[int, Ed25519PrivateKey]
    over_json: bool = True
    stats: RoundStats = field(default_factory=RoundStats)
    server: SecAggServer = field(init=False)
    clients: dict[int, SecAggClient] = field(init=False)

    def __post_init__(self) -> None:
        directory: dict[int, Ed25519PublicKey] = {c: k.public_key() for c, k in self.identities.items()}
        self.server = SecAggServer(self.config, directory)
        self.clients = {
            c: SecAggClient(self.config, c, self.identities[c], directory) for c in self.config.participants
        }

    def run(
        self, updates: Mapping[int, np.ndarray], drop: Mapping[int, Stage] | None = None
    ) -> AggregateResult:
        """One round; a client listed in ``drop`` goes silent from the named stage on."""
        drop = drop or {}
        active = [c for c in self.config.participants if drop.get(c) != "advertise"]
        srv = self.server

        for c in active:
            self._to_server(c, self.clients[c].advertise_keys, AdvertiseKeys, srv.receive_advertise)
        broadcasts = self._timed_server(srv.close_advertise)

        active = [c for c in active if drop.get(c) != "share" and c in broadcasts]
        for c in active:
            msg = self._to_client(c, broadcasts[c], KeysBroadcast)
            self._to_server(c, partial(self.clients[c].share_keys, msg), ShareKeys, srv.receive_shares)
        deliveries = self._timed_server(srv.close_shares)

        active = [c for c in active if drop.get(c) != "mask" and c in deliveries]
        for c in active:
            delivery = self._to_client(c, deliveries[c], SharesDelivery)
            self._to_server(
                c,
                partial(self.clients[c].masked_input, delivery, updates[c]),
                MaskedInput,
                srv.receive_masked_input,
            )
        request = self._timed_server(srv.close_masked_input)

        active = [c for c in active if drop.get(c) != "unmask"]
        for c in active:
            req = self._to_client(c, request, UnmaskRequest)
            self._to_server(c, partial(self.clients[c].unmask, req), UnmaskResponse, srv.receive_unmask)
        return self._timed_server(srv.finalize)

    # -- transport ----------------------------------------------------------------------------
    def _to_server(
        self, cid: int, produce: Callable[[], M], kind: type[M], deliver: Callable[[M], None]
    ) -> None:
        start = time.perf_counter()
        msg = produce()
        wire = msg.model_dump_json().encode() if self.over_json else b""
        self._add_client_time(cid, time.perf_counter() - start)
        self.stats.bytes_sent[cid] = self.stats.bytes_sent.get(cid, 0) + len(wire)
        start = time.perf_counter()
        deliver(kind.model_validate_json(wire) if self.over_json else msg)
        self.stats.server_seconds += time.perf_counter() - start

    def _to_client(self, cid: int, msg: M, kind: type[M]) -> M:
        if not self.over_json:
            return msg
        start = time.perf_counter()
        wire = msg.model_dump_json().encode()
        self.stats.server_seconds += time.perf_counter() - start
        self.stats.bytes_received[cid] = self.stats.bytes_received.get(cid, 0) + len(wire)
        start = time.perf_counter()
        out = kind.model_validate_json(wire)
        self._add_client_time(cid, time.perf_counter() - start)
        return out

    def _timed_server(self, step: Callable[[], T]) -> T:
        start = time.perf_counter()
        try:
            return step()
        finally:
            self.stats.server_seconds += time.perf_counter() - start

    def _add_client_time(self, cid: int, seconds: float) -> None:
        self.stats.client_seconds[cid] = self.stats.client_seconds.get(cid, 0.0) + seconds
