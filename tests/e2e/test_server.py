"""A real `bastion serve` process, spoken to over HTTP(S)."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.e2e.support import tls_server

pytestmark = pytest.mark.e2e


def test_first_start_prints_keys_once_and_they_work(
    server_factory: Callable[..., ServerProcess], db_url: str
) -> None:
    server = server_factory(db_url=db_url).start()
    assert set(server.keys) == {"admin", "user"}
    admin, user = server.keys["admin"], server.keys["user"]
    health = httpx.get(server.url + "/api/v1/health").json()
    assert health["status"] == "healthy"
    me = httpx.get(server.url + "/api/v1/auth/me", headers={"X-API-Key": user}).json()
    assert me["username"] == "user" and me["role"] == "user"
    assert httpx.get(server.url + "/api/v1/admin/users", headers={"X-API-Key": admin}).status_code == 200
    assert httpx.get(server.url + "/api/v1/admin/users", headers={"X-API-Key": user}).status_code == 403

    # ?api_key= works but never reaches the logs
    assert httpx.get(server.url + "/api/v1/auth/me", params={"api_key": user}).status_code == 200
    assert server.stop() in (0, -signal.SIGTERM)
    log = server.text()
    assert "Application shutdown complete" in log, "SIGTERM must shut down gracefully"
    assert user not in log and admin not in log, "without a terminal the keys never reach the output"
    keys_file = server.data_dir / ".bastion" / "bootstrap-keys.txt"
    assert str(keys_file.resolve()) in log, "only the file's path is printed"
    assert keys_file.stat().st_mode & 0o777 == 0o600
    assert "api_key=[redacted]" in log

    # a restart on the same database does not print (or create) keys again
    again = ServerProcess(server.data_dir, server.env, []).start()
    try:
        assert again.keys == {}
        assert httpx.get(again.url + "/api/v1/auth/me", headers={"X-API-Key": user}).status_code == 200
    finally:
        again.stop()


def test_tls_end_to_end(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> None:
    server, _ca_pem = tls_server(server_factory, tmp_path)
    trust = server.verify
    server.start()
    r = httpx.get(server.url + "/api/v1/auth/me", headers={"X-API-Key": server.keys["user"]}, verify=trust)
    assert r.status_code == 200
    assert r.headers["strict-transport-security"].startswith("max-age=")
    with pytest.raises(httpx.ConnectError):
        httpx.get(server.url + "/api/v1/health", verify=True)  # not trusted by the system store
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"http://127.0.0.1:{server.port}/api/v1/health", timeout=3)


def test_refuses_public_bind_without_secrets(tmp_path: Path) -> None:
    env = {"BASTION_DATA_DIR": str(tmp_path / "d"), "PATH": "/usr/bin:/bin"}
    proc = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert "BASTION_MASTER_KEY is missing" in proc.stderr + proc.stdout
    assert not (tmp_path / "d" / "secrets").exists(), "nothing may be generated for a public server"


def test_refuses_weak_secret_on_public_bind(tmp_path: Path) -> None:
    env = {
        "BASTION_DATA_DIR": str(tmp_path / "d"),
        "PATH": "/usr/bin:/bin",
        "BASTION_MASTER_KEY": "short",
        "BASTION_JWT_SECRET": "x" * 40,
    }
    proc = subprocess.run(
        [sys.executable, "-m", "bastion.cli.main", "serve", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2 and "shorter than 32" in proc.stderr + proc.stdout


def test_loopback_dev_start_generates_private_secrets(server_factory: Callable[..., ServerProcess]) -> None:
    server = server_factory(BASTION_MASTER_KEY="", BASTION_JWT_SECRET="")
    del server.env["BASTION_MASTER_KEY"], server.env["BASTION_JWT_SECRET"]
    server.start()
    secrets_dir = server.data_dir / ".bastion" / "secrets"
    assert (secrets_dir.stat().st_mode & 0o777) == 0o700
    for name in ("master_key.txt", "jwt_secret.txt"):
        assert ((secrets_dir / name).stat().st_mode & 0o777) == 0o600
    assert "generated_dev_secret" in server.text()
    assert server.stop(signal.SIGINT) in (0, -signal.SIGINT)
    assert "Application shutdown complete" in server.text()


@pytest.mark.parametrize(("trusted", "seen"), [("", "127.0.0.1"), ("127.0.0.1", "203.0.113.9")])
def test_forwarded_for_is_believed_only_from_a_trusted_proxy(
    server_factory: Callable[..., ServerProcess], trusted: str, seen: str
) -> None:
    server = server_factory(BASTION_TRUSTED_PROXIES=trusted).start()
    r = httpx.post(
        f"{server.url}/api/v1/auth/login",
        json={"username": "nobody", "password": "wrong-password"},
        headers={"X-Forwarded-For": "203.0.113.9"},
    )
    assert r.status_code == 401
    events = httpx.get(
        f"{server.url}/api/v1/admin/audit", headers={"X-API-Key": server.keys["admin"]}, params={"limit": 50}
    ).json()["data"]
    sources = {e["source_ip"] for e in events if e["outcome"] == "denied"}
    assert sources == {seen}, events
