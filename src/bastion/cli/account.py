"""`bastion account …` (who am I, my API keys, password login) and `bastion health` over the API:
client commands, unlike the server-side `users`/`keys`; `bastion admin …` is in cli/admin.py."""

from __future__ import annotations

from typing import Annotated

import typer

from bastion.cli.client_common import Remote, client_command
from bastion.cli.options import QuietOpt
from bastion.cli.output import emit, plain_model

account_app = typer.Typer(help="Your account over the API: who am I, API keys, login.", no_args_is_help=True)
KEY_COLUMNS = ["id", "name", "prefix", "created_at", "expires_at", "last_used_at", "revoked_at"]


@client_command(api_key=False)
def health(remote: Remote) -> None:
    """Is the server up, and its components (no key needed). Exit 1 when unhealthy."""
    with remote.connect() as client:
        state = client.health()
    emit(state, as_json=remote.as_json)
    if state.get("status") != "healthy":
        raise typer.Exit(1)


@account_app.command("me")
@client_command()
def me(remote: Remote) -> None:
    """Who the credential belongs to."""
    with remote.connect() as client:
        emit(plain_model(client.auth.me()), as_json=remote.as_json)


@account_app.command("login")
@client_command(api_key=False)
def login(
    remote: Remote,
    username: Annotated[str, typer.Option(prompt=True)],
    password: Annotated[str, typer.Option(prompt=True, hide_input=True, envvar="BASTION_PASSWORD")],
) -> None:
    """Password login: prints an access and a refresh token (use the access token as a Bearer)."""
    with remote.connect() as client:
        emit(plain_model(client.auth.login(username, password)), as_json=remote.as_json)


@account_app.command("keys")
@client_command()
def keys(
    remote: Remote,
    quiet: QuietOpt = False,
) -> None:
    """Your API keys (revoked and expired ones too)."""
    with remote.connect() as client:
        rows = [plain_model(k) for k in client.keys.list()]
    emit(rows, as_json=remote.as_json, quiet=quiet, columns=KEY_COLUMNS, title="API keys")


@account_app.command("create-key")
@client_command()
def create_key(
    remote: Remote,
    name: Annotated[str, typer.Option(help="A label, e.g. laptop.")] = "default",
    expires_in_days: Annotated[float | None, typer.Option(help="Expiry (default: never).")] = None,
) -> None:
    """A new API key; the key is printed once."""
    with remote.connect() as client:
        emit(plain_model(client.keys.create(name, expires_in_days)), as_json=remote.as_json)


@account_app.command("revoke-key")
@client_command()
def revoke_key(
    remote: Remote,
    key_id: str,
) -> None:
    """Revoke one of your keys (repeating it is harmless)."""
    with remote.connect() as client:
        emit(plain_model(client.keys.revoke(key_id)), as_json=remote.as_json)
