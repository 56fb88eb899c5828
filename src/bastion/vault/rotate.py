"""Key rotation: a new KEK version, every key slot rewrapped, the old version retired.

Payloads are never touched: only the small ``vN.key`` slots are rewritten, each atomically. The
rotation holds the vault's exclusive lock (writers wait only to commit, readers not at all). While it
runs the old version is ``retiring`` and still unwraps, so every artifact reads under either version
at every instant; a rotation killed at any point is finished by running it again, which resumes with
the same new version instead of minting another.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from bastion.errors import IntegrityError
from bastion.vault.store import VaultStore


@dataclass(frozen=True)
class RotationFailure:
    artifact_id: str
    version: int
    message: str


@dataclass
class RotationReport:
    active_version: int
    rewrapped: int = 0
    unchanged: int = 0
    retired_versions: list[int] = field(default_factory=list)
    failures: list[RotationFailure] = field(default_factory=list)

    @property
    def completed(self) -> bool:
        """Every slot is on the active version and the old versions are retired."""
        return not self.failures


def rotate(store: VaultStore, *, on_rewrap: Callable[[str, int], None] | None = None) -> RotationReport:
    """Rotate (or finish an interrupted rotation). ``on_rewrap`` runs after each slot is rewritten.

    A slot that cannot be unwrapped is reported, and then the old version is *not* retired: retiring
    it would destroy the only key that might still open that artifact once the fault is repaired.
    """
    ring = store.keyring
    with ring.locked(exclusive=True):
        report = RotationReport(active_version=ring.rotate_begin())
        for artifact_id, committed, _ in store.scan():
            for version in committed:
                try:
                    changed = store.rewrap(artifact_id, version)
                except FileNotFoundError:
                    continue  # deleted while we ran
                except IntegrityError as exc:
                    report.failures.append(RotationFailure(artifact_id, version, exc.message))
                    continue
                if changed:
                    report.rewrapped += 1
                    if on_rewrap is not None:
                        on_rewrap(artifact_id, version)
                else:
                    report.unchanged += 1
        if report.completed:
            report.retired_versions = ring.rotate_finish()
    return report
