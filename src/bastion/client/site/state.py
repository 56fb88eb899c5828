"""What a site keeps and trusts locally: its signing key, the pinned server key, the rounds it sent,
and the peer key list secure aggregation checks the server's directory against."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bastion.client.site.base import SiteError
from bastion.crypto import signing
from bastion.errors import BastionError


class SiteState:
    """The local directory: the site's signing key (0600), the pinned server key and rounds sent."""

    def __init__(self, root: Path) -> None:
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        os.chmod(root, 0o700)
        self._file = root / "state.json"
        self.data: dict[str, Any] = json.loads(self._file.read_text()) if self._file.exists() else {}
        self.data.setdefault("sent_rounds", [])

    def signing_key(self) -> Any:
        path = self.root / "signing_key"
        if path.exists():
            return signing.private_key_from_bytes(
                signing.b64url_decode(path.read_text().strip(), expected_len=32)
            )
        key = signing.generate_signing_key()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(signing.b64url_encode(signing.private_key_to_bytes(key)))
        return key

    def sent(self, round: int) -> bool:
        return round in self.data["sent_rounds"]

    def mark_sent(self, round: int) -> None:
        if round not in self.data["sent_rounds"]:
            self.data["sent_rounds"].append(round)
        self.save()

    def save(self) -> None:
        tmp = self._file.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(self.data, fh, indent=1)
        os.replace(tmp, self._file)


def load_peer_keys(source: Mapping[str, Any] | list[Any]) -> dict[str, str]:
    """Participant id -> Ed25519 key, from ``{id: key}`` or the coordinator's participant list.

    Given to a site (``--peer-keys``), the list replaces trust on first use in secure aggregation: every
    session member must be in it with exactly that key. Share it out of band (not through the server).
    """
    pairs: dict[str, str] = {}
    if isinstance(source, list):
        for row in source:
            if not isinstance(row, Mapping) or "id" not in row:
                raise SiteError("each participant in the peer key list needs an id", code="bad_peer_keys")
            if row.get("signing_public_key"):
                pairs[str(row["id"])] = str(row["signing_public_key"])
    else:
        pairs = {str(k): str(v) for k, v in source.items()}
    for pid, key in pairs.items():
        try:
            signing.decode_public_key(key)
        except BastionError:
            raise SiteError(
                f"the peer key of {pid} is not an Ed25519 public key", code="bad_peer_keys"
            ) from None
    return pairs


def default_state_dir(federation_id: str, token: str) -> Path:
    """One directory per (federation, credential): a hash of the token, never the token itself."""
    return Path(".bastion-site") / f"{federation_id[:36]}-{hashlib.sha256(token.encode()).hexdigest()[:12]}"
