"""Bastion: secure remote and federated training."""

__version__ = "0.1.0"
