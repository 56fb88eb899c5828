"""Query-string redaction by a pattern over parameter names: one case per secret-bearing parameter."""

from __future__ import annotations

import pytest

from bastion.logs import redact_text

SECRET = "s3cr3t-VALUE-42"


@pytest.mark.parametrize(
    "name",
    [
        "access_code",
        "password",
        "passwd",
        "secret",
        "client_secret",
        "token",
        "access_token",
        "refresh_token",
        "id_token",
        "api_key",
        "apikey",
        "key",
        "X-API-Key",
        "auth",
        "credential",
        "session",
        "session_id",
        "signature",
        "sig",
        "code",
        "PASSWORD",
    ],
)
def test_secret_bearing_parameter_is_redacted(name: str) -> None:
    for query in (f"{name}={SECRET}", f"limit=5&{name}={SECRET}", f"{name}={SECRET}&limit=5"):
        out = redact_text(query)
        assert SECRET not in out and f"{name}=[redacted]" in out, (query, out)
        assert "limit=5" in out or "limit" not in query


@pytest.mark.parametrize("query", ["limit=5&cursor=abc", "status=running", "metric=accuracy&page=2"])
def test_ordinary_parameters_are_kept(query: str) -> None:
    assert redact_text(query) == query
