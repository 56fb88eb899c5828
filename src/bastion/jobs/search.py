"""A hyper-parameter search job: Optuna (TPE + median pruning) over k-fold CV trials on the executor.

The driver runs in the Bastion worker (it needs the database: Optuna's study lives there, see
bastion.jobs.journal), and is a JobRun like any other, so the worker claims, cancels, times out
and recovers a search exactly as it does a single job. The trials run in ``parallel`` warm trial
processes on the worker's executor (local job processes, or Ray tasks; target
bastion.jobs.search_trial): each loads the data once and then cross-validates the points the
driver sends it, one after the other, so a trial costs its folds and not a process start and an
import of the ML stack. After every fold the process waits for the driver's verdict: the score is
reported to the pruner, and a pruned trial stops there (the process stays, for the next point).
A trial process that dies takes only its trial in flight with it (marked failed; the slot starts
a new process). A restarted search loads its study, marks the trials the dead attempt left
running as failed, and continues until ``trials`` trials have finished (or the time budget is
spent). Then the best trial is retrained on all training rows with the ordinary trainer, in the
process that finished last (a fresh run only if it could not), and that model becomes the job's
model (registered with its CV in the lineage).
"""

from __future__ import annotations

import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from typing import Any

from bastion.jobs import queue
from bastion.jobs.config import DEFAULT_TARGET, JobConfig
from bastion.jobs.executor import Outcome, Sink
from bastion.jobs.executors import Executor
from bastion.jobs.search_trial import READY
from bastion.store import Database

POOL_TARGET = "bastion.jobs.search_trial:serve_trials"
# The median pruner's settings: it never prunes before this many trials completed, nor at a fold
# (step) below WARMUP_FOLDS; those folds need no verdict from the driver.
STARTUP_TRIALS = 5
WARMUP_FOLDS = 1
# A slot whose trial process keeps dying without finishing is given up after this many new starts.
MAX_RESTARTS = 3


@dataclasses.dataclass
class _Slot:
    """One warm trial process and the trial it is running (None between trials)."""

    run: Any = None
    trial: Any = None
    scores: list[float] = dataclasses.field(default_factory=list)
    free_folds: int = 0  # the trial's first folds that need no verdict (the pruner cannot prune them)
    final: bool = False
    stopped: bool = False


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
        self._active: dict[int, Any] = {}  # slot (or -1: a separate retrain) -> its run
        self._slots: list[_Slot] = []
        self._study_lock = threading.Lock()
        self._deadline = float("inf")
        self._stop_asking: float | None = None  # set when the first trial process is ready
        self._final: Outcome | None = None
        self._final_sent = False

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
            pruner=optuna.pruners.MedianPruner(n_startup_trials=STARTUP_TRIALS, n_warmup_steps=WARMUP_FOLDS),
            load_if_exists=True,
        )
        self._resume(study, sink)
        self._deadline = deadline
        sink("progress", (self._fraction(study), {"stage": "search"}))

        threads = [
            threading.Thread(
                target=self._slot,
                args=(i, study, sink, deadline),
                name=f"search-{job_id[:8]}-{i}",
                daemon=True,
            )
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
    def _count(study: Any, *states: Any) -> int:
        return sum(1 for t in study.get_trials(deepcopy=False) if t.state in states)

    def _finished(self, study: Any) -> int:
        from optuna.trial import TrialState

        return self._count(study, TrialState.COMPLETE, TrialState.PRUNED)

    def _fraction(self, study: Any) -> float:
        return min(0.95, 0.95 * self._finished(study) / max(1, int(self.search["trials"])))

    def _slot(self, index: int, study: Any, sink: Sink, deadline: float) -> None:
        """Keep one warm trial process busy until the search has no more trials for it."""
        restarts = 0
        config = dataclasses.replace(self.config, target=POOL_TARGET)
        while self.killed is None:
            slot = _Slot()
            slot.run = run = self.executor.prepare(dict(self.spec, interactive=True), self.secrets, config)
            with self._study_lock:
                self._slots.append(slot)
            with self._lock:
                self._active[index] = run
                if self.killed is not None:
                    run.kill(self.killed)
            try:
                if run.start() is not None:
                    sink("log", ("system", f"trial process {index} started"))
                out = run.run(functools.partial(self._on_message, slot, study, sink), deadline=deadline)
            except Exception as exc:  # the executor failed under the process: its trial fails
                out = Outcome(error={"message": f"the trial process could not run ({type(exc).__name__})"})
            finally:
                with self._lock:
                    self._active.pop(index, None)
            if slot.trial is not None:  # it ended with a trial in flight: that trial failed
                reason = (out.error or {}).get("message") or out.killed or "the trial process ended"
                self._tell(slot, study, sink, {"state": "fail", "error": str(reason)})
            if slot.final:
                self._final = out
                return
            if slot.stopped:
                return
            restarts += 1
            if restarts > MAX_RESTARTS:
                sink("log", ("system", f"trial process {index} kept failing; the search goes on without it"))
                return

    def _on_message(self, slot: _Slot, study: Any, sink: Sink, kind: str, payload: Any) -> None:
        """A message of a trial process: fold scores go to the pruner, a finished trial to the study."""
        if kind == "log":
            stream, line = payload
            if slot.final:
                sink("log", payload)
            elif stream in ("stderr", "job"):
                who = f"trial {slot.trial.number}" if slot.trial is not None else "trial process"
                sink("log", (stream, f"{who}: {line}"))
            return
        _, event = payload
        stage = event.get("stage")
        if slot.final:
            return  # the retrain's own progress: the search shows its stage instead
        if stage == READY:
            self._next(slot, study, sink)
            return
        trial = slot.trial
        if trial is None or event.get("trial") != trial.number:
            return
        if stage == "cv" and "score" in event:
            slot.scores.append(float(event["score"]))
            step = len(slot.scores) - 1
            with self._study_lock:
                trial.report(sum(slot.scores) / len(slot.scores), step)
                if step < slot.free_folds:
                    return  # the process did not wait: the pruner cannot prune at this fold
                prune = trial.should_prune()
            slot.run.send({"op": "prune" if prune else "continue"})
        elif stage == "trial_end":
            self._tell(slot, study, sink, event)
            self._next(slot, study, sink)

    def _next(self, slot: _Slot, study: Any, sink: Sink) -> None:
        """Give the process its next point; or, when none is left, the retrain (to the last one) or stop."""
        from optuna.trial import TrialState

        from bastion.jobs.search_space import suggest

        retrain: int | None = None
        with self._study_lock:
            if self._stop_asking is None:  # the time budget counts from the first ready process
                budget = self.search.get("time_budget_seconds")
                self._stop_asking = time.monotonic() + float(budget) if budget else float("inf")
            busy = sum(1 for s in self._slots if s.trial is not None)
            trials = int(self.search["trials"])
            more = (
                self.killed is None
                and time.monotonic() < min(self._stop_asking, self._deadline)
                and self._finished(study) + busy < trials
                # points that cannot even be trained fail; do not try them forever
                and self._count(study, TrialState.FAIL) < max(trials, 10)
            )
            if more:
                trial = study.ask()
                point = suggest(trial, self.search["space"])
                # Even if every trial in flight completes first, is the pruner still starting up?
                starting = self._count(study, TrialState.COMPLETE) + busy < STARTUP_TRIALS
                free = int(self.search["cv"]) if starting else WARMUP_FOLDS
                slot.trial, slot.scores, slot.free_folds = trial, [], free
                command: dict[str, Any] = {
                    "op": "trial",
                    "number": trial.number,
                    "params": point,
                    "free_folds": free,
                }
            elif (
                busy == 0
                and not self._final_sent
                and self.killed is None
                and self._count(study, TrialState.COMPLETE) > 0
            ):
                self._final_sent = slot.final = True
                best = study.best_trial
                retrain = best.number
                command = {"op": "final", "params": dict(best.params)}
            else:
                slot.stopped = True
                command = {"op": "stop"}
        if retrain is not None:
            self._say_retrain(sink, retrain)
        slot.run.send(command)

    def _tell(self, slot: _Slot, study: Any, sink: Sink, end: dict[str, Any]) -> None:
        from optuna.trial import TrialState

        trial = slot.trial
        cv = end.get("cv")
        with self._study_lock:
            if end.get("state") == "pruned":
                state, value = TrialState.PRUNED, None
            elif end.get("state") == "complete" and isinstance(cv, dict):
                trial.set_user_attr("cv", cv)
                state, value = TrialState.COMPLETE, float(cv["mean"])
            else:
                trial.set_user_attr("error", str(end.get("error") or "the trial failed")[:300])
                state, value = TrialState.FAIL, None
            study.tell(trial, value, state=state)
            # Leave the busy set only once told, so no other slot counts this trial as neither.
            slot.trial = None
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
        final = self._final
        if final is None or final.result is None or final.killed is not None:
            final = self._retrain(best, sink, deadline, tick)
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

    def _retrain(self, best: Any, sink: Sink, deadline: float, tick: Callable[[], None] | None) -> Outcome:
        """The retrain as a run of its own, when no warm trial process could do it."""
        self._say_retrain(sink, best.number)
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
            return run.run(
                lambda kind, payload: sink(kind, payload) if kind == "log" else None,
                deadline=deadline,
                tick=tick,
            )
        finally:
            with self._lock:
                self._active.pop(-1, None)

    @staticmethod
    def _say_retrain(sink: Sink, number: int) -> None:
        sink("progress", (0.95, {"stage": "retrain", "trial": number}))
        sink("log", ("system", f"retraining the best trial ({number}) on all training rows"))


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
