"""`bastion admin …` over the API: users, their keys, the audit log, every job, capacity and prices
(client commands for an admin key; the server-side equivalents are `bastion users|keys|audit`)."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from bastion.cli.client_common import Remote, client_command
from bastion.cli.options import QuietOpt
from bastion.cli.output import emit, plain_model

admin_app = typer.Typer(help="Admin over the API: users, audit log, training, prices.", no_args_is_help=True)
USER_COLUMNS = ["id", "username", "role", "disabled", "email", "created_at"]


@admin_app.command("users")
@client_command()
def users(
    remote: Remote,
    quiet: QuietOpt = False,
) -> None:
    """Every user."""
    with remote.connect() as client:
        rows = [plain_model(u) for u in client.admin.users.list()]
    emit(rows, as_json=remote.as_json, quiet=quiet, columns=USER_COLUMNS, title="Users")


@admin_app.command("user-create")
@client_command()
def user_create(
    remote: Remote,
    username: str,
    role: Annotated[str, typer.Option(help="admin, user or viewer.")] = "user",
    email: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Create a user (give them a key with `admin user-key`)."""
    with remote.connect() as client:
        emit(plain_model(client.admin.users.create(username, role, email=email)), as_json=remote.as_json)


@admin_app.command("user-update")
@client_command()
def user_update(
    remote: Remote,
    user: Annotated[str, typer.Argument(help="User id or username.")],
    role: Annotated[str | None, typer.Option(help="admin, user or viewer.")] = None,
    disable: Annotated[bool | None, typer.Option("--disable/--enable", show_default=False)] = None,
    current_password: Annotated[
        str | None,
        typer.Option(envvar="BASTION_PASSWORD", help="Needed to change your own role.", show_default=False),
    ] = None,
) -> None:
    """Change a user's role or disable/enable them (the last admin stays an admin)."""
    with remote.connect() as client:
        updated = client.admin.users.update(
            user, role=role, disabled=disable, current_password=current_password
        )
        emit(plain_model(updated), as_json=remote.as_json)


@admin_app.command("user-key")
@client_command()
def user_key(
    remote: Remote,
    user: Annotated[str, typer.Argument(help="User id or username.")],
    name: Annotated[str, typer.Option()] = "default",
    expires_in_days: Annotated[float | None, typer.Option()] = None,
) -> None:
    """A new API key for a user; printed once."""
    with remote.connect() as client:
        emit(plain_model(client.admin.users.create_key(user, name, expires_in_days)), as_json=remote.as_json)


@admin_app.command("audit")
@client_command()
def audit(
    remote: Remote,
    action: Annotated[str | None, typer.Option(help="Action prefix, e.g. auth.")] = None,
    actor: Annotated[str | None, typer.Option()] = None,
    outcome: Annotated[str | None, typer.Option(help="success, denied or failure.")] = None,
    since: Annotated[str | None, typer.Option(help="RFC 3339 time.")] = None,
    limit: Annotated[int, typer.Option()] = 50,
) -> None:
    """The audit log, newest first (one page; --json includes next_cursor)."""
    with remote.connect() as client:
        page = client.admin.audit(action=action, actor=actor, outcome=outcome, since=since, limit=limit)
    if remote.as_json:
        emit(page, as_json=True)
        return
    rows = [{**e, "details": json.dumps(e["details"])} for e in page["data"]]
    columns = ["seq", "ts", "actor", "action", "outcome", "target_id", "details"]
    emit(rows, as_json=False, columns=columns, title="Audit log")


@admin_app.command("training-status")
@client_command()
def training_status(remote: Remote) -> None:
    """Counts, capacity and workers."""
    with remote.connect() as client:
        emit(client.admin.training.status(), as_json=remote.as_json)


@admin_app.command("jobs")
@client_command()
def all_jobs(
    remote: Remote,
    status: Annotated[str | None, typer.Option(help="Only jobs in this state.")] = None,
    owner_id: Annotated[str | None, typer.Option()] = None,
    limit: Annotated[int, typer.Option(help="How many (newest first).")] = 50,
    quiet: QuietOpt = False,
) -> None:
    """Every user's jobs."""
    with remote.connect() as client:
        rows = client.admin.training.jobs(status=status, owner_id=owner_id, limit=limit)
    columns = ["job_id", "owner_id", "status", "model_type", "dataset_source", "created_at"]
    emit(rows, as_json=remote.as_json, quiet=quiet, columns=columns, title="All jobs")


@admin_app.command("cancel")
@client_command()
def admin_cancel(
    remote: Remote,
    job_id: str,
) -> None:
    """Cancel anyone's job."""
    with remote.connect() as client:
        emit(client.admin.training.cancel(job_id), as_json=remote.as_json)


@admin_app.command("prices")
@client_command()
def prices(remote: Remote) -> None:
    """The price table."""
    with remote.connect() as client:
        table = client.admin.training.prices.get()
    emit(
        table if remote.as_json else list(table.values()),
        as_json=remote.as_json,
        columns=["profile", "hourly_cost", "currency", "speedup", "description"],
        title="Prices",
    )


@admin_app.command("set-price")
@client_command()
def set_price(
    remote: Remote,
    profile: str,
    hourly_cost: Annotated[float | None, typer.Option(help="Per hour.")] = None,
    currency: Annotated[str, typer.Option()] = "USD",
    speedup: Annotated[float, typer.Option(help="Speed relative to the reference CPU.")] = 1.0,
    description: Annotated[str, typer.Option()] = "",
    remove: Annotated[bool, typer.Option("--remove", help="Remove the profile instead.")] = False,
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
    with remote.connect() as client:
        emit(client.admin.training.prices.patch({profile: spec}), as_json=remote.as_json)
