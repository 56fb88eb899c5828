"""A hyper-parameter search job: Optuna (TPE + median pruning) over k-fold CV trials on the executor.

The driver runs in the Bastion worker (it needs the database: Optuna's study lives there, see
bastion.jobs.journal), and is a JobRun like any other, so the worker claims, cancels, times out
and recovers a search exactly as it does a single job. Each trial is itself a run on the
worker's executor (a local process or a Ray task) with the target bastion.jobs.search_trial;
up to ``parallel`` run at once. Every fold score is reported to the pruner as it arrives; a
pruned trial is killed at once. A restarted search loads its study, marks the trials the dead
attempt left running as failed, and continues until ``trials`` trials have finished (or the
time budget is spent). Then the best trial is retrained on all training rows with the ordinary
training target, and that model becomes the job's model (registered with its CV in the lineage).
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from typing import Any

from bastion.jobs import queue
from bastion.jobs.config import DEFAULT_TARGET, JobConfig
from bastion.jobs.executor import Outcome, Sink
from bastion.jobs.executors import Executor
from bastion.store import Database

TRIAL_TARGET = "bastion.jobs.search_trial:run_trial"


class _Pruned(Exception):
    pass


class SearchRun:
    def __init__(
        self,
        db: Database,
        executor: Executor,
        spec: dict[str, Any],
        secrets: dict[str, Any],
        config: JobConfig,
    ) -> None:
        self.db = db
        self.executor = executor
        self.spec = spec
        self.secrets = secrets
        self.config = config
        self.search: dict[str, Any] = dict(spec["search"])
        self.killed: str | None = None
        self._lock = threading.Lock()
        self._active: dict[int, Any] = {}  # trial number -> its run (or a placeholder)
        self._study_lock = threading.Lock()

    # -- JobRun ---------------------------------------------------------------------------------

    def start(self) -> int | None:
        with self._lock:
            return None if self.killed is not None else 0

    def kill(self, reason: str) -> bool:
        with self._lock:
            if self.killed is None:
                self.killed = reason
            runs = list(self._active.values())
        for run in runs:
            run.kill(reason)
        return True

    def run(self, sink: Sink, *, deadline: float, tick: Callable[[], None] | None = None) -> Outcome:
        import optuna

        from bastion.jobs.journal import storage

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        outcome = Outcome()
        job_id = str(self.spec["job_id"])
        seed = int(self.spec.get("seed", 0))
        study = optuna.create_study(
            study_name=f"job-{job_id}",
            storage=storage(self.db, f"job-{job_id}"),
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=seed),
            pruner=optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=1),
            load_if_exists=True,
        )
        self._resume(study, sink)
        budget = self.search.get("time_budget_seconds")
        stop_asking = time.monotonic() + float(budget) if budget else float("inf")
        sink("progress", (self._fraction(study), {"stage": "search"}))

        def worker() -> None:
            while self.killed is None and time.monotonic() < min(stop_asking, deadline):
                with self._study_lock:
                    if self._finished(study) + len(self._active) >= int(self.search["trials"]):
                        return
                    trial = study.ask()
                    with self._lock:
                        self._active[trial.number] = _Placeholder()
                self._run_trial(study, trial, sink, deadline)

        threads = [
            threading.Thread(target=worker, name=f"search-{job_id[:8]}-{i}", daemon=True)
            for i in range(int(self.search["parallel"]))
        ]
        for t in threads:
            t.start()
        while any(t.is_alive() for t in threads):
            if time.monotonic() >= deadline:
                self.kill("timeout")
            for t in threads:
                t.join(0.1)
            if tick is not None:
                tick()
        if self.killed is not None:
            outcome.killed = self.killed
            return outcome
        return self._finish(study, sink, outcome, deadline, tick)

    # -- trials ---------------------------------------------------------------------------------

    def _resume(self, study: Any, sink: Sink) -> None:
        """Trials a dead attempt left running can never report: mark them failed, and say so."""
        from optuna.trial import TrialState

        stale = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.RUNNING]
        for t in stale:
            study._storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        done = self._finished(study)
        if stale or done:
            sink(
                "log",
                ("system", f"search resumed: {done} trials finished, {len(stale)} interrupted ones dropped"),
            )
        elif self.search.get("include_defaults"):
            from bastion.jobs.search_space import defaults_in

            point = defaults_in(
                str(self.spec["model_type"]), self.search["space"], self.spec.get("params") or {}
            )
            if point is not None:
                study.enqueue_trial(point, user_attrs={"defaults": True})

    @staticmethod
    def _finished(study: Any) -> int:
        from optuna.trial import TrialState

        return sum(
            1 for t in study.get_trials(deepcopy=False) if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
        )

    def _fraction(self, study: Any) -> float:
        return min(0.95, 0.95 * self._finished(study) / max(1, int(self.search["trials"])))

    def _run_trial(self, study: Any, trial: Any, sink: Sink, deadline: float) -> None:
        from optuna.trial import TrialState

        from bastion.jobs.search_space import suggest

        with self._study_lock:
            point = suggest(trial, self.search["space"])
        params = dict(self.spec.get("params") or {}) | point
        spec = dict(self.spec, params=params, trial=trial.number)
        run = self.executor.prepare(spec, self.secrets, dataclasses.replace(self.config, target=TRIAL_TARGET))
        scores: list[float] = []

        def trial_sink(kind: str, payload: Any) -> None:
            if kind == "log":
                stream, line = payload
                if stream in ("stderr", "job"):
                    sink("log", (stream, f"trial {trial.number}: {line}"))
                return
            _, event = payload
            if event.get("stage") == "cv" and "score" in event:
                scores.append(float(event["score"]))
                with self._study_lock:
                    trial.report(sum(scores) / len(scores), len(scores) - 1)
                    prune = trial.should_prune()
                if prune:
                    run.kill("pruned")

        with self._lock:
            self._active[trial.number] = run
            if self.killed is not None:
                run.kill(self.killed)
        try:
            run.start()
            out = run.run(trial_sink, deadline=deadline)
        except Exception as exc:  # the executor failed under the trial: the trial fails, the search goes on
            out = Outcome(error={"message": f"the trial could not run ({type(exc).__name__})"})
        cv = ((out.result or {}).get("results") or {}).get("cv")
        with self._study_lock:
            if out.killed == "pruned":
                state, value = TrialState.PRUNED, None
            elif out.killed is None and isinstance(cv, dict):
                trial.set_user_attr("cv", cv)
                state, value = TrialState.COMPLETE, float(cv["mean"])
            else:
                reason = (out.error or {}).get("message") or out.killed or "the trial failed"
                trial.set_user_attr("error", str(reason)[:300])
                state, value = TrialState.FAIL, None
            study.tell(trial, value, state=state)
            # Leave the active set only once told, so no other thread counts this trial as neither.
            with self._lock:
                self._active.pop(trial.number, None)
            row = _row(study.trials[trial.number])
            fraction = self._fraction(study)
        self._event(row)
        # A finished trial is a row of the job's history (as an epoch is for a training job).
        trial_row = {k: row[k] for k in ("number", "state", "params", "cv_mean", "cv_std")}
        sink("progress", (fraction, {"stage": "search", "epoch": row["number"], **trial_row}))
        sink("log", ("system", _describe(row)))

    def _event(self, row: dict[str, Any]) -> None:
        try:
            with self.db.session() as s:
                queue.add_event(s, str(self.spec["job_id"]), "trial", row)
        except Exception:  # an event is a courtesy; the journal is the record
            return

    # -- the end --------------------------------------------------------------------------------

    def _finish(
        self, study: Any, sink: Sink, outcome: Outcome, deadline: float, tick: Callable[[], None] | None
    ) -> Outcome:
        from optuna.trial import TrialState

        table = [_row(t) for t in study.trials]
        complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
        if not complete:
            outcome.error = {"message": "no trial of the search completed; see the trial table in the logs"}
            return outcome
        best = study.best_trial
        sink("progress", (0.95, {"stage": "retrain", "trial": best.number}))
        sink("log", ("system", f"retraining the best trial ({best.number}) on all training rows"))
        params = dict(self.spec.get("params") or {}) | dict(best.params)
        spec = dict(self.spec, params=params)
        spec.pop("search", None)
        run = self.executor.prepare(
            spec, self.secrets, dataclasses.replace(self.config, target=DEFAULT_TARGET)
        )
        with self._lock:
            self._active[-1] = run
            if self.killed is not None:
                run.kill(self.killed)
        try:
            run.start()
            final = run.run(
                lambda kind, payload: sink(kind, payload) if kind == "log" else None,
                deadline=deadline,
                tick=tick,
            )
        finally:
            with self._lock:
                self._active.pop(-1, None)
        if final.result is None or final.killed is not None:
            outcome.killed = final.killed or self.killed
            outcome.error = final.error or {"message": "retraining the best trial failed"}
            return outcome
        summary = {
            "metric": (best.user_attrs.get("cv") or {}).get("metric"),
            "best_trial": best.number,
            "best_params": best.params,
            "best_cv": best.user_attrs.get("cv"),
            "defaults_cv": next((r["cv"] for r in table if r.get("defaults")), None),
            "trials": table,
            "n_complete": len(complete),
            "n_pruned": sum(1 for t in study.trials if t.state == TrialState.PRUNED),
            "sampler": "TPE",
            "pruner": "median",
        }
        results = dict(final.result.get("results") or {})
        results["search"] = summary
        outcome.result = dict(final.result, results=results)
        outcome.returncode = 0
        return outcome


class _Placeholder:
    """Holds a trial's place between ``ask`` and the start of its run."""

    def kill(self, reason: str) -> bool:
        return False


def _row(trial: Any) -> dict[str, Any]:
    cv = trial.user_attrs.get("cv")
    return {
        "number": trial.number,
        "state": trial.state.name.lower(),
        "params": trial.params,
        "cv_mean": cv["mean"] if cv else None,
        "cv_std": cv["std"] if cv else None,
        "folds": cv["folds"] if cv else list(trial.intermediate_values.values()),
        "cv": cv,
        "defaults": bool(trial.user_attrs.get("defaults")),
        "error": trial.user_attrs.get("error"),
    }


def _describe(row: dict[str, Any]) -> str:
    if row["cv_mean"] is not None:
        return f"trial {row['number']} {row['state']}: CV {row['cv_mean']:.4f} ± {row['cv_std']:.4f} {row['params']}"
    return f"trial {row['number']} {row['state']}: {row['params']}" + (
        f" ({row['error']})" if row["error"] else ""
    )
