"""Roles and what they may do. Admin ⊃ user ⊃ viewer."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    ADMIN = "admin"
    USER = "user"
    VIEWER = "viewer"


_RANK = {Role.VIEWER: 0, Role.USER: 1, Role.ADMIN: 2}


def at_least(role: str, minimum: Role) -> bool:
    try:
        return _RANK[Role(role)] >= _RANK[minimum]
    except ValueError:
        return False
