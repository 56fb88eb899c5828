"""The one authorization policy for everything a project owns: platform admin ⊃ project role ⊃ nothing.

Every route that reads, changes or lists a dataset, model, job, fine-tuning job or federation asks
:func:`authorize` (one object) or :class:`ScopedList` (every list). A caller who is not a member of the
object's project learns nothing (404, as for an object that does not exist); a member whose role is
too small for the action gets 403. The creator stays recorded as ``owner_id`` but grants nothing by
itself: a creator removed from the project loses access to what they made there.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from enum import StrEnum
from typing import Any, TypeVar

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    Connection,
    Row,
    Select,
    String,
    bindparam,
    exists,
    or_,
    select,
)
from sqlalchemy.orm import InstrumentedAttribute, Session

from bastion.auth.principal import Principal
from bastion.errors import Forbidden, Invalid, NotFound
from bastion.projects.personal import personal_project_id
from bastion.store.paging import Keyset
from bastion.store.tables import Project, ProjectMember

T = TypeVar("T", bound=Any)


class ProjectRole(StrEnum):
    OWNER = "owner"
    MAINTAINER = "maintainer"
    MEMBER = "member"
    VIEWER = "viewer"


class Action(StrEnum):
    READ = "read"  # see, list, download
    WRITE = "write"  # create, change, cancel, delete
    MANAGE = "manage"  # rename the project, add or change members
    OWN = "own"  # make or remove owners


RANK = {ProjectRole.VIEWER: 0, ProjectRole.MEMBER: 1, ProjectRole.MAINTAINER: 2, ProjectRole.OWNER: 3}
NEEDS = {
    Action.READ: ProjectRole.VIEWER,
    Action.WRITE: ProjectRole.MEMBER,
    Action.MANAGE: ProjectRole.MAINTAINER,
    Action.OWN: ProjectRole.OWNER,
}
PROJECT_NOT_FOUND = "project not found"

Caller = Principal | str  # a user id stands for a job acting on its owner's behalf (never an admin)


def _who(caller: Caller) -> tuple[str, bool]:
    if isinstance(caller, str):
        return caller, False
    return caller.user_id, caller.is_admin


def role_in(s: Session | Connection, user_id: str, project_id: str) -> ProjectRole | None:
    role = s.scalar(
        select(ProjectMember.role).where(
            ProjectMember.project_id == project_id, ProjectMember.user_id == user_id
        )
    )
    return ProjectRole(role) if role else None


def authorize(
    s: Session | Connection,
    caller: Caller,
    project_id: str | None,
    action: Action,
    missing: NotFound,
    *,
    owner_id: str | None = None,
) -> ProjectRole | None:
    """Allow ``action`` on an object of ``project_id`` or raise ``missing`` (not a member) or Forbidden.

    Returns the caller's role (None for a platform admin who is no member). ``owner_id`` covers a row
    without a project (inserted outside the ORM): only its creator may touch it.
    """
    user_id, admin = _who(caller)
    if admin:
        return role_in(s, user_id, project_id) if project_id else None
    if project_id is None:
        if owner_id is not None and owner_id == user_id:
            return ProjectRole.OWNER
        raise missing
    role = role_in(s, user_id, project_id)
    if role is None:
        raise missing
    if RANK[role] < RANK[NEEDS[action]]:
        raise Forbidden(
            f"a project {role.value} cannot {action.value} here; ask a project maintainer",
            code="project_role_too_low",
            role=role.value,
            needed=NEEDS[action].value,
        )
    return role


class ScopedList:
    """A list query narrowed by this policy, with the membership test folded into it: every
    project-scoped list (datasets, models, training and fine-tuning jobs, federations) is one.

    Built once per resource: the first page of each shape (all my projects, one project as a
    member, one project as an admin; times which optional ``filters`` are set) is a prepared
    statement with bound parameters, so a hot list is one indexed query, no role query and no
    statement building. Filter values are bound parameters (``filter_<name>``), never text; the
    shapes are a small cache, at most 4 * 2**len(filters). ``widen`` adds rows outside the caller's
    projects to the all-my-projects shape (a federation's invited guests). Reading needs the
    lowest role, so being a member is the whole test; only an empty page asks again, to answer a
    stranger (or an unknown project) 404 rather than an empty list.
    """

    def __init__(
        self,
        stmt: Select[Any],
        column: InstrumentedAttribute[Any],
        keyset: Keyset,
        *,
        filters: Mapping[str, InstrumentedAttribute[Any]] | None = None,
        widen: Callable[[BindParameter[str]], ColumnElement[bool]] | None = None,
    ) -> None:
        self.stmt, self.column, self.keyset = stmt, column, keyset
        self.filters = dict(filters or {})
        self.widen = widen
        self._first: dict[_Shape, Select[Any]] = {}
        for one_project, admin in _SHAPES:  # the unfiltered shapes are the hot ones: built now
            self._prepared((one_project, admin, frozenset()))

    def _prepared(self, shape: _Shape) -> Select[Any]:
        stmt = self._first.get(shape)
        if stmt is None:  # a race builds the same statement twice: harmless
            stmt = self._first[shape] = self.keyset.first(self._narrow(shape))
        return stmt

    def _narrow(self, shape: _Shape) -> Select[Any]:
        one_project, admin, present = shape
        user = bindparam("scope_user", type_=String)
        stmt = self.stmt
        for name in sorted(present):
            stmt = stmt.where(self.filters[name] == bindparam(f"filter_{name}"))
        member = select(ProjectMember.project_id).where(ProjectMember.user_id == user)
        if not one_project:
            mine = self.column.in_(member)
            return stmt.where(or_(mine, self.widen(user)) if self.widen is not None else mine)
        stmt = stmt.where(self.column == bindparam("scope_project"))
        if admin:  # an admin reads every project; existence is asked only for an empty page
            return stmt
        return stmt.where(exists(member.where(ProjectMember.project_id == bindparam("scope_project"))))

    def rows(
        self,
        conn: Session | Connection,
        caller: Principal,
        project: str | None,
        cursor: str | None,
        limit: int,
        **filters: Any,
    ) -> Sequence[Row[Any]]:
        """One page (and one row more, for the keyset's next cursor) of what the caller may read;
        ``filters`` (by name, None for unset) narrow it further."""
        if project is not None and len(project) > 36:
            raise NotFound(PROJECT_NOT_FOUND, code="project_not_found")
        unknown = set(filters) - set(self.filters)
        if unknown:
            raise TypeError(f"no such list filter: {', '.join(sorted(unknown))}")
        present = frozenset(name for name, value in filters.items() if value is not None)
        shape = (project is not None, caller.is_admin, present)
        params = {"scope_user": caller.user_id, "scope_project": project, "page_limit": limit + 1}
        params.update({f"filter_{name}": filters[name] for name in present})
        try:
            stmt = self.keyset.apply(self._narrow(shape), cursor, limit) if cursor else self._prepared(shape)
        except Invalid:  # a stranger learns 404 before anything about the cursor, as ever
            if project is not None:
                _check_project(conn, caller, project, Action.READ)
            raise
        rows = conn.execute(stmt, params).all()
        if not rows and project is not None:
            _check_project(conn, caller, project, Action.READ)
        return rows


_Shape = tuple[bool, bool, frozenset[str]]
_SHAPES = [(False, False), (False, True), (True, False), (True, True)]


def target(s: Session, caller: Caller, project: str | None) -> str:
    """The project a new object goes into: the named one (the caller must be able to write there) or
    the caller's personal project."""
    user_id, _ = _who(caller)
    if project is None:
        return personal_project_id(s.connection(), user_id)
    _check_project(s, caller, project, Action.WRITE)
    return project


def _check_project(s: Session | Connection, caller: Caller, project_id: str, action: Action) -> None:
    """``authorize`` for a project named in a request. A member's role row answers existence too
    (none: 404), so only an admin, who needs no membership, costs a separate existence query."""
    missing = NotFound(PROJECT_NOT_FOUND, code="project_not_found")
    if len(project_id) > 36:
        raise missing
    _user_id, admin = _who(caller)
    if admin and s.scalar(select(Project.id).where(Project.id == project_id)) is None:
        raise missing
    authorize(s, caller, project_id, action, missing)
