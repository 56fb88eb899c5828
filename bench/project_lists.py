"""Project-scoped lists: this checkout against another (main), alternated in the same run.

One SQLite database is seeded once (a project with 20 members owning 1,000 models of 3 versions,
2,000 jobs, half of them fine-tuning, and 300 federations; a second project as large that the
member does not see). Then each round runs every list route in a fresh process per source tree
(``PYTHONPATH`` = this ``src`` or ``--baseline``'s), on a copy of the same database, in-process
(``TestClient``, no worker): median wall and process CPU time of N requests per route after a warm-up, and the SQL
statements one request runs. The rounds alternate the two trees.

Prints ``project_list_<route>_cpu_ratio: this / baseline`` (process CPU per request, median over
rounds; lower is cheaper; CPU rather than wall because the machine is shared), the wall ratio and
the statement counts, then the raw figures and the load average.

    .venv/bin/python bench/project_lists.py --baseline /work/main/src          # 3 rounds, 40 requests
    .venv/bin/python bench/project_lists.py --baseline /work/main/src --rounds 1 --n 10
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MASTER = "bench-master-key-" + "m" * 40
JWT = "bench-jwt-secret-" + "j" * 40
ROUTES = {
    "models": "/api/v1/models",
    "training_jobs": "/api/v1/training/jobs",
    "fine_tuning_jobs": "/api/v1/fine_tuning/jobs",
    "federations": "/api/v1/federations",
    "datasets": "/api/v1/datasets",
}


def _context(data: Path) -> Any:
    from bastion.config import Settings
    from bastion.context import build_context
    from bastion.wiring import install_services

    settings = Settings(
        data_dir=data,
        database_url=f"sqlite:///{data / 'bastion.db'}",
        master_key=MASTER,
        jwt_secret=JWT,
        rate_limit="1000000/minute",
        embedded_worker=False,
    )
    ctx = build_context(settings)
    install_services(ctx)
    return ctx


def seed(data: Path) -> None:
    from sqlalchemy import insert

    from bastion.auth.principal import Principal
    from bastion.store.base import new_id, utcnow
    from bastion.store.tables import Federation, ModelRecord, ModelVersionRecord, TrainingJob

    ctx = _context(data)
    owner = ctx.accounts.create_user("owner", "user")
    member = ctx.accounts.create_user("member", "user")
    key = ctx.accounts.create_key(member.id, "bench").plaintext
    who = Principal(user_id=owner.id, username="owner", role="user", via="api_key")
    projects = [ctx.services.projects.create(who, name=n, domain="healthcare")["id"] for n in ("p", "q")]
    ctx.services.projects.add_member(who, projects[0], "member", "viewer")
    for i in range(19):
        ctx.accounts.create_user(f"m{i}", "user")
        ctx.services.projects.add_member(who, projects[0], f"m{i}", "viewer")
    with ctx.db.session() as s:
        for project in projects:
            models = [
                {"id": new_id(), "owner_id": owner.id, "project_id": project, "name": f"m{i}"}
                for i in range(1000)
            ]
            s.execute(insert(ModelRecord), models)
            s.execute(
                insert(ModelVersionRecord),
                [
                    {
                        "id": new_id(),
                        "model_id": m["id"],
                        "version": v,
                        "artifact_id": f"a-{new_id()}",
                        "model_format": "skops",
                        "metrics_json": {"accuracy": 0.1 * v},
                        "config_json": {},
                        "lineage_json": {},
                        "input_schema_json": {},
                    }
                    for m in models
                    for v in (1, 2, 3)
                ],
            )
            common = {"owner_id": owner.id, "project_id": project, "dataset_source": "builtin"}
            s.execute(
                insert(TrainingJob),
                [
                    common
                    | {
                        "id": new_id(),
                        "model_type": "llm_lora" if i % 2 else "logistic_regression",
                        "resource_profile": "cpu-small",
                        "max_runtime_seconds": 60.0,
                        "state": "completed",
                        "params": {},
                        "dataset_ref": {},
                        "history": [],
                        "created_at": utcnow(),
                        "updated_at": utcnow(),
                    }
                    for i in range(2000)
                ],
            )
            s.execute(
                insert(Federation),
                [
                    {
                        "id": new_id(),
                        "owner_id": owner.id,
                        "project_id": project,
                        "name": f"f{project[:6]}{i}",
                        "config_json": "{}",
                        "spec_json": {},
                        "strategy": "fedavg",
                        "rounds": 1,
                        "min_clients": 1,
                        "target_clients": 1,
                        "round_timeout_s": 60.0,
                        "max_round_attempts": 1,
                        "sealing_public_key": "k",
                        "signing_public_key": "k",
                        "created_at": utcnow(),
                        "updated_at": utcnow(),
                    }
                    for i in range(300)
                ],
            )
    (data / "bench.json").write_text(json.dumps({"key": key, "project": projects[0]}))
    ctx.close()


def measure(data: Path, n: int) -> None:
    """Print one JSON line: per route, median seconds per request and statements per request."""
    from fastapi.testclient import TestClient
    from sqlalchemy import event

    from bastion.api.app import create_app

    meta = json.loads((data / "bench.json").read_text())
    ctx = _context(data)
    statements: list[str] = []
    event.listen(ctx.db.engine, "before_cursor_execute", lambda *a: statements.append(a[2]))
    out: dict[str, Any] = {}
    with TestClient(create_app(context=ctx)) as client:
        headers = {"X-API-Key": meta["key"]}
        for name, path in ROUTES.items():
            params = {"project": meta["project"], "limit": 100}
            for _ in range(3):
                assert client.get(path, headers=headers, params=params).status_code == 200
            statements.clear()
            client.get(path, headers=headers, params=params)
            count = len(statements)
            times, cpu = [], []
            for _ in range(n):
                start, start_cpu = time.perf_counter(), time.process_time()
                client.get(path, headers=headers, params=params)
                times.append(time.perf_counter() - start)
                cpu.append(time.process_time() - start_cpu)
            out[name] = {
                "median_s": statistics.median(times),
                "median_cpu_s": statistics.median(cpu),
                "statements": count,
            }
    ctx.close()
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baseline", required=True, help="the other tree's src/ (e.g. /work/main/src)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--n", type=int, default=40)
    parser.add_argument("--seed", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.seed:
        return seed(args.seed)
    if args.measure:
        return measure(args.measure, args.n)
    here = str(Path(__file__).resolve().parents[1] / "src")
    trees = {"this": here, "baseline": args.baseline}
    with tempfile.TemporaryDirectory() as tmp:
        seeded = Path(tmp) / "seeded"
        _run(here, ["--seed", str(seeded)])
        raw: dict[str, list[dict[str, Any]]] = {"this": [], "baseline": []}
        for r in range(args.rounds):
            order = ["this", "baseline"] if r % 2 == 0 else ["baseline", "this"]
            for tree in order:
                copy = Path(tmp) / f"{tree}-{r}"
                shutil.copytree(seeded, copy)
                line = _run(trees[tree], ["--measure", str(copy), "--n", str(args.n)])
                raw[tree].append(json.loads(line.strip().splitlines()[-1]))
                shutil.rmtree(copy)
    pairs = list(zip(raw["this"], raw["baseline"], strict=True))
    for name in ROUTES:
        wall = [t[name]["median_s"] / b[name]["median_s"] for t, b in pairs]
        cpu = [t[name]["median_cpu_s"] / b[name]["median_cpu_s"] for t, b in pairs]
        print(
            f"project_list_{name}_cpu_ratio: {statistics.median(cpu):.3f} "
            f"(rounds {' / '.join(f'{x:.3f}' for x in cpu)}; wall {statistics.median(wall):.3f}; "
            f"statements {raw['this'][0][name]['statements']} vs {raw['baseline'][0][name]['statements']})"
        )
    print("raw:", json.dumps(raw))
    print("load average:", os.getloadavg())


def _run(src: str, extra: list[str]) -> str:
    env = os.environ | {"PYTHONPATH": src}
    done = subprocess.run(
        [sys.executable, __file__, "--baseline", src, *extra],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{src} {extra}: {done.stderr[-3000:]}")
    return done.stdout


if __name__ == "__main__":
    main()
