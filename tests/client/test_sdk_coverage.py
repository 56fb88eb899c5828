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


def _unmapped(operations: set[tuple[str, str]], record: dict[tuple[str, str], str]) -> list[tuple[str, str]]:
    return sorted(op for op in operations if op not in record and op not in NO_SDK_METHOD)


def test_every_operation_has_an_sdk_method_or_a_reason(client: TestClient) -> None:
    missing = _unmapped(_operations(client), OPERATIONS)
    assert not missing, f"operations with neither an SDK method nor a reason: {missing}"


def test_an_operation_without_a_method_is_caught(client: TestClient) -> None:
    """The check above is not vacuous: drop one method from the record and it is reported."""
    dropped = ("POST", "/api/v1/fine_tuning/jobs")
    assert OPERATIONS[dropped] == "FineTuning.create"
    record = {op: name for op, name in OPERATIONS.items() if op != dropped}
    assert _unmapped(_operations(client), record) == [dropped]


def test_fine_tuning_and_llm_calls_live_in_the_fine_tuning_namespace() -> None:
    """No flat client methods are left for them (the mixin is gone)."""
    prefixes = ("/api/v1/fine_tuning/", "/api/v1/llm/")
    llm = {("POST", "/api/v1/models/{model_id}/generate"), ("POST", "/api/v1/models/{model_id}/perplexity")}
    owners = {
        name.split(".")[0] for op, name in OPERATIONS.items() if op[1].startswith(prefixes) or op in llm
    }
    assert owners == {"FineTuning", "Files", "BaseModels"}


def test_the_record_names_only_real_operations(client: TestClient) -> None:
    operations = _operations(client)
    stale = sorted(set(OPERATIONS) - operations) + sorted(set(NO_SDK_METHOD) - operations)
    assert not stale, f"SDK methods or reasons for operations the server does not have: {stale}"
    assert set(OPERATIONS).isdisjoint(NO_SDK_METHOD)
