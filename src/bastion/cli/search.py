"""``bastion train search``: submit a hyper-parameter search and watch its trials as a live table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli.client_common import Remote, client_command
from bastion.cli.options import ProjectOpt
from bastion.cli.output import console
from bastion.cli.train import (
    ParamOpt,
    ResourcesOpt,
    _call,
    follow_submitted,
    parse_params,
    parse_resources,
)

if TYPE_CHECKING:
    from bastion.client import BastionClient, Event

MAX_ROWS = 25


def trial_table(rows: list[dict[str, Any]], best: int | None = None) -> Any:
    """The trials so far, best first: number, state, CV mean ± std, params."""
    from rich.table import Table

    table = Table(title="trials", show_lines=False)
    for column in ("#", "state", "CV mean", "± std", "params"):
        table.add_column(column)
    ranked = sorted(rows, key=lambda r: (r.get("cv_mean") is None, -(r.get("cv_mean") or 0.0)))
    for row in ranked[:MAX_ROWS]:
        mean, std = row.get("cv_mean"), row.get("cv_std")
        style = "bold green" if row.get("number") == best else None
        table.add_row(
            str(row.get("number")),
            str(row.get("state")),
            "" if mean is None else f"{mean:.4f}",
            "" if std is None else f"{std:.4f}",
            json.dumps(row.get("params"), sort_keys=True)[:80],
            style=style,
        )
    return table


def _watch_trials(client: BastionClient, job_id: str) -> dict[str, Any]:
    from rich.live import Live

    rows: dict[int, dict[str, Any]] = {}
    with Live(trial_table([]), console=console, refresh_per_second=4) as live:

        def on_event(event: Event) -> None:
            data = event.data
            if event.kind in ("metrics", "trial") and "number" in data:
                rows[int(data["number"])] = data
                complete = [r for r in rows.values() if r.get("cv_mean") is not None]
                best = max(complete, key=lambda r: r["cv_mean"])["number"] if complete else None
                live.update(trial_table(list(rows.values()), best))

        return client.jobs.wait(job_id, on_event=on_event)


@client_command()
def search(
    remote: Remote,
    model_type: Annotated[str, typer.Option("--model-type", "-m", help="e.g. alzheimer_classifier.")],
    space: Annotated[Path, typer.Option("--space", help="JSON file: parameter -> range or choices.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset source.")] = "synthetic_test_data",
    trials: Annotated[int, typer.Option("--trials", min=1, help="Trials to finish.")] = 20,
    parallel: Annotated[int, typer.Option("--parallel", min=1, help="Trials at once on the executor.")] = 1,
    cv: Annotated[int, typer.Option("--cv", min=2, help="Folds of cross-validation per trial.")] = 5,
    time_budget: Annotated[
        float | None, typer.Option("--time-budget", help="Seconds after which no new trial starts.")
    ] = None,
    param: ParamOpt = None,
    dataset_id: Annotated[str | None, typer.Option("--dataset-id", help="Uploaded dataset.")] = None,
    target: Annotated[str | None, typer.Option("--target", help="Column to predict (uploads).")] = None,
    seed: Annotated[int, typer.Option(help="Seed of the sampler and the folds.")] = 0,
    resources: ResourcesOpt = None,
    watch: Annotated[bool, typer.Option("--watch", "-w", help="Show a live table of trials.")] = False,
    project: ProjectOpt = None,
) -> None:
    """Search hyper-parameters (Optuna TPE + median pruning, k-fold CV per trial); the best trial is
    retrained and registered as a model version."""
    try:
        space_spec = json.loads(space.read_text())
    except (OSError, ValueError) as exc:
        raise typer.BadParameter(f"--space must be a readable JSON file: {exc}") from None
    client = remote.client()
    job_id = _call(
        remote.as_json,
        lambda: client.jobs.search(
            model_type,
            dataset,
            space_spec.get("space", space_spec) if isinstance(space_spec, dict) else space_spec,
            trials=trials,
            parallel=parallel,
            cv=cv,
            time_budget_seconds=time_budget,
            params=parse_params(param) or None,
            dataset_id=dataset_id,
            target=target,
            seed=seed,
            resources=parse_resources(resources),
            project=project,
        ),
    )
    live = not remote.as_json and console.is_terminal
    follow_submitted(
        job_id,
        "search",
        watch,
        remote.as_json,
        lambda: _watch_trials(client, job_id) if live else client.jobs.wait(job_id),
        _show_trials,
    )


def _show_trials(final: dict[str, Any]) -> None:
    summary = (final.get("results") or {}).get("search")
    if summary:
        console.print(trial_table(summary["trials"], summary["best_trial"]))
        console.print(f"best trial {summary['best_trial']}: {summary['best_params']} CV {summary['best_cv']}")
