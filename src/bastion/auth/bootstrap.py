"""First start on an empty database: one admin and one user, each with an API key shown once."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.auth.accounts import Accounts


@dataclass(frozen=True)
class BootstrapKeys:
    admin_key: str
    user_key: str


def bootstrap_if_empty(accounts: Accounts) -> BootstrapKeys | None:
    if accounts.count_users() > 0:
        return None
    accounts.create_user("admin", "admin")
    accounts.create_user("user", "user")
    return BootstrapKeys(
        admin_key=accounts.create_key("admin", "bootstrap").plaintext,
        user_key=accounts.create_key("user", "bootstrap").plaintext,
    )
