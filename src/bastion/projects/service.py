"""Projects and their members: create, list, rename, and membership changes (each audited)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.orm import Session

from bastion.audit import AuditLog
from bastion.audit.log import AuditRecord
from bastion.auth.principal import Principal
from bastion.errors import Conflict, Invalid, NotFound
from bastion.projects.personal import personal_project_id
from bastion.projects.policy import PROJECT_NOT_FOUND, Action, ProjectRole, authorize
from bastion.projects.taxonomy import PERSONAL, Taxonomy
from bastion.store import Database
from bastion.store.base import utcnow
from bastion.store.paging import Keyset
from bastion.store.tables import Project, ProjectMember, User

PROJECTS = Keyset(Project.created_at, Project.id, descending=False)
MAX_NAME = 200


def _missing() -> NotFound:
    return NotFound(PROJECT_NOT_FOUND, code="project_not_found")


def _role(value: str) -> ProjectRole:
    try:
        return ProjectRole(value)
    except ValueError:
        raise Invalid(
            f"unknown project role {value!r}; one of owner, maintainer, member, viewer", code="unknown_role"
        ) from None


def _name(value: str) -> str:
    value = value.strip()
    if not value or len(value) > MAX_NAME:
        raise Invalid(f"project name must be 1-{MAX_NAME} characters", code="invalid_name")
    return value


class ProjectService:
    def __init__(self, db: Database, audit: AuditLog, taxonomy: Taxonomy) -> None:
        self.db = db
        self.audit = audit
        self.taxonomy = taxonomy

    # -- projects -----------------------------------------------------------------------------------
    def create(
        self,
        principal: Principal,
        *,
        name: str,
        domain: str,
        subdomain: str | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        """A new project with its creator as owner."""
        domain, sub = self.taxonomy.check(domain, subdomain)
        now = utcnow()
        with self.db.session() as s:
            project = Project(
                name=_name(name),
                domain=domain,
                subdomain=sub,
                created_by=principal.user_id,
                created_at=now,
                updated_at=now,
            )
            s.add(project)
            s.flush()
            s.add(
                ProjectMember(project_id=project.id, user_id=principal.user_id, role=ProjectRole.OWNER.value)
            )
            self._audit(s, principal, "project.create", project.id, {"domain": domain, "subdomain": sub}, ip)
            s.flush()
            return self._view(s, project, ProjectRole.OWNER, members=self._members(s, project.id))

    def list_for(
        self, principal: Principal, limit: int = 100, cursor: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The projects the caller is a member of (their personal one included), oldest first."""
        with self.db.session() as s:
            personal_project_id(s.connection(), principal.user_id)
            stmt: Select[Any] = (
                select(Project, ProjectMember.role)  # type: ignore[assignment]
                .join(ProjectMember, ProjectMember.project_id == Project.id)
                .where(ProjectMember.user_id == principal.user_id)
            )
            rows: list[Any] = list(s.execute(PROJECTS.apply(stmt, cursor, limit)).all())
            counts = self._member_counts(s, [p.id for p, _ in rows[:limit]])
            data = [self._view(s, p, ProjectRole(r), counts.get(p.id, 0)) for p, r in rows[:limit]]
            return data, PROJECTS.next_cursor([p for p, _ in rows], limit)

    def get(self, principal: Principal, project_id: str) -> dict[str, Any]:
        with self.db.session() as s:
            project = self._load(s, project_id)
            role = authorize(s, principal, project.id, Action.READ, _missing())
            return self._view(s, project, role, members=self._members(s, project.id))

    def update(
        self,
        principal: Principal,
        project_id: str,
        *,
        name: str | None = None,
        domain: str | None = None,
        subdomain: str | None = None,
        ip: str | None = None,
    ) -> dict[str, Any]:
        with self.db.session() as s:
            project = self._load(s, project_id)
            role = authorize(s, principal, project.id, Action.MANAGE, _missing())
            if project.personal_of is not None and (domain is not None or subdomain is not None):
                raise Conflict("a personal project has no domain to change", code="personal_project")
            changes: dict[str, Any] = {}
            if name is not None:
                project.name = changes["name"] = _name(name)
            if domain is not None or subdomain is not None:
                project.domain, project.subdomain = self.taxonomy.check(domain or project.domain, subdomain)
                changes.update(domain=project.domain, subdomain=project.subdomain)
            project.updated_at = utcnow()
            self._audit(s, principal, "project.update", project.id, changes, ip)
            s.flush()
            return self._view(s, project, role, members=self._members(s, project.id))

    # -- analytics ----------------------------------------------------------------------------------
    def analytics(self, principal: Principal, project_id: str, view: str) -> Any:
        """One analytics view of a project its members (any role) and admins may read."""
        from bastion.jobs.pricing import PriceTable
        from bastion.projects import analytics

        with self.db.session() as s:
            project = self._load(s, project_id)
            authorize(s, principal, project.id, Action.READ, _missing())
            if view == "contributions":
                return {"data": analytics.contributions(s, project.id)}
            if view == "models":
                return {"data": analytics.model_performance(s, project.id)}
            if view == "training":
                return analytics.training_history(s, project.id)
            if view == "resources":
                return analytics.resource_use(s, project.id, PriceTable(self.db).all())
            if view == "federations":
                return {"data": analytics.federation_participation(s, project.id)}
        raise NotFound(f"no analytics view {view!r}", code="unknown_view")

    # -- members ------------------------------------------------------------------------------------
    def add_member(
        self, principal: Principal, project_id: str, user_ref: str, role: str, ip: str | None = None
    ) -> dict[str, Any]:
        new_role = _role(role)
        with self.db.session() as s:
            project = self._load(s, project_id)
            self._may_grant(s, principal, project, new_role)
            user = self._user(s, user_ref)
            if s.get(ProjectMember, (project.id, user.id)) is not None:
                raise Conflict(f"{user.username} is already a member", code="already_member")
            s.add(ProjectMember(project_id=project.id, user_id=user.id, role=new_role.value))
            self._audit(
                s,
                principal,
                "project.member.add",
                project.id,
                {"user_id": user.id, "role": new_role.value},
                ip,
            )
            s.flush()
            return _member_view(user, new_role.value)

    def change_role(
        self, principal: Principal, project_id: str, user_ref: str, role: str, ip: str | None = None
    ) -> dict[str, Any]:
        new_role = _role(role)
        with self.db.session() as s:
            project = self._load(s, project_id)
            self._may_grant(s, principal, project, new_role)
            user, member = self._member(s, project.id, user_ref)
            if member.role == ProjectRole.OWNER.value and new_role != ProjectRole.OWNER:
                authorize(s, principal, project.id, Action.OWN, _missing())
                self._keep_an_owner(s, project.id)
            old = member.role
            member.role = new_role.value
            self._audit(
                s,
                principal,
                "project.member.role",
                project.id,
                {"user_id": user.id, "from": old, "to": new_role.value},
                ip,
            )
            s.flush()
            return _member_view(user, new_role.value)

    def remove_member(
        self, principal: Principal, project_id: str, user_ref: str, ip: str | None = None
    ) -> None:
        """Remove a member (members may leave by themselves). Their jobs keep running, but they lose
        access to everything the project owns, their own creations included."""
        with self.db.session() as s:
            project = self._load(s, project_id)
            user, member = self._member_visible(s, principal, project.id, user_ref)
            if user.id != principal.user_id:
                needed = Action.OWN if member.role == ProjectRole.OWNER.value else Action.MANAGE
                authorize(s, principal, project.id, needed, _missing())
            if project.personal_of == user.id:
                raise Conflict("nobody leaves their personal project", code="personal_project")
            if member.role == ProjectRole.OWNER.value:
                self._keep_an_owner(s, project.id)
            s.delete(member)
            self._audit(
                s,
                principal,
                "project.member.remove",
                project.id,
                {"user_id": user.id, "role": member.role},
                ip,
            )

    # -- helpers ------------------------------------------------------------------------------------
    def _may_grant(self, s: Session, principal: Principal, project: Project, role: ProjectRole) -> None:
        authorize(
            s, principal, project.id, Action.OWN if role == ProjectRole.OWNER else Action.MANAGE, _missing()
        )
        if project.personal_of is not None:
            raise Conflict(
                "a personal project has one member; create a project to share", code="personal_project"
            )

    @staticmethod
    def _keep_an_owner(s: Session, project_id: str) -> None:
        """Refuse to lose the last owner. A no-op write on the project row first (a row lock on
        PostgreSQL, the write lock on SQLite) so two concurrent demotions are counted one after the other."""
        s.execute(update(Project).where(Project.id == project_id).values(updated_at=Project.updated_at))
        owners = s.scalar(
            select(func.count())
            .select_from(ProjectMember)
            .where(ProjectMember.project_id == project_id, ProjectMember.role == ProjectRole.OWNER.value)
        )
        if int(owners or 0) <= 1:
            raise Conflict(
                "a project keeps at least one owner; make someone else owner first", code="last_owner"
            )

    @staticmethod
    def _load(s: Session, project_id: str) -> Project:
        project = s.get(Project, project_id) if len(project_id) <= 36 else None
        if project is None:
            raise _missing()
        return project

    @staticmethod
    def _user(s: Session, ref: str) -> User:
        user = s.get(User, ref) if len(ref) <= 36 else None
        user = user or s.scalar(select(User).where(User.username == ref))
        if user is None:
            raise NotFound("user not found", code="user_not_found")
        return user

    def _member(self, s: Session, project_id: str, user_ref: str) -> tuple[User, ProjectMember]:
        user = self._user(s, user_ref)
        member = s.get(ProjectMember, (project_id, user.id))
        if member is None:
            raise NotFound("no such member in this project", code="member_not_found")
        return user, member

    def _member_visible(
        self, s: Session, principal: Principal, project_id: str, user_ref: str
    ) -> tuple[User, ProjectMember]:
        authorize(s, principal, project_id, Action.READ, _missing())
        return self._member(s, project_id, user_ref)

    @staticmethod
    def _members(s: Session, project_id: str) -> list[dict[str, Any]]:
        rows = s.execute(
            select(User, ProjectMember.role)
            .join(ProjectMember, ProjectMember.user_id == User.id)
            .where(ProjectMember.project_id == project_id)
            .order_by(ProjectMember.added_at, User.username)
        ).all()
        return [_member_view(u, r) for u, r in rows]

    @staticmethod
    def _member_counts(s: Session, ids: list[str]) -> dict[str, int]:
        if not ids:
            return {}
        rows = s.execute(
            select(ProjectMember.project_id, func.count())
            .where(ProjectMember.project_id.in_(ids))
            .group_by(ProjectMember.project_id)
        ).all()
        return {str(p): int(n) for p, n in rows}

    @staticmethod
    def _view(
        s: Session,
        project: Project,
        role: ProjectRole | None,
        member_count: int | None = None,
        members: list[dict[str, Any]] | None = None,
    ) -> dict[str, Any]:
        view: dict[str, Any] = {
            "id": project.id,
            "name": project.name,
            "domain": project.domain,
            "subdomain": project.subdomain,
            "personal": project.personal_of is not None,
            "your_role": role.value if role else None,
            "created_by": project.created_by,
            "created_at": project.created_at.isoformat(),
            "updated_at": project.updated_at.isoformat(),
            "member_count": member_count if members is None else len(members),
        }
        if members is not None:
            view["members"] = members
        return view

    def _audit(
        self,
        s: Session,
        principal: Principal,
        action: str,
        project_id: str,
        details: dict[str, Any],
        ip: str | None,
    ) -> None:
        self.audit.append(
            AuditRecord(
                action,
                actor_id=principal.user_id,
                actor=principal.username,
                target_type="project",
                target_id=project_id,
                source_ip=ip,
                details=details,
            ),
            s,
        )


def _member_view(user: User, role: str) -> dict[str, Any]:
    return {"user_id": user.id, "username": user.username, "role": role}


__all__ = ["PERSONAL", "ProjectService"]
