"""DQN as an ordinary job: what submit checks, and what the job process runs.

Online jobs name ``dataset_source: "gymnasium"`` and an ``env_id`` the operator allowed
(``BASTION_DQN_ALLOWED_ENVS``, comma-separated); offline jobs name ``user_provided`` with the
``dataset_id`` of an uploaded transitions table, whose columns and null counts are checked at submit
from the stored schema (no data is loaded) and whose values are checked again in the job.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.errors import Invalid
from bastion.jobs.datasets import USER_PROVIDED, DatasetRef

if TYPE_CHECKING:
    from bastion.auth.principal import Principal
    from bastion.context import Context
    from bastion.jobs.child import JobContext

RL_MODEL_TYPES = frozenset({"dqn"})


def allowed_envs(setting: str) -> list[str]:
    return [e.strip() for e in setting.split(",") if e.strip()]


def check_env(env_id: str, setting: str) -> None:
    allowed = allowed_envs(setting)
    if env_id not in allowed:
        raise Invalid(
            f"environment {env_id!r} is not allowed on this server; allowed: {', '.join(allowed) or 'none'} "
            "(an administrator sets BASTION_DQN_ALLOWED_ENVS)",
            code="env_not_allowed",
            allowed=allowed,
        )


def resolve(
    ctx: Context,
    principal: Principal,
    dataset_source: str,
    dataset_id: str | None,
    params: dict[str, Any],
) -> DatasetRef:
    """The job's data for a DQN: an allowed environment (online) or a checked transitions table."""
    from bastion.jobs.datasets import resolve_dataset
    from bastion.ml.rl.dqn import ONLINE_SOURCE
    from bastion.ml.rl.transitions import check_schema

    setting = ctx.settings.dqn_allowed_envs
    if dataset_source == ONLINE_SOURCE:
        if dataset_id:
            raise Invalid("an online DQN job takes no dataset_id")
        check_env(str(params["env_id"]), setting)
        return DatasetRef(ONLINE_SOURCE, None, None, 0, 0, "reinforcement")
    if dataset_source != USER_PROVIDED:
        raise Invalid(
            f"a dqn job learns online (dataset_source {ONLINE_SOURCE!r} with env_id) or offline "
            f"({USER_PROVIDED!r} with the dataset_id of a transitions table)",
            code="unknown_dataset",
            choices=[ONLINE_SOURCE, USER_PROVIDED],
        )
    if params.get("eval_env_id"):
        check_env(str(params["eval_env_id"]), setting)
    ref = resolve_dataset(ctx, principal, USER_PROVIDED, dataset_id, None, require_target=False)
    view: dict[str, Any] = ctx.services.datasets.get(principal, str(dataset_id))
    states = check_schema(view.get("schema", []))
    return DatasetRef(
        USER_PROVIDED, ref.dataset_id, None, ref.n_samples, len(states), "reinforcement", ref.artifact_id
    )


def ray_inputs(ref: DatasetRef, vault: Any) -> dict[str, Any]:
    """What a DQN task on Ray gets from the worker: the decrypted transitions table (offline), or
    nothing (online: the environment is created on the node)."""
    if ref.source != USER_PROVIDED:
        return {}
    if not ref.artifact_id:
        raise Invalid("the uploaded dataset is not reachable from this worker")
    return {"transitions": vault.get_bytes(ref.artifact_id)}


def transitions_bytes(ctx: Any, ref: DatasetRef) -> bytes:
    """The stored transitions table: handed over by the worker (Ray), or read from the vault."""
    inputs = getattr(ctx, "inputs", None)
    if inputs and "transitions" in inputs:
        return bytes(inputs["transitions"])
    if not ref.artifact_id:
        raise Invalid("the uploaded dataset is not reachable from this worker")
    return bytes(ctx.vault().get_bytes(ref.artifact_id))


def pack_dqn(spec: dict[str, Any], out: dict[str, Any]) -> bytes:
    """The model package of a trained DQN (its Q-network as safetensors)."""
    from bastion.jobs.package import ModelPackage, pack

    return pack(
        ModelPackage(
            str(spec["job_id"]), str(spec["model_type"]), "safetensors", out["config"], out["model_bytes"]
        )
    )


def run_dqn(ctx: JobContext) -> dict[str, Any]:
    """The job target's DQN branch: learn, evaluate, and hand back the Q-network to seal."""
    from bastion.ml import model_types
    from bastion.ml.rl import dqn, policy

    spec = ctx.spec
    params = model_types.validate_params("dqn", dict(spec.get("params") or {}))
    assert isinstance(params, dqn.Params)
    seed = int(spec.get("seed", 0))
    ref = DatasetRef.from_json(spec["dataset"])
    ctx.progress(0.0, {"stage": "load"})
    if ref.source == USER_PROVIDED:
        import io

        import pandas as pd

        from bastion.ml.rl.transitions import load

        data = load(pd.read_parquet(io.BytesIO(transitions_bytes(ctx, ref))))
        ctx.log(f"offline DQN on {len(data.actions)} logged transitions, {data.n_actions} actions")
        model, metrics, history = dqn.train_offline(data, params, ctx.progress, seed)
        names, env_id = data.state_names, params.eval_env_id
    else:
        ctx.log(f"online DQN on {params.env_id}, {params.total_timesteps} steps")
        model, metrics, history = dqn.train_online(params, ctx.progress, seed)
        names = [f"state_{i}" for i in range(int(model.observation_space.shape[0]))]
        env_id = params.env_id
    model_bytes, config = policy.export(model, names, env_id)
    config.update(model_type="dqn", format="safetensors", params=params.model_dump(mode="json"), seed=seed)
    ctx.progress(1.0, {"stage": "done", "mean_return": metrics.get("mean_return")})
    return {"model_bytes": model_bytes, "config": config, "metrics": metrics, "history": history}
