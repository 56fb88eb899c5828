"""LoRA fine-tuning throughput and memory: a Bastion job against a plain transformers + PEFT script.

Same run, same model (a small GPT-2-style LM built offline), same chat data, same settings (LoRA
r/alpha/targets, epochs, batch size, learning rate, seed, evaluation every epoch). The job goes
through everything a user's job does: queue, job process, base-model hash check, vault reads,
encrypted checkpoint every epoch, adapter into the vault. The baseline is a fresh process running
the textbook script (apply_chat_template, mask the prompt, get_peft_model, Trainer). Each side
reports trained tokens per second over its training phase and its own peak RSS.

Prints ``lora_tokens_per_second_ratio`` (Bastion / plain, goal >= 0.9) and ``lora_peak_memory_ratio``
(Bastion / plain, goal <= 1.1), then the raw figures.

    .venv/bin/python bench/lora.py                # hidden 256, 4 layers, 256 examples, 2 epochs
    .venv/bin/python bench/lora.py --quick        # hidden 64, 2 layers, 64 examples
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MASTER = "bench-master-key-" + "m" * 40
JWT = "bench-jwt-secret-" + "j" * 40

PLAIN = r"""
import json, math, resource, sys, time
import torch
from peft import LoraConfig, TaskType, get_peft_model
from transformers import AutoModelForCausalLM, AutoTokenizer, Trainer, TrainingArguments

model_dir, data_path, cfg = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
torch.manual_seed(cfg["seed"])
tok = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
model = AutoModelForCausalLM.from_pretrained(model_dir, local_files_only=True, use_safetensors=True)
rows = []
for line in open(data_path):
    msgs = json.loads(line)["messages"]
    prompt = tok.apply_chat_template(msgs[:-1], tokenize=False, add_generation_prompt=True)
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    c = tok(msgs[-1]["content"], add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    rows.append({"input_ids": p + c, "labels": [-100] * len(p) + c})
n_val = max(1, round(len(rows) * cfg["validation_fraction"]))
import random
order = list(range(len(rows))); random.Random(cfg["seed"]).shuffle(order)
held = set(order[:n_val])
train = [r for i, r in enumerate(rows) if i not in held]; val = [rows[i] for i in sorted(held)]
def collate(batch):
    w = max(len(e["input_ids"]) for e in batch)
    ids = torch.full((len(batch), w), tok.pad_token_id); lab = torch.full((len(batch), w), -100); m = torch.zeros((len(batch), w), dtype=torch.long)
    for i, e in enumerate(batch):
        n = len(e["input_ids"]); ids[i, :n] = torch.tensor(e["input_ids"]); lab[i, :n] = torch.tensor(e["labels"]); m[i, :n] = 1
    return {"input_ids": ids, "labels": lab, "attention_mask": m}
model = get_peft_model(model, LoraConfig(task_type=TaskType.CAUSAL_LM, r=cfg["r"], lora_alpha=cfg["alpha"],
    lora_dropout=cfg["dropout"], target_modules=["c_attn"], fan_in_fan_out=True))
args = TrainingArguments(output_dir=sys.argv[4], num_train_epochs=cfg["epochs"], per_device_train_batch_size=cfg["batch_size"],
    per_device_eval_batch_size=cfg["batch_size"], learning_rate=cfg["lr"], eval_strategy="epoch", save_strategy="no",
    logging_steps=1, report_to=[], seed=cfg["seed"], data_seed=cfg["seed"], use_cpu=True, disable_tqdm=True,
    remove_unused_columns=False, dataloader_num_workers=0)
trainer = Trainer(model=model, args=args, train_dataset=train, eval_dataset=val, data_collator=collate)
tokens = sum(sum(1 for x in r["labels"] if x != -100) for r in train) * cfg["epochs"]
t0 = time.perf_counter(); trainer.train(); dt = time.perf_counter() - t0
print(json.dumps({"tokens_per_second": tokens / dt, "trained_tokens": tokens, "train_seconds": dt,
    "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
"""


def median_run(runs: list[dict[str, Any]], key: str) -> dict[str, Any]:
    """The run whose ``key`` is the median (the lower middle one for an even count)."""
    ordered = sorted(runs, key=lambda r: float(r[key]))
    return dict(ordered[(len(ordered) - 1) // 2])


def records(n: int) -> list[dict[str, Any]]:
    facts = [
        ("fever", "acetaminophen 500 mg"),
        ("cough", "rest and fluids"),
        ("rash", "hydrocortisone cream"),
    ]
    return [
        {
            "messages": [
                {
                    "role": "user",
                    "content": f"A patient reports {facts[i % 3][0]} for {i % 7 + 1} days. What do you advise?",
                },
                {"role": "assistant", "content": f"Advise {facts[i % 3][1]} and review in {i % 5 + 2} days."},
            ]
        }
        for i in range(n)
    ]


def bastion_job(root: Path, model_dir: Path, data: bytes, cfg: dict[str, Any]) -> dict[str, Any]:
    from bastion.auth.principal import Principal
    from bastion.config import Settings
    from bastion.context import build_context
    from bastion.jobs.config import JobConfig
    from bastion.jobs.hooks import make_worker
    from bastion.llm.params import Hyperparameters, LoraParams
    from bastion.llm.service import CreateRequest
    from bastion.wiring import install_services

    settings = Settings(data_dir=root / "data", master_key=MASTER, jwt_secret=JWT, embedded_worker=False)
    ctx = build_context(settings)
    install_services(ctx)
    user = ctx.accounts.create_user("bench", "admin")
    who = Principal(user.id, "bench", "admin", "api_key")
    ctx.services.llm_bases.register(who, str(model_dir), "bench")
    base = ctx.services.llm_bases.get("bench")
    f = ctx.services.ft_files.upload(who, data, name="bench.jsonl", base=base)
    hp = Hyperparameters(
        n_epochs=cfg["epochs"], batch_size=cfg["batch_size"], learning_rate=cfg["lr"],
        validation_fraction=cfg["validation_fraction"],
        lora=LoraParams(r=cfg["r"], alpha=cfg["alpha"], dropout=cfg["dropout"]),
    )  # fmt: skip
    worker = make_worker(ctx, JobConfig(poll_seconds=0.2))
    worker.start()
    try:
        t0 = time.perf_counter()
        job = ctx.services.fine_tuning.create(
            who, CreateRequest("bench", f["id"], None, hp, seed=cfg["seed"])
        )
        while (job := ctx.services.jobs.get_any(job.id)).state in ("pending", "running"):
            time.sleep(0.5)
        wall = time.perf_counter() - t0
    finally:
        worker.close()
        ctx.close()
    if job.state != "completed":
        raise SystemExit(f"the Bastion job ended {job.state}: {job.error_message}")
    results = job.results or {}
    return {**results, "wall_seconds": wall}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--examples", type=int, default=None)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument(
        "--repeat", type=int, default=3, help="Alternating runs of each side; medians are compared"
    )
    args = parser.parse_args()
    hidden, layers, n = (64, 2, 64) if args.quick else (256, 4, 256)
    n = args.examples or n
    cfg = {
        "epochs": args.epochs,
        "batch_size": 8,
        "lr": 1e-3,
        "r": 8,
        "alpha": 16,
        "dropout": 0.05,
        "seed": 0,
        "validation_fraction": 0.1,
    }
    from bastion.llm.tiny import build_tiny_causal_lm

    with tempfile.TemporaryDirectory(prefix="bastion-bench-lora-") as tmp:
        root = Path(tmp)
        recs = records(n)
        model_dir = build_tiny_causal_lm(
            root / "model",
            hidden=hidden,
            layers=layers,
            extra_text=[m["content"] for r in recs[:30] for m in r["messages"]],
        )
        data = "".join(json.dumps(r) + "\n" for r in recs).encode()
        (root / "data.jsonl").write_bytes(data)
        runs_ours, runs_plain = [], []
        for i in range(args.repeat):
            runs_ours.append(bastion_job(root / f"run{i}", model_dir, data, cfg))
            out = subprocess.run(
                [sys.executable, "-c", PLAIN, str(model_dir), str(root / "data.jsonl"), json.dumps(cfg), str(root / "plain-out")],
                check=True, capture_output=True, text=True, start_new_session=True,
            )  # fmt: skip
            runs_plain.append(json.loads(out.stdout.strip().splitlines()[-1]))
        ours = median_run(runs_ours, "tokens_per_second")
        plain = median_run(runs_plain, "tokens_per_second")
        ours["peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in runs_ours)
        plain["peak_rss_mb"] = statistics.median(r["peak_rss_mb"] for r in runs_plain)
    print(
        f"lora_tokens_per_second_ratio: {ours['tokens_per_second'] / plain['tokens_per_second']:.3f}  (goal >= 0.9)"
    )
    print(f"lora_peak_memory_ratio: {ours['peak_rss_mb'] / plain['peak_rss_mb']:.3f}  (goal <= 1.1)")
    print(f"runs per side: {args.repeat} (alternating; medians); tokens/s per run: "
          f"bastion {[round(r['tokens_per_second'], 1) for r in runs_ours]}, "
          f"plain {[round(r['tokens_per_second'], 1) for r in runs_plain]}")  # fmt: skip
    print(f"model: gpt2 hidden {hidden}, {layers} layers; {n} chat examples; {cfg}")
    print(f"bastion: {ours['tokens_per_second']:.1f} tokens/s over {ours['train_runtime_seconds']:.2f} s training, "
          f"{ours['trained_tokens']} trained tokens, peak RSS {ours['peak_rss_mb']:.0f} MiB, job wall {ours['wall_seconds']:.1f} s")  # fmt: skip
    print(f"plain:   {plain['tokens_per_second']:.1f} tokens/s over {plain['train_seconds']:.2f} s training, "
          f"{plain['trained_tokens']} trained tokens, peak RSS {plain['peak_rss_mb']:.0f} MiB")  # fmt: skip


if __name__ == "__main__":
    main()
