"""Access codes on artifacts: a wrong code is a 403, audited, and locks out like a password."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, TypeVar

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.lockout import LockoutPolicy, locked_error
from bastion.auth.principal import Principal
from bastion.errors import Forbidden
from bastion.store import Database

if TYPE_CHECKING:
    from bastion.vault.store import VaultStore

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
            if not has_code:
                self.lockout.check(s, subject)
            else:
                # A guess is counted before it is checked (the row lock serialises parallel ones), so
                # at most max_failures codes are ever tried per window, however many arrive at once.
                refused, _ = self.lockout.reserve(s, subject)
                if refused is not None:
                    s.rollback()
                    raise locked_error(refused)
        try:
            result = attempt()
        except Forbidden as exc:
            with self.db.session() as s:
                if not has_code:  # a missing code is refused too (a guess was counted above)
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

    def change(
        self,
        principal: Principal,
        vault: VaultStore,
        target_type: str,
        target_id: str,
        artifacts: Sequence[str],
        *,
        current: str | None,
        new: str | None,
    ) -> None:
        """Set, change or remove the code on every stored version of each artifact of one object.

        Every version is first opened with ``current`` (a wrong code counts towards the lockout and is
        audited like any other), then recoded; one audit record names what happened, never a code.
        """
        from bastion.crypto.kdf import normalize_code

        if new is not None:
            normalize_code(new)  # Invalid (invalid_access_code) before any slot is touched
        versions = [(a, v) for a in artifacts for v in vault.versions(a)]
        for artifact, version in versions:
            self.run(
                principal,
                artifact,
                functools.partial(vault.set_access_code, artifact, version, current=current, new=new),
                has_code=current is not None,
            )
        with self.db.session() as s:
            self.audit.append(
                AuditRecord(
                    f"{target_type}.access_code",
                    "success",
                    principal.user_id,
                    principal.username,
                    target_type,
                    target_id,
                    details={
                        "change": "removed" if new is None else ("changed" if current else "set"),
                        "versions": len(versions),
                    },
                ),
                s,
            )
