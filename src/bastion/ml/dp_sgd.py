"""DP-SGD for the torch model types: Opacus per-sample clipping and noise, Poisson batches, RDP epsilon.

What a run with ``dp.enabled`` does, per step:

1. **Poisson sampling.** Every training row joins the batch independently with probability
   ``q = batch_size / n_train`` (Opacus's ``UniformWithReplacementSampler``); a batch may be empty, and
   still takes a (noise-only) step. An epoch is ``n_train // batch_size`` steps.
2. **Per-sample clipping and noise.** Opacus's ``GradSampleModule`` computes one gradient per row, and
   its ``DPOptimizer`` clips each to L2 norm ``max_grad_norm`` (C), sums them, adds Gaussian noise of
   std ``noise_multiplier * C`` (sigma C) and divides by the expected batch size before the wrapped
   optimizer (Adam, AdamW or SGD) steps.
3. **Accounting.** Each step is one Poisson-subsampled Gaussian mechanism (q, sigma). Epsilon for
   ``delta`` after ``steps`` steps is dp-accounting's RDP figure for that event composed ``steps``
   times, via :class:`bastion.privacy.accountant.RdpAccountant` (dp-accounting's default RDP
   orders), the same accountant federated rounds use. Opacus's own ``RDPAccountant`` is attached to the
   optimizer too; it counts the steps actually taken, and the (sigma, q, steps) it recorded is checked
   against ours before anything is reported.

Why the pieces are assembled here instead of calling ``PrivacyEngine.make_private``: ``make_private``
sets the sampling rate to ``1 / len(data_loader)`` = 1 / ceil(n / batch_size), not batch_size / n, and
draws its noise from torch's global generator, which ``fit`` seeds with the job's (recorded) seed. The
objects are the ones ``make_private`` builds (GradSampleModule, DPOptimizer, Poisson sampler, RDP
accountant hook), with the exact rate and unpredictable randomness:

* default (``secure_rng: false``): noise and sampling come from torch generators seeded with 63 bits
  from ``secrets`` for every run, so they cannot be replayed from the job's seed (a replayable noise
  stream could be subtracted, voiding the guarantee). DP runs are therefore not bit-reproducible.
* ``secure_rng: true``: noise from :func:`bastion.privacy.noise.secure_gaussian` (AES-CTR keyed
  from ``os.urandom``), summed four times and halved as Opacus's secure mode does against
  floating-point attacks, and Poisson masks from ``secure_uniform``. Slower; use it for production.

Cheap to import (pydantic only): torch and opacus are imported inside functions.
"""

from __future__ import annotations

import secrets
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from bastion.errors import Invalid
from bastion.privacy.config import (
    DEFAULT_NOISE_MULTIPLIER,
    MAX_NOISE_MULTIPLIER,
    MIN_NOISE_MULTIPLIER,
    DPParams,
)

ACCOUNTANT = "rdp"
NOT_COVERED = (
    "preprocessing statistics in the model config (imputation medians, scaler means and deviations, "
    "regression target mean and scale)",
    "per-epoch training loss",
    "training and test metrics",
)


def default_delta(n_train: int) -> float:
    """min(1e-5, the largest power of ten strictly below 1/n_train): 455 rows give 1e-5, 10^6 give 1e-7."""
    if n_train < 1:
        raise Invalid("no training rows")
    return 10.0 ** -max(5, len(str(n_train)))


def resolve_delta(dp: DPParams, n_train: int) -> float:
    delta = dp.delta if dp.delta is not None else default_delta(n_train)
    if delta >= 1.0 / n_train:
        raise Invalid(
            f"parameter 'dp.delta': {delta:g} is not below 1/n_train = 1/{n_train}; "
            "such a delta allows publishing a whole training row",
            field="dp.delta",
        )
    return delta


def sampling(n_train: int, batch_size: int) -> tuple[float, int]:
    """(q, steps per epoch) for Poisson batches of expected size ``batch_size`` from ``n_train`` rows."""
    if n_train < 1:
        raise Invalid("no training rows")
    if batch_size >= n_train:
        return 1.0, 1
    return batch_size / n_train, n_train // batch_size


def epsilon(noise_multiplier: float, sampling_rate: float, steps: int, delta: float) -> float:
    """dp-accounting's RDP epsilon of ``steps`` Poisson-sampled Gaussian steps (q, sigma) at ``delta``."""
    from bastion.privacy.accountant import RdpAccountant

    return RdpAccountant(noise_multiplier, sampling_rate).epsilon_after(steps, delta)


def noise_for_epsilon(target_epsilon: float, sampling_rate: float, steps: int, delta: float) -> float:
    """The smallest sigma (to within 0.01 in epsilon, or 1e-4 in sigma) whose epsilon is <= the target.

    A bisection over the same accountant that reports epsilon, so the reported figure never exceeds
    the target (Opacus's ``get_noise_multiplier`` bisects over its own RDP figures, which differ from
    dp-accounting's in the fourth decimal).
    """

    def eps(sigma: float) -> float:
        return epsilon(sigma, sampling_rate, steps, delta)

    hi = MIN_NOISE_MULTIPLIER
    if eps(hi) <= target_epsilon:
        return hi
    while eps(hi) > target_epsilon:
        if hi >= MAX_NOISE_MULTIPLIER:
            raise Invalid(
                f"parameter 'dp.target_epsilon': {target_epsilon:g} cannot be met with noise_multiplier "
                f"<= {MAX_NOISE_MULTIPLIER:g} for {steps} steps at sampling rate {sampling_rate:.4g}; "
                "train fewer epochs, use a larger dataset or a smaller batch, or allow a larger epsilon",
                field="dp.target_epsilon",
            )
        hi = min(2 * hi, MAX_NOISE_MULTIPLIER)
    lo = hi / 2 if hi > MIN_NOISE_MULTIPLIER else MIN_NOISE_MULTIPLIER
    for _ in range(60):
        if hi - lo <= 1e-4 or target_epsilon - eps(hi) <= 0.01:
            break
        mid = (lo + hi) / 2
        if eps(mid) <= target_epsilon:
            hi = mid
        else:
            lo = mid
    return hi


@dataclass(frozen=True)
class DPReport:
    """What a DP-SGD run spent, as reported in the job's metrics and the model config."""

    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    sampling_rate: float
    steps: int
    epochs: int
    expected_batch_size: float
    target_epsilon: float | None
    secure_rng: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "epsilon": self.epsilon,
            "delta": self.delta,
            "noise_multiplier": self.noise_multiplier,
            "max_grad_norm": self.max_grad_norm,
            "sampling_rate": self.sampling_rate,
            "steps": self.steps,
            "epochs": self.epochs,
            "expected_batch_size": self.expected_batch_size,
            "accountant": ACCOUNTANT,
            "target_epsilon": self.target_epsilon,
            "secure_rng": self.secure_rng,
            "guarantee": "record-level (add or remove one training row); covers the network weights",
            "not_covered": list(NOT_COVERED),
        }


EpochEnd = Callable[[int, float, float, int], None]
"""Called after each epoch with (epoch, mean training loss, epsilon so far, steps so far)."""


def train_private(
    module: Any,
    optimizer: Any,
    loss_fn: Any,
    X: Any,
    y: Any,
    *,
    batch_size: int,
    epochs: int,
    dp: DPParams,
    epoch_end: EpochEnd,
) -> DPReport:
    """Train ``module`` in place with DP-SGD on the tensors ``X``, ``y``; every row is a record.

    ``optimizer`` is a plain torch optimizer over ``module``'s parameters; ``loss_fn`` must average
    over the batch with the same weight for every row (CrossEntropyLoss or MSELoss without weights).
    On return ``module`` is unwrapped: Opacus's hooks and per-sample attributes are removed, so its
    ``state_dict`` has the usual keys (no ``_module.`` prefix).
    """
    import torch
    from opacus import GradSampleModule
    from opacus.accountants import RDPAccountant
    from opacus.optimizers import DPOptimizer
    from opacus.validators import ModuleValidator

    n_train = len(y)
    q, per_epoch = sampling(n_train, batch_size)
    total_steps = per_epoch * epochs
    delta = resolve_delta(dp, n_train)
    if dp.target_epsilon is not None:
        sigma = noise_for_epsilon(dp.target_epsilon, q, total_steps, delta)
    else:
        sigma = dp.noise_multiplier if dp.noise_multiplier is not None else DEFAULT_NOISE_MULTIPLIER
    errors = ModuleValidator.validate(module, strict=False)
    if errors:
        raise Invalid(f"this network cannot be trained with DP-SGD: {errors[0]}")

    noise_gen = sample_gen = None
    if not dp.secure_rng:
        noise_gen = torch.Generator().manual_seed(secrets.randbits(63))
        sample_gen = torch.Generator().manual_seed(secrets.randbits(63))
    wrapped = GradSampleModule(module, batch_first=True, loss_reduction="mean")
    wrapped.forbid_grad_accumulation()
    optimizer_cls = _secure_optimizer_class() if dp.secure_rng else DPOptimizer
    dp_optimizer = optimizer_cls(
        optimizer,
        noise_multiplier=sigma,
        max_grad_norm=dp.max_grad_norm,
        expected_batch_size=max(1, round(q * n_train)),
        loss_reduction="mean",
        generator=noise_gen,
    )
    opacus_accountant = RDPAccountant()
    dp_optimizer.attach_step_hook(opacus_accountant.get_optimizer_hook_fn(sample_rate=q))
    sampler = _poisson_sampler(n_train, q, per_epoch, sample_gen, secure=dp.secure_rng)

    steps = 0
    try:
        with warnings.catch_warnings():
            # The first layer's input never requires grad; torch warns about the full backward hook.
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            for epoch in range(1, epochs + 1):
                wrapped.train()
                total, seen = 0.0, 0
                for indices in sampler:
                    batch = torch.as_tensor(indices, dtype=torch.long)
                    dp_optimizer.zero_grad(set_to_none=True)
                    loss = loss_fn(wrapped(X[batch]), y[batch])
                    loss.backward()  # an empty batch gives a NaN loss but zero per-sample gradients
                    dp_optimizer.step()
                    steps += 1
                    if len(indices):
                        total += float(loss.item()) * len(indices)
                        seen += len(indices)
                epoch_end(epoch, total / max(seen, 1), epsilon(sigma, q, steps, delta), steps)
    finally:
        dp_optimizer.zero_grad(set_to_none=True)
        wrapped.cleanup()
    module.eval()

    recorded = [(float(s), float(r), int(n)) for s, r, n in opacus_accountant.history]
    if recorded != [(float(sigma), float(q), steps)] or steps != total_steps:
        raise RuntimeError(f"Opacus recorded {recorded}, expected {[(sigma, q, total_steps)]}")
    return DPReport(
        epsilon=epsilon(sigma, q, steps, delta),
        delta=delta,
        noise_multiplier=float(sigma),
        max_grad_norm=dp.max_grad_norm,
        sampling_rate=q,
        steps=steps,
        epochs=epochs,
        expected_batch_size=q * n_train,
        target_epsilon=dp.target_epsilon,
        secure_rng=dp.secure_rng,
    )


def _poisson_sampler(n: int, q: float, steps: int, generator: Any, *, secure: bool) -> Any:
    """Opacus's Poisson sampler (each row in each batch with probability q), optionally OS-CSPRNG driven."""
    from opacus.utils.uniform_sampler import UniformWithReplacementSampler

    if not secure:
        return UniformWithReplacementSampler(num_samples=n, sample_rate=q, generator=generator, steps=steps)

    class SecureSampler(UniformWithReplacementSampler):  # type: ignore[misc]  # opacus ships no types
        def __iter__(self) -> Any:
            from bastion.privacy.noise import secure_uniform

            for _ in range(self.steps):
                yield [int(i) for i in (secure_uniform(self.num_samples) < self.sample_rate).nonzero()[0]]

    return SecureSampler(num_samples=n, sample_rate=q, steps=steps)


def _secure_optimizer_class() -> Any:
    """A DPOptimizer whose noise comes from the OS CSPRNG instead of a torch generator."""
    import torch
    from opacus.optimizers import DPOptimizer

    from bastion.privacy.noise import secure_gaussian

    class SecureNoiseDPOptimizer(DPOptimizer):  # type: ignore[misc]  # opacus ships no types
        noise_multiplier: float
        max_grad_norm: float

        def add_noise(self) -> None:
            # Let Opacus set p.grad to the clipped sum (std 0 adds nothing), then add our noise; the
            # multiplier is restored before the accountant's step hook reads it.
            sigma = self.noise_multiplier
            self.noise_multiplier = 0.0
            try:
                super().add_noise()
            finally:
                self.noise_multiplier = sigma
            std = sigma * self.max_grad_norm
            for p in self.params:
                shape = tuple(p.grad.shape)
                # Sum of four N(0, std^2) draws halved, as Opacus's secure mode (Holohan et al. 2021).
                draws = sum(secure_gaussian(shape, std) for _ in range(4)) / 2.0
                p.grad = p.grad + torch.from_numpy(draws).to(p.grad.dtype)

    return SecureNoiseDPOptimizer
