"""`bastion data …` and `bastion models …`: client commands over the SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.client_common import Remote, client_command
from bastion.cli.options import AccessCodeOpt, ProjectOpt, QuietOpt
from bastion.cli.output import console, emit

data_app = typer.Typer(help="Upload and list datasets (de-identified before storage).", no_args_is_help=True)
models_app = typer.Typer(help="Browse the model registry.", no_args_is_help=True)


@data_app.command("upload")
@client_command()
def upload(
    remote: Remote,
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the file name).")] = None,
    policy: Annotated[
        str | None, typer.Option(help="De-identification policy: JSON text or @file.json.")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Upload a CSV, JSON, Excel or Parquet file."""
    if policy and policy.startswith("@"):
        policy = Path(policy[1:]).read_text()
    with remote.connect() as client:
        result = client.datasets.upload(file, name=name, policy=policy, project=project)
    if remote.as_json:
        emit(result, as_json=True)
        return
    console.print(f"dataset [bold]{result['id']}[/bold]: {result['rows']} rows x {result['columns']} columns")
    emit(
        [
            {"column": a["column"], "detected": a.get("detected_kind"), "action": a["action"]}
            for a in result["deidentification"]
        ],
        as_json=False,
        columns=["column", "detected", "action"],
        title="De-identification",
    )


@data_app.command("list")
@client_command()
def list_datasets(
    remote: Remote,
    quiet: QuietOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Your datasets."""
    with remote.connect() as client:
        rows = client.datasets.list(project)
    emit(
        [{k: r[k] for k in ("id", "name", "format", "rows", "columns", "created_at")} for r in rows],
        as_json=remote.as_json,
        quiet=quiet,
        columns=["id", "name", "format", "rows", "columns", "created_at"],
        title="Datasets",
    )


@data_app.command("delete")
@client_command()
def delete_dataset(
    remote: Remote,
    dataset_id: str,
) -> None:
    """Delete a dataset and its encrypted payload."""
    with remote.connect() as client:
        emit(client.datasets.delete(dataset_id), as_json=remote.as_json)


@models_app.command("list")
@client_command()
def list_models(
    remote: Remote,
    quiet: QuietOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Your registered models."""
    with remote.connect() as client:
        rows = client.models.list(project)
    emit(
        rows,
        as_json=remote.as_json,
        quiet=quiet,
        columns=["id", "name", "versions", "latest_version", "best_version", "created_at"],
        title="Models",
    )


@models_app.command("show")
@client_command()
def show_model(
    remote: Remote,
    model_id: str,
) -> None:
    """A model and its versions, with metrics and lineage."""
    with remote.connect() as client:
        model = client.models.get(model_id)
    if remote.as_json:
        emit(model, as_json=True)
        return
    console.print(f"[bold]{model['name']}[/bold] ({model['id']}), best version: {model['best_version']}")
    emit(
        [
            {
                "version": v["version"],
                "format": v["model_format"],
                "metrics": _headline(v["metrics"]),
                "lineage": json.dumps(v["lineage"]),
                "created_at": v["created_at"],
            }
            for v in model["history"]
        ],
        as_json=False,
        columns=["version", "format", "metrics", "lineage", "created_at"],
    )


@models_app.command("best")
@client_command()
def best_model(
    remote: Remote,
    model_id: str,
    metric: Annotated[
        str | None, typer.Option(help="Metric to rank by (default: the model's primary).")
    ] = None,
) -> None:
    """The best version of a model by a metric (rmse/mae/loss are minimised, others maximised)."""
    with remote.connect() as client:
        best = client.models.best(model_id, metric)
    emit(
        best
        if remote.as_json
        else {
            "version": best["version"],
            "metric": best["metric"],
            "value": best["metrics"].get(best["metric"]),
        },
        as_json=remote.as_json,
    )


def _headline(metrics: dict[str, object]) -> str:
    keys = ("accuracy", "f1", "roc_auc", "r2", "rmse", "mae")
    return ", ".join(f"{k}={metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), int | float))


NewCodeOpt = Annotated[
    str | None,
    typer.Option("--code", envvar="BASTION_NEW_ACCESS_CODE", help="The new code (prompted if not given)."),
]
CurrentCodeOpt = Annotated[
    str | None,
    typer.Option("--current", envvar="BASTION_ACCESS_CODE", help="The current code, to change or remove it."),
]
RemoveOpt = Annotated[bool, typer.Option("--remove", help="Remove the code instead of setting one.")]


def _new_code(code: str | None, remove: bool) -> str | None:
    if remove:
        return None
    if code:
        return code
    entered: str = typer.prompt("New access code", hide_input=True, confirmation_prompt=True)
    return entered


@models_app.command("access-code")
@client_command()
def model_access_code(
    remote: Remote,
    model_id: str,
    code: NewCodeOpt = None,
    current: CurrentCodeOpt = None,
    remove: RemoveOpt = False,
    version: Annotated[int | None, typer.Option(help="One version (default: every version).")] = None,
) -> None:
    """Set, change (--current OLD) or remove (--remove --current OLD) a model's access code."""
    new = _new_code(code, remove)
    with remote.connect() as client:
        if new is None:
            result = client.models.remove_access_code(model_id, current=current or "", version=version)
        else:
            result = client.models.set_access_code(model_id, new, current=current, version=version)
    emit(result, as_json=remote.as_json)


@models_app.command("quantize")
@client_command()
def quantize_model(
    remote: Remote,
    model_id: str,
    version: Annotated[int | None, typer.Option(help="Version to quantize (default: the latest).")] = None,
    access_code: AccessCodeOpt = None,
) -> None:
    """Store an int8 version of a PyTorch model; shows size and held-out accuracy before and after."""
    with remote.connect() as client:
        result = client.models.quantize(model_id, version=version, access_code=access_code)
    if remote.as_json:
        emit(result, as_json=True)
        return
    console.print(f"new version [bold]{result['version']['version']}[/bold]")
    emit(result["report"], as_json=False)


@models_app.command("download")
@client_command()
def download_model(
    remote: Remote,
    model_id: str,
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Model file to write.")] = None,
    version: Annotated[int | None, typer.Option(help="Version (default: the latest).")] = None,
    access_code: AccessCodeOpt = None,
) -> None:
    """Download a registered version (quantized ones too), decrypt it here, write FILE and FILE.json."""
    with remote.connect() as client:
        model = client.models.download(model_id, version=version, access_code=access_code)
    model_path, config_path = model.save(output or Path(model.default_filename()))
    emit(
        {
            "success": True,
            "model_id": model_id,
            "model_format": model.model_format,
            "model_file": str(model_path),
            "config_file": str(config_path),
            "sha256": model.sha256,
        },
        as_json=remote.as_json,
    )


@data_app.command("access-code")
@client_command()
def dataset_access_code(
    remote: Remote,
    dataset_id: str,
    code: NewCodeOpt = None,
    current: CurrentCodeOpt = None,
    remove: RemoveOpt = False,
) -> None:
    """Set, change (--current OLD) or remove (--remove --current OLD) a dataset's access code."""
    new = _new_code(code, remove)
    with remote.connect() as client:
        if new is None:
            result = client.datasets.remove_access_code(dataset_id, current=current or "")
        else:
            result = client.datasets.set_access_code(dataset_id, new, current=current)
    emit(result, as_json=remote.as_json)


@data_app.command("show")
@client_command()
def show_dataset(
    remote: Remote,
    dataset_id: str,
    preview: Annotated[
        bool, typer.Option("--preview", help="Also show the first stored (de-identified) rows.")
    ] = False,
    limit: Annotated[int, typer.Option(help="Rows to preview.")] = 20,
    access_code: AccessCodeOpt = None,
) -> None:
    """A dataset's schema and the decision taken for every column (and, with --preview, its rows)."""
    with remote.connect() as client:
        info = client.datasets.get(dataset_id)
        shown = client.datasets.preview(dataset_id, limit=limit, access_code=access_code) if preview else None
    if remote.as_json:
        emit({**info, "preview": shown} if shown is not None else info, as_json=True)
        return
    console.print(
        f"dataset [bold]{info['name']}[/bold] ({info['id']}): {info['rows']} rows x {info['columns']}"
    )
    emit(
        [
            {
                "column": a["column"],
                "detected": a.get("detected_kind"),
                "action": a["action"],
                "reason": a.get("reason", ""),
            }
            for a in info["deidentification"]
        ],
        as_json=False,
        columns=["column", "detected", "action", "reason"],
        title="De-identification",
    )
    if shown is not None:
        emit(
            [{k: "" if v is None else str(v)[:40] for k, v in row.items()} for row in shown["rows"]],
            as_json=False,
            columns=shown["columns"],
            title=f"First {len(shown['rows'])} stored rows (review them before use)",
        )
