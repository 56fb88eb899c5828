"""Weight-only int8 quantization of the torch MLP, stored as plain safetensors.

Each Linear weight becomes int8 with one float32 scale per output channel (symmetric, max-abs / 127);
biases stay float32. Loading dequantizes into an ordinary float module, so no pickle and no torch
quantized kernels are involved, and a quantized file loads through the same ``load_model``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from bastion.errors import Invalid

if TYPE_CHECKING:
    from bastion.data.dataset import Dataset

SCHEME = "int8_per_channel_weight_only"
SCALE_SUFFIX = ".scale"


@dataclass
class QuantizeResult:
    model_bytes: bytes
    model_config: dict[str, Any]
    report: dict[str, Any]


def quantize_state(state: Mapping[str, Any]) -> dict[str, Any]:
    """int8 weights plus per-output-channel scales for every 2-D float tensor; others unchanged."""
    import torch

    out: dict[str, Any] = {}
    for name, tensor in state.items():
        if tensor.ndim == 2 and tensor.is_floating_point():
            w = tensor.detach().to(torch.float32)
            scale = w.abs().amax(dim=1) / 127.0
            scale = torch.where(scale > 0, scale, torch.ones_like(scale))
            out[name] = torch.clamp(torch.round(w / scale[:, None]), -127, 127).to(torch.int8)
            out[name + SCALE_SUFFIX] = scale.contiguous()
        else:
            out[name] = tensor.detach()
    return out


def dequantize_state(state: Mapping[str, Any], quantization: Any) -> dict[str, Any]:
    """Float tensors back from :func:`quantize_state`; a plain state passes through unchanged."""
    import torch

    if quantization is None:
        if any(not t.is_floating_point() for t in state.values()):
            raise Invalid("the weights hold integer tensors but the config declares no quantization")
        return dict(state)
    if not isinstance(quantization, Mapping) or quantization.get("scheme") != SCHEME:
        raise Invalid(f"unknown quantization scheme; supported: {SCHEME}")
    out: dict[str, Any] = {}
    for name, tensor in state.items():
        if name.endswith(SCALE_SUFFIX):
            if name[: -len(SCALE_SUFFIX)] not in state:
                raise Invalid(f"quantization scale {name!r} has no weight")
            continue
        if tensor.dtype == torch.int8:
            scale = state.get(name + SCALE_SUFFIX)
            if scale is None or scale.ndim != 1 or tensor.ndim != 2 or scale.shape[0] != tensor.shape[0]:
                raise Invalid(f"quantized weight {name!r} lacks a matching per-channel scale")
            out[name] = tensor.to(torch.float32) * scale.to(torch.float32)[:, None]
        elif tensor.is_floating_point():
            out[name] = tensor
        else:
            raise Invalid(f"weight {name!r} has an unsupported dtype")
    return out


def quantize_model(
    model_bytes: bytes,
    model_config: Mapping[str, Any],
    X_eval: np.ndarray | None,
    y_eval: np.ndarray | None,
) -> QuantizeResult:
    """Quantize a trained ``adaptive_neural_net`` and measure what it costs on held-out rows.

    ``X_eval`` is the encoded matrix (as in :class:`Dataset`), ``y_eval`` class codes or values;
    without them (a federated model whose data never reached the server) only size and weight error
    are reported, and the report says accuracy was not measured.
    """
    from bastion.ml.metrics import score
    from bastion.ml.serialize import dump_torch_state, load_model, load_torch_state

    if model_config.get("format") != "safetensors":
        raise Invalid("quantization applies to neural-network (safetensors) models only")
    if model_config.get("quantization") is not None:
        raise Invalid("the model is already quantized")
    before = load_model(model_bytes, "safetensors", model_config)
    state = load_torch_state(model_bytes)
    quantized = quantize_state(state)
    new_bytes = dump_torch_state(quantized, {"format": "bastion-mlp", "quantization": SCHEME})
    new_config = dict(model_config)
    new_config["quantization"] = {"scheme": SCHEME, "dtype": "int8", "granularity": "per_output_channel"}
    after = load_model(new_bytes, "safetensors", new_config)

    task = before.task
    weight_errors = [
        float((state[k].float() - after.model.module.state_dict()[k]).abs().max())  # type: ignore[attr-defined]
        for k in state
        if state[k].ndim == 2
    ]
    metric = "accuracy" if task == "classification" else "r2"
    report: dict[str, Any] = {
        "scheme": SCHEME,
        "size_before": len(model_bytes),
        "size_after": len(new_bytes),
        "compression_ratio": round(len(model_bytes) / len(new_bytes), 3),
        "max_abs_weight_error": round(max(weight_errors), 8) if weight_errors else 0.0,
    }
    if X_eval is None or y_eval is None:
        report["metric"] = None
        report["not_measured"] = (
            "no held-out rows on the server for this model (its data stayed at the sites)"
        )
        return QuantizeResult(new_bytes, new_config, report)
    X = before.spec.matrix(np.asarray(X_eval, dtype=np.float64))
    pred_before, pred_after = before.model.predict(X), after.model.predict(X)
    report.update(
        {
            "metric": metric,
            f"{metric}_before": round(score(task, y_eval, pred_before), 6),
            f"{metric}_after": round(score(task, y_eval, pred_after), 6),
            "evaluated_rows": len(y_eval),
        }
    )
    if task == "classification":
        report["prediction_agreement"] = round(float(np.mean(pred_before == pred_after)), 6)
    return QuantizeResult(new_bytes, new_config, report)


def quantize_for_dataset(
    model_bytes: bytes, model_config: Mapping[str, Any], dataset: Dataset, *, seed: int = 0
) -> QuantizeResult:
    """Quantize, evaluating on the same held-out rows ``train`` used (same dataset, params and seed)."""
    from bastion.ml.split import held_out_split

    if list(model_config.get("feature_names") or []) != dataset.feature_names:
        raise Invalid("the dataset's columns do not match the model's features")
    params = model_config.get("params") or {}
    split = held_out_split(dataset, float(params.get("test_size", 0.2)), seed)
    X_test, y_test = split.test(dataset)
    return quantize_model(model_bytes, model_config, X_test, y_test)
