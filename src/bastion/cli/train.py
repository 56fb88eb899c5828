"""``bastion train …``: client commands over the SDK (BASTION_URL, BASTION_API_KEY or --url/--api-key)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer

from bastion.cli.client_common import Remote, client_command, client_failure
from bastion.cli.options import CaOpt, JsonOpt, KeyOpt, ProjectOpt, QuietOpt, UrlOpt
from bastion.cli.output import console, emit, err_console, fail
from bastion.client.errors import BastionClientError

if TYPE_CHECKING:
    from bastion.client import BastionClient, Event

app = typer.Typer(
    help="Remote training jobs: submit, watch, cancel, download, predict.", no_args_is_help=True
)
T = TypeVar("T")

ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="Hyper-parameter as key=value (repeatable).")
]
ResourcesOpt = Annotated[
    str | None,
    typer.Option("--resources", help="What the executor reserves, e.g. gpus=1,cpus=4,memory=8GiB."),
]
TERMINAL = ("completed", "failed", "cancelled")


def _call(as_json: bool, fn: Callable[[], T]) -> T:
    """Run an SDK call; errors become one line on stderr (or a JSON error object) and exit 1."""
    try:
        return fn()
    except BastionClientError as exc:
        raise client_failure(exc, as_json) from None


def parse_params(pairs: list[str] | None) -> dict[str, Any]:
    """``k=v`` pairs; values are JSON when they parse as JSON (numbers, lists, true, null), else text."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"--param needs key=value, got {pair!r}")
        try:
            out[key.strip()] = json.loads(raw)
        except ValueError:
            out[key.strip()] = raw
    return out


def parse_resources(text: str | None) -> dict[str, Any] | None:
    """``gpus=1,cpus=4,memory=8GiB`` as a mapping (numbers as numbers); the server checks it."""
    if not text:
        return None
    out: dict[str, Any] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        key, sep, raw = part.partition("=")
        if not sep or not key.strip() or not raw.strip():
            raise typer.BadParameter(f"--resources needs name=value pairs, got {part!r}")
        try:
            out[key.strip()] = float(raw) if "." in raw else int(raw)
        except ValueError:
            out[key.strip()] = raw.strip()
    return out


def _metrics_line(results: dict[str, Any] | None) -> dict[str, Any]:
    keep = (
        "accuracy",
        "f1",
        "roc_auc",
        "training_accuracy",
        "r2",
        "rmse",
        "mae",
        "training_samples",
        "test_samples",
        "mean_return",  # dqn, online: the trained policy against a random one
        "std_return",
        "random_mean_return",
        "value_estimate",  # dqn, offline
        "logged_policy_value",
    )
    return {k: results[k] for k in keep if results and k in results}


def _show_final(final: dict[str, Any], as_json: bool) -> None:
    if as_json:
        emit(final, as_json=True)
        return
    colour = {"completed": "green", "failed": "red", "cancelled": "yellow"}.get(final["status"], "white")
    console.print(f"job {final['job_id']}: [{colour}]{final['status']}[/{colour}]")
    if final.get("error_message"):
        console.print(f"reason: {final['error_message']}")
    for key, value in _metrics_line(final.get("results")).items():
        console.print(f"  {key}: {value}")


def _watch(client: BastionClient, job_id: str, as_json: bool) -> dict[str, Any]:
    """Follow the job to its end: a live progress bar on a terminal, nothing extra otherwise."""
    if as_json or not console.is_terminal:
        return client.jobs.wait(job_id)
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(
        TextColumn("[bold]{task.fields[state]}"),
        BarColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task("queued", total=1.0, state="pending")

        def on_event(event: Event) -> None:
            data = event.data
            if event.kind in ("status", "end", "state"):
                bar.update(task, state=data.get("status") or data.get("state") or "")
            if "progress" in data:
                bar.update(task, completed=float(data["progress"]))
            if event.kind == "progress" and data.get("stage"):
                bar.update(task, description=str(data["stage"]))
            elif event.kind == "metrics":
                shown = {k: v for k, v in data.items() if k not in ("job_id", "lr")}
                bar.update(task, description=" ".join(f"{k}={v}" for k, v in shown.items()))

        return client.jobs.wait(job_id, on_event=on_event)


@app.command("submit")
def submit(
    model_type: Annotated[str, typer.Option("--model-type", "-m", help="e.g. alzheimer_classifier.")],
    dataset: Annotated[
        str, typer.Option("--dataset", "-d", help="Dataset source, e.g. synthetic_test_data.")
    ],
    param: ParamOpt = None,
    dataset_id: Annotated[
        str | None, typer.Option("--dataset-id", help="Uploaded dataset (user_provided).")
    ] = None,
    target: Annotated[str | None, typer.Option("--target", help="Column to predict (user_provided).")] = None,
    profile: Annotated[str | None, typer.Option("--profile", help="Resource profile (see estimate).")] = None,
    max_runtime: Annotated[
        float | None, typer.Option("--max-runtime", help="Seconds before the job is stopped.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    model_name: Annotated[
        str | None,
        typer.Option("--model-name", help="Registry model to add the result to (default: TYPE-DATASET)."),
    ] = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow progress until the job ends.")] = False,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    project: ProjectOpt = None,
    as_json: JsonOpt = False,
    resources: ResourcesOpt = None,
    num_workers: Annotated[
        int | None,
        typer.Option("--num-workers", min=1, help="Data-parallel workers (torch model types, Ray executor)."),
    ] = None,
) -> None:
    """Submit a training job (and, with --watch, follow it to the end and show its metrics)."""
    params = parse_params(param)
    if num_workers is not None:
        params["num_workers"] = num_workers
    client = Remote(url, api_key, ca_cert, as_json).client()
    job_id = _call(
        as_json,
        lambda: client.jobs.submit(
            model_type,
            dataset,
            params=params or None,
            dataset_id=dataset_id,
            target=target,
            resource_profile=profile,
            max_runtime_seconds=max_runtime,
            seed=seed,
            model_name=model_name,
            resources=parse_resources(resources),
            project=project,
        ),
    )
    follow_submitted(job_id, "job", watch, as_json, lambda: _watch(client, job_id, as_json))


def follow_submitted(
    job_id: str,
    what: str,
    watch: bool,
    as_json: bool,
    follow: Callable[[], dict[str, Any]],
    show: Callable[[dict[str, Any]], None] | None = None,
) -> None:
    """After a submit: print the id, or (``--watch``) follow the job to its end, show it, exit 1 unless
    it completed."""
    if not watch:
        emit({"success": True, "job_id": job_id, "status": "pending"}, as_json=as_json)
        return
    if not as_json:
        err_console.print(f"submitted {what} {job_id}")
    final = _call(as_json, follow)
    _show_final(final, as_json)
    if show is not None and not as_json:
        show(final)
    if final["status"] != "completed":
        raise typer.Exit(1)


@app.command("status")
@client_command()
def status(
    remote: Remote,
    job_id: str,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Follow until the job ends.")] = False,
) -> None:
    """Show a job's status, progress and results."""
    client = remote.client()
    if watch:
        final = _call(remote.as_json, lambda: _watch(client, job_id, remote.as_json))
        _show_final(final, remote.as_json)
        return
    current = _call(remote.as_json, lambda: client.jobs.get(job_id))
    if remote.as_json:
        emit(current, as_json=True)
        return
    shown = {
        k: current.get(k) for k in ("job_id", "status", "progress", "stage", "model_type", "dataset_source")
    }
    shown |= {
        k: current.get(k) for k in ("created_at", "started_at", "completed_at", "attempt", "error_message")
    }
    emit(shown, as_json=False)
    for key, value in _metrics_line(current.get("results")).items():
        console.print(f"  {key}: {value}")
    if current.get("history"):
        last = current["history"][-1]
        console.print(f"  last epoch: {json.dumps(last)}")


@app.command("list")
@client_command()
def list_jobs(
    remote: Remote,
    limit: Annotated[int, typer.Option(help="How many (newest first).")] = 10,
    state: Annotated[str | None, typer.Option("--status", help="Only jobs in this state.")] = None,
    quiet: QuietOpt = False,
    project: ProjectOpt = None,
) -> None:
    """List your jobs."""
    client = remote.client()
    rows = _call(remote.as_json, lambda: client.jobs.list(limit, state, project))
    columns = ["job_id", "status", "progress", "model_type", "dataset_source", "created_at"]
    emit(rows, as_json=remote.as_json, quiet=quiet, columns=columns, title="Training jobs")


@app.command("cancel")
@client_command()
def cancel(
    remote: Remote,
    job_id: str,
) -> None:
    """Cancel a pending or running job (at once)."""
    client = remote.client()
    emit(_call(remote.as_json, lambda: client.jobs.cancel(job_id)), as_json=remote.as_json)


@app.command("logs")
@client_command()
def logs(
    remote: Remote,
    job_id: str,
    after: Annotated[int, typer.Option(help="Only lines after this seq.")] = 0,
) -> None:
    """Print a job's captured output (stdout, stderr, progress notes)."""
    client = remote.client()
    page = _call(remote.as_json, lambda: client.jobs.logs(job_id, after=after, limit=5000))
    if remote.as_json:
        emit(page, as_json=True)
        return
    for line in page["lines"]:
        typer.echo(f"{line['ts']} [{line['stream']}] {line['line']}")


@app.command("download")
@client_command()
def download(
    remote: Remote,
    job_id: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Model file to write.")] = None,
) -> None:
    """Download a completed job's model, decrypt it here, and write FILE plus FILE.json."""
    client = remote.client()
    model = _call(remote.as_json, lambda: client.jobs.download(job_id))
    path = output or Path(model.default_filename())
    model_path, config_path = model.save(path)
    emit(
        {
            "success": True,
            "job_id": job_id,
            "model_type": model.model_type,
            "model_format": model.model_format,
            "model_file": str(model_path),
            "config_file": str(config_path),
            "sha256": model.sha256,
        },
        as_json=remote.as_json,
    )


def _read_rows(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    text = path.read_bytes()
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in (b"[", b"{"):
        rows = json.loads(text)
        return rows if isinstance(rows, list) else [rows]
    import io

    frame = pd.read_csv(io.BytesIO(text))
    return [
        {k: (None if pd.isna(v) else v) for k, v in row.items()} for row in frame.to_dict(orient="records")
    ]


@app.command("predict")
def predict(
    model_file: Annotated[Path, typer.Argument(help="A model written by `bastion train download`.")],
    input_file: Annotated[
        Path, typer.Option("--input", "-i", help="CSV or JSON rows keyed by feature name.")
    ],
    proba: Annotated[bool, typer.Option("--proba", help="Also print class probabilities.")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Predict with a downloaded model (columns it does not use are ignored)."""
    from bastion.client import load_model_file

    try:
        predictor = load_model_file(model_file)
        rows = _read_rows(input_file)
        features = predictor.feature_names
        rows = [{name: row.get(name) for name in features} for row in rows]
        labels = [v.item() if hasattr(v, "item") else v for v in predictor.predict(rows)]
        out: dict[str, Any] = {"predictions": labels, "rows": len(labels)}
        if proba and predictor.classes is not None:
            out["classes"] = list(predictor.classes)
            out["probabilities"] = [[round(float(p), 6) for p in r] for r in predictor.predict_proba(rows)]
    except BastionClientError as exc:
        raise fail(exc.message) from None
    except (OSError, ValueError) as exc:
        raise fail(f"cannot predict: {type(exc).__name__}: {str(exc)[:200]}") from None
    except Exception as exc:  # bastion.errors.Invalid from the model loader: say why, no traceback
        message = getattr(exc, "message", None)
        if message is None:
            raise
        raise fail(str(message)) from None
    if as_json:
        emit(out, as_json=True)
        return
    for i, label in enumerate(labels):
        extra = ""
        if "probabilities" in out:
            pairs = zip(out["classes"], out["probabilities"][i], strict=True)
            extra = "  " + "  ".join(f"{c}={p:.4f}" for c, p in pairs)
        typer.echo(f"{label}{extra}")


@app.command("estimate")
@client_command()
def estimate(
    remote: Remote,
    model_type: Annotated[str, typer.Option("--model-type", "-m")],
    dataset: Annotated[str, typer.Option("--dataset", "-d")],
    profile: Annotated[str | None, typer.Option("--profile")] = None,
    param: ParamOpt = None,
) -> None:
    """Estimated time and cost of a job on a resource profile."""
    client = remote.client()
    params = parse_params(param)
    emit(
        _call(
            remote.as_json, lambda: client.jobs.cost_estimate(model_type, dataset, profile, params or None)
        ),
        as_json=remote.as_json,
    )


@app.command("types")
@client_command()
def types(remote: Remote) -> None:
    """Model types and their parameters."""
    client = remote.client()
    found = _call(remote.as_json, client.training.model_types)
    if remote.as_json:
        emit(found, as_json=True)
        return
    for spec in found:
        console.print(f"[bold]{spec['name']}[/bold] ({', '.join(spec['tasks'])}): {spec['description']}")
        for name, prop in spec["params"].get("properties", {}).items():
            console.print(f"  {name} = {prop.get('default')!r}  {prop.get('description', '')}")


@app.command("examples")
@client_command(api_key=False)
def examples(remote: Remote) -> None:
    """Example configurations (no key needed)."""
    client = remote.client()
    found = _call(remote.as_json, client.training.examples)
    if remote.as_json:
        emit(found, as_json=True)
        return
    rows = [{"name": name, **ex} for name, ex in found["examples"].items()]
    emit(rows, as_json=False, columns=["name", "model_type", "dataset_source", "description"])


@app.command("profiles")
@client_command()
def profiles(remote: Remote) -> None:
    """Priced resource profiles (pass one to submit or estimate)."""
    client = remote.client()
    rows = _call(remote.as_json, client.training.resource_profiles)
    emit(
        rows, as_json=remote.as_json, columns=["profile", "hourly_cost", "currency", "speedup", "description"]
    )


@app.command("download-key")
@client_command()
def download_key(
    remote: Remote,
    register: Annotated[
        str | None, typer.Option(help="Register this X25519 public key (base64url, 43 characters).")
    ] = None,
    forget: Annotated[bool, typer.Option("--forget", help="Remove the registered key.")] = False,
) -> None:
    """The X25519 public key downloads are sealed to: show it, --register one, or --forget it."""
    client = remote.client()
    if register:
        emit(
            _call(remote.as_json, lambda: client.training.set_download_key(register)), as_json=remote.as_json
        )
        return
    call = client.training.delete_download_key if forget else client.training.download_key
    emit(_call(remote.as_json, call), as_json=remote.as_json)
