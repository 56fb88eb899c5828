"""HTTP API: a thin layer that parses, authorizes and calls services."""

from bastion.api.app import create_app

__all__ = ["create_app"]
