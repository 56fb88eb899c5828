"""Changing the master key: a rotation whose new key-encryption key comes from the new master key.

The key ring is opened with the new master key first and the old one as a previous secret, so the
active version (derived from the old key) still unwraps; :func:`bastion.vault.rotate.rotate` then
mints a version from the new key, rewraps every slot and retires the old versions. Interrupted, it is
resumed by running it again with both keys (rotate's resume rule: an active version from the new key
is kept). Once it has finished the old key opens nothing, and the new key alone opens the vault.
"""

from __future__ import annotations

from pathlib import Path

from bastion.crypto.keyring import KeyRing
from bastion.errors import Invalid
from bastion.vault.rotate import RotationReport, rotate
from bastion.vault.store import VaultStore

MIN_KEY_CHARS = 32


def rekey(vault_dir: Path, old_key: bytes, new_key: bytes) -> RotationReport:
    """Move the vault from ``old_key`` to ``new_key`` (ConfigError if neither opens its key ring)."""
    if len(new_key) < MIN_KEY_CHARS:
        raise Invalid(f"the new master key needs at least {MIN_KEY_CHARS} characters")
    if new_key == old_key:
        raise Invalid("the new master key equals the old one")
    ring = KeyRing.open(vault_dir, new_key, previous_secrets=[old_key])
    return rotate(VaultStore(vault_dir, ring))
