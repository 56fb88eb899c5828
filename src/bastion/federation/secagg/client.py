"""A site's side of one SecAgg+ round, as a state machine driven by the server's messages.

Call, in order: :meth:`advertise_keys`, :meth:`share_keys`, :meth:`masked_input`, :meth:`unmask`.
Each step checks what the server sent (round, addressing, signatures, thresholds) before using it, and
the client answers at most one unmask request, never with both secrets of the same peer: that is what
keeps its update hidden even from a server that lies about who dropped out.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from typing import NoReturn

import numpy as np
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
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


class ClientStage(enum.Enum):
    ADVERTISE = "advertise"
    SHARE = "share"
    MASK = "mask"
    UNMASK = "unmask"
    DONE = "done"
    ABORTED = "aborted"


def _raw_public(key: X25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


class SecAggClient:
    """One site in one round. ``directory`` holds the identity keys pinned at enrolment, by client id."""

    def __init__(
        self,
        config: SecAggConfig,
        client_id: int,
        identity: Ed25519PrivateKey,
        directory: keys.IdentityDirectory,
    ) -> None:
        if client_id not in config.participants:
            raise Invalid(f"client {client_id} is not a participant of round {config.round_id}")
        self.config = config
        self.client_id = client_id
        self.stage = ClientStage.ADVERTISE
        self._identity = identity
        self._directory = keys.load_directory(directory)
        self._neighbours = config.graph[client_id]
        self._enc_key = X25519PrivateKey.generate()
        self._mask_key = X25519PrivateKey.generate()
        self._seed = b""
        self._agreed: dict[int, bytes] = {}  # X25519 secret with each neighbour's encryption key
        self._peers: dict[int, AdvertiseKeys] = {}  # neighbours that advertised (U1), self included
        self._sharers: frozenset[int] = frozenset()  # neighbours that shared keys (U2), self included
        self._key_shares: dict[int, int] = {}  # our share of each sharer's mask private key
        self._seed_shares: dict[int, int] = {}  # our share of each sharer's self-mask seed

    # -- stage 1 ------------------------------------------------------------------------------
    def advertise_keys(self) -> AdvertiseKeys:
        self._expect(ClientStage.ADVERTISE)
        self.stage = ClientStage.SHARE
        return keys.sign_advert(
            self._identity,
            self.config.round_id,
            self.client_id,
            _raw_public(self._enc_key),
            _raw_public(self._mask_key),
        )

    # -- stage 2 ------------------------------------------------------------------------------
    def share_keys(self, msg: KeysBroadcast) -> ShareKeys:
        """Check every neighbour's signed keys, then send it encrypted shares of our two secrets."""
        self._expect(ClientStage.SHARE)
        self._check_addressed(msg.round_id, msg.recipient)
        peers: dict[int, AdvertiseKeys] = {}
        for advert in msg.keys:
            cid = advert.client_id
            if advert.round_id != self.config.round_id or cid not in self._neighbours or cid in peers:
                self._abort(f"key list names client {cid} unexpectedly")
            self._verify(advert)
            peers[cid] = advert
        mine = peers.get(self.client_id)
        if mine is None or (mine.enc_public_key, mine.mask_public_key) != (
            _raw_public(self._enc_key),
            _raw_public(self._mask_key),
        ):
            self._abort("the server did not relay our own keys faithfully")
        distinct = {a.enc_public_key for a in peers.values()} | {a.mask_public_key for a in peers.values()}
        if len(distinct) != 2 * len(peers):
            self._abort("two advertised public keys are equal")
        if len(peers) < self.config.threshold:
            self._abort(f"{len(peers)} neighbours advertised keys, threshold is {self.config.threshold}")
        self._peers = peers

        self._seed = os.urandom(SEED_BYTES)
        holders = sorted(peers)
        key_shares = shamir.split(self._mask_key.private_bytes_raw(), self.config.threshold, holders)
        seed_shares = shamir.split(self._seed, self.config.threshold, holders)
        out: dict[int, bytes] = {}
        for cid in holders:
            if cid == self.client_id:
                continue
            self._agreed[cid] = keys.agree(self._enc_key, peers[cid].enc_public_key)
            out[cid] = keys.encrypt_shares(
                self._agreed[cid],
                self.config.round_id,
                self.client_id,
                cid,
                key_shares[cid],
                seed_shares[cid],
            )
        self._key_shares[self.client_id] = key_shares[self.client_id]
        self._seed_shares[self.client_id] = seed_shares[self.client_id]
        self.stage = ClientStage.MASK
        return ShareKeys(round_id=self.config.round_id, client_id=self.client_id, encrypted_shares=out)

    # -- stage 3 ------------------------------------------------------------------------------
    def masked_input(self, msg: SharesDelivery, update: np.ndarray) -> MaskedInput:
        """Store the shares we hold for others, then send our update under self and pairwise masks.

        ``update`` is the site's (already clipped, possibly noised) flat float vector.
        """
        self._expect(ClientStage.MASK)
        self._check_addressed(msg.round_id, msg.recipient)
        vector = np.asarray(update)
        if vector.shape != (self.config.vector_length,):
            raise Invalid(f"update must be a flat vector of length {self.config.vector_length}")
        encoded = self.config.quantizer.encode(vector)
        for sender, blob in msg.encrypted_shares.items():
            peer = self._peers.get(sender)
            if peer is None or sender == self.client_id:
                self._abort(f"shares from client {sender}, which is not a neighbour that advertised keys")
            try:
                key_share, seed_share = keys.decrypt_shares(
                    self._agreed[sender], self.config.round_id, sender, self.client_id, blob
                )
            except CryptoError:
                self._forget()
                self.stage = ClientStage.ABORTED
                raise
            self._key_shares[sender] = key_share
            self._seed_shares[sender] = seed_share
        self._sharers = frozenset(msg.encrypted_shares) | {self.client_id}
        if len(self._sharers) < self.config.threshold:
            self._abort(f"{len(self._sharers)} neighbours shared keys, threshold is {self.config.threshold}")

        d, rid, dtype = self.config.vector_length, self.config.round_id, self.config.quantizer.dtype
        masked = encoded
        masked += expand(keys.self_mask_key(self._seed, rid, self.client_id), d, dtype)
        for cid in sorted(self._sharers - {self.client_id}):
            mask = expand(
                keys.mask_key(self._mask_key, self._peers[cid].mask_public_key, rid, self.client_id, cid),
                d,
                dtype,
            )
            if self.client_id < cid:
                masked += mask
            else:
                masked -= mask
        self.stage = ClientStage.UNMASK
        return MaskedInput(
            round_id=rid,
            client_id=self.client_id,
            masked_vector=masked.astype(dtype.newbyteorder("<"), copy=False).tobytes(),
        )

    # -- stage 4 ------------------------------------------------------------------------------
    def unmask(self, msg: UnmaskRequest) -> UnmaskResponse:
        """Reveal shares of survivors' seeds and of dropped clients' mask keys, once, never both for one peer."""
        self._expect(ClientStage.UNMASK)
        if msg.round_id != self.config.round_id:
            raise BadRequest("message belongs to another round")
        survivors, dropped = set(msg.survivors), set(msg.dropped)
        if survivors & dropped:
            self._abort("the server listed a client as both surviving and dropped")
        if self.client_id not in survivors:
            self._abort("the server says our masked input is not in the sum")
        if len(survivors) < self.config.threshold:
            self._abort(f"{len(survivors)} masked inputs, threshold is {self.config.threshold}")
        seed_out = {
            cid: shamir.share_to_bytes(self._seed_shares[cid]) for cid in sorted(survivors & self._sharers)
        }
        key_out = {
            cid: shamir.share_to_bytes(self._key_shares[cid]) for cid in sorted(dropped & self._sharers)
        }
        self._forget()
        self.stage = ClientStage.DONE
        return UnmaskResponse(
            round_id=self.config.round_id,
            client_id=self.client_id,
            self_mask_shares=seed_out,
            secret_key_shares=key_out,
        )

    # -- helpers ------------------------------------------------------------------------------
    def _expect(self, stage: ClientStage) -> None:
        if self.stage is ClientStage.ABORTED:
            raise Conflict("this secure aggregation round was aborted")
        if self.stage is not stage:
            raise Conflict(f"client is at stage {self.stage.value}, not {stage.value}")

    def _check_addressed(self, round_id: str, recipient: int) -> None:
        if round_id != self.config.round_id or recipient != self.client_id:
            raise BadRequest("message belongs to another round or client")

    def _verify(self, advert: AdvertiseKeys) -> None:
        try:
            keys.verify_advert(advert, self._directory.get(advert.client_id))
        except CryptoError:
            self.stage = ClientStage.ABORTED
            raise

    def _abort(self, reason: str) -> NoReturn:
        self._forget()
        self.stage = ClientStage.ABORTED
        raise RoundAborted(reason)

    def _forget(self) -> None:
        self._seed = b""
        self._agreed.clear()
        self._key_shares.clear()
        self._seed_shares.clear()

    def peers(self) -> Mapping[int, AdvertiseKeys]:
        """Neighbours whose signed keys we accepted (for logs and tests)."""
        return dict(self._peers)
