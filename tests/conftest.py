"""Shared fixtures: both database backends, a configured app, callers of each role, a real server."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, text

from bastion.api.app import create_app
from bastion.config import Settings
from bastion.context import Context, build_context
from bastion.wiring import install_services

PG_ADMIN_URL = os.environ.get("BASTION_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
MASTER = "test-master-key-" + "m" * 40
JWT = "test-jwt-secret-" + "j" * 40
REPO = Path(__file__).resolve().parents[1]


def _pg_reachable() -> str | None:
    try:
        eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
        with eng.connect() as conn:
            conn.execute(text("SELECT 1"))
        eng.dispose()
        return None
    except Exception as exc:
        return f"PostgreSQL unreachable at {PG_ADMIN_URL}: {type(exc).__name__}"


@pytest.fixture(scope="session")
def pg_database() -> Iterator[str]:
    """One throw-away PostgreSQL database for the session, migrated once."""
    reason = _pg_reachable()
    if reason:
        pytest.skip(reason)
    name = f"bastion_test_{uuid.uuid4().hex[:10]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{name}"
    from bastion.store import Database

    db = Database(url)
    db.migrate()
    db.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


def _reset_pg(url: str) -> None:
    eng = create_engine(url)
    with eng.begin() as conn:
        tables = [
            r[0]
            for r in conn.execute(
                text(
                    "SELECT tablename FROM pg_tables WHERE schemaname='public' AND tablename<>'alembic_version'"
                )
            )
        ]
        if tables:
            conn.execute(
                text("TRUNCATE " + ", ".join(f'"{t}"' for t in tables) + " RESTART IDENTITY CASCADE")
            )
        conn.execute(text("INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, :h)"), {"h": "0" * 64})
    eng.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'bastion.db'}"
    url: str = request.getfixturevalue("pg_database")
    _reset_pg(url)
    return url


def make_settings(tmp_path: Path, db_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "data_dir": tmp_path / "data",
        "database_url": db_url,
        "master_key": MASTER,
        "jwt_secret": JWT,
        "max_failed_attempts": 3,
        "lockout_minutes": 15,
        "rate_limit": "10000/minute",
        "login_rate_limit": "10000/minute",
    }
    values.update(overrides)
    return Settings(**values)


@pytest.fixture
def settings(tmp_path: Path, db_url: str) -> Settings:
    return make_settings(tmp_path, db_url)


@pytest.fixture
def ctx(settings: Settings) -> Iterator[Context]:
    context = build_context(settings)
    install_services(context)
    yield context
    context.close()


@pytest.fixture
def client(ctx: Context) -> Iterator[TestClient]:
    with TestClient(create_app(context=ctx), raise_server_exceptions=False) as c:
        yield c


@dataclass
class Caller:
    username: str
    user_id: str
    key: str
    role: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@pytest.fixture
def make_caller(ctx: Context) -> Callable[..., Caller]:
    def make(role: str = "user", username: str | None = None, password: str | None = None) -> Caller:
        name = username or f"{role}-{uuid.uuid4().hex[:6]}"
        user = ctx.accounts.create_user(name, role, password=password)
        return Caller(name, user.id, ctx.accounts.create_key(user.id, "test").plaintext, role)

    return make


@pytest.fixture
def admin(make_caller: Callable[..., Caller]) -> Caller:
    return make_caller("admin")


@pytest.fixture
def alice(make_caller: Callable[..., Caller]) -> Caller:
    return make_caller("user", "alice")


@pytest.fixture
def bob(make_caller: Callable[..., Caller]) -> Caller:
    return make_caller("user", "bob")


@pytest.fixture
def viewer(make_caller: Callable[..., Caller]) -> Caller:
    return make_caller("viewer")


# -- a real `bastion serve` process --------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_KEY_LINE = re.compile(r"(admin|user) API key:\s+(bst_\w+)")


@dataclass
class ServerProcess:
    data_dir: Path
    env: dict[str, str]
    args: list[str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[str] | None = None
    keys: dict[str, str] = field(default_factory=dict)
    output: list[str] = field(default_factory=list)
    scheme: str = "http"
    verify: Any = False
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.port}"

    def start(self, timeout: float = 60) -> ServerProcess:
        cmd = [sys.executable, "-m", "bastion.cli.main", "serve", "--port", str(self.port), *self.args]
        self.proc = subprocess.Popen(
            cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=self.data_dir
        )
        os.set_blocking(self.proc.stdout.fileno(), False)  # type: ignore[union-attr]
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            if self.proc.poll() is not None:
                raise RuntimeError("server exited early:\n" + "".join(self.output))
            try:
                r = httpx.get(self.url + "/api/v1/health", verify=self.verify, timeout=2)
                if r.status_code in (200, 503):
                    self._drain()
                    self._follow()
                    self._read_keys_file()
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError("server did not become ready:\n" + "".join(self.output))

    def _read_keys_file(self) -> None:
        """Without a terminal the server writes its bootstrap keys to a 0600 file, not to its output."""
        path = Path(self.env.get("BASTION_DATA_DIR", self.data_dir / ".bastion")) / "bootstrap-keys.txt"
        if not self.keys and "bootstrap API keys were written to" in "".join(self.output):
            self.keys.update(_KEY_LINE.findall(path.read_text()))

    def _follow(self) -> None:
        """Keep reading the server's output in the background: a full pipe would block its logging."""
        assert self.proc is not None and self.proc.stdout is not None
        proc, stream = self.proc, self.proc.stdout

        def follow() -> None:
            while proc.poll() is None:
                ready, _, _ = select.select([stream], [], [], 0.2)
                if ready:
                    self._drain()
            self._drain()

        threading.Thread(target=follow, name=f"server-{self.port}-output", daemon=True).start()

    def _drain(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self._lock:
            while True:
                line = self.proc.stdout.readline()
                if not line:
                    return
                self.output.append(line)
                m = _KEY_LINE.search(line)
                if m:
                    self.keys[m.group(1)] = m.group(2)

    def text(self) -> str:
        self._drain()
        return "".join(self.output)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._drain()
        return int(self.proc.returncode)


@pytest.fixture
def server_factory(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    started: list[ServerProcess] = []

    def make(db_url: str | None = None, args: list[str] | None = None, **env: str) -> ServerProcess:
        data = tmp_path / f"server{len(started)}"
        data.mkdir()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
        environ.update(
            {
                "BASTION_DATA_DIR": str(data / ".bastion"),
                "BASTION_MASTER_KEY": MASTER,
                "BASTION_JWT_SECRET": JWT,
                "PYTHONUNBUFFERED": "1",
            }
        )
        if db_url:
            environ["BASTION_DATABASE_URL"] = db_url
        environ.update(env)
        server = ServerProcess(data, environ, args or [])
        started.append(server)
        return server

    yield make
    for server in started:
        if server.proc is not None:
            server.stop(signal.SIGKILL if server.proc.poll() is None else signal.SIGTERM)


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[Any]:
    """One real Ray cluster (token auth, 127.0.0.1) for the whole session; this process connects with
    its token, as a Bastion worker would."""
    from tests.jobs.ray_cluster import start_cluster, stop_cluster

    cluster = start_cluster()
    saved = {k: os.environ.get(k) for k in cluster.env()}
    os.environ.update(cluster.env())
    try:
        yield cluster
    finally:
        import ray

        if ray.is_initialized():
            ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        stop_cluster(cluster)


from tests.oidc_provider import oidc_provider  # noqa: E402, F401  (session fixture: the SSO tests, API to browser)
