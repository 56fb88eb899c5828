"""`bastion backup` and `bastion restore` (server side): database plus vault, encrypted, verified."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.options import JsonOpt
from bastion.cli.output import emit, fail
from bastion.errors import BastionError

if TYPE_CHECKING:
    from bastion.config import Settings

PassFileOpt = Annotated[
    Path | None,
    typer.Option(help="File holding the backup passphrase (else BASTION_BACKUP_PASSPHRASE, else a prompt)."),
]


def _passphrase(file: Path | None, *, confirm: bool) -> str:
    if file is not None:
        return file.read_text().strip()
    if os.environ.get("BASTION_BACKUP_PASSPHRASE"):
        return os.environ["BASTION_BACKUP_PASSPHRASE"]
    entered: str = typer.prompt("Backup passphrase", hide_input=True, confirmation_prompt=confirm)
    return entered


def _settings() -> Settings:
    from bastion import logs
    from bastion.config import load_settings, resolve_secrets

    settings = resolve_secrets(load_settings())
    logs.configure(settings.log_level, stream="stderr")
    return settings


def backup(
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Backup file to create (never overwritten).")
    ],
    passphrase_file: PassFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Write the database and the vault, consistently, into one file encrypted under a passphrase."""
    from bastion.backup import backup as run_backup
    from bastion.store import Database
    from bastion.vault.store import VaultStore

    settings = _settings()
    passphrase = _passphrase(passphrase_file, confirm=True)
    try:
        vault = VaultStore.open(settings.vault_dir, settings.secret_bytes("master_key"))
        db = Database(settings.resolved_database_url)
        manifest = run_backup(db, vault, output, passphrase)
    except FileExistsError:
        raise fail(f"{output} exists; backups are never overwritten", 2) from None
    except BastionError as exc:
        raise fail(exc.message, 2) from exc
    emit({"success": True, "file": str(output), "bytes": output.stat().st_size, **manifest}, as_json=as_json)


def restore(
    file: Annotated[
        Path, typer.Argument(exists=True, dir_okay=False, help="A file written by `bastion backup`.")
    ],
    passphrase_file: PassFileOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Restore a backup into an empty data directory and database (same master key), then verify
    every entry, every artifact, the audit chain and the references between them; exit 1 if not."""
    from bastion.backup import restore as run_restore
    from bastion.store import Database

    settings = _settings()
    passphrase = _passphrase(passphrase_file, confirm=False)
    try:
        report = run_restore(
            Database(settings.resolved_database_url),
            settings.vault_dir,
            settings.secret_bytes("master_key"),
            file,
            passphrase,
        )
    except BastionError as exc:
        raise fail(exc.message, 2) from exc
    emit(
        {
            "success": report.ok,
            "tables": report.tables,
            "vault_files": report.vault_files,
            "artifacts_checked": report.artifacts_checked,
            "problems": report.problems,
        },
        as_json=as_json,
    )
    if not report.ok:
        raise typer.Exit(1)
