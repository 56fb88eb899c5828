"""API overhead: an authenticated cheap Bastion endpoint against a bare FastAPI endpoint.

Both servers run as separate processes on free loopback ports with the same uvicorn settings (one
process, no access log); a load generator in a third process keeps N connections busy for a fixed
duration against each in turn, after a warm-up. Bastion is a real ``bastion serve`` with a fresh data
dir; the endpoint is ``GET /api/v1/auth/me`` with the bootstrap user key in ``X-API-Key``.

Prints ``api_overhead_rps_ratio`` (Bastion rps / bare rps, goal >= 0.5) and ``api_overhead_p99_ms``
(Bastion p99, goal < 100 ms) first, then the raw figures.

A third case measures a project-scoped list in the same run: a project with 50 members owning
10,000 datasets, ``GET /api/v1/datasets?project=<id>&limit=10`` with one member's key
(``api_overhead_project_list_rps_ratio``, goal >= 0.5, against the same bare endpoint).

    .venv/bin/python bench/api_overhead.py                      # SQLite, 64 connections, 10 s each
    .venv/bin/python bench/api_overhead.py --duration 3 --warmup 1 --rounds 1   # quick run
    .venv/bin/python bench/api_overhead.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python bench/api_overhead.py --generator asyncio  # without wrk

The generator is ``wrk`` when it is on PATH (the most efficient on a small machine, where the generator
competes with the server for cores), otherwise a raw asyncio-streams keep-alive client.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import httpx

MASTER = "bench-master-key-" + "m" * 40
JWT = "bench-jwt-secret-" + "j" * 40
ME_PATH = "/api/v1/auth/me"
PING_PATH = "/ping"
PROJECT_MEMBERS = 50
PROJECT_OBJECTS = 10_000
_KEY_LINE = re.compile(r"user API key:\s+(bst_\w+)")


# -- the baseline: a bare FastAPI app ------------------------------------------------------------


def run_bare_server(port: int) -> None:
    """One ``GET /ping`` returning a small JSON, under the same uvicorn settings as ``bastion serve``."""
    import uvicorn
    from fastapi import FastAPI

    app = FastAPI()

    @app.get(PING_PATH)
    def ping() -> dict[str, str]:
        # A sync endpoint, like Bastion's routes and its auth dependency: same threadpool hop.
        return {"status": "ok", "service": "bare"}

    uvicorn.run(
        app,
        host="127.0.0.1",
        port=port,
        access_log=False,
        log_config=None,
        server_header=False,
        timeout_graceful_shutdown=10,
    )


# -- processes -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Server:
    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str, headers: dict[str, str], timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited early:\n{self.log.read_text(errors='replace')}")
            try:
                if httpx.get(self.base + path, headers=headers, timeout=2).status_code < 500:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{self.name} did not become ready:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_bare(workdir: Path) -> Server:
    port = free_port()
    log = workdir / "bare.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_bare", "--port", str(port)],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    server = Server("bare FastAPI", proc, port, log)
    server.wait_ready(PING_PATH, {})
    return server


def start_bastion(workdir: Path, database_url: str | None) -> tuple[Server, str]:
    port = free_port()
    log = workdir / "bastion.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        {
            "BASTION_DATA_DIR": str(workdir / ".bastion"),
            "BASTION_MASTER_KEY": MASTER,
            "BASTION_JWT_SECRET": JWT,
            "BASTION_RATE_LIMIT": "1000000/minute",
            "PYTHONUNBUFFERED": "1",
        }
    )
    # Named even for SQLite, so the bench can seed the project case into the same database.
    env["BASTION_DATABASE_URL"] = database_url or f"sqlite:///{workdir / 'bench.db'}"
    with log.open("wb") as out:
        # The access log (one JSON line a request) goes to a file, as it would in production.
        proc = subprocess.Popen(
            [sys.executable, "-m", "bastion.cli.main", "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=workdir,
        )
    server = Server("bastion", proc, port, log)
    server.wait_ready("/api/v1/health", {})
    keys_file = workdir / ".bastion" / "bootstrap-keys.txt"  # where serve puts them without a terminal
    keys_text = keys_file.read_text() if keys_file.exists() else ""
    match = _KEY_LINE.search(log.read_text(errors="replace") + keys_text)
    if match is None:
        server.stop()
        raise RuntimeError("bastion printed no bootstrap user key:\n" + log.read_text(errors="replace"))
    key = match.group(1)
    r = httpx.get(server.base + ME_PATH, headers={"X-API-Key": key}, timeout=5)
    if r.status_code != 200:
        server.stop()
        raise RuntimeError(f"GET {ME_PATH} with the bootstrap key answered {r.status_code}: {r.text}")
    return server, key


def seed_project(server: Server, key: str, database_url: str) -> str:
    """A project of the bootstrap user with 49 more members and 10,000 datasets; its list path."""
    from sqlalchemy import insert

    from bastion.store import Database
    from bastion.store.base import new_id, utcnow
    from bastion.store.tables import DatasetRecord, ProjectMember, User

    headers = {"X-API-Key": key}
    r = httpx.post(
        server.base + "/api/v1/projects", json={"name": "bench", "domain": "healthcare"}, headers=headers
    )
    r.raise_for_status()
    project, owner = r.json()["id"], r.json()["created_by"]
    users = [{"id": new_id(), "username": f"bench-{i}", "role": "user", "disabled": False} for i in range(49)]
    now = utcnow()
    db = Database(database_url)
    with db.session() as s:
        s.execute(insert(User), [{**u, "created_at": now} for u in users])
        s.execute(
            insert(ProjectMember),
            [{"project_id": project, "user_id": u["id"], "role": "member", "added_at": now} for u in users],
        )
        owners = [owner] + [u["id"] for u in users]
        rows = [
            {
                "id": new_id(),
                "owner_id": owners[i % PROJECT_MEMBERS],
                "project_id": project,
                "name": f"dataset-{i}",
                "source_format": "csv",
                "size_bytes": 1000,
                "rows": 100,
                "columns": 5,
                "schema_json": [],
                "deid_json": [],
                "artifact_id": f"dataset-bench-{i}",
                "access_protected": False,
                "created_at": now,
            }
            for i in range(PROJECT_OBJECTS)
        ]
        for start in range(0, len(rows), 1000):
            s.execute(insert(DatasetRecord), rows[start : start + 1000])
    db.dispose()
    path = f"/api/v1/datasets?project={project}&limit=10"
    r = httpx.get(server.base + path, headers=headers, timeout=10)
    if r.status_code != 200 or len(r.json()["data"]) != 10:
        raise RuntimeError(f"GET {path} answered {r.status_code}: {r.text[:500]}")
    return path


# -- load generators -----------------------------------------------------------------------------


@dataclass
class Result:
    requests: int
    errors: int
    seconds: float
    p50_ms: float
    p99_ms: float
    server_cpu_s: float | None = None
    retransmits: int | None = None

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    @property
    def cpu_us_per_request(self) -> float | None:
        """Server CPU time per request: steadier than rps on a machine shared with other work."""
        if self.server_cpu_s is None or not self.requests:
            return None
        return self.server_cpu_s / self.requests * 1e6


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tcp_retransmits() -> int | None:
    """The kernel's count of retransmitted TCP segments (Linux; None elsewhere), machine-wide.

    Printed per case because a saturated event loop shows a p99 of ~1 s under wrk that neither the
    server's own timings nor the asyncio generator see (docs/performance.md, stop 23): the count
    stays next to the figures it was once suspected of explaining (it does not: see there)."""
    try:
        lines = [
            line.split()
            for line in Path("/proc/net/snmp").read_text().splitlines()
            if line.startswith("Tcp:")
        ]
        return int(lines[1][lines[0].index("RetransSegs")])
    except (OSError, IndexError, ValueError):
        return None


_WRK_LUA = """
done = function(summary, latency, requests)
  io.write(string.format("BENCH %d %d %d %.3f %.3f\\n", summary.requests,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout
      + summary.errors.status,
    summary.duration, latency:percentile(50), latency:percentile(99)))
end
"""


def run_wrk(url: str, headers: dict[str, str], connections: int, seconds: float, workdir: Path) -> Result:
    script = workdir / "report.lua"
    script.write_text(_WRK_LUA)
    cmd = ["wrk", "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--timeout", "10s"]
    for name, value in headers.items():
        cmd += ["-H", f"{name}: {value}"]
    cmd += ["-s", str(script), url]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    match = re.search(r"^BENCH (\d+) (\d+) (\d+) ([\d.]+) ([\d.]+)$", out, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"could not read wrk's report:\n{out}")
    requests, errors, micros = int(match[1]), int(match[2]), int(match[3])
    return Result(requests, errors, micros / 1e6, float(match[4]) / 1000, float(match[5]) / 1000)


def run_asyncio_generator(url: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    """Run the asyncio generator in its own process (never in the bench's, which might hold the GIL)."""
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "_load",
        "--url",
        url,
        "--connections",
        str(connections),
        "--seconds",
        str(seconds),
        "--headers",
        json.dumps(headers),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    data = json.loads(out.strip().splitlines()[-1])
    return Result(**data)


async def _load(url: str, headers: dict[str, str], connections: int, seconds: float) -> Result:
    """Keep-alive HTTP/1.1 over raw asyncio streams: far cheaper per request than an HTTP library."""
    parsed = httpx.URL(url)
    host, port, target = parsed.host, parsed.port or 80, parsed.raw_path.decode()
    lines = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: keep-alive"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    latencies: list[float] = []
    errors = 0
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal errors
        reader, writer = await asyncio.open_connection(host, port)
        try:
            while time.perf_counter() < stop_at:
                t0 = time.perf_counter()
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head[9:12])
                match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
                if match is None:
                    raise RuntimeError("response without content-length")
                await reader.readexactly(int(match[1]))
                latencies.append(time.perf_counter() - t0)
                if status != 200:
                    errors += 1
        finally:
            writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    q = statistics.quantiles(latencies, n=100, method="inclusive") if len(latencies) > 1 else [0.0] * 99
    return Result(len(latencies), errors, elapsed, q[49] * 1000, q[98] * 1000)


def measure(
    generator: str,
    server: Server,
    url: str,
    headers: dict[str, str],
    connections: int,
    seconds: float,
    workdir: Path,
) -> Result:
    cpu_before = process_cpu_seconds(server.proc.pid)
    retrans_before = tcp_retransmits()
    if generator == "wrk":
        result = run_wrk(url, headers, connections, seconds, workdir)
    else:
        result = run_asyncio_generator(url, headers, connections, seconds)
    cpu_after = process_cpu_seconds(server.proc.pid)
    retrans_after = tcp_retransmits()
    if cpu_before is not None and cpu_after is not None:
        result.server_cpu_s = cpu_after - cpu_before
    if retrans_before is not None and retrans_after is not None:
        result.retransmits = retrans_after - retrans_before
    return result


# -- PostgreSQL scratch database -------------------------------------------------------------------


def create_pg_database(admin_url: str) -> tuple[str, str]:
    from sqlalchemy import create_engine, text

    name = f"bastion_bench_{uuid.uuid4().hex[:10]}"
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    engine.dispose()
    return admin_url.rsplit("/", 1)[0] + f"/{name}", name


def drop_pg_database(admin_url: str, name: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    engine.dispose()


# -- main ------------------------------------------------------------------------------------------


def _fmt(r: Result) -> str:
    cpu = f"  server cpu {r.cpu_us_per_request:6.0f} us/req" if r.cpu_us_per_request else ""
    retrans = f", {r.retransmits} TCP retransmits" if r.retransmits is not None else ""
    return (
        f"{r.rps:9.1f} rps  p50 {r.p50_ms:7.2f} ms  p99 {r.p99_ms:7.2f} ms{cpu}  "
        f"({r.requests} requests in {r.seconds:.1f} s, {r.errors} errors{retrans})"
    )


def _load_average() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def bench(args: argparse.Namespace) -> int:
    generator = args.generator
    if generator == "auto":
        generator = "wrk" if shutil.which("wrk") else "asyncio"
    elif generator == "wrk" and not shutil.which("wrk"):
        print("wrk is not on PATH; use --generator asyncio or apt-get install wrk", file=sys.stderr)
        return 2

    load_before = _load_average()
    pg_name: str | None = None
    database_url: str | None = None
    if args.database_url:
        database_url, pg_name = create_pg_database(args.database_url)
    servers: list[Server] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
            workdir = Path(tmp)
            bare = start_bare(workdir)
            servers.append(bare)
            bastion, key = start_bastion(workdir, database_url)
            servers.append(bastion)
            list_path = seed_project(bastion, key, database_url or f"sqlite:///{workdir / 'bench.db'}")
            targets: list[tuple[str, Server, str, dict[str, str]]] = [
                ("bare", bare, bare.base + PING_PATH, {}),
                ("bastion", bastion, bastion.base + ME_PATH, {"X-API-Key": key}),
                ("project", bastion, bastion.base + list_path, {"X-API-Key": key}),
            ]
            runs: dict[str, list[Result]] = {"bare": [], "bastion": [], "project": []}
            for _ in range(args.rounds):
                for name, server, url, headers in targets:
                    if args.warmup > 0:
                        measure(generator, server, url, headers, args.connections, args.warmup, workdir)
                    runs[name].append(
                        measure(generator, server, url, headers, args.connections, args.duration, workdir)
                    )
    finally:
        for server in reversed(servers):
            server.stop()
        if pg_name is not None and args.database_url:
            drop_pg_database(args.database_url, pg_name)

    # With several rounds (bare and Bastion alternate), the round with the median ratio is reported.
    ratios = [b.rps / a.rps for a, b in zip(runs["bare"], runs["bastion"], strict=True)]
    pick = sorted(range(len(ratios)), key=ratios.__getitem__)[len(ratios) // 2]
    bare_r, bastion_r = runs["bare"][pick], runs["bastion"][pick]
    print(f"api_overhead_rps_ratio: {ratios[pick]:.3f}")
    print(f"api_overhead_p99_ms: {bastion_r.p99_ms:.2f}")
    list_ratios = [p.rps / a.rps for a, p in zip(runs["bare"], runs["project"], strict=True)]
    print(f"api_overhead_project_list_rps_ratio: {sorted(list_ratios)[len(list_ratios) // 2]:.3f}")
    if bare_r.cpu_us_per_request and bastion_r.cpu_us_per_request:
        cpu_ratio = bare_r.cpu_us_per_request / bastion_r.cpu_us_per_request
        print(f"api_overhead_cpu_ratio: {cpu_ratio:.3f}")
    backend = "postgresql" if database_url else "sqlite"
    print(
        f"generator: {generator}, {args.connections} connections, {args.duration:g} s each "
        f"after {args.warmup:g} s warm-up, {args.rounds} round(s); database: {backend}; "
        f"cpus: {os.cpu_count()}, load average before: {load_before}"
    )
    for i, (a, b, p) in enumerate(zip(runs["bare"], runs["bastion"], runs["project"], strict=True)):
        mark = "*" if i == pick and args.rounds > 1 else " "
        print(f"{mark}bare    GET {PING_PATH:<16} {_fmt(a)}")
        print(f"{mark}bastion GET {ME_PATH:<16} {_fmt(b)}")
        print(
            f"{mark}project GET {'datasets?project':<16} {_fmt(p)}  ({PROJECT_MEMBERS} members, {PROJECT_OBJECTS} objects)"
        )
    if any(r.errors for rs in runs.values() for r in rs):
        print("WARNING: some requests failed (non-2xx or socket errors); figures are not comparable")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_bare"]:
        p = argparse.ArgumentParser()
        p.add_argument("--port", type=int, required=True)
        run_bare_server(p.parse_args(argv[1:]).port)
        return 0
    if argv[:1] == ["_load"]:
        p = argparse.ArgumentParser()
        p.add_argument("--url", required=True)
        p.add_argument("--connections", type=int, required=True)
        p.add_argument("--seconds", type=float, required=True)
        p.add_argument("--headers", default="{}")
        a = p.parse_args(argv[1:])
        coro = _load(a.url, json.loads(a.headers), a.connections, a.seconds)
        try:
            import uvloop
        except ImportError:
            result = asyncio.run(coro)
        else:
            result = uvloop.run(coro)
        print(json.dumps(result.__dict__))
        return 0

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds measured per server")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds of warm-up per server")
    parser.add_argument("--connections", type=int, default=64, help="concurrent keep-alive connections")
    parser.add_argument("--generator", choices=["auto", "wrk", "asyncio"], default="auto")
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        help="alternate bare/Bastion this many times and report the round with the median ratio",
    )
    parser.add_argument(
        "--database-url",
        help="PostgreSQL admin URL (…/postgres): a scratch database is created there and dropped after",
    )
    return bench(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
