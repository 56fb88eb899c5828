"""Differential privacy for federated rounds: clipping, secure Gaussian noise, accounting, budgets.

See docs/privacy.md for the threat model and how to choose the parameters.
"""

from bastion.federation.dp.accountant import Accountant, PldAccountant, RdpAccountant
from bastion.federation.dp.budget import BudgetExhausted, BudgetGuard, PrivacyBudget, PrivacyReport
from bastion.federation.dp.clip import clip_arrays, clip_l2, l2_norm
from bastion.federation.dp.fedavg import DPConfig, dp_mean, privatize_sum, privatize_update
from bastion.federation.dp.noise import secure_gaussian

__all__ = [
    "Accountant",
    "BudgetExhausted",
    "BudgetGuard",
    "DPConfig",
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
