"""Vault verification: decrypt every version of every artifact and report on each one.

A full check authenticates the key slot, binds header and trailer to it, decrypts every segment and
compares the plaintext digest (SHA-256 or BLAKE3, by format). An artifact behind an access code can only be decrypted with its code;
without one it gets a key-only check (slot, header, trailer and length) and says so. Records
(:mod:`bastion.vault.records`) are reported as ``<anchor>/<name>`` with their anchor version, after
the same full check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from bastion.errors import Forbidden, IntegrityError, NotFound
from bastion.vault.records import Records
from bastion.vault.store import VaultStore

OK = "ok"
KEY_ONLY = "key_only"
CORRUPT = "corrupt"
INCOMPLETE = "incomplete"
WRONG_CODE = "wrong_access_code"


@dataclass(frozen=True)
class ArtifactReport:
    artifact_id: str
    version: int
    status: str
    message: str = ""
    size: int | None = None
    kek_version: int | None = None

    @property
    def ok(self) -> bool:
        return self.status in (OK, KEY_ONLY)


def verify_version(
    store: VaultStore, artifact_id: str, version: int, access_code: str | bytes | None = None
) -> ArtifactReport:
    try:
        info = store.info(artifact_id, version)
        if info.access_code_required and access_code is None:
            return ArtifactReport(
                artifact_id,
                version,
                KEY_ONLY,
                "payload not decrypted: access code needed",
                info.size,
                info.kek_version,
            )
        for _ in store.open_stream(artifact_id, version, access_code=access_code, verify_digest=True):
            pass
    except IntegrityError as exc:
        return ArtifactReport(artifact_id, version, CORRUPT, exc.message)
    except Forbidden as exc:
        return ArtifactReport(artifact_id, version, WRONG_CODE, exc.message)
    return ArtifactReport(artifact_id, version, OK, "", info.size, info.kek_version)


def verify(
    store: VaultStore, *, access_codes: Mapping[str, str | bytes] | None = None
) -> list[ArtifactReport]:
    """One report per version (committed or incomplete) of every artifact, in a stable order."""
    codes = access_codes or {}
    reports: list[ArtifactReport] = []
    for artifact_id, committed, incomplete in store.scan():
        reports.extend(verify_version(store, artifact_id, v, codes.get(artifact_id)) for v in committed)
        reports.extend(
            ArtifactReport(artifact_id, v, INCOMPLETE, "no key slot: write in progress or interrupted")
            for v in incomplete
        )
    records = Records(store)
    for anchor, names in records.scan():
        reports.extend(verify_record(records, anchor, name) for name in names)
    return reports


def verify_record(records: Records, anchor: str, name: str) -> ArtifactReport:
    try:
        info, _data = records.read(anchor, name)
    except (IntegrityError, NotFound) as exc:
        return ArtifactReport(f"{anchor}/{name}", 0, CORRUPT, exc.message)
    return ArtifactReport(f"{anchor}/{name}", info.anchor_version, OK, "", info.size)
