"""LoRA on a causal LM, the pieces both a fine-tuning job and a federated site use (no server imports).

Encoding (loss on completions only), padding, packing, the validation split, mean token loss, the
adapter as safetensors bytes or numpy arrays, and one training call through transformers' Trainer.
"""

from __future__ import annotations

import random
import tempfile
from collections.abc import Mapping
from typing import Any

import numpy as np


def adapter_bytes(model: Any) -> bytes:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    return save(state, metadata={"format": "peft-lora"})


def load_adapter_bytes(model: Any, data: bytes) -> None:
    from peft import set_peft_model_state_dict
    from safetensors.torch import load

    set_peft_model_state_dict(model, load(data))


def lora_config(params: dict[str, Any]) -> Any:
    from peft import LoraConfig, TaskType

    lora = params["lora"]
    return LoraConfig(
        task_type=TaskType.CAUSAL_LM,
        r=int(lora["r"]),
        lora_alpha=float(lora["alpha"]),  # type: ignore[arg-type]
        lora_dropout=float(lora["dropout"]),
        target_modules=list(params["target_modules"]),
        fan_in_fan_out=params.get("base_model_type") == "gpt2",
    )


def encode_all(
    tokenizer: Any, shape: str, records: list[dict[str, Any]], max_len: int
) -> list[dict[str, Any]]:
    from bastion.llm.textdata import encode

    out = []
    for rec in records:
        ids, labels = encode(tokenizer, shape, rec)
        out.append({"input_ids": ids[:max_len], "labels": labels[:max_len]})
    return out


def pack(examples: list[dict[str, Any]], block: int) -> list[dict[str, Any]]:
    """Concatenate examples (labels kept, so prompts stay masked) and cut into ``block``-token rows."""
    ids = [t for e in examples for t in e["input_ids"]]
    labels = [t for e in examples for t in e["labels"]]
    n = max(1, len(ids) // block)
    return [
        {"input_ids": ids[i * block : (i + 1) * block], "labels": labels[i * block : (i + 1) * block]}
        for i in range(n)
    ]


def split(records: list[dict[str, Any]], fraction: float, seed: int) -> tuple[list[Any], list[Any]]:
    if fraction <= 0 or len(records) < 2:
        return records, []
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_val = max(1, round(len(records) * fraction))
    held = set(order[:n_val])
    return [r for i, r in enumerate(records) if i not in held], [records[i] for i in sorted(held)]


def collate(batch: list[dict[str, Any]], pad_id: int) -> dict[str, Any]:
    import torch

    width = max(len(e["input_ids"]) for e in batch)
    ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e["input_ids"])
        ids[i, :n] = torch.tensor(e["input_ids"])
        labels[i, :n] = torch.tensor(e["labels"])
        mask[i, :n] = 1
    return {"input_ids": ids, "labels": labels, "attention_mask": mask}


def eval_loss(model: Any, examples: list[dict[str, Any]], pad_id: int, batch_size: int) -> float:
    """Mean token loss over ``examples`` (the trained tokens only)."""
    import torch

    if not examples:
        return float("nan")
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(examples), batch_size):
            batch = collate(examples[i : i + batch_size], pad_id)
            logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
            shift_logits, shift_labels = logits[:, :-1], batch["labels"][:, 1:]
            loss = torch.nn.functional.cross_entropy(
                shift_logits.reshape(-1, shift_logits.size(-1)).float(),
                shift_labels.reshape(-1),
                ignore_index=-100,
                reduction="sum",
            )
            total += float(loss)
            count += int((shift_labels != -100).sum())
    return total / max(count, 1)


def adapter_arrays(model: Any) -> dict[str, np.ndarray]:
    """The adapter's tensors as float32 numpy arrays (what a federated site sends)."""
    from peft import get_peft_model_state_dict

    return {k: v.detach().cpu().float().numpy() for k, v in get_peft_model_state_dict(model).items()}


def set_adapter_arrays(model: Any, arrays: Mapping[str, np.ndarray]) -> None:
    import torch
    from peft import set_peft_model_state_dict

    set_peft_model_state_dict(
        model, {k: torch.from_numpy(np.asarray(v, dtype=np.float32)) for k, v in arrays.items()}
    )


def train_with_trainer(
    model: Any,
    train: list[dict[str, Any]],
    val: list[dict[str, Any]],
    *,
    epochs: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    pad_id: int,
    callbacks: list[Any] | None = None,
    bf16: bool = False,
    gradient_checkpointing: bool = False,
    optimizers: tuple[Any, Any] | None = None,
) -> Any:
    """transformers' Trainer over the encoded examples: eval every epoch when there is a validation set,
    no checkpoint files on disk (callers keep what they need, encrypted). ``optimizers`` (optimizer,
    LR schedule) lets a resumed job continue its own schedule. Returns the Trainer's state."""
    from transformers import Trainer, TrainingArguments

    with tempfile.TemporaryDirectory(prefix="bastion-ft-") as out:
        args = TrainingArguments(
            output_dir=out,
            num_train_epochs=epochs,
            per_device_train_batch_size=batch_size,
            per_device_eval_batch_size=batch_size,
            learning_rate=learning_rate,
            eval_strategy="epoch" if val else "no",
            save_strategy="no",
            logging_steps=1,
            report_to=[],
            seed=seed,
            data_seed=seed,
            use_cpu=not bf16,
            bf16=bf16,
            gradient_checkpointing=gradient_checkpointing,
            disable_tqdm=True,
            remove_unused_columns=False,
            dataloader_num_workers=0,
        )
        trainer = Trainer(
            model=model,
            args=args,
            train_dataset=train,
            eval_dataset=val or None,
            data_collator=lambda b: collate(b, pad_id),
            callbacks=callbacks or [],
            optimizers=optimizers if optimizers is not None else (None, None),
        )
        trainer.train()
        return trainer.state
