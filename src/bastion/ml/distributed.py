"""Data-parallel training of the torch model types through Ray Train's TorchTrainer.

``num_workers`` workers (one CPU each; gloo) each build the same network from the same seed, wrap
it in DistributedDataParallel (``ray.train.torch.prepare_model``) and run the very epochs of a
one-worker run (bastion.ml.model_types.adaptive_neural_net.train_epochs) on their share of every batch:
gradients are averaged, so an N-worker step is the one-worker step on the whole batch, and the
results format does not change. Worker 0 returns its history and weights as a Ray Train checkpoint
of safetensors files (no pickle). Worker 0 also puts each epoch's event in a Ray queue (an actor of
the coordinating task, so it ends with it) that the coordinator drains into the job's progress while
training runs, so a data-parallel job shows its epochs live, like a one-worker job.

It runs where the job runs, on the Ray cluster the process is connected to (the Ray executor); a
local job process is not connected and is refused with a clear error. Checkpoints pass through
``BASTION_RAY_TRAIN_STORAGE`` (default: a temporary directory, enough on one machine; several
machines need a path they all share).
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

from bastion.errors import Invalid
from bastion.ml.base import FitContext, FitOutput, Progress

WEIGHTS = "model.safetensors"


def _worker_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch
    import torch
    from safetensors.torch import save_file

    from bastion.ml.model_types.adaptive_neural_net import Params, make_optimizer, train_epochs
    from bastion.ml.model_types.mlp_net import network

    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    params = Params.model_validate(config["params"])
    torch.manual_seed(config["seed"])
    gen = torch.Generator().manual_seed(config["seed"])
    module = network(config["arch"])
    forward = ray.train.torch.prepare_model(module, move_to_device=False)
    optimizer = make_optimizer(forward, params)
    data = config["data"]
    epochs = config["progress"] if rank == 0 else None

    def report_epoch(fraction: float, event: dict[str, Any]) -> None:
        if epochs is not None:
            epochs.put_nowait((fraction, event))

    history, best_epoch, best_state = train_epochs(
        module,
        forward,
        optimizer,
        data["loss_fn"],
        data["Xt"],
        data["yt"],
        data["Xv"],
        data["yv"],
        params,
        gen,
        config["target_scale"],
        config["classify"],
        report_epoch,
        shard=(rank, world),
    )
    metrics = {"history": history, "best_epoch": best_epoch, "world": world}
    if rank != 0:
        ray.train.report(metrics)
        return
    state = best_state if best_state is not None else module.state_dict()
    with tempfile.TemporaryDirectory() as tmp:
        save_file({k: v.contiguous() for k, v in state.items()}, os.path.join(tmp, WEIGHTS))
        ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(tmp))


def _forward(epochs: Any, fitted: threading.Event, progress: Progress) -> None:
    """Worker 0's epochs, as they come, into the job's progress; after the fit, what is left."""
    from ray.util.queue import Empty

    while True:
        try:
            fraction, event = epochs.get(timeout=0.2)
        except Empty:  # nothing yet (Ray's error for it is also an Empty)
            if fitted.is_set() and epochs.empty():
                return
            continue
        except Exception:  # the queue is gone
            return
        progress(float(fraction), event)


def fit_data_parallel(
    arch: Any, prep: Any, data: dict[str, Any], params: Any, progress: Progress, seed: int, ctx: FitContext
) -> FitOutput:
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue
    from safetensors.torch import load_file

    from bastion.ml.model_types.mlp_net import TorchMLPModel, network

    if not ray.is_initialized():
        raise Invalid(
            "num_workers above 1 trains on a Ray cluster: run the job with BASTION_EXECUTOR=ray",
            code="needs_ray_executor",
        )
    progress(0.0, {"stage": "distributed", "num_workers": params.num_workers})
    storage = os.environ.get("BASTION_RAY_TRAIN_STORAGE") or tempfile.mkdtemp(prefix="bastion-train-")
    epochs = Queue(actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "params": params.model_dump(mode="json"),
            "arch": arch,
            "seed": seed,
            "data": data,
            "target_scale": float(prep.target_scale),
            "classify": ctx.task == "classification",
            "progress": epochs,
        },
        scaling_config=ScalingConfig(num_workers=params.num_workers, use_gpu=False),
        run_config=RunConfig(storage_path=storage, name=f"bastion-{os.getpid()}-{seed}"),
    )
    fitted = threading.Event()
    pump = threading.Thread(
        target=_forward, args=(epochs, fitted, progress), name="train-progress", daemon=True
    )
    pump.start()
    try:
        result = trainer.fit()
    finally:
        fitted.set()
        pump.join(30)
        epochs.shutdown(force=True)
    if result.checkpoint is None:
        raise RuntimeError("distributed training ended without a checkpoint from worker 0")
    metrics = result.metrics or {}
    history: list[dict[str, Any]] = list(metrics["history"])
    module = network(arch)
    with result.checkpoint.as_directory() as folder:
        module.load_state_dict(load_file(os.path.join(folder, WEIGHTS)))
    best_epoch = int(metrics["best_epoch"])
    progress(1.0, {"stage": "fitted", "epochs_run": len(history), "best_epoch": best_epoch})
    model = TorchMLPModel(module, arch, prep, ctx.task)
    training = {
        "epochs_run": len(history),
        "best_epoch": best_epoch,
        "stopped_early": len(history) < params.epochs,
        "num_workers": params.num_workers,
        "backend": "ray.train.TorchTrainer (gloo, DistributedDataParallel)",
    }
    return FitOutput(model=model, config=model.config() | {"training": training}, history=history)
