"""The configurable domain/subdomain taxonomy projects are filed under (``BASTION_PROJECT_DOMAINS``)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from bastion.errors import ConfigError, Invalid

PERSONAL = "personal"  # the reserved domain of every user's personal project
_SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")


@dataclass(frozen=True)
class Taxonomy:
    """Domains and, per domain, the allowed subdomains (empty: any slug)."""

    domains: dict[str, tuple[str, ...]]

    @classmethod
    def parse(cls, spec: str) -> Taxonomy:
        domains: dict[str, tuple[str, ...]] = {}
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            name, _, subs = item.partition(":")
            name = name.strip().lower()
            subdomains = tuple(s.strip().lower() for s in subs.split("|") if s.strip())
            if not _SLUG.match(name) or name == PERSONAL or not all(_SLUG.match(s) for s in subdomains):
                raise ConfigError(f"BASTION_PROJECT_DOMAINS: bad domain entry {item!r}")
            domains[name] = subdomains
        if not domains:
            raise ConfigError("BASTION_PROJECT_DOMAINS names no domain")
        return cls(domains)

    def check(self, domain: str, subdomain: str | None) -> tuple[str, str | None]:
        """The normalised pair, or Invalid naming what is allowed."""
        domain = domain.strip().lower()
        if domain not in self.domains:
            raise Invalid(
                f"unknown domain {domain!r}; one of: {', '.join(sorted(self.domains))}",
                code="unknown_domain",
            )
        if subdomain is None or not subdomain.strip():
            return domain, None
        sub = subdomain.strip().lower()
        allowed = self.domains[domain]
        if (allowed and sub not in allowed) or not _SLUG.match(sub):
            hint = f"one of: {', '.join(allowed)}" if allowed else "a short lowercase slug"
            raise Invalid(f"bad subdomain {sub!r} for {domain}; {hint}", code="unknown_subdomain")
        return domain, sub
