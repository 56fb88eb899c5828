"""Project membership from the OIDC groups claim (BASTION_OIDC_GROUP_PROJECTS) against the real
provider: a login joins or raises, never lowers; an unknown project is skipped and audited, never a
failed login; bad syntax is a clear configuration error at start-up."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import select

from bastion.auth.principal import Principal
from bastion.context import build_context
from bastion.errors import ConfigError
from bastion.projects.service import ProjectService
from bastion.projects.sso_groups import parse_group_projects
from bastion.store.tables import AuditEvent, ProjectMember
from bastion.wiring import install_services
from tests.auth.test_sso import SsoApp, make_app, me, sso_login
from tests.conftest import make_settings
from tests.oidc_provider import CALLBACK, CLIENT_ID, CLIENT_SECRET

__all__ = ["make_app"]  # the fixture, shared with the SSO tests


@pytest.mark.parametrize(
    "text",
    ["researchers", "researchers=Cardiology", "=p:member", "researchers=:member", "g=p:admin"],
)
def test_bad_mapping_is_a_clear_error(text: str, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="BASTION_OIDC_GROUP_PROJECTS"):
        parse_group_projects(text)
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'x.db'}",
        oidc_issuer="http://127.0.0.1:1/",
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
        oidc_redirect_uri=CALLBACK,
        oidc_group_projects=text,
    )
    ctx = build_context(settings)
    with pytest.raises(ConfigError, match="BASTION_OIDC_GROUP_PROJECTS"):
        install_services(ctx)  # what the server's start-up runs: a bad mapping stops it
    ctx.db.dispose()


def test_parse_keeps_colons_in_names() -> None:
    [grant] = parse_group_projects(" ict = Study: phase 2 : maintainer ,")
    assert (grant.group, grant.project, grant.role.value) == ("ict", "Study: phase 2", "maintainer")


def _roles(app: SsoApp, user_id: str) -> dict[str, str]:
    with app[1].db.session() as s:
        rows = s.scalars(select(ProjectMember).where(ProjectMember.user_id == user_id)).all()
        return {m.project_id: m.role for m in rows}


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_groups_join_and_raise_never_lower(make_app: Callable[..., SsoApp]) -> None:
    first = make_app()
    ctx = first[1]
    owner = ctx.accounts.create_user("pi", "user")
    pi = Principal(owner.id, "pi", "user", "api_key")
    projects: ProjectService = ctx.services.projects
    cardio = projects.create(pi, name="Cardiology study", domain="healthcare")["id"]
    registry = projects.create(pi, name="Registry", domain="healthcare")["id"]
    mapping = (
        f"researchers=Cardiology study:member,researchers={registry}:viewer,"
        "researchers=Cardiology study:viewer,bastion-admins=No such project:owner"
    )
    app = make_app(oidc_group_projects=mapping)
    client = app[0]

    carol = me(client, sso_login(client, "carol")["access_token"])
    roles = _roles(app, carol["user_id"])
    assert roles[cardio] == "member" and roles[registry] == "viewer", "the highest mapped role wins"
    tokens = sso_login(client, "carol")
    r = client.get(
        "/api/v1/datasets",
        params={"project": cardio},
        headers={"Authorization": f"Bearer {tokens['access_token']}"},
    )
    assert r.status_code == 200, "an ordinary project member"

    # raised by a maintainer: the next login does not lower the role
    projects.change_role(pi, registry, carol["username"], "maintainer")
    sso_login(client, "carol")
    assert _roles(app, carol["user_id"])[registry] == "maintainer"

    alice = me(client, sso_login(client, "alice")["access_token"])  # maps to a missing project
    assert {p for p in _roles(app, alice["user_id"]) if p in (cardio, registry)} == set()
    with ctx.db.session() as s:
        events = s.scalars(select(AuditEvent).where(AuditEvent.action.like("project.member.%"))).all()
        by_sso = [(e.action, e.actor_id) for e in events if json.loads(e.details).get("via") == "sso"]
    assert by_sso.count(("project.member.add", carol["user_id"])) == 2
    assert ("project.member.sso_skipped", alice["user_id"]) in by_sso
