"""A tiny causal language model built from a config, for tests and the README demo: nothing from a hub.

Random weights (so its answers are noise until fine-tuned), a byte-level BPE tokenizer trained
offline with the ``tokenizers`` library on a short built-in corpus plus any extra text given, a chat
template, and ``save_pretrained`` in safetensors: the same directory shape as a downloaded model.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

Architecture = Literal["gpt2", "llama"]

CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}{{ eos_token }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
_CORPUS = [
    "The patient was seen in clinic today for follow up of hypertension and diabetes.",
    "Blood pressure is well controlled on lisinopril. Continue current medications.",
    "Chest pain resolved after nitroglycerin. Troponin negative times two.",
    "Assessment and plan: community acquired pneumonia, start antibiotics and recheck in two days.",
    "Summarize the note. Answer the question. What is the diagnosis? What is the plan?",
    "user assistant system: the a an of to in is was for with on at by and or not no yes",
    "0 1 2 3 4 5 6 7 8 9 mg ml kg daily twice weekly [NAME] [DATE] [AGE] [PHONE] [ADDRESS]",
]
SPECIAL = ["<|endoftext|>", "<|pad|>", "<|system|>", "<|user|>", "<|assistant|>"]


def build_tokenizer(directory: Path, vocab_size: int = 512, extra_text: list[str] | None = None) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4 + list(extra_text or []), trainer=trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token=SPECIAL[0], bos_token=SPECIAL[0], pad_token=SPECIAL[1]
    )
    fast.chat_template = CHAT_TEMPLATE
    fast.save_pretrained(str(directory))


def build_tiny_causal_lm(
    directory: Path | str,
    *,
    architecture: Architecture = "gpt2",
    hidden: int = 64,
    layers: int = 2,
    vocab_size: int = 512,
    seed: int = 0,
    extra_text: list[str] | None = None,
) -> Path:
    """Write a randomly initialised ``architecture`` model and its tokenizer to ``directory``."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GPT2Config, LlamaConfig

    out = Path(directory)
    out.mkdir(parents=True, exist_ok=True)
    build_tokenizer(out, vocab_size, extra_text)
    tokenizer = AutoTokenizer.from_pretrained(str(out), local_files_only=True)
    vocab = len(tokenizer)
    common = {
        "vocab_size": vocab,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
        "pad_token_id": tokenizer.pad_token_id,
    }
    config = (
        GPT2Config(n_embd=hidden, n_layer=layers, n_head=4, n_positions=256, **common)
        if architecture == "gpt2"
        else LlamaConfig(
            hidden_size=hidden,
            intermediate_size=hidden * 2,
            num_hidden_layers=layers,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            **common,
        )
    )
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_config(config)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # stdout stays clean for --json
    model.save_pretrained(str(out), safe_serialization=True)
    return out
