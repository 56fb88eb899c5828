"""What the end-to-end tests share: the CLI as a user runs it, waiting with a deadline, site processes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from typer.testing import CliRunner

from bastion.cli.main import app
from bastion.client.site.state import SiteState
from bastion.crypto import signing
from bastion.federation.sitedata import load_site_data, parse_partition
from tests.conftest import ServerProcess


def cli(server: ServerProcess, *args: str) -> Any:
    env = {"BASTION_URL": server.url, "BASTION_API_KEY": server.keys["user"]}
    result = CliRunner().invoke(app, ["fl", *args, "--json"], env=env)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def wait_for(what: str, check: Callable[[], Any], timeout: float = 180, poll: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out waiting for {what}")


class Sites:
    """`bastion fl client` subprocesses, each with its own state directory and --json log file."""

    def __init__(
        self, tmp: Path, source: str = "builtin:digits", model: dict[str, Any] | None = None
    ) -> None:
        self.tmp, self.source = tmp, source
        self.model = model or {"type": "tabular_mlp", "in_features": 64, "num_classes": 10}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}

    def data(self, part: str) -> Path:
        """This site's share of the data as an .npz file (the sites then need no scikit-learn)."""
        path = self.tmp / f"{self.source.split(':')[-1]}-{part.replace('/', '-of-')}.npz"
        if not path.exists():
            share = load_site_data(
                self.source, self.model, {"local_validation_fraction": 0.0}, partition=parse_partition(part)
            )
            np.savez(path, X=share.X_train, y=share.y_train)
        return path

    def state_dir(self, name: str) -> Path:
        return self.tmp / f"state-{name}"

    def register(self, server: ServerProcess, fid: str, token: str, name: str) -> None:
        """Register the site's own key (the one in its state directory) ahead of starting it.

        The site's `join` repeats this idempotently; registering every site first makes each of them
        a member of round 1's session, whichever process gets through its start-up first.
        """
        key = SiteState(self.state_dir(name)).signing_key()
        r = httpx.post(
            f"{server.url}/api/v1/federations/{fid}/site/register",
            headers={"Authorization": f"Bearer {token}"},
            json={"signing_public_key": signing.encode_public_key(key)},
        )
        assert r.status_code == 200, r.text

    def start(
        self, server: ServerProcess, fid: str, name: str, token: str, part: str, *extra: str, via: str = ""
    ) -> None:
        """Start a site process; ``via`` is another address for the server (e.g. an ``UpdateGate``)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        env.update(BASTION_FL_TOKEN=token, PYTHONUNBUFFERED="1")
        cmd = [
            sys.executable,
            "-m",
            "bastion.cli.main",
            "fl",
            "client",
            "--server",
            via or server.url,
            "--federation",
            fid,
            "--data",
            str(self.data(part)),
            "--state-dir",
            str(self.state_dir(name)),
            "--threads",
            "1",
            "--poll-timeout",
            "2",
            "--json",
            *extra,
        ]
        log = (self.tmp / f"{name}.log").open("wb")
        self.procs[name] = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)

    def events(self, name: str) -> list[dict[str, Any]]:
        """The site's --json event lines (a line still being written is skipped)."""
        out = []
        for line in self.log(name).splitlines():
            if line.startswith("{") and line.endswith("}"):
                out.append(json.loads(line))
        return out

    def sent(self, name: str) -> list[int]:
        """Rounds the site reported its masked input sent, in order."""
        return [e["round"] for e in self.events(name) if e["event"] == "sent"]

    def log(self, name: str) -> str:
        return (self.tmp / f"{name}.log").read_text(errors="replace")

    def wait(self, name: str, timeout: float = 120) -> int:
        try:
            return self.procs[name].wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"site {name} did not finish:\n{self.log(name)}") from None

    def kill_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()


class UpdateGate:
    """A reverse proxy in front of the server that lets one site's first N accepted updates through,
    then holds every further update unanswered: a site killed behind it has contributed exactly N
    rounds, whatever the machine's load, instead of however many it raced through before the test
    noticed."""

    def __init__(self, server: ServerProcess, updates: int = 1) -> None:
        self.target, self.left = server.url, updates
        self.release = threading.Event()
        gate = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                update = self.command == "POST" and self.path.endswith("/site/update")
                if update and gate.left <= 0:  # one site, one update at a time: no race on `left`
                    gate.release.wait()
                    self.close_connection = True
                    return
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "connection")}
                r = httpx.request(
                    self.command, gate.target + self.path, content=body, headers=headers, timeout=60
                )
                if update and r.is_success:
                    gate.left -= 1
                self.send_response(r.status_code)
                for k, v in r.headers.items():
                    if k.lower() not in (
                        "content-length",
                        "transfer-encoding",
                        "connection",
                        "content-encoding",
                    ):
                        self.send_header(k, v)
                self.send_header("Content-Length", str(len(r.content)))
                self.end_headers()
                self.wfile.write(r.content)

            do_GET = do_POST = do_PUT = do_DELETE = _forward

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def another_user(server: ServerProcess, username: str = "mallory") -> str:
    """A second plain user's API key (through the admin API): a stranger to the first user's objects
    (an admin is not one: platform admin passes every project's policy)."""
    admin = {"X-API-Key": server.keys["admin"]}
    made = httpx.post(
        f"{server.url}/api/v1/admin/users", headers=admin, json={"username": username, "role": "user"}
    )
    assert made.status_code == 201, made.text
    key = httpx.post(
        f"{server.url}/api/v1/admin/users/{made.json()['id']}/keys", headers=admin, json={"name": "e2e"}
    )
    assert key.status_code == 201, key.text
    return str(key.json()["key"])


def status(server: ServerProcess, fid: str) -> dict[str, Any]:
    r = httpx.get(f"{server.url}/api/v1/federations/{fid}/status", headers={"X-API-Key": server.keys["user"]})
    assert r.status_code == 200, r.text
    return dict(r.json())


def tls_server(
    server_factory: Callable[..., ServerProcess], tmp: Path, *args: str
) -> tuple[ServerProcess, Path]:
    """A `bastion serve` over HTTPS with a certificate from a private CA (trustme); not started.

    Returns the server (its ``verify`` trusts the CA) and the CA's PEM file, as a hospital would hand it out.
    """
    import ssl

    import pytest

    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    cert_pem, key_pem, ca_pem = tmp / "cert.pem", tmp / "key.pem", tmp / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(cert_pem))
    cert.private_key_pem.write_to_path(str(key_pem))
    ca.cert_pem.write_to_path(str(ca_pem))
    server = server_factory(args=["--ssl-cert", str(cert_pem), "--ssl-key", str(key_pem), *args])
    server.scheme, server.verify = "https", ssl.create_default_context(cafile=str(ca_pem))
    return server, ca_pem
