"""Project membership from the identity provider's groups claim, applied at each SSO login.

``BASTION_OIDC_GROUP_PROJECTS="cardiology-team=Cardiology study:member,ict=<project id>:maintainer"``:
a user whose groups include ``cardiology-team`` joins that project as ``member`` when they sign in
through SSO, or is raised to ``member`` if they held less. It only ever adds or raises: leaving a
group removes nobody and lowers no role (a project maintainer does that, audited), so a provider's
outage or a trimmed claim cannot lock a project's people out. A project is named by id or by its
name (which must then name exactly one shared project); one that does not resolve is skipped and
audited at the login, never an error that blocks signing in.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from bastion.audit import AuditLog, AuditRecord
from bastion.projects.policy import RANK, ProjectRole
from bastion.store.tables import Project, ProjectMember, User


@dataclass(frozen=True)
class GroupGrant:
    group: str
    project: str  # an id or a name
    role: ProjectRole


def parse_group_projects(text: str) -> list[GroupGrant]:
    """``group=project:role`` items, comma-separated; a ValueError that names the bad item."""
    grants: list[GroupGrant] = []
    for raw in text.split(","):
        item = raw.strip()
        if not item:
            continue
        group, eq, rest = item.partition("=")
        project, colon, role = rest.rpartition(":")
        if not eq or not colon or not group.strip() or not project.strip():
            raise ValueError(
                f"BASTION_OIDC_GROUP_PROJECTS: {item!r} is not group=project:role "
                "(e.g. 'cardiology-team=Cardiology study:member')"
            )
        try:
            parsed = ProjectRole(role.strip())
        except ValueError:
            choices = ", ".join(r.value for r in ProjectRole)
            raise ValueError(
                f"BASTION_OIDC_GROUP_PROJECTS: unknown project role {role.strip()!r} in {item!r} "
                f"(one of {choices})"
            ) from None
        grants.append(GroupGrant(group.strip(), project.strip(), parsed))
    return grants


def _project_id(s: Session, ref: str) -> str | None:
    if len(ref) <= 36 and s.get(Project, ref) is not None:
        return ref
    ids = s.scalars(
        select(Project.id).where(Project.name == ref, Project.personal_of.is_(None)).limit(2)
    ).all()
    return ids[0] if len(ids) == 1 else None


def apply_group_projects(
    s: Session,
    audit: AuditLog,
    grants: list[GroupGrant],
    user: User,
    claims: dict[str, Any],
    groups_claim: str,
    source_ip: str | None,
) -> None:
    """Join or raise ``user`` in the projects their groups map to (never remove, never lower)."""
    groups = claims.get(groups_claim)
    if not grants or not isinstance(groups, list):
        return
    held = {g for g in groups if isinstance(g, str)}
    wanted: dict[str, tuple[ProjectRole, str]] = {}
    for grant in grants:
        if grant.group not in held:
            continue
        pid = _project_id(s, grant.project)
        if pid is None:
            _record(s, audit, user, source_ip, "project.member.sso_skipped", None, {"project": grant.project})
            continue
        best = wanted.get(pid)
        if best is None or RANK[grant.role] > RANK[best[0]]:
            wanted[pid] = (grant.role, grant.group)
    for pid, (role, group) in wanted.items():
        member = s.get(ProjectMember, (pid, user.id))
        if member is None:
            s.add(ProjectMember(project_id=pid, user_id=user.id, role=role.value))
            _record(
                s, audit, user, source_ip, "project.member.add", pid, {"role": role.value, "group": group}
            )
        elif RANK[ProjectRole(member.role)] < RANK[role]:
            old, member.role = member.role, role.value
            details = {"from": old, "to": role.value, "group": group}
            _record(s, audit, user, source_ip, "project.member.role", pid, details)


def _record(
    s: Session,
    audit: AuditLog,
    user: User,
    source_ip: str | None,
    action: str,
    project_id: str | None,
    details: dict[str, Any],
) -> None:
    audit.append(
        AuditRecord(
            action,
            actor_id=user.id,
            actor=user.username,
            source_ip=source_ip,
            target_type="project",
            target_id=project_id,
            details={"user_id": user.id, "via": "sso", **details},
        ),
        s,
    )
