"""`bastion ft …` (fine-tuning jobs), `bastion llm …` (base models) and `bastion models generate`."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli.client_common import Remote, client_command
from bastion.cli.options import JsonOpt, ProjectOpt, QuietOpt
from bastion.cli.output import console, emit

if TYPE_CHECKING:
    from bastion.client.fine_tuning import GenerateOptions, JobOptions
    from bastion.client.sdk import BastionClient

ft_app = typer.Typer(help="Fine-tune language models with LoRA (OpenAI-shaped jobs).", no_args_is_help=True)
llm_app = typer.Typer(
    help="Base language models: register (admin), list, build a tiny demo model.", no_args_is_help=True
)
JOB_COLUMNS = ["id", "status", "model", "fine_tuned_model", "progress", "trained_tokens"]


def _hyper(
    pairs: list[str] | None,
    epochs: int | None,
    batch: int | None,
    lr: float | None,
    workers: int | None = None,
) -> dict[str, Any]:
    """``--set lora.r=16 --set dp.enabled=true`` plus the common flags, as the hyperparameters object."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep:
            raise typer.BadParameter(f"expected KEY=VALUE, got {pair!r}")
        try:
            value: Any = json.loads(raw)
        except ValueError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for p in parents:
            node = node.setdefault(p, {})
        node[leaf] = value
    common = (("n_epochs", epochs), ("batch_size", batch), ("learning_rate", lr), ("num_workers", workers))
    for key, value in common:
        if value is not None:
            out[key] = value
    return out


def _follow(client: BastionClient, job_id: str, as_json: bool) -> dict[str, Any]:
    """Events until the job ends: JSON lines under --json, a live bar (loss, tokens/s, ETA) on a terminal."""
    final: dict[str, Any] = {}
    if as_json or not sys.stdout.isatty():
        for event in client.fine_tuning.follow(job_id):
            if event.get("object") == "fine_tuning.job":
                final = event
            if as_json:
                typer.echo(json.dumps(event))
            elif event.get("object") != "fine_tuning.job":
                typer.echo(event["message"])
        return final
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as bar:
        task = bar.add_task(f"job {job_id[:8]}", total=1.0)
        for event in client.fine_tuning.follow(job_id):
            if event.get("object") == "fine_tuning.job":
                final = event
                bar.update(task, completed=1.0 if final["status"] == "succeeded" else final["progress"])
                continue
            data = event.get("data", {})
            if "progress" in data:
                bar.update(task, completed=float(data["progress"]))
            if event["type"] == "metrics":
                bar.console.print(event["message"])
            elif "loss" in data:
                eta = f", ETA {data['eta_seconds']:.0f} s" if data.get("eta_seconds") is not None else ""
                bar.update(
                    task,
                    description=f"loss {data['loss']:.4f}, {data.get('tokens_per_second') or 0:.0f} tok/s{eta}",
                )
    return final


def _show(job: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(job, as_json=True)
        return
    emit({k: job.get(k) for k in (*JOB_COLUMNS, "error", "training_file", "suffix")}, as_json=False)
    if job.get("metrics"):
        emit({"metrics": job["metrics"]}, as_json=False)
    emit({"cost": job.get("cost")}, as_json=False)


@ft_app.command("upload")
@client_command()
def upload(
    remote: Remote,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    model: Annotated[str, typer.Option("--model", "-m", help="Base model whose tokenizer counts tokens.")],
    scrub: Annotated[
        str, typer.Option(help="placeholder ([NAME], [DATE] ...) or surrogate.")
    ] = "placeholder",
    project: ProjectOpt = None,
) -> None:
    """Upload a JSONL training file; PHI is scrubbed before it is stored."""
    with remote.connect() as client:
        out = client.fine_tuning.files.upload(file, model=model, scrub=scrub, project=project)
    if remote.as_json:
        emit(out, as_json=True)
        return
    console.print(
        f"file [bold]{out['id']}[/bold]: {out['shape']}, {out['statistics']['examples']} examples, {out['statistics']['total_tokens']} tokens"
    )
    replaced = {k: v for k, v in out["deidentification"]["replaced"].items() if v}
    console.print("PHI replaced: " + (", ".join(f"{k} {v}" for k, v in replaced.items()) or "none found"))


@ft_app.command("create")
@client_command()
def create(
    remote: Remote,
    model: Annotated[str, typer.Option("--model", "-m", help="Registered base model.")],
    training_file: Annotated[str, typer.Option("--training-file", "-t")],
    validation_file: Annotated[str | None, typer.Option("--validation-file")] = None,
    epochs: Annotated[int | None, typer.Option("--epochs")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size")] = None,
    learning_rate: Annotated[float | None, typer.Option("--learning-rate")] = None,
    num_workers: Annotated[
        int | None,
        typer.Option(
            "--num-workers", min=1, help="Data-parallel workers (Ray Train); above 1 needs the Ray executor."
        ),
    ] = None,
    sets: Annotated[
        list[str] | None,
        typer.Option("--set", help="Hyper-parameter KEY=VALUE (lora.r=16, dp.enabled=true)."),
    ] = None,
    suffix: Annotated[str | None, typer.Option()] = None,
    seed: Annotated[int, typer.Option()] = 0,
    profile: Annotated[str | None, typer.Option("--profile", help="Resource profile (priced).")] = None,
    estimate_only: Annotated[
        bool, typer.Option("--estimate", help="Show the cost estimate and stop.")
    ] = False,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow the job until it ends.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Create a fine-tuning job (or, with --estimate, show its time and cost per profile)."""
    options: JobOptions = {
        "validation_file": validation_file,
        "hyperparameters": _hyper(sets, epochs, batch_size, learning_rate, num_workers),
        "suffix": suffix,
        "seed": seed,
        "resource_profile": profile,
    }
    with remote.connect() as client:
        if estimate_only:
            est = client.fine_tuning.estimate(model, training_file, **options)
            if remote.as_json:
                emit(est, as_json=True)
            else:
                emit(
                    est["profiles"],
                    as_json=False,
                    columns=["resource_profile", "estimated_seconds", "estimated_cost", "currency"],
                    title=f"{est['tokens']} tokens x {est['epochs']} epochs",
                )
            return
        job = client.fine_tuning.create(model, training_file, project=project, **options)
        if watch:
            job = _follow(client, job["id"], remote.as_json) or client.fine_tuning.get(job["id"])
            if not remote.as_json:
                _show(job, False)
        else:
            _show(job, remote.as_json)
    if job.get("status") == "failed":
        raise typer.Exit(1)


@ft_app.command("list")
@client_command()
def list_jobs(
    remote: Remote,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 20,
    cursor: Annotated[str | None, typer.Option(help="next_cursor of the previous page")] = None,
    quiet: QuietOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Your fine-tuning jobs (of all your projects, or of one), newest first."""
    with remote.connect() as client:
        page = client.fine_tuning.list(limit, cursor, project)
    if remote.as_json:
        emit(page, as_json=True)
        return
    emit(page["data"], as_json=False, quiet=quiet, columns=JOB_COLUMNS, title="Fine-tuning jobs")
    if page.get("next_cursor") and not quiet:
        console.print(f"more: --cursor {page['next_cursor']}")


@ft_app.command("show")
@client_command()
def show(
    remote: Remote,
    job_id: str,
) -> None:
    """One job: status, metrics, estimated and actual cost."""
    with remote.connect() as client:
        _show(client.fine_tuning.get(job_id), remote.as_json)


@ft_app.command("events")
@client_command()
def events(
    remote: Remote,
    job_id: str,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Stream events live until the job ends.")
    ] = False,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 50,
) -> None:
    """A job's events (state changes, progress, per-epoch metrics)."""
    with remote.connect() as client:
        if follow:
            _follow(client, job_id, remote.as_json)
            return
        page = client.fine_tuning.events(job_id, limit)
    if remote.as_json:
        emit(page, as_json=True)
        return
    for event in page["data"]:
        console.print(f"{event['created_at']} [{event['level']}] {event['message']}")


@ft_app.command("checkpoints")
@client_command()
def checkpoints(
    remote: Remote,
    job_id: str,
) -> None:
    """The per-epoch checkpoints of a job (kept encrypted in the vault)."""
    with remote.connect() as client:
        rows = client.fine_tuning.checkpoints(job_id)
    emit(
        rows if remote.as_json else [{**r, **r["metrics"]} for r in rows],
        as_json=remote.as_json,
        columns=["id", "epoch", "step_number", "train_loss", "eval_loss", "perplexity"],
        title="Checkpoints",
    )


@ft_app.command("download")
@client_command()
def download(
    remote: Remote,
    job_id: str,
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="File to write (plus FILE.json).")
    ] = None,
    merged: Annotated[
        bool, typer.Option("--merged", help="Merge the adapter into the base weights.")
    ] = False,
) -> None:
    """Download the adapter (or the merged model) encrypted for you, and decrypt it here."""
    with remote.connect() as client:
        model = client.fine_tuning.download(job_id, merged=merged)
    model_path, config_path = model.save(
        output or Path(f"{job_id[:8]}{'-merged' if merged else '-adapter'}.safetensors")
    )
    emit(
        {
            "job_id": job_id,
            "model_file": str(model_path),
            "config_file": str(config_path),
            "sha256": model.sha256,
        },
        as_json=remote.as_json,
    )


@ft_app.command("cancel")
@client_command()
def cancel(
    remote: Remote,
    job_id: str,
) -> None:
    """Cancel a queued or running job (the job process is killed at once)."""
    with remote.connect() as client:
        job = client.fine_tuning.cancel(job_id)
    emit({"id": job["id"], "status": job["status"]}, as_json=remote.as_json)


@llm_app.command("register")
@client_command()
def register(
    remote: Remote,
    path: Annotated[str, typer.Argument(help="Model directory on the server's machine.")],
    name: Annotated[str, typer.Option("--name", "-n")],
) -> None:
    """Register a local Hugging Face model directory (admin; safetensors only, no remote code)."""
    with remote.connect() as client:
        emit(
            client.fine_tuning.base_models.register(Path(path).expanduser().resolve(), name),
            as_json=remote.as_json,
        )


@llm_app.command("list")
@client_command()
def list_bases(remote: Remote, quiet: QuietOpt = False) -> None:
    """Registered base models."""
    with remote.connect() as client:
        rows = client.fine_tuning.base_models.list()
    emit(
        rows,
        as_json=remote.as_json,
        quiet=quiet,
        columns=["name", "architecture", "parameter_count", "weights_sha256"],
        title="Base models",
    )


@llm_app.command("make-tiny")
def make_tiny(
    path: Annotated[Path, typer.Argument(help="Directory to write (config, safetensors, tokenizer).")],
    architecture: Annotated[str, typer.Option(help="gpt2 or llama")] = "gpt2",
    hidden: Annotated[int, typer.Option(min=16, max=1024)] = 64,
    layers: Annotated[int, typer.Option(min=1, max=12)] = 2,
    as_json: JsonOpt = False,
) -> None:
    """Build a tiny randomly initialised causal LM offline (for demos and tests; nothing from a hub)."""
    from bastion.llm.tiny import build_tiny_causal_lm

    if architecture not in ("gpt2", "llama"):
        raise typer.BadParameter("architecture must be gpt2 or llama")
    out = build_tiny_causal_lm(path, architecture=architecture, hidden=hidden, layers=layers)  # type: ignore[arg-type]
    emit({"path": str(out.resolve()), "architecture": architecture}, as_json=as_json)


@client_command()
def generate(
    remote: Remote,
    model_id: Annotated[
        str, typer.Argument(help="A fine-tuned model (registry id or name) or a base model.")
    ],
    prompt: Annotated[str | None, typer.Option("--prompt", "-p")] = None,
    message: Annotated[
        list[str] | None, typer.Option("--message", help="ROLE:TEXT, repeatable (chat).")
    ] = None,
    max_new_tokens: Annotated[int, typer.Option(min=1, max=512)] = 64,
    temperature: Annotated[float, typer.Option(min=0.0, max=5.0)] = 1.0,
    top_p: Annotated[float, typer.Option(min=0.01, max=1.0)] = 1.0,
    seed: Annotated[int | None, typer.Option()] = None,
    compare: Annotated[bool, typer.Option("--compare", help="Also answer with the base model.")] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Print tokens as they come.")] = False,
) -> None:
    """Generate text with a model (the test page of seeds/004)."""
    messages = None
    if message:
        messages = []
        for m in message:
            role, sep, text = m.partition(":")
            if not sep:
                raise typer.BadParameter("--message takes ROLE:TEXT")
            messages.append({"role": role.strip(), "content": text.strip()})
    options: GenerateOptions = {
        "max_new_tokens": max_new_tokens,
        "temperature": temperature,
        "top_p": top_p,
        "seed": seed,
    }
    with remote.connect() as client:
        if stream and not remote.as_json:
            for piece in client.fine_tuning.generate_stream(
                model_id, prompt=prompt, messages=messages, **options
            ):
                typer.echo(piece, nl=False)
            typer.echo()
            return
        out = client.fine_tuning.generate(
            model_id, prompt=prompt, messages=messages, compare=compare, **options
        )
    if remote.as_json:
        emit(out, as_json=True)
        return
    console.print(f"[bold]{model_id}[/bold]: {out['text']}")
    if out.get("base"):
        console.print(f"[bold]{out['base_model']}[/bold] (base): {out['base']['text']}")
