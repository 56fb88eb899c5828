"""An in-process coordinator with sites that speak the real envelope, for service-level tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.auth.principal import Principal
from bastion.context import Context
from bastion.crypto import sealed, signing
from bastion.federation.envelope import seal_update
from bastion.federation.server.admission import SiteIdentity
from bastion.federation.server.config import FederationCreate
from bastion.federation.server.coordinator import Coordinator
from bastion.federation.server.service import FederationService
from bastion.federation.server.site import SiteService
from bastion.federation.tensors import decode
from bastion.store.base import utcnow

TINY_MODEL: dict[str, Any] = {"type": "tabular_mlp", "in_features": 4, "num_classes": 2, "hidden": [3]}


class FakeClock:
    def __init__(self) -> None:
        self.now = utcnow()

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


@dataclass
class Site:
    name: str
    token: str
    key: Ed25519PrivateKey
    identity: SiteIdentity
    rng: np.random.Generator = field(default_factory=lambda: np.random.default_rng(7))


class World:
    """A federation owner, the coordinator's services, and helpers to play its sites."""

    def __init__(self, ctx: Context, owner: Principal, clock: FakeClock | None = None) -> None:
        self.ctx = ctx
        self.owner = owner
        self.coordinator: Coordinator = ctx.services.fl_coordinator
        self.svc: FederationService = ctx.services.federations
        self.sites_svc: SiteService = ctx.services.fl_sites
        if clock is not None:
            self.coordinator.clock = clock

    def create(self, **overrides: Any) -> dict[str, Any]:
        body: dict[str, Any] = {"name": "fed", "model": TINY_MODEL, "rounds": 3, "min_clients": 2}
        body.update(overrides)
        return self.svc.create(self.owner, FederationCreate.model_validate(body), "127.0.0.1")

    def enroll(self, fid: str, name: str, *, register: bool = True) -> Site:
        token = self.svc.enroll(self.owner, fid, name, "127.0.0.1")["token"]
        key = signing.generate_signing_key()
        ident = self.sites_svc.authenticate(fid, token, "127.0.0.1", "test")
        if register:
            self.sites_svc.register(ident, signing.encode_public_key(key), "127.0.0.1")
        return Site(name, token, key, self.identity(fid, token))

    def identity(self, fid: str, token: str) -> SiteIdentity:
        return self.sites_svc.authenticate(fid, token, "127.0.0.1", "test")

    def global_params(self, fid: str) -> dict[str, np.ndarray]:
        _version, blob = self.svc.download_model(self.owner, fid)
        return {k: np.array(v) for k, v in decode(blob).items()}

    def seal(
        self,
        site: Site,
        fid: str,
        round: int,
        tensors: dict[str, np.ndarray] | None = None,
        *,
        num_samples: int = 10,
        **kw: Any,
    ) -> bytes:
        if tensors is None:
            tensors = {
                k: v + site.rng.normal(0, 0.1, v.shape).astype(np.float32)
                for k, v in self.global_params(fid).items()
            }
        fed = self.svc.get(self.owner, fid)
        args: dict[str, Any] = {
            "federation_id": fid,
            "round": round,
            "participant_id": site.identity.participant_id,
            "num_samples": num_samples,
            "server_public_key": sealed.decode_public_key(fed["server_sealing_key"]),
            "signing_key": site.key,
            "metrics": {"train_loss": 0.5, "val_accuracy": 0.75, "val_num_samples": 5.0},
        }
        args.update(kw)
        return seal_update(tensors, **args)

    def submit(self, site: Site, message: bytes) -> dict[str, Any]:
        return self.coordinator.submit(site.identity, message, "127.0.0.1")

    def status(self, fid: str) -> dict[str, Any]:
        return self.svc.status(self.owner, fid)

    def rounds(self, fid: str) -> list[dict[str, Any]]:
        return self.svc.rounds(self.owner, fid)[0]


def principal_for(ctx: Context, username: str) -> Principal:
    user = ctx.accounts.create_user(username, "user")
    return Principal(user.id, user.username, user.role, "api_key")
