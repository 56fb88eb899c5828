"""A registered model as an arithmetic circuit CKKS can evaluate: affine layers and squares.

The server evaluates only additions, multiplications by plaintext numbers and squarings, so a
model qualifies when its whole prediction up to the link function is a polynomial:

- scikit-learn ``LogisticRegression`` / ``Ridge`` after Bastion's standard preprocessing: the
  scaler is folded into the weights (``w / scale``, ``b - w . mean / scale``); one-hot columns stay
  as inputs the client sets to 0/1. Output: the decision score(s); the client applies the link.
- ``he_mlp`` networks (polynomial activations): the input scaler is folded into the first layer, a
  regression target's scaling into the last. Activation ``a x^2 + b x + c`` (``a > 0``) becomes
  ``x'^2 + (b / sqrt a) x' + c`` with ``sqrt a`` folded into the layer before it, so each activation
  costs one level.

Missing values cannot be imputed under encryption: the client sends complete rows. Everything
else (trees, ReLU/tanh/GELU networks) is refused with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from bastion.errors import Invalid

Link = Literal["logistic", "softmax", "identity"]
UNSUPPORTED = "he_unsupported_model"


@dataclass(frozen=True)
class Affine:
    weight: np.ndarray  # (out, in)
    bias: np.ndarray  # (out,)


@dataclass(frozen=True)
class Square:
    """``y = x^2 + linear * x + constant``, element-wise."""

    linear: float = 0.0
    constant: float = 0.0


@dataclass
class Circuit:
    inputs: list[dict[str, str]]
    steps: list[Affine | Square]
    link: Link
    classes: list[str] | None
    kind: str
    notes: list[str] = field(default_factory=list)

    @property
    def depth(self) -> int:
        return len(self.steps)

    @property
    def n_inputs(self) -> int:
        return len(self.inputs)

    @property
    def n_outputs(self) -> int:
        last = next(s for s in reversed(self.steps) if isinstance(s, Affine))
        return int(last.weight.shape[0])

    @property
    def needs_relin_keys(self) -> bool:
        return any(isinstance(s, Square) for s in self.steps)

    def plaintext(self, X: np.ndarray) -> np.ndarray:
        """The same circuit on plaintext rows (encoded layout): the reference the tests compare to."""
        out = np.asarray(X, dtype=np.float64)
        for step in self.steps:
            if isinstance(step, Affine):
                out = out @ step.weight.T + step.bias
            else:
                out = out * out + step.linear * out + step.constant
        return out

    def ops(self) -> int:
        """Ciphertext operations per packed group of rows (for the request's cost bound)."""
        total = 0
        for step in self.steps:
            total += int(step.weight.size) if isinstance(step, Affine) else 3
        return total


def compile_model(predictor: Any) -> Circuit:
    """The circuit of a loaded :class:`bastion.ml.serialize.Predictor`, or Invalid with the reason."""
    from bastion.ml.model_types.sk_common import SklearnModel

    if predictor.task not in ("classification", "regression"):
        raise Invalid(f"a {predictor.task} model cannot be evaluated under encryption", code=UNSUPPORTED)
    model = predictor.model
    if isinstance(model, SklearnModel):
        return _sklearn(model, predictor)
    from bastion.ml.mlp import POLY_ACTIVATIONS
    from bastion.ml.model_types.mlp_net import TorchMLPModel

    if isinstance(model, TorchMLPModel):
        if model.arch.activation not in POLY_ACTIVATIONS:
            raise Invalid(
                f"this network uses the {model.arch.activation} activation, which is not a polynomial "
                "and cannot be computed on CKKS ciphertexts; train an 'he_mlp' model "
                "(square or poly activation) for encrypted inference",
                code=UNSUPPORTED,
            )
        if predictor.config.get("quantization"):
            raise Invalid("quantized networks are not supported for encrypted inference", code=UNSUPPORTED)
        return _mlp(model, predictor)
    raise Invalid(f"{type(model).__name__} models cannot be evaluated under encryption", code=UNSUPPORTED)


def _sklearn(model: Any, predictor: Any) -> Circuit:
    pipeline = model.pipeline
    estimator = pipeline.named_steps["model"]
    name = type(estimator).__name__
    if name not in ("LogisticRegression", "Ridge"):
        raise Invalid(
            f"a {name} compares feature values against thresholds, which CKKS cannot evaluate "
            "exactly; use logistic regression, ridge or an 'he_mlp' network for encrypted inference",
            code=UNSUPPORTED,
        )
    spec = predictor.spec
    transformers = dict((n, t) for n, t, _ in pipeline.named_steps["preprocess"].transformers_)
    inputs: list[dict[str, str]] = []
    scale: list[float] = []
    shift: list[float] = []
    if "numeric" in transformers:
        scaler = transformers["numeric"].named_steps["scale"]
        for k, i in enumerate(spec.numeric_indices):
            inputs.append({"feature": spec.feature_names[i]})
            scale.append(float(scaler.scale_[k]) if scaler.scale_ is not None else 1.0)
            shift.append(float(scaler.mean_[k]) if scaler.mean_ is not None else 0.0)
    for i in spec.categorical_indices:
        feature = spec.feature_names[i]
        for level in spec.categories[feature]:
            inputs.append({"feature": feature, "category": level})
            scale.append(1.0)
            shift.append(0.0)
    coef = np.atleast_2d(np.asarray(estimator.coef_, dtype=np.float64))
    intercept = np.atleast_1d(np.asarray(estimator.intercept_, dtype=np.float64))
    if coef.shape[1] != len(inputs):
        raise Invalid("the model's coefficients do not match its inputs", code=UNSUPPORTED)
    weight = coef / np.asarray(scale)[None, :]
    bias = intercept - weight @ np.asarray(shift)
    link: Link = "identity"
    if predictor.task == "classification":
        if list(np.asarray(pipeline.classes_).tolist()) != list(range(len(predictor.classes))):
            raise Invalid("the model was not trained on every class", code=UNSUPPORTED)
        link = "logistic" if weight.shape[0] == 1 else "softmax"
    return Circuit(inputs, [Affine(weight, bias)], link, predictor.classes, f"sklearn:{name}")


def _mlp(model: Any, predictor: Any) -> Circuit:
    from bastion.ml.mlp import POLY_ACTIVATIONS

    prep, arch = model.prep, model.arch
    spec = predictor.spec
    inputs: list[dict[str, str]] = []
    for j, feature in enumerate(spec.feature_names):
        width = prep.onehot.get(j)
        if width is None:
            inputs.append({"feature": feature})
        else:
            levels = spec.categories.get(feature, [])
            inputs.extend({"feature": feature, "category": str(lv)} for lv in levels[:width])
            inputs.extend({"feature": feature, "category": f"#{c}"} for c in range(len(levels), width))
    linears = [m for m in model.module.net if m.__class__.__name__ == "Linear"]
    a, b, c = POLY_ACTIVATIONS[arch.activation]
    root = math.sqrt(a)
    steps: list[Affine | Square] = []
    for n, layer in enumerate(linears):
        w = layer.weight.detach().double().numpy().copy()
        bias = layer.bias.detach().double().numpy().copy()
        if n == 0:
            w = w / np.asarray(prep.scale)[None, :]
            bias = bias - w @ np.asarray(prep.mean)
        last = n == len(linears) - 1
        if last and predictor.task == "regression":
            w, bias = w * prep.target_scale, bias * prep.target_scale + prep.target_mean
        if not last:
            w, bias = w * root, bias * root
        steps.append(Affine(w, bias))
        if not last:
            steps.append(Square(linear=b / root, constant=c))
    if len(inputs) != steps[0].weight.shape[1]:  # type: ignore[union-attr]
        raise Invalid("the network's inputs do not match its feature layout", code=UNSUPPORTED)
    link: Link = "softmax" if predictor.task == "classification" else "identity"
    return Circuit(inputs, steps, link, predictor.classes, f"he_mlp:{arch.activation}")
