"""The vault: envelope-encrypted, integrity-checked, versioned artifacts with rotatable keys."""

from bastion.vault.rotate import RotationFailure, RotationReport, rotate
from bastion.vault.store import ArtifactInfo, VaultStore, check_artifact_id
from bastion.vault.verify import ArtifactReport, verify

__all__ = [
    "ArtifactInfo",
    "ArtifactReport",
    "RotationFailure",
    "RotationReport",
    "VaultStore",
    "check_artifact_id",
    "rotate",
    "verify",
]
