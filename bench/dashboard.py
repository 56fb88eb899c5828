"""Dashboard pages against the JSON API routes that return the same data, in the same run.

One in-process app (SQLite in a temp dir, no worker) seeded with 1,000 jobs, 100 federations of 20
rounds each and 10,000 audit rows, all owned by one admin. Each page is requested with the admin's
cookie session, each API route with the admin's API key; the time measured is the server's (an ASGI
wrapper around the whole app, middleware included: first byte in to last byte out), median of N
requests after a warm-up, the page and its API routes interleaved. A page that stands for several API routes (the overview, a job, a
federation) is compared with the sum of those routes' medians.

Prints ``dashboard_<page>_ratio: page / api`` (goal <= 2; the API called with a login token, the
credential a browser session carries), ``_ratio_vs_api_key`` (the API with an API key, which skips
the session lookup thanks to the key cache) and ``dashboard_<page>_ms`` (goal < 50) lines first, then the raw figures and the SQL statements each page runs at two sizes of what it
shows (the count must not grow with the rows shown).

    .venv/bin/python bench/dashboard.py            # 30 requests each
    .venv/bin/python bench/dashboard.py --n 10     # quicker
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

MASTER = "bench-master-key-" + "m" * 40
JWT = "bench-jwt-secret-" + "j" * 40
PASSWORD = "a long enough bench password"
JOBS, FEDERATIONS, ROUNDS, AUDIT_ROWS = 1000, 100, 20, 10_000


class ServerTimer:
    """Outermost ASGI wrapper: the server's own time per request, client excluded."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.last = 0.0

    async def __call__(self, scope: Any, receive: Callable[[], Awaitable[Any]], send: Any) -> None:
        start = time.perf_counter()
        await self.app(scope, receive, send)
        self.last = time.perf_counter() - start


def seed(ctx: Any) -> dict[str, str]:
    from sqlalchemy import insert

    from bastion.audit import AuditRecord
    from bastion.federation.server.config import FederationCreate
    from bastion.store.base import new_id, utcnow
    from bastion.store.tables import Federation, FederationRound, TrainingJob

    admin = ctx.accounts.create_user("bench", "admin", password=PASSWORD)
    key = ctx.accounts.create_key(admin.id, "bench").plaintext
    from bastion.auth.principal import Principal

    principal = Principal(admin.id, admin.username, "admin", "api_key")
    now = utcnow()
    states = ["completed"] * 8 + ["failed", "running"]
    history = [{"epoch": e, "train_loss": 1 / e, "val_accuracy": 0.5 + e / 100} for e in range(1, 21)]
    results = {"accuracy": 0.9, "f1": 0.88, "training_samples": 142}
    jobs = [
        {
            "id": new_id(),
            "owner_id": admin.id,
            "model_type": "adaptive_neural_net",
            "dataset_source": "wine",
            "resource_profile": "cpu-small",
            "max_runtime_seconds": 3600.0,
            "state": states[i % len(states)],
            "progress": 1.0,
            "history": history,
            "results": results,
            "params": {"epochs": 20},
            "created_at": now - timedelta(seconds=JOBS - i),
            "updated_at": now,
        }
        for i in range(JOBS)
    ]
    fed = ctx.services.federations.create(
        principal,
        FederationCreate(
            name="seed", model={"type": "tabular_mlp", "in_features": 8, "num_classes": 2}, rounds=ROUNDS
        ),
        None,
    )
    with ctx.db.session() as s:
        s.execute(insert(TrainingJob), jobs)
        template = s.get(Federation, fed["id"])
        assert template is not None
        fed_rows, round_rows = [], []
        for i in range(FEDERATIONS):
            fid = fed["id"] if i == 0 else new_id()
            if i:
                fed_rows.append(
                    {
                        c.key: getattr(template, c.key)
                        for c in Federation.__table__.columns
                        if c.key not in ("id", "name", "created_at")
                    }
                    | {"id": fid, "name": f"federation {i:03d}", "created_at": now - timedelta(seconds=i)}
                )
            for n in range(1, ROUNDS + 1):
                if i == 0 and n == 1:
                    continue  # the real federation already has its round 1
                round_rows.append(
                    {
                        "federation_id": fid,
                        "number": n,
                        "state": "closed",
                        "attempt": 1,
                        "base_version": n - 1,
                        "accepted": 3,
                        "num_samples": 300,
                        "metrics_json": {
                            "val_accuracy": 0.5 + n / 50,
                            "val_loss": 1 / n,
                            "train_loss": 1.2 / n,
                        },
                    }
                )
        if fed_rows:
            s.execute(insert(Federation), fed_rows)
        s.execute(insert(FederationRound), round_rows)
    with ctx.db.session() as s:
        for i in range(AUDIT_ROWS):
            ctx.audit.append(
                AuditRecord("bench.event", actor_id=admin.id, actor="bench", details={"i": i}), s
            )
    return {"key": key, "job": jobs[-1]["id"], "federation": fed["id"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=30, help="timed requests per route")
    args = parser.parse_args()

    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from bastion import logs
    from bastion.api.app import create_app
    from bastion.config import Settings, resolve_secrets
    from bastion.context import build_context
    from bastion.wiring import install_services

    logs.configure("warning")  # no access log line per timed request
    tmp = Path(tempfile.mkdtemp(prefix="bastion-bench-dashboard-"))
    settings = resolve_secrets(
        Settings(
            data_dir=tmp,
            master_key=MASTER,
            jwt_secret=JWT,
            embedded_worker=False,
            rate_limit="1000000/minute",
        )
    )
    ctx = build_context(settings)
    install_services(ctx)
    t0 = time.perf_counter()
    ids = seed(ctx)
    seeded_s = time.perf_counter() - t0
    timer = ServerTimer(create_app(context=ctx))
    statements = 0

    @event.listens_for(ctx.db.engine, "before_cursor_execute")
    def count(*_: Any) -> None:
        nonlocal statements
        statements += 1

    with TestClient(timer, base_url="http://127.0.0.1") as client:  # type: ignore[arg-type]
        client.get("/login")
        r = client.post(
            "/login",
            data={
                "username": "bench",
                "password": PASSWORD,
                "login_csrf": client.cookies["bastion_login_csrf"],
            },
            follow_redirects=False,
        )
        assert r.status_code == 303, r.text
        key_headers = {"X-API-Key": ids["key"]}
        token = client.post("/api/v1/auth/login", json={"username": "bench", "password": PASSWORD}).json()
        jwt_headers = {"Authorization": f"Bearer {token['access_token']}"}

        def timed(path: str, headers: dict[str, str]) -> tuple[float, int]:
            nonlocal statements
            statements = 0
            resp = client.get(path, headers=headers)
            assert resp.status_code == 200, (path, resp.status_code)
            return timer.last * 1000, statements

        def measure_pair(page: str, apis: list[str]) -> dict[str, Any]:
            """Page, API with a key, API with a login token: interleaved, so load drifts hit all three."""
            samples: dict[str, list[float]] = {"page": [], "key": [], "jwt": []}
            queries: dict[str, int] = {}
            for i in range(args.n + 3):
                page_ms, queries["page"] = timed(page, {})
                key = [timed(a, key_headers) for a in apis]
                jwt = [timed(a, jwt_headers) for a in apis]
                if i >= 3:  # warm-up
                    samples["page"].append(page_ms)
                    samples["key"].append(sum(t for t, _ in key))
                    samples["jwt"].append(sum(t for t, _ in jwt))
                queries["key"], queries["jwt"] = sum(q for _, q in key), sum(q for _, q in jwt)
            return {k: statistics.median(v) for k, v in samples.items()} | {"queries": queries}

        def page_statements(path: str) -> int:
            return timed(path, {})[1]

        job, fid = ids["job"], ids["federation"]
        pairs: list[tuple[str, str, list[str]]] = [
            (
                "overview",
                "/",
                [
                    "/api/v1/training/jobs?status=running&limit=20",
                    "/api/v1/training/jobs?status=pending&limit=20",
                    "/api/v1/federations",
                    "/api/v1/models",
                    "/api/v1/admin/training/status",
                ],
            ),
            ("jobs", "/jobs?limit=50", ["/api/v1/training/jobs?limit=50"]),
            (
                "job",
                f"/jobs/{job}",
                [f"/api/v1/training/status/{job}", f"/api/v1/training/jobs/{job}/logs?limit=200"],
            ),
            ("federations", "/federations", ["/api/v1/federations"]),
            (
                "federation",
                f"/federations/{fid}",
                [f"/api/v1/federations/{fid}", f"/api/v1/federations/{fid}/status"],
            ),
            ("audit", "/admin/audit", ["/api/v1/admin/audit?limit=50"]),
            ("users", "/admin/users", ["/api/v1/admin/users"]),
            ("account", "/account", ["/api/v1/auth/keys"]),
        ]
        raw: dict[str, Any] = {}
        lines = []
        for name, page, apis in pairs:
            m = measure_pair(page, apis)
            raw[name] = {
                "page_ms": round(m["page"], 2),
                "api_jwt_ms": round(m["jwt"], 2),
                "api_key_ms": round(m["key"], 2),
                "statements": m["queries"],
                "api_routes": apis,
            }
            lines.append(f"dashboard_{name}_ratio: {m['page'] / m['jwt']:.2f}")
            lines.append(f"dashboard_{name}_ratio_vs_api_key: {m['page'] / m['key']:.2f}")
            lines.append(f"dashboard_{name}_ms: {m['page']:.1f}")
        # statements per page at two sizes of what is shown
        growth = {}
        for name, small, large in (
            ("jobs", "/jobs?limit=10", "/jobs?limit=100"),
            ("audit", "/admin/audit?action=bench.", "/admin/audit?before=50"),
        ):
            growth[name] = {"small": page_statements(small), "large": page_statements(large)}
    for line in lines:
        print(line)
    print(
        json.dumps(
            {
                "seed_seconds": round(seeded_s, 1),
                "rows": {
                    "jobs": JOBS,
                    "federations": FEDERATIONS,
                    "rounds_each": ROUNDS,
                    "audit": AUDIT_ROWS,
                },
                "n": args.n,
                "pages": raw,
                "statements_by_rows_shown": growth,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
