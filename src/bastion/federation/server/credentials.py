"""Participant credentials: the API-key format with a ``bsp_`` prefix, stored only as a SHA-256 hash.

Reusing the API-key body and checksum (190 random bits, CRC32 check) means typos and random probes
are refused without a database query, and secret scanners can learn one more prefix. The distinct
prefix keeps a site's credential from ever being mistaken for a user's key: it opens only the
``/site`` routes of the one federation it was issued for.
"""

from __future__ import annotations

from bastion.auth import apikeys

PREFIX = "bsp_"


def generate() -> str:
    return PREFIX + apikeys.generate()[len(apikeys.PREFIX) :]


def well_formed(token: str) -> bool:
    return token.startswith(PREFIX) and apikeys.well_formed(apikeys.PREFIX + token[len(PREFIX) :])


def digest(token: str) -> str:
    return apikeys.digest(token)


def display_prefix(token: str) -> str:
    return token[: len(PREFIX) + 6]
