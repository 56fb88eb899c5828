"""An adapter merged into its base model's weights, for export (``…/jobs/{id}/merged_model``).

The merge runs in the API process on request, so it is bounded: base models above
``MAX_MERGE_PARAMETERS`` are refused (``too_large_to_merge``) rather than loaded into the server.
The result is a model package (safetensors of the merged state dict, the base ``config.json`` in
its config) that the download scheme then seals for the caller; nothing is written to disk.
"""

from __future__ import annotations

from typing import Any

from bastion.errors import Invalid

MAX_MERGE_PARAMETERS = 500_000_000


def merged_package(job: Any, package: bytes, bases: Any) -> bytes:
    from peft import LoraConfig, get_peft_model
    from safetensors.torch import save

    from bastion.jobs.package import ModelPackage, pack, unpack
    from bastion.llm.lora import load_adapter_bytes
    from bastion.llm.modeldir import load_base

    adapter = unpack(package)
    config = adapter.model_config
    base = bases.get(config["base_model"]["id"])
    if base.weights_sha256 != config["base_model"]["sha256"]:
        raise Invalid("the adapter's base model changed since training", code="base_model_changed")
    if base.parameter_count > MAX_MERGE_PARAMETERS:
        raise Invalid(
            f"the base model has {base.parameter_count} parameters; merging on request is limited to "
            f"{MAX_MERGE_PARAMETERS}. Download the adapter and merge it offline with PEFT",
            code="too_large_to_merge",
        )
    model, _ = load_base(base.path, base.weights_sha256)
    fields = LoraConfig.__dataclass_fields__
    model = get_peft_model(model, LoraConfig(**{k: v for k, v in config["peft"].items() if k in fields}))
    load_adapter_bytes(model, adapter.model_bytes)
    merged = model.merge_and_unload()
    state = {k: v.detach().contiguous() for k, v in merged.state_dict().items()}
    # Tied weights (lm_head = embeddings) appear twice; safetensors keeps one copy of shared storage.
    seen: dict[int, str] = {}
    for name in list(state):
        ptr = state[name].data_ptr()
        if ptr in seen:
            state.pop(name)
        else:
            seen[ptr] = name
    weights = save(state, metadata={"format": "pt"})
    return pack(
        ModelPackage(
            job.id,
            "llm_merged",
            "safetensors",
            {
                "kind": "merged_causal_lm",
                "base_model": config["base_model"],
                "config_json": base.config_json,
            },
            weights,
        )
    )
