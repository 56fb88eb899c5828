"""The server's side of one SecAgg+ round: route messages, add masked vectors, remove the masks.

The server keeps the signed public keys, routes ciphertexts it cannot read, and adds each masked input
into one running sum as it arrives, so no individual vector, masked or not, stays in its state. After
the unmasking stage it rebuilds the self-mask seeds of the clients in the sum and the mask keys of the
clients that dropped before sending an input, and subtracts exactly the masks left in the sum.

Call ``receive_*`` as messages arrive and ``close_*`` when a stage's deadline passes or everyone has
answered (:meth:`waiting_for` tells who has not). Any failure to keep ``threshold`` clients raises
:class:`RoundAborted` with the reason, and the round is over.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import NoReturn

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from bastion.errors import BadRequest, Conflict, CryptoError, Invalid
from bastion.federation.secagg import keys, shamir
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
from bastion.federation.secagg.prg import SEED_BYTES, expand

_CIPHERTEXT_BYTES = keys.NONCE_BYTES + 8 + 2 * shamir.SHARE_BYTES + 16


class ServerStage(enum.Enum):
    ADVERTISE = "advertise"
    SHARE = "share"
    MASK = "mask"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


@dataclass(frozen=True)
class AggregateResult:
    """The unmasked sum: all the server ever learns about the updates."""

    round_id: str
    total: np.ndarray
    """Float64 sum of the included updates (after quantization)."""
    encoded_total: np.ndarray
    """The exact integer sum of the encoded updates."""
    included: tuple[int, ...]
    """Clients whose masked input is in the sum (they may have dropped out afterwards)."""
    excluded: tuple[int, ...]
    """Participants whose input is not in the sum."""
    max_error: float
    """Bound on the per-coordinate quantization error of ``total``."""


class SecAggServer:
    """Coordinator of one round. ``directory`` (identity keys by client id) lets it refuse forged adverts
    early; the clients check signatures themselves whatever the server does."""

    def __init__(self, config: SecAggConfig, directory: keys.IdentityDirectory | None = None) -> None:
        self.config = config
        self.stage = ServerStage.ADVERTISE
        self.failure_reason: str | None = None
        self._directory = keys.load_directory(directory) if directory is not None else None
        self._adverts: dict[int, AdvertiseKeys] = {}  # U1
        self._routes: dict[int, dict[int, bytes]] = {}  # recipient -> sender -> ciphertext
        self._sharers: set[int] = set()  # U2
        self._contributors: set[int] = set()  # U3
        self._masked_sum: np.ndarray | None = None
        self._seed_shares: dict[int, dict[int, int]] = {}  # owner -> holder -> share
        self._key_shares: dict[int, dict[int, int]] = {}
        self._responders: set[int] = set()  # U5

    # -- bookkeeping ----------------------------------------------------------------------------
    def waiting_for(self) -> frozenset[int]:
        """Clients expected in the current stage that have not answered yet."""
        expected, got = {
            ServerStage.ADVERTISE: (set(self.config.participants), set(self._adverts)),
            ServerStage.SHARE: (set(self._adverts), self._sharers),
            ServerStage.MASK: (self._sharers, self._contributors),
            ServerStage.UNMASK: (self._contributors, self._responders),
        }.get(self.stage, (set(), set()))
        return frozenset(expected - got)

    def abort(self, reason: str) -> None:
        """End the round (a deadline passed, an operator cancelled) and drop everything held."""
        self.failure_reason = reason
        self.stage = ServerStage.ABORTED
        self._adverts.clear()
        self._routes.clear()
        self._masked_sum = None
        self._forget_secrets()

    # -- stage 1 --------------------------------------------------------------------------------
    def receive_advertise(self, msg: AdvertiseKeys) -> None:
        self._expect(ServerStage.ADVERTISE, msg.round_id)
        cid = msg.client_id
        if cid not in self.config.graph:
            raise Invalid(f"client {cid} is not a participant of this round")
        if cid in self._adverts:
            raise Conflict(f"client {cid} already advertised keys")
        if self._directory is not None:
            keys.verify_advert(msg, self._directory.get(cid))
        self._adverts[cid] = msg

    def close_advertise(self) -> dict[int, KeysBroadcast]:
        """Close stage 1: each client that advertised gets the signed keys of its neighbours."""
        self._expect(ServerStage.ADVERTISE)
        self._require(len(self._adverts), "clients advertised keys")
        out = {
            cid: KeysBroadcast(
                round_id=self.config.round_id,
                recipient=cid,
                keys=[self._adverts[v] for v in sorted(self.config.graph[cid] & self._adverts.keys())],
            )
            for cid in sorted(self._adverts)
        }
        self.stage = ServerStage.SHARE
        return out

    # -- stage 2 --------------------------------------------------------------------------------
    def receive_shares(self, msg: ShareKeys) -> None:
        self._expect(ServerStage.SHARE, msg.round_id)
        cid = msg.client_id
        if cid not in self._adverts:
            raise Invalid(f"client {cid} did not advertise keys in this round")
        if cid in self._sharers:
            raise Conflict(f"client {cid} already sent its shares")
        expected = (self.config.graph[cid] & self._adverts.keys()) - {cid}
        if set(msg.encrypted_shares) != expected:
            raise Invalid(f"client {cid} must send shares to exactly its neighbours that advertised keys")
        if any(len(ct) != _CIPHERTEXT_BYTES for ct in msg.encrypted_shares.values()):
            raise Invalid(f"client {cid} sent malformed encrypted shares")
        for recipient, ct in msg.encrypted_shares.items():
            self._routes.setdefault(recipient, {})[cid] = ct
        self._sharers.add(cid)

    def close_shares(self) -> dict[int, SharesDelivery]:
        """Close stage 2: route each ciphertext to its recipient; the server keeps none of them."""
        self._expect(ServerStage.SHARE)
        self._require(len(self._sharers), "clients shared their keys")
        out = {}
        for cid in sorted(self._sharers):
            inbox = self._routes.get(cid, {})
            out[cid] = SharesDelivery(
                round_id=self.config.round_id,
                recipient=cid,
                encrypted_shares={s: inbox[s] for s in sorted(inbox) if s in self._sharers},
            )
        self._routes.clear()
        self.stage = ServerStage.MASK
        return out

    # -- stage 3 --------------------------------------------------------------------------------
    def receive_masked_input(self, msg: MaskedInput) -> None:
        """Add a masked vector into the running sum; the vector itself is not kept."""
        self._expect(ServerStage.MASK, msg.round_id)
        cid = msg.client_id
        if cid not in self._sharers:
            raise Invalid(f"client {cid} did not share its keys in this round")
        if cid in self._contributors:
            raise Conflict(f"client {cid} already sent its masked input")
        q = self.config.quantizer
        if len(msg.masked_vector) != self.config.vector_length * q.dtype.itemsize:
            raise Invalid(f"masked input of client {cid} has the wrong length")
        vector = np.frombuffer(msg.masked_vector, dtype=q.dtype.newbyteorder("<"))
        if self._masked_sum is None:
            self._masked_sum = np.zeros(self.config.vector_length, dtype=q.dtype)
        np.add(self._masked_sum, vector, out=self._masked_sum)
        self._contributors.add(cid)

    def close_masked_input(self) -> UnmaskRequest:
        """Close stage 3: fix who is in the sum and check every needed secret is still recoverable."""
        self._expect(ServerStage.MASK)
        self._require(len(self._contributors), "masked inputs arrived")
        graph, t = self.config.graph, self.config.threshold
        dropped = self._sharers - self._contributors
        for cid in sorted(self._contributors | dropped):
            holders = len(graph[cid] & self._contributors)
            if holders < t:
                what = "self mask" if cid in self._contributors else "pairwise masks"
                self._fail(
                    f"the {what} of client {cid} cannot be removed: {holders} of its neighbours "
                    f"remain, threshold is {t}"
                )
        self.stage = ServerStage.UNMASK
        return UnmaskRequest(
            round_id=self.config.round_id, survivors=sorted(self._contributors), dropped=sorted(dropped)
        )

    # -- stage 4 --------------------------------------------------------------------------------
    def receive_unmask(self, msg: UnmaskResponse) -> None:
        self._expect(ServerStage.UNMASK, msg.round_id)
        cid = msg.client_id
        if cid not in self._contributors:
            raise Invalid(f"client {cid} has no masked input in the sum")
        if cid in self._responders:
            raise Conflict(f"client {cid} already sent its unmasking shares")
        neighbours = self.config.graph[cid]
        dropped = self._sharers - self._contributors
        if (
            not set(msg.self_mask_shares) <= neighbours & self._contributors
            or not set(msg.secret_key_shares) <= neighbours & dropped
        ):
            raise Invalid(f"client {cid} sent shares it was not asked for")
        try:
            seeds = {o: shamir.share_from_bytes(b) for o, b in msg.self_mask_shares.items()}
            secret_keys = {o: shamir.share_from_bytes(b) for o, b in msg.secret_key_shares.items()}
        except CryptoError:
            raise Invalid(f"client {cid} sent malformed shares") from None
        for owner, y in seeds.items():
            self._seed_shares.setdefault(owner, {})[cid] = y
        for owner, y in secret_keys.items():
            self._key_shares.setdefault(owner, {})[cid] = y
        self._responders.add(cid)

    def finalize(self) -> AggregateResult:
        """Close stage 4: rebuild the secrets, remove the remaining masks and decode the sum."""
        self._expect(ServerStage.UNMASK)
        self._require(len(self._responders), "clients answered the unmasking request")
        assert self._masked_sum is not None
        cfg, t = self.config, self.config.threshold
        d, rid, dtype = cfg.vector_length, cfg.round_id, cfg.quantizer.dtype
        total = self._masked_sum
        for owner in sorted(self._contributors):
            shares = self._seed_shares.get(owner, {})
            if len(shares) < t:
                self._fail(
                    f"only {len(shares)} shares of the self-mask seed of client {owner}, threshold is {t}"
                )
            seed = shamir.combine(shares, t, SEED_BYTES)
            total -= expand(keys.self_mask_key(seed, rid, owner), d, dtype)
        for owner in sorted(self._sharers - self._contributors):
            shares = self._key_shares.get(owner, {})
            if len(shares) < t:
                self._fail(f"only {len(shares)} shares of the mask key of client {owner}, threshold is {t}")
            private = self._rebuild_mask_key(owner, shares)
            for peer in sorted(cfg.graph[owner] & self._contributors):
                mask = expand(
                    keys.mask_key(private, self._adverts[peer].mask_public_key, rid, owner, peer), d, dtype
                )
                if peer < owner:  # the peer added this mask
                    total -= mask
                else:
                    total += mask
        result = AggregateResult(
            round_id=rid,
            total=cfg.quantizer.decode_sum(total, len(self._contributors)),
            encoded_total=total.copy(),
            included=tuple(sorted(self._contributors)),
            excluded=tuple(sorted(set(cfg.participants) - self._contributors)),
            max_error=cfg.quantizer.max_error(len(self._contributors)),
        )
        self._masked_sum = None
        self._forget_secrets()
        self.stage = ServerStage.DONE
        return result

    # -- helpers --------------------------------------------------------------------------------
    def _rebuild_mask_key(self, owner: int, shares: Mapping[int, int]) -> X25519PrivateKey:
        try:
            private = X25519PrivateKey.from_private_bytes(
                shamir.combine(shares, self.config.threshold, SEED_BYTES)
            )
        except (CryptoError, ValueError):
            self._fail(f"the shares of the mask key of client {owner} are inconsistent")
        public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        if public != self._adverts[owner].mask_public_key:
            self._fail(f"the rebuilt mask key of client {owner} does not match its advertised key")
        return private

    def _forget_secrets(self) -> None:
        self._seed_shares.clear()
        self._key_shares.clear()

    def _expect(self, stage: ServerStage, round_id: str | None = None) -> None:
        if self.stage is ServerStage.ABORTED:
            raise RoundAborted(self.failure_reason or "aborted")
        if self.stage is not stage:
            raise Conflict(f"round is at stage {self.stage.value}, not {stage.value}")
        if round_id is not None and round_id != self.config.round_id:
            raise BadRequest("message belongs to another round")

    def _require(self, count: int, what: str) -> None:
        if count < self.config.threshold:
            self._fail(f"only {count} {what}, threshold is {self.config.threshold}")

    def _fail(self, reason: str) -> NoReturn:
        stage = self.stage.value
        self.abort(reason)
        raise RoundAborted(reason, stage=stage)
