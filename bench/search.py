"""Hyper-parameter search: Bastion's search job against a plain Optuna script, same space and seed.

The plain script is what a data scientist would write: an in-memory Optuna study (TPE sampler with
the seed, median pruner) whose objective cross-validates in this process, fold by fold, reporting
each fold. Bastion runs the same space, seed, folds and trial count as a search job on the local
executor (the trials in ``parallel`` warm trial processes, the study in the database), once with
one trial at a time and once with two in parallel. Both use bastion.ml.cv.cross_validate, so scores compare.

Prints ``search_parallel_speedup`` (wall time with 1 / with 2 parallel trials),
``search_time_ratio`` (Bastion with 1 parallel / plain Optuna; goal <= 1.2) and
``search_best_cv_ratio`` (Bastion's best CV mean / plain Optuna's; goal >= 1.0), then raw figures.

    .venv/bin/python bench/search.py            # 20 trials
    .venv/bin/python bench/search.py --quick    # 8 trials
    .venv/bin/python bench/search.py --repeat 3 # plain / Bastion pairs taken alternately, medians
    .venv/bin/python bench/search.py --executor ray   # trials as Ray tasks on a private local cluster
    .venv/bin/python bench/search.py --executor ray --ray-niceness 15   # Ray's default worker priority
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

MASTER = "bench-master-key-" + "m" * 40
JWT = "bench-jwt-secret-" + "j" * 40
SPACE = {
    "n_estimators": {"type": "int", "low": 20, "high": 200},
    "max_depth": {"type": "int", "low": 2, "high": 16},
    "min_samples_leaf": {"type": "int", "low": 1, "high": 20, "log": True},
}
BASE = {"estimator": "random_forest", "importance_repeats": 0}
DATASET = "breast_cancer"
SEED = 7
FOLDS = 5


def plain_optuna(trials: int) -> tuple[float, float]:
    import optuna

    from bastion.data.builtin import load_dataset
    from bastion.jobs.search_space import suggest, validate_search
    from bastion.ml.cv import cross_validate

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = validate_search("alzheimer_classifier", {"space": SPACE})["space"]
    dataset = load_dataset(DATASET)
    start = time.perf_counter()
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=SEED),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
    )

    def objective(trial: optuna.Trial) -> float:
        params = BASE | suggest(trial, space)
        scores: list[float] = []

        def on_fold(i: int, score: float) -> None:
            scores.append(score)
            trial.report(sum(scores) / len(scores), i)
            if trial.should_prune():
                raise optuna.TrialPruned()

        return float(
            cross_validate("alzheimer_classifier", dataset, params, FOLDS, seed=SEED, on_fold=on_fold)["mean"]
        )

    study.optimize(objective, n_trials=trials)
    return time.perf_counter() - start, float(study.best_value)


def bastion_search(root: Path, trials: int, parallel: int, cluster: Any = None) -> tuple[float, float]:
    from bastion.auth.principal import Principal
    from bastion.config import Settings
    from bastion.context import build_context
    from bastion.jobs.service import SubmitRequest
    from bastion.wiring import install_services

    root.mkdir(parents=True, exist_ok=True)
    settings = Settings(
        data_dir=root / f"p{parallel}",
        database_url=f"sqlite:///{root / f'p{parallel}.db'}",
        master_key=MASTER,
        jwt_secret=JWT,
        max_concurrent_jobs=1,
    )
    ctx = build_context(settings)
    install_services(ctx)
    user = ctx.accounts.create_user(f"bench-{parallel}", "user")
    principal = Principal(user.id, user.username, "user", "api_key")
    worker = ctx.services.worker
    if cluster is not None:  # the same search with each trial a Ray task (warm Ray workers)
        from bastion.jobs.executors.ray import RayExecutor
        from bastion.jobs.hooks import make_worker

        executor = RayExecutor.connect(cluster.address, insecure=False, vault=ctx.vault)
        worker = make_worker(ctx, worker.config, executor=executor)
        ctx.services.worker = worker
    worker.start()
    try:
        search = {
            "space": SPACE,
            "trials": trials,
            "parallel": parallel,
            "cv": FOLDS,
            "include_defaults": False,
        }
        start = time.perf_counter()
        job = ctx.services.jobs.submit(
            principal,
            # resources are per trial: one CPU each, so two trials fit the 2-CPU cluster at once
            SubmitRequest(
                model_type="alzheimer_classifier",
                dataset_source=DATASET,
                params=BASE,
                seed=SEED,
                search=search,
                resources={"cpus": 1},
            ),
        )
        while (current := ctx.services.jobs.get_any(job.id)).state not in (
            "completed",
            "failed",
            "cancelled",
        ):
            time.sleep(0.5)
        if current.state != "completed":
            raise SystemExit(f"search {current.state}: {current.error_message}")
        # Search time: from submit until the last trial was told (the retrain that follows is extra).
        summary = (current.results or {})["search"]
        return time.perf_counter() - start, float(summary["best_cv"]["mean"])
    finally:
        worker.close()
        ctx.close()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--executor", choices=("local", "ray"), default="local")
    parser.add_argument(
        "--ray-niceness",
        type=int,
        default=0,
        help="nice value of the Ray workers (Ray's own default is 15: they yield to every other "
        "process, which on a shared machine starves them against the nice-0 baseline)",
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="alternate plain Optuna and Bastion (1 parallel) this many times; medians (a loaded machine)",
    )
    args = parser.parse_args()
    trials = 8 if args.quick else args.trials
    from bastion import logs

    logs.configure("error")
    cluster = None
    if args.executor == "ray":
        import os
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.jobs.ray_cluster import start_cluster

        cluster = start_cluster(args.ray_niceness)
        os.environ.update(cluster.env())
    pairs: list[tuple[float, float]] = []
    try:
        with tempfile.TemporaryDirectory(prefix="bastion-bench-") as tmp:
            for turn in range(max(1, args.repeat)):
                plain_seconds, plain_best = plain_optuna(trials)
                one_seconds, one_best = bastion_search(Path(tmp) / str(turn), trials, 1, cluster)
                pairs.append((plain_seconds, one_seconds))
                print(f"turn {turn}: plain {plain_seconds:.2f} s, bastion {one_seconds:.2f} s", flush=True)
            two_seconds, two_best = bastion_search(Path(tmp), trials, 2, cluster)
    finally:
        if cluster is not None:
            import ray

            from tests.jobs.ray_cluster import stop_cluster

            ray.shutdown()
            stop_cluster(cluster)
    plain_seconds = statistics.median(p for p, _ in pairs)
    one_seconds = statistics.median(o for _, o in pairs)
    print(f"search_parallel_speedup: {one_seconds / two_seconds:.3f}")
    print(
        f"search_time_ratio: {statistics.median(o / p for p, o in pairs):.3f}  (median of {len(pairs)} pairs)"
    )
    print(f"search_best_cv_ratio: {one_best / plain_best:.4f}")
    print(
        f"executor: {args.executor}  ray_niceness: {args.ray_niceness}  trials: {trials}  folds: {FOLDS}  dataset: {DATASET}  seed: {SEED}  space: {json.dumps(SPACE)}"
    )
    print(f"plain_optuna_seconds: {plain_seconds:.2f}  best_cv: {plain_best:.4f}")
    print(
        f"bastion_parallel_1_seconds: {one_seconds:.2f}  best_cv: {one_best:.4f}  (includes the final retrain)"
    )
    print(f"bastion_parallel_2_seconds: {two_seconds:.2f}  best_cv: {two_best:.4f}")


if __name__ == "__main__":
    main()
