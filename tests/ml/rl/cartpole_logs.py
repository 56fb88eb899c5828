"""A logged CartPole dataset from a noisy hand-written controller: the "logging policy"."""

from __future__ import annotations

from typing import Any

import numpy as np


def logged_cartpole(episodes: int, epsilon: float, seed: int) -> tuple[Any, float]:
    """(transitions DataFrame, mean return of the logging policy over the logged episodes)."""
    import gymnasium as gym
    import pandas as pd

    env = gym.make("CartPole-v1")
    rng = np.random.default_rng(seed)
    rows: list[list[float]] = []
    returns = []
    for ep in range(episodes):
        obs, _ = env.reset(seed=seed + ep)
        total, done = 0.0, False
        while not done:
            heuristic = int(obs[2] + 0.5 * obs[3] > 0)
            action = int(rng.integers(2)) if rng.random() < epsilon else heuristic
            nxt, reward, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
            rows.append([*map(float, obs), action, float(reward), *map(float, nxt), float(done)])
            total += float(reward)
            obs = nxt
        returns.append(total)
    env.close()
    names = [f"state_{i}" for i in range(4)]
    frame = pd.DataFrame(rows, columns=[*names, "action", "reward", *[f"next_{n}" for n in names], "done"])
    frame["action"] = frame["action"].astype(int)
    frame["done"] = frame["done"].astype(int)
    return frame, float(np.mean(returns))
