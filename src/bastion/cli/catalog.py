"""`bastion data …` and `bastion models …`: client commands over the SDK."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from bastion.cli.client_common import CaOpt, JsonOpt, KeyOpt, QuietOpt, UrlOpt, connect
from bastion.cli.output import console, emit

data_app = typer.Typer(help="Upload and list datasets (de-identified before storage).", no_args_is_help=True)
models_app = typer.Typer(help="Browse the model registry.", no_args_is_help=True)


@data_app.command("upload")
def upload(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, readable=True)],
    name: Annotated[str | None, typer.Option(help="Dataset name (default: the file name).")] = None,
    policy: Annotated[
        str | None, typer.Option(help="De-identification policy: JSON text or @file.json.")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Upload a CSV, JSON, Excel or Parquet file."""
    if policy and policy.startswith("@"):
        policy = Path(policy[1:]).read_text()
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        result = client.upload_dataset(file, name=name, policy=policy)
    if as_json:
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
def list_datasets(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Your datasets."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        rows = client.list_datasets()
    emit(
        [{k: r[k] for k in ("id", "name", "format", "rows", "columns", "created_at")} for r in rows],
        as_json=as_json,
        quiet=quiet,
        columns=["id", "name", "format", "rows", "columns", "created_at"],
        title="Datasets",
    )


@data_app.command("delete")
def delete_dataset(
    dataset_id: str,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Delete a dataset and its encrypted payload."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(client.delete_dataset(dataset_id), as_json=as_json)


@models_app.command("list")
def list_models(
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Your registered models."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        rows = client.list_models()
    emit(
        rows,
        as_json=as_json,
        quiet=quiet,
        columns=["id", "name", "versions", "latest_version", "best_version", "created_at"],
        title="Models",
    )


@models_app.command("show")
def show_model(
    model_id: str, url: UrlOpt = None, api_key: KeyOpt = None, ca_cert: CaOpt = None, as_json: JsonOpt = False
) -> None:
    """A model and its versions, with metrics and lineage."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        model = client.get_model(model_id)
    if as_json:
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
def best_model(
    model_id: str,
    metric: Annotated[
        str | None, typer.Option(help="Metric to rank by (default: the model's primary).")
    ] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """The best version of a model by a metric (rmse/mae/loss are minimised, others maximised)."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        best = client.best_model(model_id, metric)
    emit(
        best
        if as_json
        else {
            "version": best["version"],
            "metric": best["metric"],
            "value": best["metrics"].get(best["metric"]),
        },
        as_json=as_json,
    )


def _headline(metrics: dict[str, object]) -> str:
    keys = ("accuracy", "f1", "roc_auc", "r2", "rmse", "mae")
    return ", ".join(f"{k}={metrics[k]:.3f}" for k in keys if isinstance(metrics.get(k), int | float))


@data_app.command("show")
def show_dataset(
    dataset_id: str,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A dataset: schema, statistics and what de-identification did to each column."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        dataset = client.get_dataset(dataset_id)
    if as_json:
        emit(dataset, as_json=True)
        return
    console.print(
        f"[bold]{dataset['name']}[/bold] ({dataset['id']}): {dataset['rows']} rows x {dataset['columns']}"
    )
    emit(
        [
            {"column": a["column"], "detected": a.get("detected_kind"), "action": a["action"]}
            for a in dataset["deidentification"]
        ],
        as_json=False,
        columns=["column", "detected", "action"],
        title="De-identification",
    )


@models_app.command("predict")
def predict_registered(
    model_id: str,
    input_file: Annotated[
        Path, typer.Option("--input", "-i", help="JSON list of rows keyed by feature name.")
    ],
    version: Annotated[int | None, typer.Option(help="Default: the latest.")] = None,
    proba: Annotated[bool, typer.Option("--proba", help="Also return class probabilities.")] = False,
    access_code: Annotated[str | None, typer.Option(envvar="BASTION_ACCESS_CODE", show_default=False)] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict on the server with a registered model (the rows travel, the model does not)."""
    rows = json.loads(input_file.read_text())
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        out = client.predict_registered(
            model_id, rows, version=version, probabilities=proba, access_code=access_code
        )
    emit(out, as_json=as_json)


@models_app.command("quantize")
def quantize(
    model_id: str,
    version: Annotated[int | None, typer.Option(help="Default: the latest.")] = None,
    access_code: Annotated[str | None, typer.Option(envvar="BASTION_ACCESS_CODE", show_default=False)] = None,
    url: UrlOpt = None,
    api_key: KeyOpt = None,
    ca_cert: CaOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """A new int8 version of a PyTorch model, with size and accuracy before and after."""
    with connect(url, api_key, ca_cert, as_json=as_json) as client:
        emit(client.quantize_model(model_id, version=version, access_code=access_code), as_json=as_json)
