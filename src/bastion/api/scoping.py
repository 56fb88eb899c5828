"""The ``?project=`` parameter every resource route shares (see bastion.projects.policy)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

ProjectQuery = Annotated[
    str | None,
    Query(
        max_length=36,
        description="Project id: on a list, only this project's objects; on a create, the project that "
        "will own the new object. Default: all your projects (lists), your personal project (creates).",
    ),
]
