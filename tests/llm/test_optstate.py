"""A resumed fine-tuning run continues its optimizer and learning-rate schedule (no pickle)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bastion.llm import optstate
from bastion.llm.lora import adapter_bytes, encode_all, load_adapter_bytes, lora_config, train_with_trainer
from tests.llm.support import chat_records

LR = 0.01


def _model(tiny_model: Path) -> Any:
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model), local_files_only=True)
    lora = {"r": 4, "alpha": 8, "dropout": 0.0}
    return get_peft_model(
        base, lora_config({"lora": lora, "target_modules": ["c_attn"], "base_model_type": "gpt2"})
    )


def _train(
    model: Any, examples: list[dict[str, Any]], optimizers: tuple[Any, Any], epochs: int
) -> list[float]:
    """Runs ``epochs`` epochs; returns the learning rate used at every step."""
    from transformers import TrainerCallback

    lrs: list[float] = []

    class Record(TrainerCallback):
        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            lrs.append(float(optimizers[1].get_last_lr()[0]))

    train_with_trainer(
        model, examples, [], epochs=epochs, batch_size=2, learning_rate=LR, seed=3, pad_id=0,
        callbacks=[Record()], optimizers=optimizers,
    )  # fmt: skip
    return lrs


def test_resumed_run_continues_the_lr_schedule_and_optimizer_moments(tiny_model: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_model), local_files_only=True)
    examples = encode_all(tok, "chat", chat_records(8), 128)
    steps_per_epoch, epochs = 4, 2

    straight = _model(tiny_model)
    straight_lrs = _train(
        straight, examples, optstate.make_optimizer(straight, LR, steps_per_epoch * epochs), epochs
    )
    assert len(straight_lrs) == 8 and straight_lrs[0] == pytest.approx(LR)

    first = _model(tiny_model)
    first_opt = optstate.make_optimizer(first, LR, steps_per_epoch * epochs)
    _train(first, examples, first_opt, 1)
    blob, adapter = optstate.state_bytes(*first_opt), adapter_bytes(first)
    assert b"pickle" not in blob[:8] and blob[8:9] == b"{"  # a safetensors header, not a pickle

    resumed = _model(tiny_model)
    load_adapter_bytes(resumed, adapter)
    resumed_opt = optstate.make_optimizer(resumed, LR, steps_per_epoch * epochs)
    assert optstate.load_state(*resumed_opt, blob) == steps_per_epoch
    saved, loaded = first_opt[0].state_dict()["state"], resumed_opt[0].state_dict()["state"]
    assert saved.keys() == loaded.keys() and len(saved) > 0
    for index in saved:
        for name in ("step", "exp_avg", "exp_avg_sq"):
            assert saved[index][name].equal(loaded[index][name])
    resumed_lrs = _train(resumed, examples, resumed_opt, epochs - 1)
    # The second epoch runs on the schedule's second half, as in the uninterrupted run; a restart
    # would have begun again at the full learning rate.
    assert resumed_lrs == pytest.approx(straight_lrs[steps_per_epoch:])
    assert resumed_lrs[0] < LR * 0.6


def test_foreign_or_mismatched_state_is_refused(tiny_model: Path) -> None:
    import torch

    model = _model(tiny_model)
    opt = optstate.make_optimizer(model, LR, 4)
    other = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="different parameters"):
        optstate.load_state(*opt, optstate.state_bytes(*optstate.make_optimizer(other, LR, 4)))
    with pytest.raises(ValueError):
        optstate.load_state(*opt, b"\x80\x04junk")
