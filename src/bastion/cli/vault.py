"""`bastion vault verify|rotate`: server-side checks and key rotation over the data directory."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.options import JsonOpt
from bastion.cli.output import console, emit, fail
from bastion.errors import BastionError

if TYPE_CHECKING:
    from bastion.vault.store import VaultStore

app = typer.Typer(help="Check and rotate the encrypted vault (server side).", no_args_is_help=True)


def _open_vault() -> VaultStore:
    from bastion import logs
    from bastion.config import load_settings, resolve_secrets
    from bastion.vault.store import VaultStore

    settings = resolve_secrets(load_settings())
    logs.configure(settings.log_level, stream="stderr")
    return VaultStore.open(settings.vault_dir, settings.secret_bytes("master_key"))


@app.command("verify")
def verify(as_json: JsonOpt = False) -> None:
    """Decrypt and check every artifact version; exit 1 if any is corrupt or unreadable."""
    from bastion.vault.verify import INCOMPLETE
    from bastion.vault.verify import verify as verify_all

    try:
        reports = verify_all(_open_vault())
    except BastionError as exc:
        raise fail(exc.message, 2) from exc
    rows = [
        {
            "artifact": r.artifact_id,
            "version": r.version,
            "status": r.status,
            "size": r.size,
            "kek_version": r.kek_version,
            "message": r.message,
        }
        for r in reports
    ]
    bad = [r for r in reports if not r.ok and r.status != INCOMPLETE]
    emit(
        rows,
        as_json=as_json,
        columns=["artifact", "version", "status", "size", "kek_version", "message"],
        title="Vault verification",
    )
    if not as_json:
        console.print(f"{len(reports)} artifact versions checked, {len(bad)} bad")
    if bad:
        raise typer.Exit(1)


@app.command("rotate")
def rotate(as_json: JsonOpt = False) -> None:
    """New key-encryption key; rewrap every data key (payloads untouched). Safe to interrupt and rerun."""
    from bastion.vault.rotate import rotate as rotate_all

    try:
        report = rotate_all(_open_vault())
    except BastionError as exc:
        raise fail(exc.message, 2) from exc
    emit(
        {
            "active_version": report.active_version,
            "rewrapped": report.rewrapped,
            "unchanged": report.unchanged,
            "retired_versions": report.retired_versions,
            "failures": [f.__dict__ for f in report.failures],
        },
        as_json=as_json,
    )
    if report.failures:
        raise typer.Exit(1)


def _secret(env: str, file: Path | None, prompt: str) -> bytes:
    """A key from a file, else the environment, else a hidden prompt (never a command-line value)."""
    import os

    if file is not None:
        return file.read_text().strip().encode()
    if os.environ.get(env):
        return os.environ[env].encode()
    entered: str = typer.prompt(prompt, hide_input=True)
    return entered.encode()


@app.command("rekey")
def rekey(
    old_key_file: Annotated[
        Path | None, typer.Option(help="File holding the old master key (default: the configured one).")
    ] = None,
    new_key_file: Annotated[
        Path | None, typer.Option(help="File holding the new master key (else BASTION_NEW_MASTER_KEY).")
    ] = None,
    as_json: JsonOpt = False,
) -> None:
    """Change the master key: rewrap every data key under a key-encryption key from the new master
    key (payloads untouched). Safe to interrupt and rerun with the same two keys; afterwards set
    BASTION_MASTER_KEY to the new key."""
    from bastion import logs
    from bastion.config import load_settings, resolve_secrets
    from bastion.vault.rekey import rekey as rekey_vault

    settings = resolve_secrets(load_settings())
    logs.configure(settings.log_level, stream="stderr")
    old = (
        _secret("BASTION_OLD_MASTER_KEY", old_key_file, "Old master key")
        if old_key_file is not None
        else settings.secret_bytes("master_key")
    )
    new = _secret("BASTION_NEW_MASTER_KEY", new_key_file, "New master key")
    try:
        report = rekey_vault(settings.vault_dir, old, new)
    except BastionError as exc:
        raise fail(exc.message, 2) from exc
    emit(
        {
            "active_version": report.active_version,
            "rewrapped": report.rewrapped,
            "unchanged": report.unchanged,
            "retired_versions": report.retired_versions,
            "failures": [f.__dict__ for f in report.failures],
            "next": "set BASTION_MASTER_KEY to the new key"
            if report.completed
            else "fix the failures and rerun",
        },
        as_json=as_json,
    )
    if report.failures:
        raise typer.Exit(1)
