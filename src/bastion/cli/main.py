"""Entry point: ``bastion``."""

from __future__ import annotations

import typer

from bastion.cli import account, catalog, fl, server, train, vault, worker

app = typer.Typer(
    name="bastion",
    help="Bastion: secure remote and federated training on sensitive data.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("serve")(server.serve)
app.add_typer(server.users_app, name="users")
app.add_typer(server.keys_app, name="keys")
app.add_typer(server.audit_app, name="audit")
app.add_typer(vault.app, name="vault")
app.add_typer(train.app, name="train")
app.command("worker")(worker.worker)
app.add_typer(catalog.data_app, name="data")
app.add_typer(catalog.models_app, name="models")
app.add_typer(fl.app, name="fl")
app.add_typer(account.account_app, name="account")
app.add_typer(account.admin_app, name="admin")
app.command("health")(account.health)

if __name__ == "__main__":
    app()
