"""Server-side commands: serve, users, keys, audit. They open the store directly."""

from __future__ import annotations

import gc
import importlib
import os
import sys
import threading
from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.options import JsonOpt
from bastion.cli.output import console, emit, err_console, fail
from bastion.config import Settings, load_settings, resolve_secrets
from bastion.errors import BastionError

users_app = typer.Typer(help="Manage user accounts (server side).", no_args_is_help=True)
keys_app = typer.Typer(help="Manage API keys (server side).", no_args_is_help=True)
audit_app = typer.Typer(help="Inspect the audit log.", no_args_is_help=True)


def open_context(settings: Settings | None = None, *, log_stream: str = "stderr") -> Any:
    from bastion import logs
    from bastion.context import build_context
    from bastion.wiring import install_services

    settings = settings or load_settings()
    logs.configure(settings.log_level, stream=log_stream)
    ctx = build_context(resolve_secrets(settings))
    install_services(ctx)
    return ctx


BOOTSTRAP_KEYS_FILE = "bootstrap-keys.txt"


def show_bootstrap_keys(admin_key: str, user_key: str, data_dir: Path) -> None:
    """Straight to a terminal, never through the logs: shown exactly once.

    Under systemd or Docker stderr *is* the log, so without a terminal the keys go to a 0600 file in
    the data directory instead, and only its path is printed.
    """
    if sys.stderr.isatty():
        err_console.rule("[bold yellow]First start: bootstrap API keys (shown once, store them now)")
        err_console.print(f"admin API key: {admin_key}", soft_wrap=True)
        err_console.print(f"user API key:  {user_key}", soft_wrap=True)
        err_console.rule()
        return
    path = data_dir / BOOTSTRAP_KEYS_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(f"admin API key: {admin_key}\nuser API key:  {user_key}\n")
    err_console.print(
        f"First start: the bootstrap API keys were written to {path.resolve()} (0600); "
        "read them, store them, then delete the file.",
        soft_wrap=True,
    )


def serve(
    host: Annotated[str | None, typer.Option(help="Interface to bind (default 127.0.0.1).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (default 5000).")] = None,
    ssl_cert: Annotated[Path | None, typer.Option("--ssl-cert", help="PEM certificate chain.")] = None,
    ssl_key: Annotated[Path | None, typer.Option("--ssl-key", help="PEM private key.")] = None,
    debug: Annotated[
        bool, typer.Option("--debug", help="Development mode: allows generated secrets.")
    ] = False,
    no_worker: Annotated[
        bool, typer.Option("--no-worker", help="Serve the API only; run jobs elsewhere.")
    ] = False,
) -> None:
    """Run the API server (and, unless --no-worker, an embedded job worker)."""
    import uvicorn

    from bastion.api.app import create_app
    from bastion.auth.bootstrap import bootstrap_if_empty

    try:
        settings = load_settings(
            host=host,
            port=port,
            ssl_cert=ssl_cert,
            ssl_key=ssl_key,
            debug=debug or None,
            embedded_worker=False if no_worker else None,
        )
        ctx = open_context(settings, log_stream="stdout")
    except BastionError as exc:
        raise fail(exc.message, 2) from exc
    settings = ctx.settings
    keys = bootstrap_if_empty(ctx.accounts)
    if keys is not None:
        show_bootstrap_keys(keys.admin_key, keys.user_key, settings.data_dir)
    scheme = "https" if settings.ssl_cert else "http"
    err_console.print(f"Bastion serving on {scheme}://{settings.host}:{settings.port}  (docs at /docs)")
    err_console.print(
        f"Dashboard: {scheme}://{settings.host}:{settings.port}/  (first time: 'First sign-in with an API key')"
    )
    app = create_app(context=ctx)
    # What was imported and built so far lives as long as the process: take it out of the cyclic
    # collector's view (gc.freeze), so a full collection walks what requests made, not ~0.2 M
    # long-lived objects (0.15-0.6 s each here). bench/api_overhead.py, same code with and without:
    # p99 275 -> 107 ms under 64 connections (docs/performance.md).
    gc.freeze()
    threading.Thread(target=_warm, args=(app,), name="bastion-warm-routes", daemon=True).start()
    uvicorn.run(
        app,
        host=settings.host,
        port=settings.port,
        ssl_certfile=str(settings.ssl_cert) if settings.ssl_cert else None,
        ssl_keyfile=str(settings.ssl_key) if settings.ssl_key else None,
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
        # The client address (lockout, rate limits, audit) comes from X-Forwarded-For only when the
        # direct peer is a configured proxy; uvicorn's own default would believe any loopback peer.
        proxy_headers=bool(settings.trusted_proxies.strip()),
        forwarded_allow_ips=settings.trusted_proxies.strip() or None,
    )


# What the first ``POST /federations`` imported on the request path (~20 ms of its ~110 ms).
_PRELOAD = ("bastion.llm.federated", "bastion.ml.serialize", "bastion.federation.server.listing")


def _warm(app: Any) -> None:
    """FastAPI's per-route state, built now (``bastion.api.routing.warm``), and the modules first
    requests import lazily, loaded now; then frozen like the rest."""
    from bastion.api.routing import warm

    warm(app)
    for name in _PRELOAD:
        importlib.import_module(name)
    gc.freeze()


@users_app.command("create")
def users_create(
    username: str,
    role: Annotated[str, typer.Option(help="admin, user or viewer.")] = "user",
    password: Annotated[bool, typer.Option("--password", help="Prompt for a login password.")] = False,
    email: Annotated[str | None, typer.Option()] = None,
    with_key: Annotated[
        bool, typer.Option("--with-key", help="Also create an API key (shown once).")
    ] = False,
    as_json: JsonOpt = False,
) -> None:
    """Create a user."""
    secret = typer.prompt("Password", hide_input=True, confirmation_prompt=True) if password else None
    ctx = open_context()
    try:
        user = ctx.accounts.create_user(username, role, password=secret, email=email)
        out: dict[str, Any] = {"id": user.id, "username": user.username, "role": user.role}
        if with_key:
            out["api_key"] = ctx.accounts.create_key(user.id, "cli").plaintext
    except BastionError as exc:
        raise fail(exc.message) from exc
    emit(out, as_json=as_json)


@users_app.command("list")
def users_list(as_json: JsonOpt = False) -> None:
    """List users."""
    ctx = open_context()
    rows = [
        {
            "id": u.id,
            "username": u.username,
            "role": u.role,
            "disabled": u.disabled,
            "created_at": u.created_at,
        }
        for u in ctx.accounts.list_users()
    ]
    emit(rows, as_json=as_json, columns=["id", "username", "role", "disabled", "created_at"], title="Users")


def _set_disabled(username: str, disabled: bool, as_json: bool) -> None:
    ctx = open_context()
    try:
        user = ctx.accounts.update_user(username, disabled=disabled)
    except BastionError as exc:
        raise fail(exc.message) from exc
    emit({"username": user.username, "disabled": user.disabled}, as_json=as_json)


@users_app.command("disable")
def users_disable(username: str, as_json: JsonOpt = False) -> None:
    """Disable a user: their keys and sessions stop working (within 2 s on a running server)."""
    _set_disabled(username, True, as_json)


@users_app.command("enable")
def users_enable(username: str, as_json: JsonOpt = False) -> None:
    """Re-enable a disabled user (their earlier login sessions stay ended)."""
    _set_disabled(username, False, as_json)


@users_app.command("unlock")
def users_unlock(
    username: Annotated[str | None, typer.Argument(help="Account to unlock.")] = None,
    address: Annotated[str | None, typer.Option(help="Client address to unlock.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Lift a lockout: an account's (from every address), an address's, or both."""
    if not username and not address:
        raise fail("name an account, --address, or both", 2)
    ctx = open_context()
    cleared = ctx.auth.unlock(username=username, address=address)
    emit({"username": username, "address": address, "cleared": cleared}, as_json=as_json)


@keys_app.command("create")
def keys_create(
    username: str,
    name: Annotated[str, typer.Option(help="A label to tell keys apart.")] = "cli",
    expires_days: Annotated[float | None, typer.Option(help="Expire after this many days.")] = None,
    as_json: JsonOpt = False,
) -> None:
    """Create an API key for a user. The key is printed once."""
    ctx = open_context()
    try:
        new = ctx.accounts.create_key(username, name, expires_in_days=expires_days)
    except BastionError as exc:
        raise fail(exc.message) from exc
    emit({"id": new.key.id, "api_key": new.plaintext, "expires_at": new.key.expires_at}, as_json=as_json)


@keys_app.command("list")
def keys_list(username: str, as_json: JsonOpt = False) -> None:
    """List a user's API keys (prefixes only)."""
    ctx = open_context()
    try:
        keys = ctx.accounts.list_keys(username)
    except BastionError as exc:
        raise fail(exc.message) from exc
    rows = [
        {
            "id": k.id,
            "name": k.name,
            "prefix": k.prefix,
            "created_at": k.created_at,
            "expires_at": k.expires_at,
            "last_used_at": k.last_used_at,
            "revoked_at": k.revoked_at,
        }
        for k in keys
    ]
    emit(rows, as_json=as_json, columns=list(rows[0]) if rows else ["id"], title=f"API keys of {username}")


@keys_app.command("revoke")
def keys_revoke(key_id: str, as_json: JsonOpt = False) -> None:
    """Revoke an API key by id."""
    ctx = open_context()
    try:
        key = ctx.accounts.revoke_key(key_id, owner_id=None)
    except BastionError as exc:
        raise fail(exc.message) from exc
    emit({"id": key.id, "revoked_at": key.revoked_at}, as_json=as_json)


@audit_app.command("verify")
def audit_verify(as_json: JsonOpt = False) -> None:
    """Check the hash chain; exit 1 and name the first bad row if anything was edited or deleted."""
    from bastion.audit.verify import verify_chain

    ctx = open_context()
    result = verify_chain(ctx.db)
    emit(
        {
            "ok": result.ok,
            "checked": result.checked,
            "first_bad_seq": result.first_bad_seq,
            "reason": result.reason,
        },
        as_json=as_json,
    )
    if not result.ok:
        if not as_json:
            console.print(f"[red]audit log tampered at row {result.first_bad_seq}: {result.reason}[/red]")
        raise typer.Exit(1)
