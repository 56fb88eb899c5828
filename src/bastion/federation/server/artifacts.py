"""Where a federation's bytes live in the vault, and how they come back (safetensors/JSON only).

* ``flg-<federation>``: the global model, one vault version per global-model version. Its registry
  versions refer to these same vault versions (bastion.catalog.stored), so archiving keeps those.
* ``fls-<federation>``: the aggregator's state after each closed round (optimizer moments).
* ``flu-<federation>``: the anchor of the accepted updates, each kept exactly as received (sealed and
  signed) as a record ``<update id>`` of it (bastion.vault.records: one file and two fsyncs per update,
  no key slot of its own), so a restarted server can re-verify and re-fold it, and the site's signature
  stays on record. The row's ``artifact_id`` is ``flu-<federation>/<update id>``. Rows written before
  (h41) name a whole artifact ``flu-<update>`` instead; both are read.

The database rows name the vault versions they depend on, so a half-finished write (a version no row
points at) is harmless.
"""

from __future__ import annotations

import contextlib

import numpy as np

from bastion.catalog.stored import GLOBAL_PREFIX
from bastion.errors import NotFound
from bastion.federation.strategies import StrategyState
from bastion.federation.tensors import TensorSpec, decode, validate
from bastion.vault.records import Records
from bastion.vault.store import VaultStore


def global_artifact(federation_id: str) -> str:
    return f"{GLOBAL_PREFIX}{federation_id}"


def state_artifact(federation_id: str) -> str:
    return f"fls-{federation_id}"


def update_artifact(update_id: str) -> str:
    """The artifact of one update as stored before records (h41); still read and deleted."""
    return f"flu-{update_id}"


def updates_anchor(federation_id: str) -> str:
    return f"flu-{federation_id}"


def save_update(records: Records, federation_id: str, update_id: str, message: bytes, round: int) -> str:
    """Store a received update durably (it survives a crash once this returns); its ``artifact_id``."""
    anchor = updates_anchor(federation_id)
    records.put(
        anchor, update_id, message, meta={"kind": "fl-update", "federation": federation_id, "round": round}
    )
    return f"{anchor}/{update_id}"


def update_bytes(vault: VaultStore, records: Records, stored: str) -> bytes:
    """The update an ``fl_updates.artifact_id`` names: a record (``anchor/name``) or an old artifact."""
    anchor, sep, name = stored.partition("/")
    return records.get_bytes(anchor, name) if sep else vault.get_bytes(stored)


def drop_update(vault: VaultStore, records: Records, stored: str) -> None:
    """Delete one stored update (no error if it is gone)."""
    anchor, sep, name = stored.partition("/")
    if sep:
        records.delete(anchor, name)
    else:
        with contextlib.suppress(NotFound):
            vault.delete(stored)


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
