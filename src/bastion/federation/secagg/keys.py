"""Key handling of a round: signed key adverts, pairwise agreement and encrypted shares.

Signatures bind both X25519 keys to the round and the client id, so a server that swaps a key (to
read shares or cancel masks itself) is caught by every honest neighbour. Shares between two clients are
AES-256-GCM encrypted under a key agreed from their X25519 keys, with a direction-specific HKDF label,
so the server that relays them learns nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from bastion.errors import CryptoError, Invalid
from bastion.federation.secagg import shamir
from bastion.federation.secagg.messages import AdvertiseKeys
from bastion.federation.secagg.prg import derive_key

PUBLIC_KEY_BYTES = 32
NONCE_BYTES = 12
_SHARE_PLAINTEXT = 8 + 2 * shamir.SHARE_BYTES

IdentityDirectory = Mapping[int, Ed25519PublicKey | bytes]


def load_directory(directory: IdentityDirectory) -> dict[int, Ed25519PublicKey]:
    """Identity keys pinned at enrolment, by client id; raw 32-byte keys are accepted."""
    out: dict[int, Ed25519PublicKey] = {}
    for cid, key in directory.items():
        if isinstance(key, Ed25519PublicKey):
            out[cid] = key
        else:
            try:
                out[cid] = Ed25519PublicKey.from_public_bytes(bytes(key))
            except ValueError:
                raise Invalid(f"identity key of client {cid} is malformed") from None
    return out


def advert_payload(round_id: str, client_id: int, enc_pk: bytes, mask_pk: bytes) -> bytes:
    rid = round_id.encode()
    return (
        b"bastion-secagg-v1/advertise/"
        + len(rid).to_bytes(2, "big")
        + rid
        + client_id.to_bytes(4, "big")
        + enc_pk
        + mask_pk
    )


def sign_advert(
    identity: Ed25519PrivateKey, round_id: str, client_id: int, enc_pk: bytes, mask_pk: bytes
) -> AdvertiseKeys:
    sig = identity.sign(advert_payload(round_id, client_id, enc_pk, mask_pk))
    return AdvertiseKeys(
        round_id=round_id, client_id=client_id, enc_public_key=enc_pk, mask_public_key=mask_pk, signature=sig
    )


def verify_advert(advert: AdvertiseKeys, identity: Ed25519PublicKey | None) -> None:
    """Raise CryptoError unless ``advert`` is signed by the pinned identity of its client."""
    if identity is None:
        raise CryptoError(f"client {advert.client_id} has no enrolled identity key")
    if len(advert.enc_public_key) != PUBLIC_KEY_BYTES or len(advert.mask_public_key) != PUBLIC_KEY_BYTES:
        raise CryptoError(f"keys of client {advert.client_id} are malformed")
    payload = advert_payload(advert.round_id, advert.client_id, advert.enc_public_key, advert.mask_public_key)
    try:
        identity.verify(advert.signature, payload)
    except InvalidSignature:
        raise CryptoError(
            f"keys of client {advert.client_id} are not signed by its identity: possible key substitution"
        ) from None


def agree(private: X25519PrivateKey, peer_public: bytes) -> bytes:
    try:
        secret = private.exchange(X25519PublicKey.from_public_bytes(peer_public))
    except ValueError:
        raise CryptoError("key agreement failed") from None
    return secret


def mask_key(private: X25519PrivateKey, peer_public: bytes, round_id: str, a: int, b: int) -> bytes:
    """The PRG key of the pairwise mask between clients ``a`` and ``b`` (symmetric in a and b)."""
    return derive_key(agree(private, peer_public), "pairwise-mask", round_id, min(a, b), max(a, b))


def self_mask_key(seed: bytes, round_id: str, client_id: int) -> bytes:
    return derive_key(seed, "self-mask", round_id, client_id)


def encrypt_shares(
    agreed: bytes,
    round_id: str,
    sender: int,
    recipient: int,
    key_share: int,
    seed_share: int,
) -> bytes:
    """nonce || AES-GCM(sender, recipient, share of mask key, share of self-mask seed).

    ``agreed`` is ``agree(own encryption key, peer's encryption key)``; the AES key is derived per direction.
    """
    key = derive_key(agreed, "share-encryption", round_id, sender, recipient)
    plaintext = (
        sender.to_bytes(4, "big")
        + recipient.to_bytes(4, "big")
        + shamir.share_to_bytes(key_share)
        + shamir.share_to_bytes(seed_share)
    )
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(key).encrypt(nonce, plaintext, _aad(round_id, sender, recipient))


def decrypt_shares(agreed: bytes, round_id: str, sender: int, recipient: int, blob: bytes) -> tuple[int, int]:
    """(share of sender's mask key, share of sender's self-mask seed); CryptoError if tampered."""
    key = derive_key(agreed, "share-encryption", round_id, sender, recipient)
    try:
        plaintext = AESGCM(key).decrypt(
            blob[:NONCE_BYTES], blob[NONCE_BYTES:], _aad(round_id, sender, recipient)
        )
    except (InvalidTag, ValueError):
        raise CryptoError(f"shares from client {sender} failed authentication") from None
    if (
        len(plaintext) != _SHARE_PLAINTEXT
        or int.from_bytes(plaintext[:4], "big") != sender
        or int.from_bytes(plaintext[4:8], "big") != recipient
    ):
        raise CryptoError(f"shares from client {sender} are addressed wrongly")
    body = plaintext[8:]
    return (
        shamir.share_from_bytes(body[: shamir.SHARE_BYTES]),
        shamir.share_from_bytes(body[shamir.SHARE_BYTES :]),
    )


def _aad(round_id: str, sender: int, recipient: int) -> bytes:
    return (
        b"bastion-secagg-v1/shares/"
        + round_id.encode()
        + sender.to_bytes(4, "big")
        + recipient.to_bytes(4, "big")
    )
