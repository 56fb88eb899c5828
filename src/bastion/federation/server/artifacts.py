"""Where a federation's bytes live in the vault, and how they come back (safetensors/JSON only).

* ``flg-<federation>``: the global model, one vault version per global-model version. Its registry
  versions refer to these same vault versions (bastion.catalog.stored), so archiving keeps those.
* ``fls-<federation>``: the aggregator's state after each closed round (optimizer moments).
* ``flu-<update>``: each accepted update exactly as received (sealed and signed), so a restarted
  server can re-verify and re-fold it, and the site's signature stays on record.

The database rows name the vault versions they depend on, so a half-finished write (a version no row
points at) is harmless.
"""

from __future__ import annotations

import numpy as np

from bastion.catalog.stored import GLOBAL_PREFIX
from bastion.federation.strategies import StrategyState
from bastion.federation.tensors import TensorSpec, decode, validate
from bastion.vault.store import VaultStore


def global_artifact(federation_id: str) -> str:
    return f"{GLOBAL_PREFIX}{federation_id}"


def state_artifact(federation_id: str) -> str:
    return f"fls-{federation_id}"


def update_artifact(update_id: str) -> str:
    return f"flu-{update_id}"


def save_global(vault: VaultStore, federation_id: str, blob: bytes, round: int) -> int:
    """Store safetensors bytes (``tensors.encode`` output) as the next global-model version."""
    info = vault.put_bytes(
        global_artifact(federation_id),
        blob,
        meta={"kind": "fl-global-model", "federation": federation_id, "after_round": round},
    )
    return info.version


def global_bytes(vault: VaultStore, federation_id: str, version: int) -> bytes:
    return vault.get_bytes(global_artifact(federation_id), version)


def load_global(
    vault: VaultStore, federation_id: str, version: int, spec: TensorSpec
) -> dict[str, np.ndarray]:
    """Decode (strict float32 safetensors) and check against the federation's spec."""
    tensors = decode(global_bytes(vault, federation_id, version), max_bytes=spec.max_encoded_bytes())
    validate(tensors, spec)
    return tensors


def save_state(vault: VaultStore, federation_id: str, state: StrategyState, round: int) -> int:
    info = vault.put_bytes(
        state_artifact(federation_id),
        state.to_bytes(),
        meta={"kind": "fl-strategy-state", "federation": federation_id, "after_round": round},
    )
    return info.version


def load_state(vault: VaultStore, federation_id: str, version: int) -> StrategyState:
    return StrategyState.from_bytes(vault.get_bytes(state_artifact(federation_id), version))
