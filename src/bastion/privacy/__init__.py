"""Differential privacy for jobs, federations and sites: clipping, secure noise, accounting, budgets.

One package for every DP mechanism Bastion runs: DP-SGD in training jobs (``bastion.ml.dp_sgd``),
DP-FedAvg on the coordinator (``bastion.federation.strategies.private``) and on sites
(``bastion.client.site.secure``). Pure math plus pydantic settings; importing it loads neither torch nor
dp-accounting. See docs/privacy.md for the threat model and how to choose the parameters.
"""

from bastion.privacy.accountant import Accountant, PldAccountant, RdpAccountant
from bastion.privacy.budget import BudgetExhausted, BudgetGuard, PrivacyBudget, PrivacyReport
from bastion.privacy.clip import clip_arrays, clip_l2, l2_norm
from bastion.privacy.config import DPConfig, DPParams, FederationDP
from bastion.privacy.noise import secure_gaussian
from bastion.privacy.privatize import dp_mean, privatize_sum, privatize_update

__all__ = [
    "Accountant",
    "BudgetExhausted",
    "BudgetGuard",
    "DPConfig",
    "DPParams",
    "FederationDP",
    "PldAccountant",
    "PrivacyBudget",
    "PrivacyReport",
    "RdpAccountant",
    "clip_arrays",
    "clip_l2",
    "dp_mean",
    "l2_norm",
    "privatize_sum",
    "privatize_update",
    "secure_gaussian",
]
