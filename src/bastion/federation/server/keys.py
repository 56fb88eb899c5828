"""The coordinator's per-federation key pair: X25519 to receive sealed updates, Ed25519 to sign models.

Private keys exist in plaintext only in memory: at rest they are one small JSON artifact in the vault
(envelope-encrypted under the master key ring), so a copy of the data directory without the master
key reveals neither. Per-federation keys keep a compromise or a rotation contained to one federation.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from bastion.crypto import sealed, signing
from bastion.errors import IntegrityError
from bastion.vault.store import VaultStore


def keys_artifact(federation_id: str) -> str:
    return f"flk-{federation_id}"


@dataclass(frozen=True)
class ServerKeys:
    sealing: X25519PrivateKey
    signing: Ed25519PrivateKey

    @property
    def sealing_public(self) -> str:
        return sealed.encode_public_key(self.sealing)

    @property
    def signing_public(self) -> str:
        return signing.encode_public_key(self.signing)

    @property
    def sampling_secret(self) -> bytes:
        """A key for drawing which sites join a round (client sampling), derived from the signing key."""
        return hashlib.sha256(b"bastion-fl-sampling-v1" + signing.private_key_to_bytes(self.signing)).digest()

    @classmethod
    def generate(cls) -> ServerKeys:
        return cls(sealed.generate_private_key(), signing.generate_signing_key())

    def store(self, vault: VaultStore, federation_id: str) -> None:
        doc = {
            "x25519": signing.b64url_encode(sealed.private_key_to_bytes(self.sealing)),
            "ed25519": signing.b64url_encode(signing.private_key_to_bytes(self.signing)),
        }
        vault.put_bytes(
            keys_artifact(federation_id),
            json.dumps(doc).encode("ascii"),
            meta={"kind": "fl-server-keys", "federation": federation_id},
        )

    @classmethod
    def load(cls, vault: VaultStore, federation_id: str) -> ServerKeys:
        try:
            doc = json.loads(vault.get_bytes(keys_artifact(federation_id)))
            return cls(
                sealed.private_key_from_bytes(signing.b64url_decode(doc["x25519"], expected_len=32)),
                signing.private_key_from_bytes(signing.b64url_decode(doc["ed25519"], expected_len=32)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise IntegrityError("federation key artifact is malformed") from exc
