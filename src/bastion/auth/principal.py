"""Who is calling: the result of authentication, handed to every route."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bastion.auth.roles import Role, at_least


@dataclass(frozen=True)
class Principal:
    user_id: str
    username: str
    role: str
    via: Literal["api_key", "jwt"]
    key_id: str | None = None
    session_id: str | None = None

    def has(self, minimum: Role) -> bool:
        return at_least(self.role, minimum)

    @property
    def is_admin(self) -> bool:
        return self.role == Role.ADMIN
