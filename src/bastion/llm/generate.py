"""Text generation and perplexity on a base model or a fine-tuned adapter (the model test page).

A model id is either a registry model of the caller whose version is a LoRA adapter (its base's
weights hash must still match) or a registered base model. Bounded work per request: at most
``MAX_NEW_TOKENS`` new tokens, prompts within the model's context, at most ``max_concurrent``
generations at once (a 429 beyond that), two loaded models kept. Generation with a seed is
repeatable: one generation at a time per loaded model, the seed set under that lock.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bastion.errors import Conflict, Invalid, NotFound, RateLimited

if TYPE_CHECKING:
    from bastion.auth.principal import Principal
    from bastion.catalog.model_versions import ModelVersions
    from bastion.llm.base_models import BaseModels
    from bastion.llm.files import FineTuneFiles

MAX_NEW_TOKENS = 512
MAX_PERPLEXITY_EXAMPLES = 2000
CACHE_SIZE = 2


@dataclass
class Loaded:
    model: Any
    tokenizer: Any
    has_adapter: bool
    lock: threading.Lock
    positions: int


@dataclass(frozen=True)
class GenerateParams:
    prompt: str | None
    messages: list[dict[str, str]] | None
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int | None = None


class Generator:
    def __init__(
        self, bases: BaseModels, registry: ModelVersions, files: FineTuneFiles, max_concurrent: int = 2
    ) -> None:
        self.bases = bases
        self.registry = registry
        self.files = files
        self._slots = threading.BoundedSemaphore(max_concurrent)
        self._cache: OrderedDict[str, Loaded] = OrderedDict()
        self._cache_lock = threading.Lock()

    # -- resolving and loading --------------------------------------------------------------------

    def resolve(
        self, principal: Principal, model_id: str, version: int | None, access_code: str | None
    ) -> tuple[Any, bytes | None, dict[str, Any]]:
        registry = self.registry
        try:
            view = registry.version(principal, model_id, version)
        except NotFound:
            try:
                return self.bases.get(model_id), None, {}
            except NotFound:
                raise NotFound("model not found", code="model_not_found") from None
        if view.config.get("kind") != "lora_adapter":
            raise Invalid("this model is not a language model adapter", code="not_a_language_model")
        wanted = view.config["base_model"]
        base = self.bases.get(wanted["id"])
        if base.weights_sha256 != wanted["sha256"]:
            raise Conflict("the adapter's base model changed since training", code="base_model_changed")
        return base, registry.read_bytes(principal, view, access_code), view.config

    def load(self, base: Any, adapter: bytes | None, config: dict[str, Any]) -> Loaded:
        key = f"{base.id}:{base.weights_sha256}:{hashlib.sha256(adapter or b'').hexdigest()}"
        with self._cache_lock:
            hit = self._cache.get(key)
            if hit is not None:
                self._cache.move_to_end(key)
                return hit
            loaded = self._load(base, adapter, config)
            self._cache[key] = loaded
            while len(self._cache) > CACHE_SIZE:
                self._cache.popitem(last=False)
            return loaded

    @staticmethod
    def _load(base: Any, adapter: bytes | None, config: dict[str, Any]) -> Loaded:
        from bastion.llm.base_models import load_base

        model, tokenizer = load_base(base.path, base.weights_sha256)
        if adapter is not None:
            from peft import LoraConfig, get_peft_model

            from bastion.llm.lora import load_adapter_bytes

            fields = LoraConfig.__dataclass_fields__
            peft_cfg = {k: v for k, v in (config.get("peft") or {}).items() if k in fields}
            model = get_peft_model(model, LoraConfig(**peft_cfg))
            load_adapter_bytes(model, adapter)
        model.eval()
        from bastion.llm.base_models import context_length

        return Loaded(model, tokenizer, adapter is not None, threading.Lock(), context_length(model.config))

    # -- generation -------------------------------------------------------------------------------

    def _slot(self) -> None:
        if not self._slots.acquire(blocking=False):
            raise RateLimited(
                "too many generations are running; try again shortly", code="generation_busy", retry_after=2
            )

    def _inputs(self, loaded: Loaded, p: GenerateParams) -> Any:
        from bastion.llm.textdata import prompt_text

        text = prompt_text(loaded.tokenizer, p.prompt, p.messages)
        ids = loaded.tokenizer(text, return_tensors="pt", add_special_tokens=False)
        if ids["input_ids"].shape[1] + p.max_new_tokens > loaded.positions:
            raise Invalid(
                f"prompt ({ids['input_ids'].shape[1]} tokens) plus max_new_tokens exceeds the model's "
                f"context of {loaded.positions}",
                code="prompt_too_long",
            )
        return ids

    def _kwargs(self, loaded: Loaded, p: GenerateParams) -> dict[str, Any]:
        sample = p.temperature > 0
        kw: dict[str, Any] = {
            "max_new_tokens": p.max_new_tokens,
            "do_sample": sample,
            "pad_token_id": loaded.tokenizer.pad_token_id,
            "eos_token_id": loaded.tokenizer.eos_token_id,
        }
        if sample:
            kw.update(temperature=p.temperature, top_p=p.top_p)
        return kw

    def _run(self, loaded: Loaded, p: GenerateParams, *, use_adapter: bool) -> dict[str, Any]:
        import contextlib

        import torch

        ids = self._inputs(loaded, p)
        with loaded.lock, torch.no_grad():
            if p.seed is not None:
                torch.manual_seed(p.seed)
            ctx = (
                loaded.model.disable_adapter()
                if loaded.has_adapter and not use_adapter
                else contextlib.nullcontext()
            )
            with ctx:
                out = loaded.model.generate(**ids, **self._kwargs(loaded, p))
        new = out[0, ids["input_ids"].shape[1] :]
        finished = bool(len(new) and int(new[-1]) == loaded.tokenizer.eos_token_id)
        return {
            "text": loaded.tokenizer.decode(new, skip_special_tokens=True),
            "completion_tokens": len(new),
            "prompt_tokens": int(ids["input_ids"].shape[1]),
            "finish_reason": "stop" if finished else "length",
        }

    def generate(
        self,
        principal: Principal,
        model_id: str,
        p: GenerateParams,
        *,
        version: int | None = None,
        access_code: str | None = None,
        compare: bool = False,
    ) -> dict[str, Any]:
        base, adapter, config = self.resolve(principal, model_id, version, access_code)
        if compare and adapter is None:
            raise Invalid(
                "compare needs a fine-tuned model (an adapter), not a base model", code="nothing_to_compare"
            )
        self._slot()
        try:
            loaded = self.load(base, adapter, config)
            out: dict[str, Any] = {
                "model": model_id,
                "base_model": base.name,
                **self._run(loaded, p, use_adapter=True),
            }
            if compare:
                out["base"] = self._run(loaded, p, use_adapter=False)
            return out
        finally:
            self._slots.release()

    def stream(
        self,
        principal: Principal,
        model_id: str,
        p: GenerateParams,
        *,
        version: int | None = None,
        access_code: str | None = None,
    ) -> Iterator[str]:
        """Text pieces as the model produces them (checks and the slot are taken before the first)."""
        from transformers import TextIteratorStreamer

        base, adapter, config = self.resolve(principal, model_id, version, access_code)
        self._slot()
        try:
            loaded = self.load(base, adapter, config)
            ids = self._inputs(loaded, p)
        except BaseException:
            self._slots.release()
            raise
        streamer = TextIteratorStreamer(loaded.tokenizer, skip_prompt=True, skip_special_tokens=True)

        def work() -> None:
            import torch

            try:
                with loaded.lock, torch.no_grad():
                    if p.seed is not None:
                        torch.manual_seed(p.seed)
                    loaded.model.generate(**ids, **self._kwargs(loaded, p), streamer=streamer)
            finally:
                self._slots.release()

        thread = threading.Thread(target=work, name="generate", daemon=True)
        thread.start()
        return iter(streamer)

    # -- perplexity -------------------------------------------------------------------------------

    def perplexity(
        self,
        principal: Principal,
        model_id: str,
        file_id: str,
        *,
        version: int | None = None,
        access_code: str | None = None,
    ) -> dict[str, Any]:
        from bastion.llm.lora import encode_all, eval_loss
        from bastion.llm.textdata import read_stored

        base, adapter, config = self.resolve(principal, model_id, version, access_code)
        parsed = read_stored(self.files.read(principal, file_id))
        if len(parsed.records) > MAX_PERPLEXITY_EXAMPLES:
            raise Invalid(
                f"at most {MAX_PERPLEXITY_EXAMPLES} examples per perplexity request", code="file_too_large"
            )
        self._slot()
        try:
            loaded = self.load(base, adapter, config)
            examples = encode_all(loaded.tokenizer, parsed.shape, parsed.records, loaded.positions)
            pad = loaded.tokenizer.pad_token_id
            with loaded.lock:
                loss = eval_loss(loaded.model, examples, int(pad if pad is not None else 0), 8)
        finally:
            self._slots.release()
        return {
            "model": model_id,
            "file": file_id,
            "examples": len(examples),
            "loss": loss,
            "perplexity": math.exp(loss) if loss < 50 else None,
        }
