"""Hyper-parameter search jobs: Optuna over k-fold CV trials, stored in Bastion's database."""

from __future__ import annotations

from typing import Any

import pytest

from bastion.errors import Invalid
from bastion.jobs.search_space import validate_search
from bastion.ml.cv import cross_validate
from bastion.store.tables import JobEvent, ModelVersionRecord, SearchJournalEntry
from tests.conftest import Caller
from tests.jobs.support import Harness, principal, wait_for

SPACE = {"C": {"type": "float", "low": 0.001, "high": 100.0, "log": True}}
BASE = {"estimator": "logistic_regression", "importance_repeats": 0, "max_iter": 500}


SQLITE_ONLY = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


def test_search_spec_is_checked_at_submit() -> None:
    ok = validate_search("alzheimer_classifier", {"space": SPACE, "trials": 5, "parallel": 2})
    assert ok["space"]["C"]["log"] is True and ok["cv"] == 5
    choices = validate_search(
        "alzheimer_classifier", {"space": {"estimator": ["random_forest", "logistic_regression"]}}
    )
    assert choices["space"]["estimator"]["type"] == "categorical"
    for bad in (
        {"space": {"nope": [1, 2]}},
        {"space": {"C": {"type": "float", "low": 0, "high": 1, "log": True}}},
        {"space": {"C": {"type": "float", "low": 0.1, "high": 1e9}}},  # above the param's own bound
        {"space": {"estimator": ["svm"]}},
        {"space": SPACE, "trials": 0},
        {"space": SPACE, "parallel": 99},
        {"space": {"test_size": [0.2, 0.3]}},
    ):
        with pytest.raises(Invalid):
            validate_search("alzheimer_classifier", bad)


def trial_events(h: Harness, job_id: str) -> list[dict[str, object]]:
    with h.ctx.db.session() as s:
        rows = s.query(JobEvent).filter_by(job_id=job_id, kind="trial").order_by(JobEvent.id).all()
        return [e.data for e in rows]


@SQLITE_ONLY
@pytest.mark.slow
def test_search_beats_defaults_survives_a_restart_and_registers_its_best(
    harness: Harness, alice: Caller
) -> None:
    config = harness.config("bastion.jobs.runner:run_training", max_concurrent=1)
    svc = harness.service(config)
    me = principal(alice)
    search = {"space": SPACE, "trials": 20, "parallel": 2, "cv": 5}
    job = harness.submit(me, dataset_source="breast_cancer", params=BASE, search=search, seed=3)
    first = harness.worker(config)
    wait_for(lambda: len(trial_events(harness, job.id)) >= 6, 240, what="six trials to finish")
    first.close()  # the worker goes away mid-search; the job goes back to the queue
    assert harness.job(job.id).state == "pending"
    with harness.ctx.db.session() as s:
        kept = s.query(SearchJournalEntry).filter_by(study=f"job-{job.id}").count()
    assert kept > 0, "the study lives in Bastion's database"
    harness.worker(config)
    done = harness.wait_state(job.id, "completed", "failed", timeout=600)
    assert done.state == "completed", done.error_message
    results = done.results or {}
    summary = results["search"]
    assert summary["n_complete"] + summary["n_pruned"] == 20
    assert "search resumed" in " ".join(ln["line"] for ln in svc.logs(done, limit=2000)["lines"])
    numbers = [t["number"] for t in summary["trials"]]
    assert numbers == list(range(len(numbers))), "one study across both workers"
    row = next(t for t in summary["trials"] if t["number"] == summary["best_trial"])
    assert len(row["folds"]) == 5 and row["cv_std"] is not None
    # The defaults, cross-validated independently on the same folds, are not better than the best.
    from bastion.jobs.datasets import DatasetRef, load_for_job

    ref = DatasetRef.from_json(done.dataset_ref)
    defaults = cross_validate(
        "alzheimer_classifier", load_for_job(ref, seed=3, kaggle_path=None), BASE, 5, seed=3
    )
    assert summary["best_cv"]["mean"] >= defaults["mean"]
    assert results["accuracy"] > 0.9 and done.model_artifact_id
    # The best trial's model is a registered version whose lineage carries the CV scores.
    version = wait_for(lambda: _registered(harness, job.id), 30, what="the model to be registered")
    lineage = version.lineage_json
    assert lineage["search"]["best_trial"] == summary["best_trial"]
    assert lineage["cv"]["folds"] == summary["best_cv"]["folds"]


def _registered(h: Harness, job_id: str) -> ModelVersionRecord | None:
    with h.ctx.db.session() as s:
        for row in s.query(ModelVersionRecord).all():
            if row.lineage_json.get("job_id") == job_id:
                return row
    return None


@SQLITE_ONLY
def test_cancel_stops_a_search_and_its_trials(harness: Harness, alice: Caller) -> None:
    config = harness.config("bastion.jobs.runner:run_training")
    svc = harness.service(config)
    harness.worker(config)
    me = principal(alice)
    search = {
        "space": {"n_estimators": {"type": "int", "low": 200, "high": 400}},
        "trials": 50,
        "parallel": 2,
        "cv": 5,
    }
    params = {"estimator": "random_forest", "importance_repeats": 0}
    job = harness.submit(me, dataset_source="breast_cancer", params=params, search=search)
    wait_for(lambda: harness.job(job.id).stage == "search", 60, what="the search to start")
    cancelled, _ = svc.cancel(me, job.id)
    assert cancelled.state == "cancelled"
    wait_for(lambda: not harness.workers[0].running(), 30, what="the worker to stop the search")
    assert harness.job(job.id).state == "cancelled"
    assert len(trial_events(harness, job.id)) < 50


@SQLITE_ONLY
def test_plain_job_with_cv(harness: Harness, alice: Caller) -> None:
    config = harness.config("bastion.jobs.runner:run_training")
    harness.service(config)
    harness.worker(config)
    job = harness.submit(principal(alice), dataset_source="breast_cancer", params={**BASE, "cv": 4})
    done = harness.wait_state(job.id, "completed", "failed", timeout=120)
    assert done.state == "completed", done.error_message
    cv = (done.results or {})["cv"]
    assert cv["k"] == 4 and len(cv["folds"]) == 4 and cv["metric"] == "accuracy"
    assert min(cv["folds"]) <= cv["mean"] <= max(cv["folds"]) and cv["mean"] > 0.9


def test_small_search_keeps_its_study_in_either_database(harness: Harness, alice: Caller) -> None:
    """The Optuna journal lives in the job's own database (SQLite and PostgreSQL)."""
    config = harness.config("bastion.jobs.runner:run_training")
    svc = harness.service(config)
    harness.worker(config)
    search = {"space": SPACE, "trials": 3, "parallel": 2, "cv": 3}
    job = harness.submit(principal(alice), dataset_source="breast_cancer", params=BASE, search=search)
    done = harness.wait_state(job.id, "completed", "failed", timeout=300)
    assert done.state == "completed", done.error_message
    with harness.ctx.db.session() as s:
        entries = (
            s.query(SearchJournalEntry)
            .filter_by(study=f"job-{job.id}")
            .order_by(SearchJournalEntry.seq)
            .all()
        )
    assert [e.seq for e in entries] == list(range(len(entries))) and len(entries) > 3
    assert len(trial_events(harness, job.id)) == len((done.results or {})["search"]["trials"])
    # The trials ran in two warm processes (one per parallel slot), not one process each.
    lines = [ln["line"] for ln in svc.logs(done, limit=2000)["lines"]]
    assert sorted(ln for ln in lines if ln.startswith("trial process")) == [
        "trial process 0 started",
        "trial process 1 started",
    ], lines


def plain_optuna_table(
    space: dict[str, Any], trials: int, k: int, seed: int
) -> list[tuple[str, dict[str, Any], float | None]]:
    """The same search as an in-process Optuna script: every fold reported, the pruner asked each time."""
    import optuna

    from bastion.data.builtin import load_dataset
    from bastion.jobs.search import STARTUP_TRIALS, WARMUP_FOLDS
    from bastion.jobs.search_space import suggest

    dataset = load_dataset("breast_cancer")
    study = optuna.create_study(
        direction="maximize",
        sampler=optuna.samplers.TPESampler(seed=seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_FOLDS),
    )

    def objective(trial: optuna.Trial) -> float:
        scores: list[float] = []

        def on_fold(i: int, score: float) -> None:
            scores.append(score)
            trial.report(sum(scores) / len(scores), i)
            if trial.should_prune():
                raise optuna.TrialPruned()

        params = BASE | suggest(trial, space)
        return float(
            cross_validate("alzheimer_classifier", dataset, params, k, seed=seed, on_fold=on_fold)["mean"]
        )

    study.optimize(objective, n_trials=trials)
    return [(t.state.name.lower(), t.params, t.value) for t in study.trials]


@SQLITE_ONLY
def test_one_at_a_time_search_prunes_exactly_as_in_process_optuna(harness: Harness, alice: Caller) -> None:
    """The driver skips the verdict round trip where the pruner cannot prune (its start-up trials, its
    warm-up fold): the trial table (states, points, CV means) must still equal plain Optuna's."""
    config = harness.config("bastion.jobs.runner:run_training")
    harness.service(config)
    harness.worker(config)
    search = {"space": SPACE, "trials": 12, "parallel": 1, "cv": 4, "include_defaults": False}
    job = harness.submit(principal(alice), dataset_source="breast_cancer", params=BASE, search=search, seed=5)
    done = harness.wait_state(job.id, "completed", "failed", timeout=300)
    assert done.state == "completed", done.error_message
    rows = (done.results or {})["search"]["trials"]
    ours = [(r["state"], r["params"], r["cv_mean"]) for r in rows]
    space = validate_search("alzheimer_classifier", {"space": SPACE})["space"]
    expected = plain_optuna_table(space, 12, 4, 5)
    assert [(st, p) for st, p, _ in ours] == [(st, p) for st, p, _ in expected]
    assert [v for st, _, v in ours if st == "complete"] == pytest.approx(
        [v for st, _, v in expected if st == "complete"], abs=1e-6
    )


@SQLITE_ONLY
def test_time_budget_stops_starting_trials(harness: Harness, alice: Caller) -> None:
    config = harness.config("bastion.jobs.runner:run_training")
    harness.service(config)
    harness.worker(config)
    search = {"space": SPACE, "trials": 200, "parallel": 1, "cv": 2, "time_budget_seconds": 1}
    job = harness.submit(principal(alice), dataset_source="breast_cancer", params=BASE, search=search)
    done = harness.wait_state(job.id, "completed", "failed", timeout=300)
    assert done.state == "completed", done.error_message
    summary = (done.results or {})["search"]
    assert 1 <= len(summary["trials"]) < 200 and done.model_artifact_id


@SQLITE_ONLY
@pytest.mark.slow
def test_search_resumes_after_its_worker_is_killed(harness: Harness, alice: Caller) -> None:
    """SIGKILL the ``bastion worker`` process mid-search: the next worker re-queues the job (attempt 2),
    drops the trials that died with it and finishes the study from the database."""
    import os
    import signal

    from tests.jobs.support import spawn_worker

    config = harness.config("bastion.jobs.runner:run_training")
    svc = harness.service(config)
    search = {"space": SPACE, "trials": 8, "parallel": 2, "cv": 3, "include_defaults": False}
    job = harness.submit(principal(alice), dataset_source="breast_cancer", params=BASE, search=search)
    first = spawn_worker(harness.ctx.settings)
    try:
        wait_for(lambda: len(trial_events(harness, job.id)) >= 3, 240, what="three trials to finish")
    finally:
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
    harness.worker(config)
    done = harness.wait_state(job.id, "completed", "failed", timeout=300)
    assert done.state == "completed", done.error_message
    assert done.attempt == 2
    summary = (done.results or {})["search"]
    assert summary["n_complete"] + summary["n_pruned"] == 8
    lines = " ".join(ln["line"] for ln in svc.logs(done, limit=2000)["lines"])
    assert "search resumed" in lines, lines[-2000:]
    dropped = sum(1 for t in summary["trials"] if t["state"] == "fail")
    assert f"{dropped} interrupted ones dropped" in lines, "trials in flight at the kill are marked failed"
