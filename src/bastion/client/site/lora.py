"""The site trainer of a federated LoRA run: this site's notes, its own copy of the base model.

Before it joins, the site checks that its base model's weights hash to the federation's
(``base_model_mismatch`` otherwise: every site must adapt the same model) and scrubs its JSONL
file with the free-text PHI scrubber (nothing leaves the site but adapter tensors anyway; the
scrubber keeps PHI out of the adapter too). Each round: load the global adapter, train with
transformers' Trainer, send the adapter's tensors; evaluate reports ``val_loss`` on a held-out split.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from bastion.client.site.base import FitResult, SiteError, SiteTrainer


class LoraSiteTrainer(SiteTrainer):
    def __init__(
        self, data: str | Path, base_model: str | Path, *, threads: int | None = None, seed: int = 0
    ) -> None:
        self.data_path, self.base_dir = Path(data), Path(base_model)
        self.threads, self.seed = threads, seed
        self._model: Any = None
        self._pad = 0
        self._train: list[dict[str, Any]] = []
        self._val: list[dict[str, Any]] = []

    def prepare(self, config: Mapping[str, Any]) -> None:
        import os

        os.environ["HF_HUB_OFFLINE"] = "1"
        import torch
        from peft import LoraConfig, get_peft_model

        from bastion.llm.lora import encode_all, split
        from bastion.llm.modeldir import context_length, hash_weights, load_base, weight_files
        from bastion.llm.textdata import parse_jsonl, scrub_records

        spec = config["model"]
        if spec.get("type") != "lora_adapter":
            raise SiteError(
                "this federation's model is not a LoRA adapter; run without --base-model", "wrong_trainer"
            )
        if hash_weights(weight_files(self.base_dir)) != spec["base_sha256"]:
            raise SiteError(
                "this site's base model differs from the federation's (weights hash mismatch)",
                "base_model_mismatch",
            )
        if self.threads:
            torch.set_num_threads(self.threads)
        model, tokenizer = load_base(str(self.base_dir), spec["base_sha256"])
        fields = LoraConfig.__dataclass_fields__
        self._model = get_peft_model(
            model, LoraConfig(**{k: v for k, v in spec["peft"].items() if k in fields})
        )
        parsed = scrub_records(parse_jsonl(self.data_path.read_bytes()))
        examples = encode_all(tokenizer, parsed.shape, parsed.records, context_length(model.config))
        evaluation = dict(config.get("evaluation") or {})
        self._train, self._val = split(
            examples,
            float(evaluation.get("local_validation_fraction", 0.1)),
            int(evaluation.get("split_seed", 0)),
        )
        pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self._pad = int(pad)

    def fit(self, params: dict[str, np.ndarray], config: Mapping[str, Any]) -> FitResult:
        from bastion.llm.lora import adapter_arrays, set_adapter_arrays, train_with_trainer

        if self._model is None:
            self.prepare(config)
        set_adapter_arrays(self._model, params)
        training = dict(config.get("training") or {})
        state = train_with_trainer(
            self._model,
            self._train,
            [],
            epochs=int(training.get("epochs", 1)),
            batch_size=int(training.get("batch_size", 8)),
            learning_rate=float(training.get("lr", 1e-3)),
            seed=self.seed * 100_003 + int(config.get("round", 0)),
            pad_id=self._pad,
        )
        losses = [h["loss"] for h in state.log_history if "loss" in h]
        metrics = {"train_loss": float(losses[-1])} if losses else {}
        return FitResult(adapter_arrays(self._model), len(self._train), metrics)

    def evaluate(self, params: Mapping[str, np.ndarray], config: Mapping[str, Any]) -> dict[str, float]:
        from bastion.llm.lora import eval_loss, set_adapter_arrays

        if not self._val:
            return {}
        if self._model is None:
            self.prepare(config)
        set_adapter_arrays(self._model, params)
        return {
            "val_loss": eval_loss(self._model, self._val, self._pad, 8),
            "val_num_samples": float(len(self._val)),
        }
