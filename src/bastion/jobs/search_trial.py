"""A search's warm trial process: load the data once, then cross-validate trial after trial.

Runs where any job runs (a local job process, or a Ray task), started by the search driver
(bastion.jobs.search) with ``interactive`` set, so it reads commands from the worker
(``ctx.receive``) and answers with progress events (``ctx.send``, never throttled):

* ``{"op": "trial", "number": n, "params": {...}}``: cross-validate the job's params with these
  on top. After each fold it sends ``{"stage": "cv", "trial": n, "fold": i, "score": s}`` and waits
  for the driver's verdict (``{"op": "continue"}``, or anything else: pruned), exactly as an
  in-process Optuna objective asks its pruner; except after the first ``free_folds`` folds, where
  the driver knows the pruner cannot prune yet (a round trip less per such fold); then ``{"stage": "trial_end", "trial": n, "state":
  "complete" | "pruned" | "fail", "cv": {...}}``.
* ``{"op": "final", "params": {...}}``: train the best point on all training rows with the ordinary
  trainer; its result (the model sealed into the vault locally, or returned as package bytes on
  Ray, which the worker seals) is this job's result.
* ``{"op": "stop"}``: end with an empty result.

The process holds the job's data and code only; the study (and the database) stay with the worker.
"""

from __future__ import annotations

from typing import Any

READY = "pool_ready"


class _Pruned(Exception):
    pass


def serve_trials(ctx: Any) -> dict[str, Any]:
    spec = dict(ctx.spec)
    dataset = _dataset(ctx)
    base = dict(spec.get("params") or {})
    _event(ctx, {"stage": READY})
    while True:
        command = ctx.receive()
        op = command.get("op")
        if op == "trial":
            _trial(ctx, spec, dataset, base, command)
        elif op == "final":
            final = {k: v for k, v in spec.items() if k not in ("search", "interactive")}
            ctx.spec = dict(final, params=base | dict(command.get("params") or {}))
            return _final(ctx)
        else:
            return {}


def _event(ctx: Any, event: dict[str, Any], fraction: float = 0.0) -> None:
    ctx.send({"type": "progress", "progress": fraction, "event": event})


def _trial(
    ctx: Any, spec: dict[str, Any], dataset: Any, base: dict[str, Any], command: dict[str, Any]
) -> None:
    from bastion.jobs.child import _short
    from bastion.ml.cv import cross_validate

    number = int(command["number"])
    k = int(spec["search"]["cv"])

    free = int(command.get("free_folds") or 0)

    def on_fold(i: int, score: float) -> None:
        _event(ctx, {"stage": "cv", "trial": number, "fold": i, "score": score}, (i + 1) / k)
        if i >= free and ctx.receive().get("op") != "continue":
            raise _Pruned

    end: dict[str, Any] = {"stage": "trial_end", "trial": number}
    try:
        cv = cross_validate(
            str(spec["model_type"]),
            dataset,
            base | dict(command.get("params") or {}),
            k,
            seed=int(spec.get("seed", 0)),
            on_fold=on_fold,
        )
        end |= {"state": "complete", "cv": cv}
    except _Pruned:
        end["state"] = "pruned"
    except MemoryError:
        raise  # the process is in no state to go on: the job reports it
    except Exception as exc:  # this point cannot be trained (bad combination): the trial fails
        end |= {"state": "fail", "error": _short(exc)}
    _event(ctx, end, 1.0)


def _dataset(ctx: Any) -> Any:
    inputs = getattr(ctx, "inputs", None)
    if inputs and "dataset" in inputs:
        return inputs["dataset"]
    from bastion.jobs.datasets import DatasetRef
    from bastion.jobs.runner import load_dataset

    needs_vault = bool(DatasetRef.from_json(ctx.spec["dataset"]).artifact_id)
    return load_dataset(ctx.spec, ctx.vault() if needs_vault else None)


def _final(ctx: Any) -> dict[str, Any]:
    """The ordinary trainer of the place this runs: sealed here (local), or by the worker (Ray)."""
    from bastion.jobs.executors.ray_task import RayTaskContext, train_on_inputs

    if isinstance(ctx, RayTaskContext):
        return train_on_inputs(ctx)
    from bastion.jobs.runner import run_training

    return run_training(ctx)
