"""Data-parallel LoRA on Ray: a fine-tuning task with ``num_workers`` above 1 trains through Ray Train.

The Ray task that received the shipped inputs (base model files, scrubbed text, newest checkpoint)
only coordinates: it puts the inputs in the object store once and starts a TorchTrainer of
``num_workers`` CPU workers (gloo). Every worker runs the very code of a one-worker job
(bastion.llm.train.run_finetune) from the same seed; inside Ray Train's process group, transformers'
Trainer wraps the PEFT model in DistributedDataParallel and gives each rank its share of every epoch
(a DistributedSampler), so gradients of the LoRA weights are averaged. Each rank takes
``batch_size / num_workers`` examples per step, so a step covers the batch of a one-worker step and
the learning-rate schedule has the same length. Rank 0 alone talks to the job: its progress, log
lines, per-epoch checkpoints and final adapter go into a Ray queue (an actor of the coordinating
task, so it ends with it) that the task relays onto its stream, exactly as a one-worker task sends
them; the Bastion worker writes them through the vault. No worker sees a key or the vault.
"""

from __future__ import annotations

import os
import tempfile
import threading
from typing import Any

from bastion.llm.on_ray import ShippedVault, final_artifact_id, run_shipped


class _RankContext:
    """What run_finetune's context forwards to on a Ray Train worker: rank 0's queue, or nothing."""

    def __init__(self, send: Any) -> None:
        self._send = send

    def progress(self, fraction: float, event: dict[str, Any] | None = None) -> None:
        self._send(("progress", float(fraction), dict(event or {})))

    def log(self, line: str) -> None:
        self._send(("log", str(line)))

    def flush(self) -> None:
        """Every message is put on the queue as it comes."""


def _worker_loop(config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray
    import ray.train

    lead = ray.train.get_context().get_world_rank() == 0
    channel = config["channel"]

    def send(message: tuple[Any, ...]) -> None:
        if lead:
            channel.put(message)

    inputs = ray.get(config["inputs"][0])
    spec = config["spec"]
    vault = ShippedVault(inputs["artifacts"], final_artifact_id(spec), lambda a, d: send(("put", a, d)))
    out = run_shipped(_RankContext(send), spec, inputs, vault)
    if lead:
        if vault.final is None:
            raise RuntimeError("the fine-tuning run returned no adapter")
        send(("final", out["results"], vault.final))


def _relay(channel: Any, fitted: threading.Event, ctx: Any, final: dict[str, Any]) -> None:
    """Rank 0's messages, as they come, onto the task's stream; after the fit, what is left."""
    from ray.util.queue import Empty

    while True:
        try:
            message = channel.get(timeout=0.2)
        except Empty:  # nothing yet (Ray's error for it is also an Empty)
            if fitted.is_set() and channel.empty():
                return
            continue
        except Exception:  # the queue is gone
            return
        kind = message[0]
        if kind == "progress":
            ctx.progress(message[1], message[2])
        elif kind == "log":
            ctx.log(message[1])
        elif kind == "put":
            ctx.put_artifact(message[1], message[2])
        elif kind == "final":
            final["results"], final["package"] = message[1], message[2]


def finetune_data_parallel(ctx: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Task side: train on ``num_workers`` Ray Train workers; return rank 0's adapter as package bytes."""
    import ray
    from ray.train import RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer
    from ray.util.queue import Queue

    world = int(spec["params"]["num_workers"])
    ctx.progress(0.0, {"stage": "distributed", "num_workers": world})
    storage = os.environ.get("BASTION_RAY_TRAIN_STORAGE") or tempfile.mkdtemp(prefix="bastion-ft-")
    channel = Queue(actor_options={"num_cpus": 0})
    trainer = TorchTrainer(
        _worker_loop,
        train_loop_config={
            "spec": spec,
            "inputs": [ray.put(dict(ctx.inputs))],  # in a list: passed by reference, fetched by each rank
            "channel": channel,
        },
        scaling_config=ScalingConfig(num_workers=world, use_gpu=False),
        run_config=RunConfig(storage_path=storage, name=f"bastion-ft-{spec['job_id']}-{os.getpid()}"),
    )
    fitted = threading.Event()
    final: dict[str, Any] = {}
    pump = threading.Thread(target=_relay, args=(channel, fitted, ctx, final), name="ft-relay", daemon=True)
    pump.start()
    try:
        trainer.fit()
    finally:
        fitted.set()
        pump.join(60)
        channel.shutdown(force=True)
    if "package" not in final:
        raise RuntimeError("data-parallel fine-tuning ended without an adapter from worker 0")
    return {"results": final["results"], "model_package": final["package"], "model_format": "safetensors"}
