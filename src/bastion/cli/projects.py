"""`bastion projects …`: create projects and manage their members (client commands over the SDK)."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from bastion.cli.client_common import QuietOpt, Remote, client_command
from bastion.cli.output import console, emit

app = typer.Typer(
    help="Projects: share datasets, models, jobs and federations with colleagues.", no_args_is_help=True
)
ROLE_HELP = "owner, maintainer, member or viewer"
MEMBER_COLUMNS = ["username", "role", "user_id"]


def _show(project: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(project, as_json=True)
        return
    sub = f"/{project['subdomain']}" if project.get("subdomain") else ""
    console.print(f"project [bold]{project['id']}[/bold] {project['name']!r} ({project['domain']}{sub})")
    emit(project.get("members", []), as_json=False, columns=MEMBER_COLUMNS, title="Members")


@app.command("create")
@client_command()
def create(
    remote: Remote,
    name: Annotated[str, typer.Argument(help="Project name")],
    domain: Annotated[str, typer.Option(help="One of `bastion projects domains`")],
    subdomain: Annotated[str | None, typer.Option(help="e.g. cardiology")] = None,
) -> None:
    """Create a project; you become its owner."""
    with remote.connect() as client:
        _show(client.projects.create(name, domain, subdomain).model_dump(mode="json"), remote.as_json)


@app.command("list")
@client_command()
def list_projects(
    remote: Remote,
    quiet: QuietOpt = False,
) -> None:
    """The projects you are in (your personal project included)."""
    with remote.connect() as client:
        rows = [p.model_dump(mode="json") for p in client.projects.list()]
    columns = ["id", "name", "domain", "subdomain", "your_role", "member_count"]
    emit(
        [{k: r[k] for k in columns} for r in rows],
        as_json=remote.as_json,
        quiet=quiet,
        columns=columns,
        title="Projects",
    )


@app.command("show")
@client_command()
def show(
    remote: Remote,
    project_id: str,
) -> None:
    """A project and its members."""
    with remote.connect() as client:
        _show(client.projects.get(project_id).model_dump(mode="json"), remote.as_json)


@app.command("domains")
@client_command()
def domains(
    remote: Remote,
) -> None:
    """The server's domain taxonomy."""
    with remote.connect() as client:
        found = client.projects.domains()
    rows = [{"domain": d, "subdomains": ", ".join(s) or "(any)"} for d, s in found.items()]
    emit(
        found if remote.as_json else rows,
        as_json=remote.as_json,
        columns=["domain", "subdomains"],
        title="Domains",
    )


@app.command("update")
@client_command()
def update(
    remote: Remote,
    project_id: str,
    name: Annotated[str | None, typer.Option()] = None,
    domain: Annotated[str | None, typer.Option()] = None,
    subdomain: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Rename or re-file a project (maintainers and owners)."""
    with remote.connect() as client:
        project = client.projects.update(project_id, name=name, domain=domain, subdomain=subdomain)
    _show(project.model_dump(mode="json"), remote.as_json)


@app.command("add-member")
@client_command()
def add_member(
    remote: Remote,
    project_id: str,
    user: Annotated[str, typer.Argument(help="user name or id")],
    role: Annotated[str, typer.Option(help=ROLE_HELP)] = "member",
) -> None:
    """Add a user to a project."""
    with remote.connect() as client:
        member = client.projects.add_member(project_id, user, role).model_dump(mode="json")
    emit([member], as_json=remote.as_json, columns=MEMBER_COLUMNS, title="Added")


@app.command("set-role")
@client_command()
def set_role(
    remote: Remote,
    project_id: str,
    user: str,
    role: Annotated[str, typer.Argument(help=ROLE_HELP)],
) -> None:
    """Change a member's role (the last owner cannot step down)."""
    with remote.connect() as client:
        member = client.projects.set_role(project_id, user, role).model_dump(mode="json")
    emit([member], as_json=remote.as_json, columns=MEMBER_COLUMNS, title="Changed")


@app.command("remove-member")
@client_command()
def remove_member(
    remote: Remote,
    project_id: str,
    user: str,
) -> None:
    """Remove a member (or leave); their running jobs finish, but they lose access to the project."""
    with remote.connect() as client:
        client.projects.remove_member(project_id, user)
    emit(
        {"removed": user, "project": project_id}, as_json=remote.as_json
    ) if remote.as_json else console.print(f"removed {user}")


VIEWS = ("contributions", "models", "training", "resources", "federations")


@app.command("analytics")
@client_command()
def analytics(
    remote: Remote,
    project_id: str,
    view: Annotated[
        str, typer.Option(help="contributions, models, training, resources or federations")
    ] = "contributions",
) -> None:
    """One analytics view of a project."""
    if view not in VIEWS:
        raise typer.BadParameter(f"--view must be one of {', '.join(VIEWS)}")
    with remote.connect() as client:
        result = client.projects.analytics(project_id, view)
    rows = result.get("data", result.get("jobs", result.get("by_member")))
    if remote.as_json or not isinstance(rows, list):
        emit(result, as_json=True)
        return
    flat = [{k: v for k, v in r.items() if not isinstance(v, list | dict)} for r in rows]
    emit(flat, as_json=False, columns=list(flat[0]) if flat else [], title=f"{view} ({project_id})")
