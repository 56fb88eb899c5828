"""A local Hugging Face model directory: checked, hashed, counted and loaded (no server imports).

Order of checks (each refusal a 422 with its own code): the path is a directory with a
``config.json`` (``model_dir_invalid``); neither config nor tokenizer config asks for remote code
(``auto_map`` → ``remote_code_refused``); the weights are safetensors (a directory with only
``.bin``/``.pt``/pickle weights → ``pickle_weights_refused``); transformers knows the model type as a
causal LM (``unsupported_architecture``). Parameters are counted from the safetensors headers (no
weights loaded); the hash covers every weights file by name and content. Loading checks the hash
again, with ``local_files_only=True``, ``use_safetensors=True``, never ``trust_remote_code``. Sites of
a federated LoRA run use the same functions on their own copy of the base model.
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.errors import IntegrityError, Invalid

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")
_MAX_HEADER = 100 * 1024 * 1024


@dataclass(frozen=True)
class ModelInfo:
    architecture: str
    model_type: str
    parameter_count: int
    weights_sha256: str
    config: dict[str, Any]


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise Invalid(f"{path.name} is not readable JSON", code="model_dir_invalid") from exc
    if not isinstance(data, dict):
        raise Invalid(f"{path.name} is not a JSON object", code="model_dir_invalid")
    return data


def weight_files(directory: Path) -> list[Path]:
    files = sorted(p for p in directory.iterdir() if p.is_file() and p.suffix == ".safetensors")
    if files:
        return files
    if any(p.suffix in PICKLE_SUFFIXES for p in directory.iterdir()):
        raise Invalid(
            "this model directory has only pickle weights (.bin/.pt); Bastion loads safetensors only. "
            "Convert it once on a trusted machine (model.save_pretrained(dir, safe_serialization=True))",
            code="pickle_weights_refused",
        )
    raise Invalid("no *.safetensors weights in the model directory", code="model_dir_invalid")


def hash_weights(files: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.name.encode() + b"\x00")
        with path.open("rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    return digest.hexdigest()


def count_parameters(files: list[Path]) -> int:
    """Sum of tensor sizes from the safetensors headers: the weights are never loaded."""
    total = 0
    for path in files:
        with path.open("rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > _MAX_HEADER:
                raise Invalid(f"{path.name}: safetensors header too large", code="model_dir_invalid")
            header = json.loads(f.read(size))
        for name, entry in header.items():
            if name != "__metadata__":
                n = 1
                for dim in entry["shape"]:
                    n *= int(dim)
                total += n
    return total


def inspect_model_dir(path: Path | str) -> ModelInfo:
    directory = Path(path).expanduser().resolve()
    if not directory.is_dir() or not (directory / "config.json").is_file():
        raise Invalid(f"{path} is not a model directory with a config.json", code="model_dir_invalid")
    config = _read_json(directory / "config.json")
    for name in ("config.json", "tokenizer_config.json"):
        file = directory / name
        if file.is_file() and "auto_map" in _read_json(file):
            raise Invalid(
                f"{name} maps classes to code shipped with the model (auto_map); Bastion never runs "
                "remote code (trust_remote_code is always off)",
                code="remote_code_refused",
            )
    files = weight_files(directory)
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    model_type = str(config.get("model_type") or "")
    if model_type not in MODEL_FOR_CAUSAL_LM_MAPPING_NAMES:
        raise Invalid(
            f"model type {model_type!r} is not a causal language model transformers knows",
            code="unsupported_architecture",
        )
    architectures = config.get("architectures") or [MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type]]
    return ModelInfo(
        architecture=str(architectures[0]),
        model_type=model_type,
        parameter_count=count_parameters(files),
        weights_sha256=hash_weights(files),
        config=config,
    )


def context_length(config: Any, default: int = 1024) -> int:
    """The model's context window, from a config object or its JSON dict."""

    def get(key: str) -> Any:
        return config.get(key) if isinstance(config, dict) else getattr(config, key, None)

    value = get("max_position_embeddings") or get("n_positions") or default
    return int(value)


def load_base(path: str, expected_sha256: str, *, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) from a registered directory, after checking its weights still hash the same."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    directory = Path(path)
    actual = hash_weights(weight_files(directory))
    if actual != expected_sha256:
        raise IntegrityError(
            "the base model's weights changed since registration (hash mismatch)", code="base_model_changed"
        )
    tokenizer = AutoTokenizer.from_pretrained(str(directory), local_files_only=True, trust_remote_code=False)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(
        str(directory),
        local_files_only=True,
        trust_remote_code=False,
        use_safetensors=True,
        **({"dtype": dtype} if dtype is not None else {}),
    )
    return model, tokenizer
