"""``dqn``: Deep Q-Network through stable-baselines3, online on Gymnasium or offline from logs.

Online: SB3's DQN learns on a Gymnasium environment the operator allowed
(``BASTION_DQN_ALLOWED_ENVS``); the result is the greedy policy's mean return ± standard deviation
over ``eval_episodes`` fresh episodes against a uniformly random policy on the same seeds.

Offline: the replay buffer is filled with an uploaded transitions table and SB3's DQN update
(``DQN.train``: Huber TD loss, target network synced every ``target_update_interval`` updates) runs
for ``offline_updates`` steps without touching an environment. **Limitation:** this is plain DQN,
not a conservative method: stable-baselines3 and sb3-contrib have no CQL, and d3rlpy (which has
DiscreteCQL) pins gymnasium 1.0 against our 1.4. Its max over actions can overvalue actions the
logs rarely took. The value estimate reported is the *direct method* (the learnt Q-network's
``max_a Q(s0, a)`` averaged over the logged episodes' initial states), next to the logged policy's
Monte Carlo return; both are named in the metrics. With ``eval_env_id`` the policy is also run in
that (allowed) environment.

Defaults are tuned for CartPole-v1 (RL Zoo's settings): 475+ over 20 episodes within 50k steps.
Because DQN can forget late in training, each new best stretch of training (the last 20 episodes'
mean) has its greedy policy scored on 5 episodes of its own seeds; the best-scoring weights are
evaluated beside the final ones and the better greedy policy is the job's model (``selected`` in the
metrics). Training stops early once a scored policy reaches the environment's reward threshold
(``stop_at_threshold``).
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from bastion.errors import Invalid

DESCRIPTION = (
    "Deep Q-Network (stable-baselines3): online on an allowed Gymnasium environment, or offline "
    "from an uploaded transitions table; predict returns the action and its Q-values"
)
TASKS = ("reinforcement",)
ONLINE_SOURCE = "gymnasium"


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    env_id: str = Field("CartPole-v1", max_length=100, description="Gymnasium id (online); admin allow-list")
    total_timesteps: int = Field(50_000, ge=500, le=2_000_000, description="Environment steps (online)")
    learning_rate: float = Field(2.3e-3, gt=0, le=1.0)
    batch_size: int = Field(64, ge=8, le=4096)
    buffer_size: int = Field(100_000, ge=1000, le=1_000_000)
    learning_starts: int = Field(1000, ge=0, le=100_000)
    gamma: float = Field(0.99, gt=0, le=1.0)
    target_update_interval: int = Field(10, ge=1, le=100_000)
    train_freq: int = Field(256, ge=1, le=10_000)
    gradient_steps: int = Field(128, ge=1, le=10_000)
    exploration_fraction: float = Field(0.16, gt=0, le=1.0)
    exploration_final_eps: float = Field(0.04, ge=0, le=1.0)
    net_arch: list[int] = Field(default_factory=lambda: [256, 256], min_length=1, max_length=4)
    eval_episodes: int = Field(20, ge=1, le=200)
    stop_at_threshold: bool = Field(
        True, description="Online: stop once the greedy policy reaches the env's reward threshold"
    )
    report_every: int = Field(1000, ge=100, le=100_000, description="Steps between progress events")
    offline_updates: int = Field(20_000, ge=100, le=500_000, description="Gradient steps (offline)")
    eval_env_id: str | None = Field(None, max_length=100, description="Offline: also run the policy here")

    @field_validator("net_arch")
    @classmethod
    def _widths(cls, v: list[int]) -> list[int]:
        if any(w < 1 or w > 1024 for w in v):
            raise ValueError("each layer width must be within 1..1024")
        return v


def estimate_seconds(n_samples: int, n_features: int, params: Params) -> float:
    """Rough: env steps and gradient updates at ~1 ms each on a busy core, start-up, and (offline)
    filling the replay buffer with the table's rows (``n_samples``; 0 for an online job)."""
    updates = params.total_timesteps / params.train_freq * params.gradient_steps
    return 5.0 + params.total_timesteps * 1e-4 + updates * 1e-3 + n_samples * 5e-5


def _model(env: Any, params: Params, seed: int) -> Any:
    from stable_baselines3 import DQN

    return DQN(
        "MlpPolicy",
        env,
        learning_rate=params.learning_rate,
        batch_size=params.batch_size,
        buffer_size=params.buffer_size,
        learning_starts=params.learning_starts,
        gamma=params.gamma,
        target_update_interval=params.target_update_interval,
        train_freq=params.train_freq,
        gradient_steps=params.gradient_steps,
        exploration_fraction=params.exploration_fraction,
        exploration_final_eps=params.exploration_final_eps,
        policy_kwargs={"net_arch": list(params.net_arch)},
        seed=seed,
        device="cpu",
        verbose=0,
    )


def _summary(returns: list[float] | np.ndarray) -> dict[str, Any]:
    arr = np.asarray(returns, dtype=np.float64)
    return {
        "mean": round(float(arr.mean()), 3),
        "std": round(float(arr.std()), 3),
        "min": round(float(arr.min()), 3),
        "max": round(float(arr.max()), 3),
        "episodes": len(arr),
    }


def episode_returns(act: Any, env_id: str, episodes: int, seed: int) -> list[float]:
    """Total reward of ``act`` (one obs batch -> actions; ``None``: uniformly random) on ``episodes``
    episodes seeded seed+1000+i."""
    import gymnasium as gym

    env = gym.make(env_id)
    n_actions = int(getattr(env.action_space, "n", 0))
    if n_actions < 2:
        raise Invalid(f"environment {env_id!r} does not have a discrete action space; DQN needs one")
    rng = np.random.default_rng(seed)
    out: list[float] = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + 1000 + i)
        total, done = 0.0, False
        while not done:
            if act is None:
                action = int(rng.integers(n_actions))
            else:
                action = int(act(np.asarray(obs, dtype=np.float32)[None, :])[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            done = terminated or truncated
        out.append(total)
    env.close()
    return out


def _report(env_id: str, policy_returns: list[float], random_returns: list[float]) -> dict[str, Any]:
    policy, random = _summary(policy_returns), _summary(random_returns)
    return {
        "env_id": env_id,
        "mean_return": policy["mean"],
        "std_return": policy["std"],
        "random_mean_return": random["mean"],
        "random_std_return": random["std"],
        "returns": policy,
        "random_returns": random,
    }


def evaluate(q_policy: Any, env_id: str, episodes: int, seed: int) -> dict[str, Any]:
    """Greedy policy vs a uniformly random one, each on ``episodes`` episodes seeded seed+1000+i."""
    return _report(
        env_id,
        episode_returns(q_policy, env_id, episodes, seed),
        episode_returns(None, env_id, episodes, seed),
    )


def greedy(model: Any) -> Any:
    """obs batch -> greedy actions, through the trained Q-network."""
    import torch

    def act(obs: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            q = model.q_net(torch.as_tensor(obs, dtype=torch.float32))
        result: np.ndarray = q.argmax(dim=1).numpy()
        return result

    return act


CHECK_EPISODES = 5


def train_online(
    params: Params, progress: Any, seed: int
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """Returns (model, metrics, history); ``progress(fraction, event)`` every ``report_every`` steps."""
    import gymnasium as gym
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    torch.set_num_threads(1)
    history: list[dict[str, Any]] = []
    env = gym.make(params.env_id)
    threshold = getattr(env.spec, "reward_threshold", None) if params.stop_at_threshold else None
    best: dict[str, Any] = {}

    class Report(BaseCallback):
        def _on_step(self) -> bool:
            if self.num_timesteps % params.report_every != 0:
                return True
            model: Any = self.model
            recent = [float(e["r"]) for e in list(model.ep_info_buffer or [])[-20:]]
            mean = float(np.mean(recent)) if recent else None
            event = {
                "step": int(self.num_timesteps),
                "episodes": int(model._episode_num),
                "mean_return": round(mean, 3) if mean is not None else None,
                "exploration_rate": round(float(model.exploration_rate), 4),
            }
            history.append(event)
            progress(self.num_timesteps / params.total_timesteps, event)
            if mean is None or mean <= best.get("train_mean", -np.inf):
                return True
            # A new best training stretch: score its greedy policy on a few episodes of its own
            # seeds, keep the best-scoring weights (DQN can forget late), stop once one reaches the
            # environment's reward threshold.
            score = float(np.mean(episode_returns(greedy(model), params.env_id, CHECK_EPISODES, seed + 2000)))
            best["train_mean"] = mean
            if score > best.get("score", -np.inf):
                best.update(score=score, step=event["step"], state=copy.deepcopy(model.q_net.state_dict()))
            return not (threshold is not None and score >= threshold)

    env.reset(seed=seed)
    model = _model(env, params, seed)
    model.learn(total_timesteps=params.total_timesteps, callback=Report())
    env.close()
    steps = int(model.num_timesteps)
    final = episode_returns(greedy(model), params.env_id, params.eval_episodes, seed)
    chosen, selected = final, {"policy": "final", "step": steps}
    if best and best["step"] != steps:
        final_state = copy.deepcopy(model.q_net.state_dict())
        model.q_net.load_state_dict(best["state"])
        candidate = episode_returns(greedy(model), params.env_id, params.eval_episodes, seed)
        if np.mean(candidate) > np.mean(final):
            chosen, selected = candidate, {"policy": "best_scored", "step": int(best["step"])}
        else:
            model.q_net.load_state_dict(final_state)
    random = episode_returns(None, params.env_id, params.eval_episodes, seed)
    metrics = _report(params.env_id, chosen, random)
    model.q_net_target.load_state_dict(model.q_net.state_dict())
    metrics.update(mode="online", total_timesteps=steps, selected=selected)
    return model, metrics, history


def _spaces_env(n_features: int, n_actions: int) -> Any:
    """Just the spaces SB3 needs to build a DQN when no environment exists (offline learning)."""
    import gymnasium as gym

    class Logged(gym.Env):
        observation_space = gym.spaces.Box(-np.inf, np.inf, shape=(n_features,), dtype=np.float32)
        action_space = gym.spaces.Discrete(n_actions)

        def reset(self, *, seed: int | None = None, options: Any = None) -> Any:
            raise RuntimeError("offline learning never steps an environment")

        def step(self, action: Any) -> Any:
            raise RuntimeError("offline learning never steps an environment")

    return Logged()


def train_offline(
    data: Any, params: Params, progress: Any, seed: int
) -> tuple[Any, dict[str, Any], list[dict[str, Any]]]:
    """DQN updates on logged transitions only (see the module docstring for its limitation)."""
    import torch
    from stable_baselines3.common.logger import configure

    torch.set_num_threads(1)
    n = len(data.actions)
    model = _model(
        _spaces_env(data.obs.shape[1], data.n_actions),
        params.model_copy(update={"buffer_size": max(n, 1000), "learning_starts": 0}),
        seed,
    )
    model.set_logger(configure(None, []))
    buffer = model.replay_buffer
    for i in range(n):
        buffer.add(
            data.obs[i : i + 1].astype(np.float32),
            data.next_obs[i : i + 1].astype(np.float32),
            np.asarray([[data.actions[i]]]),
            np.asarray([data.rewards[i]], dtype=np.float32),
            np.asarray([data.dones[i]], dtype=np.float32),
            [{}],
        )
    history: list[dict[str, Any]] = []
    chunk = max(1, min(params.report_every, params.offline_updates) // 10)
    done_updates = 0
    while done_updates < params.offline_updates:
        steps = min(chunk, params.offline_updates - done_updates)
        model.train(gradient_steps=steps, batch_size=params.batch_size)
        for _ in range(steps):
            model._on_step()  # SB3's own target-network sync every target_update_interval updates
        done_updates += steps
        if done_updates % params.report_every < steps or done_updates == params.offline_updates:
            event = {"update": done_updates, "value_estimate": _direct_value(model, data)}
            history.append(event)
            progress(done_updates / params.offline_updates, event)
    logged = data.episode_returns()
    logged_disc = data.episode_returns(params.gamma)
    metrics: dict[str, Any] = {
        "mode": "offline",
        "transitions": n,
        "logged_episodes": len(logged),
        "value_estimate": _direct_value(model, data),
        "value_estimate_method": "direct method: mean over logged initial states of max_a Q(s0, a) "
        "from the learnt Q-network (discounted, gamma as trained; optimistic for offline DQN)",
        "logged_policy_value": round(float(logged_disc.mean()), 3) if len(logged) else None,
        "logged_policy_value_method": "Monte Carlo: mean discounted return of the logged episodes",
        "logged_mean_return": round(float(logged.mean()), 3) if len(logged) else None,
        "conservative": False,
        "limitation": "plain DQN on logged data (no CQL in stable-baselines3/sb3-contrib); "
        "Q-values of rarely logged actions may be overestimated",
    }
    if params.eval_env_id:
        metrics["evaluation"] = evaluate(greedy(model), params.eval_env_id, params.eval_episodes, seed)
        metrics["mean_return"] = metrics["evaluation"]["mean_return"]
    return model, metrics, history


def _direct_value(model: Any, data: Any) -> float:
    import torch

    starts = data.obs[data.episode_starts()]
    with torch.no_grad():
        q = model.q_net(torch.as_tensor(starts, dtype=torch.float32))
    return round(float(q.max(dim=1).values.mean()), 4)
