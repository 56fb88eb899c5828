"""SSO settings that would weaken verification stop the start with a clear ConfigError."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.context import build_context
from bastion.errors import ConfigError
from bastion.wiring import install_services
from tests.conftest import make_settings

GOOD: dict[str, Any] = {
    "oidc_issuer": "https://idp.example",
    "oidc_client_id": "bastion",
    "oidc_client_secret": "s" * 32,
    "oidc_redirect_uri": "https://bastion.example/api/v1/auth/sso/callback",
}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"oidc_algorithms": "RS256,none"}, "not allowed: none"),
        ({"oidc_algorithms": "HS256"}, "not allowed: HS256"),
        ({"oidc_client_secret": None}, "BASTION_OIDC_CLIENT_SECRET"),
        ({"oidc_redirect_uri": None}, "BASTION_OIDC_REDIRECT_URI"),
        ({"oidc_role_map": "staff=superuser"}, "unknown roles"),
    ],
)
def test_unsafe_or_incomplete_sso_settings_refuse_to_start(
    tmp_path: Path, changes: dict[str, Any], message: str
) -> None:
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'b.db'}", **(GOOD | changes))
    with pytest.raises(ConfigError, match=message):
        install_services(build_context(settings))


def test_sso_is_built_lazily_without_contacting_the_provider(tmp_path: Path) -> None:
    ctx = install_services(build_context(make_settings(tmp_path, f"sqlite:///{tmp_path / 'b.db'}", **GOOD)))
    try:
        assert ctx.services.sso is not None
        assert ctx.services.sso.provider.config.algorithms == ("RS256", "ES256", "PS256")
    finally:
        ctx.close()
