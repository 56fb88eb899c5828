"""A model's bytes stored once: a registry version names the vault version its producer wrote.

A job's model is sealed in the job's artifact as a model package (``bastion.jobs.package``), a
federation's global model in ``flg-<federation>``. The registry version made from either names that
same vault version instead of a copy: layout ``package`` (the model is the package's payload, its
SHA-256 checked on every read) or ``raw`` (the plaintext is the model). So the bytes are encrypted,
integrity-checked, rotated and backed up once. Versions registered before this (and quantized or
uploaded ones) have their own artifact: ``artifact_version`` NULL, read at its latest version.

Deletion is reference counting by query: a vault version is deleted only when no row names it any
more, neither a model version nor a job (``training_jobs.model_artifact_id/model_version``). A
federation that is not archived holds its whole ``flg-`` artifact; archiving releases it. Whoever
drops a reference calls :func:`release` with what it named; the others keep working.

An access code lives in a version's key slot, and the producer's routes (job download, a site's
model fetch) read without one, so protecting a shared version first gives it its own copy
(:func:`own_copy`): the one case where a model is stored twice, by the owner's choice.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.catalog.quota import ARCHIVED
from bastion.errors import Invalid, NotFound
from bastion.store.tables import Federation, ModelVersionRecord, TrainingJob
from bastion.vault.store import VaultStore

RAW = "raw"
PACKAGE = "package"
GLOBAL_PREFIX = "flg-"  # a federation's global models (bastion.federation.server.artifacts names them)


@dataclass(frozen=True)
class StoredRef:
    """One committed vault version that already holds a model's bytes."""

    artifact_id: str
    version: int
    layout: str = RAW

    def check(self, vault: VaultStore, model_bytes: bytes) -> None:
        """Invalid unless the version exists and its size fits ``model_bytes`` (authenticated info)."""
        size = vault.info(self.artifact_id, self.version).size
        fits = size == len(model_bytes) if self.layout == RAW else size > len(model_bytes)
        if self.layout not in (RAW, PACKAGE) or not fits:
            raise Invalid("the stored version does not hold these model bytes", code="stored_model_mismatch")


def own_artifact(model_id: str, version: int) -> str:
    """The artifact of a version that has its own copy (every version before sharing, and protected ones)."""
    return f"model-{model_id}-v{version}"


def read_model(
    vault: VaultStore,
    artifact_id: str,
    version: int | None,
    layout: str,
    *,
    access_code: str | None = None,
) -> bytes:
    """A version's model bytes, wherever they are stored; digests checked (the vault's, the package's)."""
    data = vault.get_bytes(artifact_id, version, access_code=access_code)
    if layout == PACKAGE:
        from bastion.jobs.package import unpack

        return unpack(data).model_bytes
    return data


def held(s: Session, artifact_id: str) -> tuple[bool, set[int]]:
    """``(whole, versions)``: whether a row holds every version of ``artifact_id``, and which it names."""
    named = list(
        s.scalars(
            select(ModelVersionRecord.artifact_version).where(ModelVersionRecord.artifact_id == artifact_id)
        )
    )
    jobs = s.scalars(select(TrainingJob.model_version).where(TrainingJob.model_artifact_id == artifact_id))
    versions = {v for v in named if v is not None} | {v for v in jobs if v is not None}
    whole = any(v is None for v in named)
    if artifact_id.startswith(GLOBAL_PREFIX):  # a federation holds its global models until archived
        state = s.scalar(select(Federation.state).where(Federation.id == artifact_id[len(GLOBAL_PREFIX) :]))
        whole = whole or (state is not None and state != ARCHIVED)
    return whole, versions


def release(
    s: Session, vault: VaultStore, artifact_id: str, versions: Iterable[int] | None = None
) -> set[int]:
    """Delete those of ``versions`` (None: all) that no row names any more; returns the ones kept.

    Call it after the row that named them is gone (or, for a federation, archived).
    """
    whole, kept = held(s, artifact_id)
    if whole:
        return set(vault.versions(artifact_id))
    try:
        existing = set(vault.versions(artifact_id))
    except NotFound:
        return set()
    doomed = existing - kept if versions is None else (set(versions) & existing) - kept
    if doomed:
        vault.delete_versions(artifact_id, doomed)
    return existing - doomed


def own_copy(s: Session, vault: VaultStore, row: ModelVersionRecord) -> StoredRef | None:
    """Give a shared version its own artifact (before an access code is set on it); the old reference.

    The caller releases the old reference once this session is committed.
    """
    if row.artifact_version is None:
        return None
    old = StoredRef(row.artifact_id, row.artifact_version, row.artifact_layout)
    data = read_model(vault, old.artifact_id, old.version, old.layout)
    artifact = own_artifact(row.model_id, row.version)
    vault.put_bytes(artifact, data, meta={"kind": "model", "format": row.model_format})
    row.artifact_id, row.artifact_version, row.artifact_layout = artifact, None, RAW
    s.flush()
    return old
