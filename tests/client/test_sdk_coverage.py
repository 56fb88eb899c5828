"""Every operation in /openapi.json has an SDK method, or a stated reason why a person or script
would not call it. A new route without a client fails here."""

from __future__ import annotations

from fastapi.testclient import TestClient

import bastion.client  # noqa: F401 - importing the SDK registers its operations
from bastion.client.transport import OPERATIONS

SITE_RUNTIME = (
    "site-internal: spoken by the site runtime (bastion.client.site.SiteClient, `bastion fl client`) "
    "with the site's bsp_ token, not by people or scripts"
)
# (METHOD, path) -> why no SDK method.
NO_SDK_METHOD: dict[tuple[str, str], str] = {
    ("POST", "/api/v1/federations/{federation_id}/site/register"): SITE_RUNTIME,
    ("GET", "/api/v1/federations/{federation_id}/site/info"): SITE_RUNTIME,
    ("GET", "/api/v1/federations/{federation_id}/site/secagg"): SITE_RUNTIME,
    ("POST", "/api/v1/federations/{federation_id}/site/secagg/advertise"): SITE_RUNTIME,
    ("POST", "/api/v1/federations/{federation_id}/site/secagg/shares"): SITE_RUNTIME,
    ("POST", "/api/v1/federations/{federation_id}/site/secagg/masked"): SITE_RUNTIME,
    ("POST", "/api/v1/federations/{federation_id}/site/secagg/unmask"): SITE_RUNTIME,
    ("GET", "/api/v1/federations/{federation_id}/site/model"): SITE_RUNTIME,
    ("POST", "/api/v1/federations/{federation_id}/site/update"): SITE_RUNTIME,
    ("GET", "/api/v1/auth/sso/start"): 'browser-only: the dashboard\'s "Sign in with SSO" link, a 303 '
    "redirect to the identity provider; programs start with sso_cli_start / login_sso or sso_link",
    ("GET", "/api/v1/auth/sso/callback"): "server-internal: the identity provider sends the browser "
    "here after sign-in; the SDK gets its tokens from sso_cli_poll or sso_exchange",
}


def _operations(client: TestClient) -> set[tuple[str, str]]:
    doc = client.get("/openapi.json").json()
    return {
        (method.upper(), path)
        for path, item in doc["paths"].items()
        for method in item
        if method in {"get", "post", "put", "patch", "delete"}
    }


def test_every_operation_has_an_sdk_method_or_a_reason(client: TestClient) -> None:
    operations = _operations(client)
    missing = sorted(op for op in operations if op not in OPERATIONS and op not in NO_SDK_METHOD)
    assert not missing, f"operations with neither an SDK method nor a reason: {missing}"


def test_the_record_names_only_real_operations(client: TestClient) -> None:
    operations = _operations(client)
    stale = sorted(set(OPERATIONS) - operations) + sorted(set(NO_SDK_METHOD) - operations)
    assert not stale, f"SDK methods or reasons for operations the server does not have: {stale}"
    assert set(OPERATIONS).isdisjoint(NO_SDK_METHOD)
