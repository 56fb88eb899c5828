"""Reinforcement learning: DQN through stable-baselines3, online (Gymnasium) and offline (logged)."""
