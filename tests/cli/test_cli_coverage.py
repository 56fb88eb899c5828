"""Every operation a person uses has a CLI command (or a stated reason), and every command named here
exists. A new route without a command fails here, next to the SDK's own check."""

from __future__ import annotations

import typer
from fastapi.testclient import TestClient
from typer.main import get_command

from bastion.cli.main import app
from tests.client.test_sdk_coverage import NO_SDK_METHOD, _operations

# (METHOD, path) -> the command that calls it.
CLI: dict[tuple[str, str], str] = {
    ("GET", "/api/v1/health"): "health",
    ("POST", "/api/v1/auth/login"): "account login",
    ("GET", "/api/v1/auth/me"): "account me",
    ("GET", "/api/v1/auth/keys"): "account keys",
    ("POST", "/api/v1/auth/keys"): "account create-key",
    ("DELETE", "/api/v1/auth/keys/{key_id}"): "account revoke-key",
    ("GET", "/api/v1/admin/users"): "admin users",
    ("POST", "/api/v1/admin/users"): "admin user-create",
    ("PATCH", "/api/v1/admin/users/{user_id}"): "admin user-update",
    ("POST", "/api/v1/admin/users/{user_id}/keys"): "admin user-key",
    ("GET", "/api/v1/admin/audit"): "admin audit",
    ("GET", "/api/v1/admin/training/status"): "admin training-status",
    ("GET", "/api/v1/admin/training/jobs"): "admin jobs",
    ("POST", "/api/v1/admin/training/cancel/{job_id}"): "admin cancel",
    ("GET", "/api/v1/admin/training/prices"): "admin prices",
    ("PATCH", "/api/v1/admin/training/prices"): "admin set-price",
    ("GET", "/api/v1/training/examples"): "train examples",
    ("GET", "/api/v1/training/model-types"): "train types",
    ("POST", "/api/v1/training/submit"): "train submit",
    ("GET", "/api/v1/training/status/{job_id}"): "train status",
    ("GET", "/api/v1/training/jobs"): "train list",
    ("POST", "/api/v1/training/cancel/{job_id}"): "train cancel",
    ("GET", "/api/v1/training/jobs/{job_id}/logs"): "train logs",
    ("GET", "/api/v1/training/jobs/{job_id}/events"): "train submit",  # --watch follows the stream
    ("GET", "/api/v1/training/model/{job_id}"): "train download",
    ("GET", "/api/v1/training/cost-estimate"): "train estimate",
    ("GET", "/api/v1/training/resource-profiles"): "train profiles",
    ("GET", "/api/v1/training/download-key"): "train download-key",
    ("PUT", "/api/v1/training/download-key"): "train download-key",
    ("DELETE", "/api/v1/training/download-key"): "train download-key",
    ("POST", "/api/v1/datasets"): "data upload",
    ("GET", "/api/v1/datasets"): "data list",
    ("GET", "/api/v1/datasets/{dataset_id}"): "data show",
    ("DELETE", "/api/v1/datasets/{dataset_id}"): "data delete",
    ("GET", "/api/v1/models"): "models list",
    ("GET", "/api/v1/models/{model_id}"): "models show",
    ("GET", "/api/v1/models/{model_id}/best"): "models best",
    ("POST", "/api/v1/models/{model_id}/predict"): "models predict",
    ("POST", "/api/v1/models/{model_id}/quantize"): "models quantize",
    ("GET", "/api/v1/projects/domains"): "projects domains",
    ("POST", "/api/v1/projects"): "projects create",
    ("GET", "/api/v1/projects"): "projects list",
    ("GET", "/api/v1/projects/{project_id}"): "projects show",
    ("PATCH", "/api/v1/projects/{project_id}"): "projects update",
    ("POST", "/api/v1/projects/{project_id}/members"): "projects add-member",
    ("PATCH", "/api/v1/projects/{project_id}/members/{user}"): "projects set-role",
    ("DELETE", "/api/v1/projects/{project_id}/members/{user}"): "projects remove-member",
    ("GET", "/api/v1/federations/{federation_id}/sharing"): "fl sharing",
    ("PUT", "/api/v1/federations/{federation_id}/sharing"): "fl sharing",
    ("POST", "/api/v1/federations/{federation_id}/guests"): "fl invite",
    ("DELETE", "/api/v1/federations/{federation_id}/guests/{user}"): "fl uninvite",
    ("GET", "/api/v1/projects/{project_id}/analytics/contributions"): "projects analytics",
    ("GET", "/api/v1/projects/{project_id}/analytics/models"): "projects analytics",
    ("GET", "/api/v1/projects/{project_id}/analytics/training"): "projects analytics",
    ("GET", "/api/v1/projects/{project_id}/analytics/resources"): "projects analytics",
    ("GET", "/api/v1/projects/{project_id}/analytics/federations"): "projects analytics",
    ("POST", "/api/v1/federations"): "fl create",
    ("GET", "/api/v1/federations"): "fl list",
    ("GET", "/api/v1/federations/{federation_id}"): "fl show",
    ("GET", "/api/v1/federations/{federation_id}/status"): "fl status",
    ("GET", "/api/v1/federations/{federation_id}/rounds"): "fl rounds",
    ("POST", "/api/v1/federations/{federation_id}/participants"): "fl enroll",
    ("GET", "/api/v1/federations/{federation_id}/participants"): "fl participants",
    ("DELETE", "/api/v1/federations/{federation_id}/participants/{participant_id}"): "fl remove",
    ("GET", "/api/v1/federations/{federation_id}/model"): "fl model-download",
    ("POST", "/api/v1/federations/{federation_id}/model"): "fl model-upload",
    ("DELETE", "/api/v1/federations/{federation_id}"): "fl delete",
    ("PUT", "/api/v1/datasets/{dataset_id}/access-code"): "data access-code",
    ("DELETE", "/api/v1/datasets/{dataset_id}/access-code"): "data access-code",  # --remove
    ("GET", "/api/v1/datasets/{dataset_id}/preview"): "data show",  # --preview
    ("PUT", "/api/v1/models/{model_id}/access-code"): "models access-code",
    ("DELETE", "/api/v1/models/{model_id}/access-code"): "models access-code",  # --remove
    ("GET", "/api/v1/models/{model_id}/download"): "models download",
    ("GET", "/api/v1/models/{model_id}/encrypted/spec"): "models predict",  # --encrypted
    ("POST", "/api/v1/models/{model_id}/predict/encrypted"): "models predict",  # --encrypted
    ("POST", "/api/v1/models/{model_id}/generate"): "models generate",
    ("POST", "/api/v1/auth/signup"): "signup",
    ("POST", "/api/v1/auth/sso/cli"): "login",  # --sso
    ("POST", "/api/v1/auth/sso/cli/poll"): "login",  # --sso
    ("POST", "/api/v1/auth/sso/link"): "sso-link",
    ("POST", "/api/v1/llm/base_models"): "llm register",
    ("GET", "/api/v1/llm/base_models"): "llm list",
    ("POST", "/api/v1/fine_tuning/files"): "ft upload",
    ("POST", "/api/v1/fine_tuning/jobs/estimate"): "ft create",  # --estimate
    ("POST", "/api/v1/fine_tuning/jobs"): "ft create",
    ("GET", "/api/v1/fine_tuning/jobs"): "ft list",
    ("GET", "/api/v1/fine_tuning/jobs/{job_id}"): "ft show",
    ("POST", "/api/v1/fine_tuning/jobs/{job_id}/cancel"): "ft cancel",
    ("GET", "/api/v1/fine_tuning/jobs/{job_id}/events"): "ft events",
    ("GET", "/api/v1/fine_tuning/jobs/{job_id}/checkpoints"): "ft checkpoints",
    ("GET", "/api/v1/fine_tuning/jobs/{job_id}/merged_model"): "ft download",  # --merged
}
# Admin routes whose CLI counterpart runs on the server's machine against the database, not over HTTP.
SERVER_SIDE = (
    "an admin on the server's machine uses the server-side `bastion users {}` (no HTTP); "
    "remote admins use the SDK"
)
# (METHOD, path) -> why no command of its own.
NO_COMMAND: dict[tuple[str, str], str] = {
    **NO_SDK_METHOD,
    ("POST", "/api/v1/auth/refresh"): "token rotation is for long-lived programs (SDK client.auth.refresh)",
    ("POST", "/api/v1/auth/logout"): "ends a token login session; the CLI authenticates with API keys",
    ("GET", "/api/v1/auth/keys/{key_id}"): "one key's row: `account keys` lists them all",
    ("GET", "/api/v1/admin/users/{user_id}"): "one user's row: `admin users` lists them all",
    ("PUT", "/api/v1/admin/training/prices"): "replacing the whole table is for scripts (SDK); "
    "`admin set-price` changes one profile",
    ("GET", "/api/v1/federations/{federation_id}/participants/{participant_id}"): "one site's row: "
    "`fl participants` lists them all",
    ("GET", "/api/v1/admin/signups"): SERVER_SIDE.format("signups"),
    ("POST", "/api/v1/admin/signups/{ref}/approve"): SERVER_SIDE.format("approve"),
    ("DELETE", "/api/v1/admin/signups/{ref}"): SERVER_SIDE.format("reject"),
    ("POST", "/api/v1/admin/lockouts/unlock"): SERVER_SIDE.format("unlock"),
    ("GET", "/api/v1/auth/sso"): "the dashboard's check whether to show an SSO button; "
    "`login --sso` just tries",
    ("POST", "/api/v1/auth/sso/exchange"): "the dashboard's browser code for tokens; the CLI signs in "
    "device-style with `login --sso`",
    ("GET", "/api/v1/llm/base_models/{name}"): "one base model's row: `llm list` lists them all",
    ("GET", "/api/v1/fine_tuning/files/{file_id}"): "one file's record: `ft upload` prints it "
    "(SDK client.fine_tuning.files.get)",
    ("POST", "/api/v1/models/{model_id}/perplexity"): "held-out perplexity is for evaluation scripts "
    "(SDK client.fine_tuning.perplexity); `ft checkpoints` shows each checkpoint's eval perplexity",
}


def _commands() -> set[str]:
    root = get_command(app)
    names: set[str] = set()
    for name, cmd in root.commands.items():  # type: ignore[attr-defined]
        sub = getattr(cmd, "commands", None)
        if sub:
            names |= {f"{name} {child}" for child in sub}
        else:
            names.add(name)
    return names


def test_every_operation_has_a_command_or_a_reason(client: TestClient) -> None:
    operations = _operations(client)
    missing = sorted(op for op in operations if op not in CLI and op not in NO_COMMAND)
    assert not missing, f"operations with neither a CLI command nor a reason: {missing}"
    stale = sorted((set(CLI) | set(NO_COMMAND)) - operations)
    assert not stale, f"commands or reasons for operations the server does not have: {stale}"


def test_every_named_command_exists() -> None:
    commands = _commands()
    assert isinstance(app, typer.Typer)
    unknown = sorted({c for c in CLI.values() if c not in commands})
    assert not unknown, f"no such command: {unknown}"
