"""Signing in and signing up: `bastion login [--sso]`, `bastion signup`, `bastion sso-link` (client
commands), and the admin's `bastion users signups|approve|reject` (server side)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bastion.cli.client_common import Remote, client_command
from bastion.cli.options import JsonOpt
from bastion.cli.output import emit, fail
from bastion.cli.server import open_context, users_app
from bastion.errors import BastionError


@client_command(api_key=False)
def login(
    remote: Remote,
    sso: Annotated[
        bool, typer.Option("--sso", help="Sign in through the server's identity provider.")
    ] = False,
    username: Annotated[str | None, typer.Option(help="Password login: the username.")] = None,
    timeout: Annotated[float | None, typer.Option(help="Seconds to wait for the browser sign-in.")] = None,
) -> None:
    """Get a short-lived token: `--sso` prints a URL to open in any browser and waits for the sign-in."""
    with remote.connect() as client:
        if sso:

            def show(link: str) -> None:
                typer.echo(f"Open this URL in a browser to sign in:\n\n  {link}\n", err=True)

            tokens = client.login_sso(show, timeout=timeout)
        else:
            name = username or typer.prompt("Username")
            tokens = client.login(name, typer.prompt("Password", hide_input=True))
    if remote.as_json:
        emit(tokens, as_json=True)
        return
    typer.echo(f"Signed in; the access token below expires in {tokens['expires_in']} s.")
    typer.echo(f"export BASTION_API_KEY={tokens['access_token']}")


@client_command(api_key=False)
def signup(
    remote: Remote,
    username: Annotated[str, typer.Option(help="The account name you want.")],
    email: Annotated[str, typer.Option(help="Your email address.")],
) -> None:
    """Register on a server that allows sign-up (an admin may have to approve the account)."""
    password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
    with remote.connect() as client:
        emit(client.signup(username, email, password), as_json=remote.as_json)


@users_app.command("signups")
def users_signups(
    limit: Annotated[int, typer.Option(min=1, max=500)] = 100,
    as_json: JsonOpt = False,
) -> None:
    """Sign-ups waiting for approval, oldest first (server side)."""
    ctx = open_context()
    rows = [
        {"id": r.id, "username": r.username, "email": r.email, "created_at": r.created_at}
        for r in ctx.services.signups.pending(limit=limit)[0]
    ]
    emit(rows, as_json=as_json, columns=["id", "username", "email", "created_at"], title="Sign-ups")


@users_app.command("approve")
def users_approve(
    ref: Annotated[str, typer.Argument(help="Sign-up id or username.")], as_json: JsonOpt = False
) -> None:
    """Approve a sign-up: the account becomes an active `user`."""
    ctx = open_context()
    try:
        user = ctx.services.signups.approve(ref)
    except BastionError as exc:
        raise fail(exc.message) from exc
    out: dict[str, Any] = {"id": user.id, "username": user.username, "role": user.role}
    emit(out, as_json=as_json)


@users_app.command("reject")
def users_reject(
    ref: Annotated[str, typer.Argument(help="Sign-up id or username.")], as_json: JsonOpt = False
) -> None:
    """Reject a sign-up: the request is deleted."""
    ctx = open_context()
    try:
        ctx.services.signups.reject(ref)
    except BastionError as exc:
        raise fail(exc.message) from exc
    emit({"rejected": ref}, as_json=as_json)


@client_command()
def sso_link(remote: Remote) -> None:
    """Link your identity at the server's provider to this account: prints a URL to open."""
    with remote.connect() as client:
        started = client.sso_link()
    if remote.as_json:
        emit(started, as_json=True)
        return
    typer.echo(f"Open this URL in a browser to link your identity:\n\n  {started['authorization_url']}\n")
