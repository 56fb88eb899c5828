"""Entry point: ``bastion``."""

from __future__ import annotations

import typer

from bastion.cli import (
    account,
    admin,
    backup,
    catalog,
    exiting,
    fl,
    ft,
    predict,
    projects,
    server,
    signin,
    train,
    vault,
    worker,
)
from bastion.cli import search as search_cli

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
train.app.command("search")(search_cli.search)
app.add_typer(train.app, name="train")
app.command("worker")(worker.worker)
app.add_typer(catalog.data_app, name="data")
app.add_typer(catalog.models_app, name="models")
catalog.models_app.command("predict")(predict.predict)
app.add_typer(fl.app, name="fl")
app.command("backup")(backup.backup)
app.command("restore")(backup.restore)
app.add_typer(ft.ft_app, name="ft")
app.add_typer(ft.llm_app, name="llm")
catalog.models_app.command("generate")(ft.generate)
app.add_typer(account.account_app, name="account")
app.add_typer(projects.app, name="projects")
app.add_typer(admin.admin_app, name="admin")
app.command("health")(account.health)
app.command("login")(signin.login)
app.command("signup")(signin.signup)  # signin also adds `users signups|approve|reject`
app.command("sso-link")(signin.sso_link)


def main() -> None:
    """The ``bastion`` command (see ``bastion.cli.exiting``)."""
    exiting.run(app)


if __name__ == "__main__":
    main()
