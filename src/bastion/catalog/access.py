"""Access codes on artifacts: a wrong code is a 403, audited, and locks out like a password."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.lockout import LockoutPolicy
from bastion.auth.principal import Principal
from bastion.errors import Forbidden
from bastion.store import Database

T = TypeVar("T")


class AccessCodeGuard:
    def __init__(self, db: Database, audit: AuditLog, lockout: LockoutPolicy) -> None:
        self.db = db
        self.audit = audit
        self.lockout = lockout

    def run(self, principal: Principal, target: str, attempt: Callable[[], T], *, has_code: bool) -> T:
        """Run ``attempt`` (which opens the artifact) unless this caller is locked out of ``target``."""
        subject = f"code:{target}:{principal.user_id}"
        with self.db.session() as s:
            self.lockout.check(s, subject)
        try:
            result = attempt()
        except Forbidden as exc:
            with self.db.session() as s:
                self.lockout.record_failure(s, subject)
                self.audit.append(
                    AuditRecord(
                        "vault.access_code",
                        "denied",
                        principal.user_id,
                        principal.username,
                        "artifact",
                        target[:64],
                        details={"reason": exc.code, "code_given": has_code},
                    ),
                    s,
                )
            raise
        if has_code:
            with self.db.session() as s:
                self.lockout.clear(s, subject)
        return result
