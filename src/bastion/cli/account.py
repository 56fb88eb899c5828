"""`bastion account …` (who am I, my API keys, password login) and `bastion admin …` (users, audit,
training capacity, prices) over the API: client commands, unlike the server-side `users`/`keys`."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from bastion.cli.client_common import CaOpt, JsonOpt, KeyOpt, QuietOpt, UrlOpt, connect
from bastion.cli.output import emit

account_app = typer.Typer(help="Your account over the API: who am I, API keys, login.", no_args_is_help=True)
admin_app = typer.Typer(help="Admin over the API: users, audit log, training, prices.", no_args_is_help=True)
KEY_COLUMNS = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]
USER_COLUMNS = ["id", "username", "role", "disabled", "email", "created_at"]


def _dump(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def health(url: UrlOpt = None, ca_cert: CaOpt = None, as_json: JsonOpt = False) -> None:
    """Is the server up, and its components (no key needed). Exit 1 when unhealthy."""
    with connect(url, None, ca_cert, as_json=as_json) as client:
        state = client.health()
    emit(state, as_json=as_json)
    if state.get("status") != "healthy":
        raise typer.Exit(1)


@account_app.command("me")
def me(url: UrlOpt = None, api_key: KeyOpt = None, ca_cert: CaOpt = None, as_json: JsonOpt = False) -> None:
    """Who the credential belongs to."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(_dump(client.auth.me()), as_json=as_json)


@account_app.command("login")
def login(
    username: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, envvar="BASTION_PASSWORD")],
    url: UrlOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Password login: prints an access and a refresh token (use the access token as a Bearer)."""
    with connect(url, None, ca_cert, as_json=as_json) as client:
        emit(_dump(client.auth.login(username, password)), as_json=as_json)


@account_app.command("keys")
def keys(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Your API keys (revoked and expired ones too)."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        rows = [_dump(k) for k in client.keys.list()]
    emit(rows, as_json=as_json, quiet=quiet, columns=KEY_COLUMNS, title="API keys")


@account_app.command("create-key")
def create_key(
    name: Annotated[str, typer.Option(help="A label, e.g. laptop.")] = "default",
    expires_in_days: Annotated[float | None, typer.Option(help="Expiry (default: never).")] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A new API key; the key is printed once."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(_dump(client.keys.create(name, expires_in_days)), as_json=as_json)


@account_app.command("revoke-key")
def revoke_key(
    key_id: str, url: UrlOpt = None, api_key: KeyOpt = None, ca_cert: CaOpt = None, as_json: JsonOpt = False
) -> None:
    """Revoke one of your keys (repeating it is harmless)."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(_dump(client.keys.revoke(key_id)), as_json=as_json)


@admin_app.command("users")
def users(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Every user."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        rows = [_dump(u) for u in client.admin.users.list()]
    emit(rows, as_json=as_json, quiet=quiet, columns=USER_COLUMNS, title="Users")


@admin_app.command("user-create")
def user_create(
    username: str,
    role: Annotated[str, typer.Option(help="admin, user or viewer.")] = "user",
    email: Annotated[str | None, typer.Option()] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Create a user (give them a key with `admin user-key`)."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(_dump(client.admin.users.create(username, role, email=email)), as_json=as_json)


@admin_app.command("user-update")
def user_update(
    user: Annotated[str, typer.Argument(help="User id or username.")],
    role: Annotated[str | None, typer.Option(help="admin, user or viewer.")] = None,
    disable: Annotated[bool | None, typer.Option("--disable/--enable", show_default=False)] = None,
    current_password: Annotated[
        str | None,
        typer.Option(envvar="BASTION_PASSWORD", help="Needed to change your own role.", show_default=False),
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Change a user's role or disable/enable them (the last admin stays an admin)."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        updated = client.admin.users.update(
            user, role=role, disabled=disable, current_password=current_password
        )
        emit(_dump(updated), as_json=as_json)


@admin_app.command("user-key")
def user_key(
    user: Annotated[str, typer.Argument(help="User id or username.")],
    name: Annotated[str, typer.Option()] = "default",
    expires_in_days: Annotated[float | None, typer.Option()] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A new API key for a user; printed once."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(_dump(client.admin.users.create_key(user, name, expires_in_days)), as_json=as_json)


@admin_app.command("audit")
def audit(
    action: Annotated[str | None, typer.Option(help="Action prefix, e.g. auth.")] = None,
    actor: Annotated[str | None, typer.Option()] = None,
    outcome: Annotated[str | None, typer.Option(help="success, denied or failure.")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The audit log, newest first (one page; --json includes next_cursor)."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        page = client.admin.audit(action=action, actor=actor, outcome=outcome, since=since, limit=limit)
    if as_json:
        emit(page, as_json=True)
        return
    rows = [{**e, "details": json.dumps(e["details"])} for e in page["data"]]
    columns = ["seq", "ts", "actor", "action", "outcome", "target_id", "details"]
    emit(rows, as_json=False, columns=columns, title="Audit log")


@admin_app.command("training-status")
def training_status(
    url: UrlOpt = None, api_key: KeyOpt = None, ca_cert: CaOpt = None, as_json: JsonOpt = False
) -> None:
    """Counts, capacity and workers."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(client.admin.training.status(), as_json=as_json)


@admin_app.command("jobs")
def all_jobs(
    status: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    owner_id: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first).")] = 50,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Every user's jobs."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        rows = client.admin.training.jobs(status=status, owner_id=owner_id, limit=limit)
    columns = ["job_id", "owner_id", "status", "model_type", "dataset_source", "created_at"]
    emit(rows, as_json=as_json, quiet=quiet, columns=columns, title="All jobs")


@admin_app.command("cancel")
def admin_cancel(
    job_id: str, url: UrlOpt = None, api_key: KeyOpt = None, ca_cert: CaOpt = None, as_json: JsonOpt = False
) -> None:
    """Cancel anyone's job."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(client.admin.training.cancel(job_id), as_json=as_json)


@admin_app.command("prices")
def prices(
    url: UrlOpt = None, api_key: KeyOpt = None, ca_cert: CaOpt = None, as_json: JsonOpt = False
) -> None:
    """The price table."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        table = client.admin.training.prices.get()
    emit(
        table if as_json else list(table.values()),
        as_json=as_json,
        columns=["profile", "hourly_cost", "currency", "speedup", "description"],
        title="Prices",
    )


@admin_app.command("set-price")
def set_price(
    profile: str,
    hourly_cost: Annotated[float | None, typer.Option(help="Per hour.")] = None,
    currency: Annotated[str, typer.Option()] = "USD",
    speedup: Annotated[float, typer.Option(help="Speed relative to the reference CPU.")] = 1.0,
    description: Annotated[str, typer.Option()] = "",
    remove: Annotated[bool, typer.Option("--remove", help="Remove the profile instead.")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Set (or --remove) one profile; the others are kept (PATCH)."""
    if not remove and hourly_cost is None:
        raise typer.BadParameter("--hourly-cost is needed (or --remove)")
    spec = (
        None
        if remove
        else {
            "hourly_cost": hourly_cost,
            "currency": currency,
            "speedup": speedup,
            "description": description,
        }
    )
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(client.admin.training.prices.patch({profile: spec}), as_json=as_json)
