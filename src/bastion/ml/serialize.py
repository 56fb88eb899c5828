"""Model bytes that can be loaded without executing anything: skops (sklearn) and safetensors (torch).

Loading is where an attacker-supplied file would strike, so it is refused early and explicitly:
pickles and unknown formats by their first bytes, skops files by auditing every node of their schema
against an allow-list of exactly the types Bastion's model types produce (plus numpy containers),
torch weights by parsing them with safetensors into a module rebuilt from the JSON config.
"""

from __future__ import annotations

import io
import json
import struct
import zipfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bastion.data.dataset import TASKS, Task
from bastion.errors import Invalid
from bastion.ml.base import FittedModel
from bastion.ml.features import FeatureSpec

FORMATS = ("skops", "safetensors")
REFUSED = "refused: not a safe model format"
MAX_SAFETENSORS_HEADER = 1 << 24
# Bounds on what a skops zip may unpack to, so a crafted archive cannot exhaust memory.
MAX_SKOPS_UNPACKED = 2 << 30
MAX_SKOPS_MEMBERS = 1_000_000

# skops node loaders Bastion models use; others (functions, methods, partials, reduce, bytes ...) are refused.
_SKOPS_LOADERS = frozenset(
    {
        "CachedNode",
        "DictNode",
        "DTypeNode",
        "JsonNode",
        "ListNode",
        "LossNode",
        "NdArrayNode",
        "ObjectNode",
        "RandomStateNode",
        "SliceNode",
        "TreeNode",
        "TupleNode",
        "TypeNode",
    }
)
_BUILTIN_TYPES = ("dict", "list", "tuple", "str", "int", "float", "bool", "NoneType", "slice")
_NUMPY_TYPES = ("ndarray", "dtype", "float64", "float32", "int64", "int32", "bool")


def _type_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__name__}"


def skops_io() -> Any:
    """``skops.io``, imported without its import-time walks over scikit-learn, scipy and numpy.

    At import, ``skops.io._trusted_types`` builds skops' *default* trust set: it calls
    ``sklearn.utils.all_estimators()`` (imports every scikit-learn module and, through them, torch:
    3.8-4.7 s of a job's start-up on the 2-core machine), imports ``sklearn.ensemble`` for one
    internal type, and names every public ufunc of numpy and ``scipy.special`` through
    ``get_public_type_names``, whose ``whichmodule`` scans all of ``sys.modules`` once per ufunc
    (about 3 s of 4.6 under load). Bastion never relies on that default set: :func:`audit_skops`
    checks every type against :func:`skops_allowed_types` and passes that list as ``trusted``, so
    empty defaults make skops report more types as untrusted, never fewer, and writing a model does
    not consult them at all.
    """
    import sys

    if "skops.io" in sys.modules:
        return sys.modules["skops.io"]
    import sklearn.utils

    real = sklearn.utils.all_estimators
    sklearn.utils.all_estimators = lambda *args, **kwargs: []
    hook = _EmptyTypeNames()
    sys.meta_path.insert(0, hook)
    blocked = "sklearn.ensemble" not in sys.modules
    if blocked:  # skops only tries it (ImportError is expected there); the real one loads when used
        sys.modules["sklearn.ensemble"] = None  # type: ignore[assignment]
    try:
        import skops.io
    finally:
        sklearn.utils.all_estimators = real
        sys.meta_path.remove(hook)
        hook.restore()
        if blocked and sys.modules.get("sklearn.ensemble", 0) is None:
            del sys.modules["sklearn.ensemble"]
    return skops.io


class _EmptyTypeNames:
    """Import hook: while ``skops.io`` imports, its ``get_public_type_names`` answers ``[]``."""

    NAME = "skops.io._utils"

    def __init__(self) -> None:
        self.module: Any = None
        self.real: Any = None

    def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
        if name != self.NAME:
            return None
        from importlib.machinery import PathFinder

        spec = PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return spec
        run = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run(module)
            self.module, self.real = module, module.get_public_type_names
            module.get_public_type_names = lambda *args, **kwargs: []

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec

    def restore(self) -> None:
        if self.module is not None:
            self.module.get_public_type_names = self.real


def skops_allowed_types() -> frozenset[str]:
    """Fully-qualified names of every type a Bastion scikit-learn model may contain."""
    from sklearn._loss import _loss, link, loss
    from sklearn.compose import ColumnTransformer
    from sklearn.dummy import DummyClassifier, DummyRegressor
    from sklearn.ensemble import (
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        RandomForestClassifier,
        RandomForestRegressor,
        StackingClassifier,
        StackingRegressor,
        VotingClassifier,
        VotingRegressor,
    )
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.model_selection import KFold, StratifiedKFold
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import LabelEncoder, OneHotEncoder, StandardScaler
    from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
    from sklearn.tree._tree import Tree
    from sklearn.utils import Bunch

    classes: list[type] = [
        Pipeline,
        ColumnTransformer,
        SimpleImputer,
        StandardScaler,
        OneHotEncoder,
        LogisticRegression,
        Ridge,
        RandomForestClassifier,
        RandomForestRegressor,
        DecisionTreeClassifier,
        DecisionTreeRegressor,
        Tree,
        GradientBoostingClassifier,
        GradientBoostingRegressor,
        DummyClassifier,
        DummyRegressor,
        # voting and stacking ensembles (their members are the estimators above)
        VotingClassifier,
        VotingRegressor,
        StackingClassifier,
        StackingRegressor,
        LabelEncoder,
        Bunch,
        KFold,
        StratifiedKFold,
        loss.HalfBinomialLoss,
        loss.HalfMultinomialLoss,
        loss.HalfSquaredError,
        _loss.CyHalfBinomialLoss,
        _loss.CyHalfMultinomialLoss,
        _loss.CyHalfSquaredError,
        link.IdentityLink,
        link.LogitLink,
        link.MultinomialLogit,
        link.Interval,
        np.random.RandomState,
    ]
    names = {_type_name(c) for c in classes}
    names.update(f"builtins.{t}" for t in _BUILTIN_TYPES)
    names.update(f"numpy.{t}" for t in _NUMPY_TYPES)
    return frozenset(names)


def _schema_types(node: Any, found: set[tuple[str, str]]) -> None:
    """Collect (loader, module.class) of every node in a skops schema, however deeply nested."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            if "__loader__" in item or "__class__" in item or "__module__" in item:
                found.add((str(item.get("__loader__")), f"{item.get('__module__')}.{item.get('__class__')}"))
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)


def audit_skops(data: bytes) -> list[str]:
    """Raise Invalid unless every node of the skops file is allow-listed; return the types to trust."""
    sio = skops_io()

    allowed = skops_allowed_types()
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            members = archive.infolist()
            if len(members) > MAX_SKOPS_MEMBERS or sum(m.file_size for m in members) > MAX_SKOPS_UNPACKED:
                raise Invalid("refused: the model file unpacks to more than Bastion accepts")
            schema = json.loads(archive.read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError, UnicodeDecodeError, OSError):
        raise Invalid(REFUSED) from None
    found: set[tuple[str, str]] = set()
    _schema_types(schema, found)
    bad_loaders = sorted({loader for loader, _ in found if loader not in _SKOPS_LOADERS})
    bad_types = sorted({name for _, name in found if name not in allowed})
    if bad_loaders or bad_types:
        raise Invalid(f"untrusted type in model file: {', '.join((bad_types + bad_loaders)[:5])}")
    try:
        untrusted = sio.get_untrusted_types(data=data)
    except Exception:
        raise Invalid(REFUSED) from None
    outside = sorted(set(untrusted) - allowed)
    if outside:
        raise Invalid(f"untrusted type in model file: {', '.join(outside[:5])}")
    return sorted(untrusted)


def dump_sklearn(pipeline: Any) -> bytes:
    sio = skops_io()

    # Deflate: forests hold many near-empty arrays, so files shrink about eightfold.
    return bytes(sio.dumps(pipeline, compression=zipfile.ZIP_DEFLATED, compresslevel=6))


def load_sklearn(data: bytes) -> Any:
    """Load a skops file after :func:`audit_skops`; never with ``trusted=True``."""
    sio = skops_io()
    from sklearn.pipeline import Pipeline

    trusted = audit_skops(data)
    try:
        obj = sio.loads(data, trusted=trusted)
    except Exception:
        raise Invalid("the model file is corrupt or was not written by Bastion") from None
    if not isinstance(obj, Pipeline):
        raise Invalid("the model file does not hold a Bastion pipeline")
    return obj


def check_safetensors(data: bytes) -> None:
    """The safetensors layout: u64 little-endian header length, then a JSON object header."""
    if len(data) < 10:
        raise Invalid(REFUSED)
    (size,) = struct.unpack("<Q", data[:8])
    if size < 2 or size > MAX_SAFETENSORS_HEADER or 8 + size > len(data) or data[8:9] != b"{":
        raise Invalid(REFUSED)
    try:
        header = json.loads(data[8 : 8 + size])
    except (ValueError, UnicodeDecodeError):
        raise Invalid(REFUSED) from None
    if not isinstance(header, dict):
        raise Invalid(REFUSED)


def dump_torch_state(state: Mapping[str, Any], metadata: dict[str, str] | None = None) -> bytes:
    from safetensors.torch import save

    return bytes(save({k: v.detach().contiguous() for k, v in state.items()}, metadata=metadata))


def load_torch_state(data: bytes) -> dict[str, Any]:
    from safetensors.torch import load

    check_safetensors(data)
    try:
        return dict(load(data))
    except Exception:
        raise Invalid(REFUSED) from None


def sniff_format(data: bytes) -> str:
    """Which safe format ``data`` is in, or Invalid(REFUSED) for pickles and anything else."""
    if not isinstance(data, bytes | bytearray | memoryview) or len(data) < 4:
        raise Invalid(REFUSED)
    head = bytes(data[:4])
    if head[:1] == b"\x80":
        raise Invalid(REFUSED)
    if head == b"PK\x03\x04":
        return "skops"
    check_safetensors(bytes(data))
    return "safetensors"


def dump_model(model: FittedModel) -> tuple[bytes, str]:
    """Bytes and format of a model returned by a model type's ``fit``."""
    from bastion.ml.model_types.sk_common import SklearnModel

    if isinstance(model, SklearnModel):
        return dump_sklearn(model.pipeline), "skops"
    from bastion.ml.model_types.mlp_net import TorchMLPModel

    if isinstance(model, TorchMLPModel):
        return dump_torch_state(model.module.state_dict(), {"format": "bastion-mlp"}), "safetensors"
    raise TypeError(f"cannot serialize {type(model).__name__}")


class Predictor:
    """A loaded model that accepts rows keyed by feature name and answers in the caller's labels."""

    def __init__(
        self,
        model: FittedModel,
        spec: FeatureSpec,
        task: Task,
        classes: list[str] | None,
        config: dict[str, Any],
    ) -> None:
        self.model = model
        self.spec = spec
        self.task = task
        self.classes = classes
        self.config = config

    @property
    def feature_names(self) -> list[str]:
        return list(self.spec.feature_names)

    def predict(self, rows: Sequence[Mapping[str, Any]] | np.ndarray) -> np.ndarray:
        """Class labels (as text) for classifiers, float values for regressors."""
        out = self.model.predict(self.spec.matrix(rows))
        if self.classes is None:
            return out
        result: np.ndarray = np.asarray(self.classes, dtype=object)[out]
        return result

    def predict_proba(self, rows: Sequence[Mapping[str, Any]] | np.ndarray) -> np.ndarray:
        """Probabilities, one column per entry of ``classes``."""
        if self.classes is None:
            raise Invalid("this model is a regressor: it predicts values, not class probabilities")
        return self.model.predict_proba(self.spec.matrix(rows))


def load_model(model_bytes: bytes, model_format: str, model_config: Mapping[str, Any]) -> Predictor:
    """Rebuild a trained model from its bytes and JSON config, refusing anything unsafe."""
    if model_format not in FORMATS:
        raise Invalid(f"unknown model format {model_format!r}; valid formats: {', '.join(FORMATS)}")
    if sniff_format(model_bytes) != model_format:
        raise Invalid(REFUSED)
    if not isinstance(model_config, Mapping):
        raise Invalid("model config must be an object")
    config = dict(model_config)
    spec = FeatureSpec.from_config(config)
    task = config.get("task")
    if task not in TASKS:
        raise Invalid("model config lacks a valid task")
    classes = config.get("classes")
    if task == "classification":
        if not isinstance(classes, list) or len(classes) < 2 or not all(isinstance(c, str) for c in classes):
            raise Invalid("model config lacks the list of classes")
    else:
        classes = None
    model: FittedModel
    if model_format == "skops":
        from bastion.ml.model_types.sk_common import SklearnModel

        pipeline = load_sklearn(bytes(model_bytes))
        n_classes = len(classes) if classes else 0
        if classes is not None and not (
            hasattr(pipeline, "classes_")
            and set(np.asarray(pipeline.classes_).tolist()) <= set(range(n_classes))
        ):
            raise Invalid("the model's classes do not match its config")
        model = SklearnModel(pipeline, task, n_classes)
    else:
        from bastion.ml.model_types.mlp_net import build_model
        from bastion.ml.quantize import dequantize_state

        state = dequantize_state(load_torch_state(bytes(model_bytes)), config.get("quantization"))
        model = build_model(config, state, task)
        expected_out = len(classes) if classes is not None else 1
        if model.arch.n_outputs != expected_out:
            raise Invalid("the network's outputs do not match the classes in its config")
    return Predictor(model, spec, task, classes, config)
