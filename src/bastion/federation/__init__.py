"""Federated learning: rounds, strategies, secure aggregation and differential privacy."""
