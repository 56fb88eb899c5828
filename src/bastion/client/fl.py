"""Kept for code written against docs/federated.md before the site runtime became a subpackage:
``from bastion.client.fl import FitResult, SiteClient, SiteTrainer`` still works. New code imports
from :mod:`bastion.client.site`."""

from bastion.client.site.base import FitResult, SiteError, SiteEvent, SiteTrainer
from bastion.client.site.runtime import SiteClient, run_site

__all__ = ["FitResult", "SiteClient", "SiteError", "SiteEvent", "SiteTrainer", "run_site"]
