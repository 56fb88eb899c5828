"""``bastion backup`` / ``bastion restore``: the database and the vault in one encrypted file.

Consistency: the backup holds the vault's exclusive lock throughout, so no artifact version is
committed, rewrapped or deleted while it runs (uploads and jobs wait to commit); inside it, every
table is read in one transaction, then every vault file (key ring, data files, key slots) is copied.
A row can therefore only name an artifact that is in the backup.

Restore is into an empty place (no vault, an empty database), with the same master key (the vault's
key ring is restored as it was; the master key is never in a backup) and the same schema revision.
It is verified before it reports success: every entry's SHA-256 and the end record, row and file
counts against the manifest, the key ring opening with the master key, every artifact version
decrypting (or, behind an access code, its key slot authenticating), the audit chain, and every
artifact the database names being present.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bastion.backup import archive, database
from bastion.clock import aware_utcnow
from bastion.crypto import _fs
from bastion.errors import ConfigError, IntegrityError, Invalid
from bastion.store import Database
from bastion.vault.records import RECORD_FILE
from bastion.vault.store import ARTIFACT_ID_PATTERN, VaultStore

MIN_PASSPHRASE = 12
_VAULT_FILE = ("keyring.json",)


@dataclass
class RestoreReport:
    tables: dict[str, int] = field(default_factory=dict)
    vault_files: int = 0
    artifacts_checked: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def _check_passphrase(passphrase: str) -> None:
    if len(passphrase) < MIN_PASSPHRASE:
        raise Invalid(f"the backup passphrase needs at least {MIN_PASSPHRASE} characters")


def _vault_files(root: Path) -> list[Path]:
    files = [root / "keyring.json"]
    artifacts = root / "artifacts"
    if artifacts.is_dir():
        for d in sorted(artifacts.iterdir()):
            if d.is_dir() and not d.name.startswith("."):
                files += sorted(p for p in d.iterdir() if p.is_file() and not p.name.startswith("."))
    return files


def _file_chunks(path: Path) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(archive.SEGMENT):
            yield chunk


def backup(db: Database, vault: VaultStore, out: Path, passphrase: str) -> dict[str, Any]:
    """Write the encrypted backup to ``out`` (created 0600, never overwritten); returns its manifest."""
    _check_passphrase(passphrase)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    manifest: dict[str, Any] = {
        "created": aware_utcnow().isoformat(),
        "revisions": database.revision_heads(db),
        "dialect": db.dialect,
        "tables": {},
        "vault_files": 0,
        "ring_id": vault.keyring.ring_id,
    }
    try:
        with vault.keyring.locked(exclusive=True), os.fdopen(fd, "wb") as f:

            def entries() -> Iterator[archive.Entry]:
                for name, rows, chunks in database.snapshot(db):
                    body = b"".join(chunks)
                    manifest["tables"][name] = rows
                    yield archive.Entry(f"db/{name}.jsonl", len(body), iter((body,)))
                for path in _vault_files(vault.root):
                    rel = path.relative_to(vault.root).as_posix()
                    manifest["vault_files"] += 1
                    yield archive.Entry(f"vault/{rel}", path.stat().st_size, _file_chunks(path))

            archive.write(f, passphrase, entries(), manifest)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        out.unlink(missing_ok=True)
        raise
    return manifest


def _vault_target(vault_dir: Path, rel: str) -> Path:
    parts = rel.split("/")
    ok = rel in _VAULT_FILE or (
        len(parts) == 3
        and parts[0] == "artifacts"
        and ARTIFACT_ID_PATTERN.fullmatch(parts[1]) is not None
        and (
            (
                parts[2].startswith("v")
                and parts[2].endswith((".data", ".key"))
                and parts[2][1:].split(".")[0].isdigit()
            )
            or RECORD_FILE.fullmatch(parts[2]) is not None
        )
    )
    if not ok:
        raise IntegrityError(f"backup names an unexpected vault path {rel!r}")
    return vault_dir.joinpath(*parts)


def restore(db: Database, vault_dir: Path, master_key: bytes, path: Path, passphrase: str) -> RestoreReport:
    """Restore into an empty vault directory and an empty (migrated) database, then verify."""
    if vault_dir.exists() and any(p.name not in (".lock",) for p in vault_dir.iterdir()):
        raise ConfigError(f"{vault_dir} is not empty: restore needs an empty vault directory")
    db.migrate()
    if not database.is_empty(db):
        raise ConfigError("the database already holds users or audit records: restore needs an empty one")
    _fs.ensure_private_dir(vault_dir)
    report = RestoreReport()
    manifest: dict[str, Any] = {}
    with db.engine.begin() as conn:
        for table in reversed(database.tables()):  # the fresh schema may hold defaults (prices)
            conn.execute(table.delete())
        for head, chunks in archive.read(path, passphrase):
            if head.get("end"):
                manifest = head.get("manifest") or {}
                if head.get("entries") != len(report.tables) + report.vault_files:
                    report.problems.append("entry count does not match the end record")
                break
            name = str(head["path"])
            if name.startswith("db/") and name.endswith(".jsonl"):
                report.tables[name[3:-6]] = database.load(conn, name[3:-6], chunks)
            elif name.startswith("vault/"):
                target = _vault_target(vault_dir, name[6:])
                _fs.ensure_private_dir(target.parent)
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "wb") as out:
                    for chunk in chunks:
                        out.write(chunk)
                report.vault_files += 1
            else:
                raise IntegrityError(f"backup holds an unexpected entry {name!r}")
        if manifest.get("revisions") != database.revision_heads_conn(conn):
            raise ConfigError(
                "the backup was made at schema revisions "
                f"{manifest.get('revisions')}; restore it with the Bastion version that made it"
            )
        database.fix_sequences(conn)
    if manifest.get("tables") != report.tables:
        report.problems.append("row counts differ from the backup's manifest")
    if manifest.get("vault_files") != report.vault_files:
        report.problems.append("vault file count differs from the backup's manifest")
    _verify(db, vault_dir, master_key, report)
    return report


def _verify(db: Database, vault_dir: Path, master_key: bytes, report: RestoreReport) -> None:
    from sqlalchemy import select

    from bastion.audit.verify import verify_chain
    from bastion.store.tables import DatasetRecord, ModelVersionRecord, TrainingJob
    from bastion.vault.verify import verify

    store = VaultStore.open(vault_dir, master_key)  # ConfigError on a different master key
    reports = verify(store)
    report.artifacts_checked = len(reports)
    report.problems += [
        f"artifact {r.artifact_id} v{r.version}: {r.status} {r.message}" for r in reports if not r.ok
    ]
    chain = verify_chain(db)
    if not chain.ok:
        report.problems.append(f"audit chain: {chain.reason} at {chain.first_bad_seq}")
    present = set(store.list())
    with db.session() as s:
        named = {
            *s.scalars(select(DatasetRecord.artifact_id)),
            *s.scalars(select(ModelVersionRecord.artifact_id)),
            *(a for a in s.scalars(select(TrainingJob.model_artifact_id)) if a),
        }
        shared = s.execute(  # versions that refer to a job's or federation's vault version
            select(ModelVersionRecord.artifact_id, ModelVersionRecord.artifact_version).where(
                ModelVersionRecord.artifact_version.is_not(None)
            )
        ).all()
    report.problems += [
        f"the database names artifact {a} but the vault lacks it" for a in sorted(named - present)
    ]
    committed = {(a, v) for a, versions, _ in store.scan() for v in versions}
    report.problems += [
        f"the database names artifact {a} v{v} but the vault lacks it"
        for a, v in sorted(shared)
        if a in present and (a, v) not in committed
    ]
