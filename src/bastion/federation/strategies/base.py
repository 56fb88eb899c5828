"""The Strategy interface every server-side aggregator implements.

A round is ``begin_round(global, r)``, one ``accumulate(update, n)`` per admitted update *as it
arrives*, then ``finalize()``. Streaming strategies fold each update into running sums and keep
nothing per client, so server memory stays O(model) however many sites take part; strategies that
need the whole set at once (median, trimmed mean, Krum) say so with ``needs_all_updates`` and cost
O(clients x model). ``state_dict``/``load_state_dict`` capture everything (optimizer moments and an
open round's accumulators) so a restarted server resumes where it stopped.
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
from pydantic import BaseModel, ConfigDict, ValidationError

from bastion.errors import Conflict, Invalid

Params = dict[str, np.ndarray]
F32 = np.dtype(np.float32)
_META_KEY = "__strategy_meta__"
OptionsT = TypeVar("OptionsT", bound="StrategyOptions")


class StrategyOptions(BaseModel):
    """Base of each strategy's options; unknown keys are an error, not silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def parse_options(model: type[OptionsT], options: Mapping[str, Any] | None) -> OptionsT:
    try:
        return model.model_validate(dict(options or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'options'}: {err['msg']}" for err in exc.errors()
        )
        raise Invalid(f"invalid strategy options: {problems}", code="invalid_strategy_options") from exc


@dataclass
class StrategyState:
    """JSON metadata plus named arrays; ``to_bytes`` stores it as safetensors (no pickle)."""

    meta: dict[str, Any]
    tensors: dict[str, np.ndarray] = field(default_factory=dict)

    def to_bytes(self) -> bytes:
        from safetensors.numpy import save

        arrays = {k: np.ascontiguousarray(v) for k, v in self.tensors.items()}
        arrays[_META_KEY] = np.frombuffer(
            json.dumps(self.meta, sort_keys=True).encode("utf-8"), dtype=np.uint8
        )
        return save(arrays)

    @classmethod
    def from_bytes(cls, data: bytes) -> StrategyState:
        from safetensors import SafetensorError
        from safetensors.numpy import load

        try:
            arrays = load(data)
            meta = json.loads(arrays.pop(_META_KEY).tobytes().decode("utf-8"))
        except (SafetensorError, KeyError, ValueError, UnicodeDecodeError) as exc:
            raise Invalid("strategy state is corrupt or not a Bastion strategy state") from exc
        if not isinstance(meta, dict):
            raise Invalid("strategy state metadata must be an object")
        return cls(meta=meta, tensors=dict(arrays))


def prefixed(prefix: str, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {f"{prefix}/{name}": arr for name, arr in params.items()}


def unprefixed(prefix: str, tensors: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    cut = len(prefix) + 1
    return {name[cut:]: arr for name, arr in tensors.items() if name.startswith(prefix + "/")}


class Strategy(ABC):
    name: ClassVar[str] = ""
    needs_all_updates: ClassVar[bool] = False
    options_model: ClassVar[type[StrategyOptions]] = StrategyOptions

    def __init__(self, options: Mapping[str, Any] | None = None) -> None:
        self.options = parse_options(self.options_model, options)
        self._round: int | None = None
        self._last_round: int | None = None
        self._global: Params = {}
        self._count = 0
        self._start_round()

    # -- public protocol -------------------------------------------------------------------------
    @property
    def round(self) -> int | None:
        """The open round, or None between ``finalize`` and the next ``begin_round``."""
        return self._round

    @property
    def num_updates(self) -> int:
        return self._count

    def client_config(self) -> dict[str, Any]:
        """Settings sites need for local training (e.g. FedProx's ``proximal_mu``)."""
        return {}

    def begin_round(self, global_params: Mapping[str, np.ndarray], round: int) -> None:
        if isinstance(round, bool) or not isinstance(round, int) or round < 0:
            raise Invalid("round must be a non-negative integer")
        if self._last_round is not None and round <= self._last_round:
            raise Conflict(f"round {round} is not after the last finalized round {self._last_round}")
        if not global_params:
            raise Invalid("global parameters are empty")
        self._global = {name: np.array(arr, dtype=F32, copy=True) for name, arr in global_params.items()}
        self._round = round
        self._count = 0
        self._start_round()

    def accumulate(self, update: Mapping[str, np.ndarray], num_samples: int) -> None:
        """Fold one admitted update into the round; the caller may drop ``update`` right after."""
        if self._round is None:
            raise Conflict("no round is open: call begin_round first")
        if isinstance(num_samples, bool) or not isinstance(num_samples, int | np.integer) or num_samples < 1:
            raise Invalid("num_samples must be a positive integer")
        if update.keys() != self._global.keys():
            missing = sorted(set(self._global) - set(update)) or sorted(set(update) - set(self._global))
            raise Invalid(f"update tensors do not match the global model (first: {missing[0]!r})")
        for name, ref in self._global.items():
            if update[name].shape != ref.shape:
                raise Invalid(f"tensor {name!r} has shape {update[name].shape}, expected {ref.shape}")
        self._fold(update, int(num_samples))
        self._count += 1

    def finalize(self) -> Params:
        """New global parameters (float32); closes the round and frees its buffers."""
        if self._round is None:
            raise Conflict("no round is open")
        if self._count == 0:
            raise Conflict("no updates were accumulated in this round", code="no_updates")
        result = self._aggregate()
        self._last_round, self._round = self._round, None
        self._global = {}
        self._count = 0
        self._start_round()  # drop the round's accumulators
        return result

    def state_dict(self) -> StrategyState:
        meta: dict[str, Any] = {
            "strategy": self.name,
            "options": self.options.model_dump(mode="json"),
            "round": self._round,
            "last_round": self._last_round,
            "count": self._count,
        }
        tensors = prefixed("global", self._global)
        extra_meta, extra_tensors = self._extra_state()
        meta["extra"] = extra_meta
        tensors.update(extra_tensors)
        return StrategyState(meta=meta, tensors=tensors)

    def load_state_dict(self, state: StrategyState) -> None:
        meta = state.meta
        if meta.get("strategy") != self.name:
            raise Invalid(f"state belongs to strategy {meta.get('strategy')!r}, not {self.name!r}")
        if meta.get("options") != self.options.model_dump(mode="json"):
            raise Invalid("state was saved with different strategy options")
        self._round = meta.get("round")
        self._last_round = meta.get("last_round")
        self._count = int(meta.get("count", 0))
        self._global = {k: np.array(v, dtype=F32) for k, v in unprefixed("global", state.tensors).items()}
        self._start_round()
        self._load_extra_state(meta.get("extra", {}), state.tensors)

    # -- hooks -----------------------------------------------------------------------------------
    @abstractmethod
    def _start_round(self) -> None:
        """Reset (or free) the per-round accumulators; ``self._global`` is already set."""

    @abstractmethod
    def _fold(self, update: Mapping[str, np.ndarray], num_samples: int) -> None: ...

    @abstractmethod
    def _aggregate(self) -> Params: ...

    def _extra_state(self) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
        return {}, {}

    def _load_extra_state(self, meta: Mapping[str, Any], tensors: Mapping[str, np.ndarray]) -> None:
        return None
