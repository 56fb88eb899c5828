"""The client commands a person or script uses, against a real `bastion serve` over TLS with its own
CA: --ca-cert / BASTION_CA_CERT, -q for ids, full ids in tables, the account and admin groups."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from tests.conftest import ServerProcess
from tests.e2e.support import tls_server


@pytest.fixture
def tls(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> tuple[ServerProcess, Path]:
    server, ca_pem = tls_server(server_factory, tmp_path, "--no-worker")
    return server.start(), ca_pem


def run(server: ServerProcess, role: str | None, *args: str, ca: Path | None = None) -> tuple[int, str]:
    env = {"BASTION_URL": server.url}
    if role:
        env["BASTION_API_KEY"] = server.keys[role]
    if ca:
        env["BASTION_CA_CERT"] = str(ca)
    result = CliRunner().invoke(app, list(args), env=env)
    return result.exit_code, result.stdout + (result.stderr or "")


def test_client_commands_over_a_private_ca(tls: tuple[ServerProcess, Path]) -> None:
    server, ca = tls
    code, out = run(server, "user", "account", "me", "--json")
    assert code == 1 and "ca-cert" in out, "without the CA: a hint, not a traceback"
    code, out = run(server, "user", "account", "me", "--json", "--ca-cert", str(ca))
    assert code == 0 and json.loads(out)["role"] == "user"
    code, out = run(server, None, "health", "--json", ca=ca)
    assert code == 0 and json.loads(out)["status"] == "healthy"

    code, out = run(server, "user", "account", "create-key", "--name", "script", "--json", ca=ca)
    new = json.loads(out)
    assert code == 0 and new["key"].startswith("bst_")
    code, out = run(server, "user", "account", "keys", "-q", ca=ca)
    ids = out.split()
    assert code == 0 and new["id"] in ids and all(len(i) == 36 for i in ids), "-q: full ids, one a line"
    code, out = run(server, "user", "account", "keys", ca=ca)
    assert code == 0 and new["id"] in out, "tables show ids in full"
    code, out = run(server, "user", "account", "revoke-key", new["id"], "--json", ca=ca)
    assert code == 0 and json.loads(out)["revoked_at"]

    code, out = run(server, "user", "admin", "users", "--json", ca=ca)
    assert code == 1 and json.loads(out)["error"]["code"] == "insufficient_role"
    code, out = run(server, "admin", "admin", "users", "-q", ca=ca)
    assert code == 0 and len(out.split()) == 2
    code, out = run(server, "admin", "admin", "user-create", "carol", "--role", "viewer", "--json", ca=ca)
    assert code == 0 and json.loads(out)["role"] == "viewer"
    code, out = run(server, "admin", "admin", "user-update", "carol", "--disable", "--json", ca=ca)
    assert code == 0 and json.loads(out)["disabled"] is True
    code, out = run(server, "admin", "admin", "set-price", "gpu-big", "--hourly-cost", "3.5", "--json", ca=ca)
    assert code == 0 and {"cpu-small", "gpu-big"} <= set(json.loads(out))
    code, out = run(server, "admin", "admin", "audit", "--action", "user.", "--json", ca=ca)
    assert code == 0 and {e["action"] for e in json.loads(out)["data"]} >= {"user.create", "user.update"}

    code, out = run(
        server,
        "user",
        "train",
        "submit",
        "-m",
        "alzheimer_classifier",
        "-d",
        "synthetic_test_data",
        "--json",
        ca=ca,
    )
    job = json.loads(out)["job_id"]
    code, out = run(server, "user", "train", "list", "-q", ca=ca)
    assert code == 0 and out.split() == [job]
    code, out = run(server, "admin", "admin", "jobs", "-q", ca=ca)
    assert code == 0 and job in out.split()
    code, out = run(server, "admin", "admin", "cancel", job, "--json", ca=ca)
    assert code == 0 and json.loads(out)["status"] == "cancelled"
    code, out = run(server, "user", "train", "profiles", "--json", ca=ca)
    assert code == 0 and "gpu-big" in {p["profile"] for p in json.loads(out)}
