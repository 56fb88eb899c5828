"""`bastion fl create|list|enroll|status|delete|rounds|model-download|model-upload|client`.

Coordinator commands use BASTION_URL / BASTION_API_KEY like every client command; `fl client` is
what a site runs next to its data and authenticates with the participant token it was given
(``--token`` or BASTION_FL_TOKEN, which keeps it out of the process list).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from bastion.cli import exiting
from bastion.cli.client_common import Remote, client_command
from bastion.cli.options import CaOpt, JsonOpt, ProjectOpt, QuietOpt
from bastion.cli.output import console, emit, err_console, fail

if TYPE_CHECKING:
    from bastion.client.federations import Federations

app = typer.Typer(help="Federated learning: run federations and take part in them.", no_args_is_help=True)

PRESETS: dict[str, dict[str, Any]] = {
    "digits-mlp": {"type": "tabular_mlp", "in_features": 64, "num_classes": 10, "hidden": [64]},
    "breast-cancer-mlp": {"type": "tabular_mlp", "in_features": 30, "num_classes": 2, "hidden": [32]},
    "wine-mlp": {"type": "tabular_mlp", "in_features": 13, "num_classes": 3, "hidden": [16]},
    "mri-cnn": {"type": "brain_tumour_cnn", "image_size": 64, "channels": [8, 16, 32], "hidden": 32},
}
FederationArg = Annotated[str, typer.Argument(help="Federation id.")]
ROUND_COLUMNS = ["round", "state", "attempt", "updates", "close_reason", "accuracy", "loss", "epsilon"]


def _json_arg(text: str, what: str) -> Any:
    try:
        if text.startswith("@"):
            return json.loads(Path(text[1:]).read_text())
        return json.loads(text)
    except (OSError, ValueError) as exc:
        raise fail(f"{what} must be JSON or @file.json ({type(exc).__name__})", 2) from exc


def _options(pairs: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise fail(f"--option takes key=value, got {pair!r}", 2)
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


@app.command("create")
@client_command()
def create(
    remote: Remote,
    name: Annotated[str, typer.Argument(help="Federation name (unique among yours).")],
    preset: Annotated[str, typer.Option(help=f"Model preset: {', '.join(PRESETS)}.")] = "digits-mlp",
    model: Annotated[
        str | None, typer.Option(help="Model spec as JSON or @file.json (overrides --preset).")
    ] = None,
    config: Annotated[
        str | None, typer.Option(help="Whole request body as JSON or @file.json; flags win.")
    ] = None,
    rounds: Annotated[int | None, typer.Option(help="Rounds to aggregate (default 10).")] = None,
    min_clients: Annotated[int | None, typer.Option(help="Fewest updates a round may close with.")] = None,
    target_clients: Annotated[
        int | None, typer.Option(help="Close a round early at this many updates.")
    ] = None,
    round_timeout: Annotated[float | None, typer.Option(help="Round deadline in seconds.")] = None,
    max_attempts: Annotated[
        int | None, typer.Option(help="Deadlines a short round gets before failing.")
    ] = None,
    strategy: Annotated[
        str | None, typer.Option(help="fedavg, fedprox, fedadam, fedyogi, median, ...")
    ] = None,
    option: Annotated[list[str] | None, typer.Option("--option", help="Strategy option key=value.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Local epochs per round.")] = None,
    lr: Annotated[float | None, typer.Option(help="Local learning rate.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Local batch size.")] = None,
    momentum: Annotated[float | None, typer.Option(help="Local SGD momentum.")] = None,
    val_fraction: Annotated[
        float | None, typer.Option(help="Share of each site's data held out to validate.")
    ] = None,
    server_eval: Annotated[
        str | None, typer.Option(help="Server-side test set, e.g. builtin:digits.")
    ] = None,
    secure_aggregation: Annotated[
        bool, typer.Option("--secure-aggregation", help="SecAgg+: the server only learns the sum.")
    ] = False,
    dp_noise: Annotated[
        float | None, typer.Option(help="DP-FedAvg noise multiplier sigma (turns DP on).")
    ] = None,
    dp_clip: Annotated[float, typer.Option(help="DP-FedAvg L2 clip S of a site's delta.")] = 1.0,
    dp_mode: Annotated[
        str, typer.Option(help="DP noise: distributed (needs secure aggregation) or central.")
    ] = "",
    dp_budget: Annotated[float | None, typer.Option(help="Stop before epsilon would exceed this.")] = None,
    dp_delta: Annotated[float, typer.Option(help="DP delta epsilon is reported at.")] = 1e-5,
    features: Annotated[
        str | None,
        typer.Option(help="Declared CSV columns, label, classes and site statistics: JSON or @file.json."),
    ] = None,
    max_site_share: Annotated[
        float | None, typer.Option(help="Most of a round's weight one site may hold (default 0.5).")
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Create a federation; round 1 opens when min-clients sites have registered."""
    body: dict[str, Any] = _json_arg(config, "--config") if config else {}
    if preset not in PRESETS and model is None and "model" not in body:
        raise fail(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", 2)
    body["name"] = name
    body["model"] = _json_arg(model, "--model") if model else body.get("model", PRESETS.get(preset))
    flags = {
        "rounds": rounds,
        "min_clients": min_clients,
        "target_clients": target_clients,
        "round_timeout_s": round_timeout,
        "max_round_attempts": max_attempts,
        "strategy": strategy,
        "max_site_share": max_site_share,
    }
    body.update({k: v for k, v in flags.items() if v is not None})
    if features:
        body["features"] = _json_arg(features, "--features")
    if option:
        body["strategy_options"] = {**body.get("strategy_options", {}), **_options(option)}
    training = {"epochs": epochs, "lr": lr, "batch_size": batch_size, "momentum": momentum}
    body["training"] = {**body.get("training", {}), **{k: v for k, v in training.items() if v is not None}}
    evaluation = {"local_validation_fraction": val_fraction, "server_dataset": server_eval}
    body["evaluation"] = {
        **body.get("evaluation", {}),
        **{k: v for k, v in evaluation.items() if v is not None},
    }
    privacy = dict(body.get("privacy") or {})
    if secure_aggregation:
        privacy.setdefault("secure_aggregation", {})
    if dp_noise is not None:
        mode = dp_mode or ("distributed" if "secure_aggregation" in privacy else "central")
        privacy["dp"] = {"noise_multiplier": dp_noise, "clip_norm": dp_clip, "mode": mode, "delta": dp_delta}
        if dp_budget is not None:
            privacy["dp"]["budget_epsilon"] = dp_budget
    if privacy:
        body["privacy"] = privacy
    with remote.connect() as client:
        fed = client.federations.create(body, project)
    emit(
        fed
        if remote.as_json
        else {
            k: fed[k]
            for k in (
                "id",
                "name",
                "state",
                "strategy",
                "rounds",
                "min_clients",
                "target_clients",
                "server_signing_key",
            )
        },
        as_json=remote.as_json,
    )


@app.command("list")
@client_command()
def list_federations(
    remote: Remote,
    quiet: QuietOpt = False,
    project: ProjectOpt = None,
) -> None:
    """Your federations."""
    with remote.connect() as client:
        rows = client.federations.list_all(project)
    emit(
        rows,
        as_json=remote.as_json,
        quiet=quiet,
        columns=["id", "name", "state", "current_round", "completed_rounds", "rounds"],
        title="Federations",
    )


@app.command("enroll")
@client_command()
def enroll(
    remote: Remote,
    federation: FederationArg,
    name: Annotated[str, typer.Option(help="The site's name, e.g. hospital-a.")],
) -> None:
    """Enrol a site; prints its participant token ONCE (hand it to the site operator)."""
    with remote.connect() as client:
        out = client.federations.enroll(federation, name)
        server = client.url
    emit(
        out if remote.as_json else {k: out[k] for k in ("id", "name", "token", "server_signing_key")},
        as_json=remote.as_json,
    )
    if not remote.as_json:
        err_console.print(
            "[yellow]The token is shown once. The site runs:[/yellow]\n"
            f"  BASTION_FL_TOKEN=<token> bastion fl client --server {server} --federation {federation} "
            f"--server-key {out['server_signing_key']} --data <PATH|builtin:NAME>",
            soft_wrap=True,
        )


@app.command("status")
@client_command()
def status(
    remote: Remote,
    federation: FederationArg,
) -> None:
    """Round, pending and required updates, sites online."""
    _show(remote, lambda feds: feds.status(federation))


@app.command("delete")
@client_command()
def delete(
    remote: Remote,
    federation: FederationArg,
) -> None:
    """Archive a federation: sites are refused; its model, keys and received updates are deleted."""
    _show(remote, lambda feds: feds.archive(federation))


def _show(remote: Remote, call: Callable[[Federations], Any]) -> None:
    """One SDK call on the federations namespace, its answer printed."""
    with remote.connect() as client:
        emit(call(client.federations), as_json=remote.as_json)


@app.command("sharing")
@client_command()
def sharing(
    remote: Remote,
    federation: FederationArg,
    visibility: Annotated[
        str | None, typer.Option(help="Set what guests see of the others: aggregates, sites or metrics")
    ] = None,
) -> None:
    """Show (or set) what invited guests see, and who is invited."""
    if visibility is None:
        _show(remote, lambda feds: feds.sharing(federation))
    else:
        _show(remote, lambda feds: feds.set_visibility(federation, visibility))


@app.command("invite")
@client_command()
def invite(
    remote: Remote, federation: FederationArg, user: Annotated[str, typer.Argument(help="user name or id")]
) -> None:
    """Invite a user of another project to enrol their own sites."""
    _show(remote, lambda feds: feds.invite(federation, user))


@app.command("uninvite")
@client_command()
def uninvite(
    remote: Remote, federation: FederationArg, user: Annotated[str, typer.Argument(help="user name or id")]
) -> None:
    """Withdraw an invitation (the guest's enrolled sites stay until revoked)."""
    _show(remote, lambda feds: feds.uninvite(federation, user))


@app.command("rounds")
@client_command()
def rounds(
    remote: Remote,
    federation: FederationArg,
) -> None:
    """Per-round metrics."""
    with remote.connect() as client:
        rows = client.federations.rounds(federation)
    if remote.as_json:
        emit(rows, as_json=True)
        return
    for row in rows:
        metrics = row["metrics"]
        row["accuracy"] = _fmt(metrics.get("server_accuracy", metrics.get("val_accuracy")))
        row["epsilon"] = _fmt(metrics.get("dp_epsilon"))
        row["loss"] = _fmt(metrics.get("server_loss", metrics.get("val_loss", metrics.get("train_loss"))))
    emit(rows, as_json=False, columns=ROUND_COLUMNS, title=f"Rounds of {federation}")


def _fmt(value: Any) -> str | None:
    return f"{value:.4f}" if isinstance(value, int | float) else None


@app.command("model-download")
@client_command()
def model_download(
    remote: Remote,
    federation: FederationArg,
    out: Annotated[Path, typer.Argument(help="Where to write the .safetensors file.")],
) -> None:
    """Save the current global model (safetensors), e.g. to fine-tune it."""
    with remote.connect() as client:
        version, blob = client.federations.download_model(federation)
    from bastion.client.modelfile import write_private

    write_private(out, blob)  # 0600, like every model file the client writes
    emit({"global_version": version, "path": str(out), "bytes": len(blob)}, as_json=remote.as_json)


@app.command("model-upload")
@client_command()
def model_upload(
    remote: Remote,
    federation: FederationArg,
    path: Annotated[
        Path, typer.Argument(help="A .safetensors file with the federation's tensor names and shapes.")
    ],
) -> None:
    """Hand a fine-tuned model back: it becomes the next global version (the open round restarts)."""
    with remote.connect() as client:
        emit(client.federations.upload_model(federation, path.read_bytes()), as_json=remote.as_json)


@app.command("peers")
@client_command()
def peers(
    remote: Remote,
    federation: FederationArg,
) -> None:
    """The registered sites' signing keys, {participant id: key}: give it to each site out of band."""
    with remote.connect() as client:
        rows = client.federations.participants(federation)
    keys = {
        r["id"]: r["signing_public_key"]
        for r in rows
        if r.get("signing_public_key") and not r.get("revoked_at")
    }
    emit(keys, as_json=remote.as_json)


def _peer_keys(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read the peer key list {path}: {exc}", 2) from exc


def _trainer(data: str, part: Any, alpha: float | None, threads: int | None, base_model: Path | None) -> Any:
    """The site trainer: the federation's torch model on tabular/image data, or LoRA on JSONL text."""
    if base_model is not None:
        from bastion.client.site.lora import LoraSiteTrainer

        return LoraSiteTrainer(data, base_model, threads=threads)
    from bastion.client.site.trainer import TorchTrainer

    return TorchTrainer(data, partition=part, alpha=alpha, threads=threads)


@app.command("client")
def client(
    server: Annotated[str, typer.Option(help="Server URL, e.g. https://bastion.example.org.")],
    federation: Annotated[str, typer.Option(help="Federation id.")],
    token: Annotated[
        str, typer.Option(envvar="BASTION_FL_TOKEN", help="Participant token (bsp_...).", show_default=False)
    ],
    data: Annotated[str, typer.Option(help="builtin:NAME, a .csv/.npz file or an image folder.")],
    partition: Annotated[
        str | None, typer.Option(help="Use part i of n of the data (1-based), e.g. 2/5.")
    ] = None,
    alpha: Annotated[float | None, typer.Option(help="Non-IID partition: Dirichlet alpha.")] = None,
    state_dir: Annotated[Path | None, typer.Option(help="Site state: signing key, rounds sent.")] = None,
    server_key: Annotated[str | None, typer.Option(help="Expected server signing key (from enrol).")] = None,
    peer_keys: Annotated[
        Path | None,
        typer.Option(
            help="Secure aggregation: JSON of the members' signing keys (from 'fl peers'), shared out of band."
        ),
    ] = None,
    ca_cert: CaOpt = None,
    threads: Annotated[int | None, typer.Option(help="Torch threads for local training.")] = None,
    base_model: Annotated[
        Path | None,
        typer.Option(help="Federated LoRA: this site's copy of the base model (--data is JSONL)."),
    ] = None,
    poll_timeout: Annotated[float, typer.Option(help="Long-poll seconds while waiting.")] = 20.0,
    give_up_after: Annotated[float, typer.Option(help="Seconds of network errors before giving up.")] = 600.0,
    as_json: JsonOpt = False,
) -> None:
    """Take part in a federation until it completes: train locally, send sealed updates."""
    from bastion.client.errors import BastionClientError
    from bastion.client.site.base import SiteError, SiteEvent
    from bastion.client.site.runtime import SiteClient, run_site, site_retry
    from bastion.errors import BastionError
    from bastion.federation.sitedata import parse_partition

    try:
        part = parse_partition(partition) if partition else None
    except BastionError as exc:
        raise fail(exc.message, 2) from exc
    progress = _Progress(as_json)

    def on_event(event: SiteEvent) -> None:
        progress.show(event)

    try:
        site = SiteClient(
            server,
            federation,
            token,
            _trainer(data, part, alpha, threads, base_model),
            state_dir=state_dir,
            server_key=server_key,
            peer_keys=_peer_keys(peer_keys) if peer_keys else None,
            verify=str(ca_cert) if ca_cert else True,
            poll_timeout=poll_timeout,
            retry=site_retry(give_up_after),
            on_event=on_event,
        )
        final = run_site(site)
    except (SiteError, BastionError, BastionClientError) as exc:
        progress.stop()
        raise fail(f"{exc.message} ({exc.code})", 1) from exc
    progress.stop()
    if not as_json:
        console.print(f"federation {federation} completed after {final['completed_rounds']} rounds")
    exiting.skip_teardown()  # the state is saved and the connection closed: nothing left to tear down


class _Progress:
    """A Rich progress bar on a terminal; JSON lines with --json; plain lines otherwise."""

    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.bar: Any = None
        self.task: Any = None
        self.last = ""
        if not as_json and sys.stderr.isatty():
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

            self.bar = Progress(
                TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=err_console
            )
            self.bar.start()

    def show(self, event: Any) -> None:
        if self.as_json:
            print(
                json.dumps(
                    {
                        "event": event.kind,
                        "round": event.round,
                        "message": event.message,
                        **{k: v for k, v in event.data.items() if k in ("metrics", "fit_seconds", "code")},
                    }
                ),
                flush=True,
            )
            return
        info = event.data.get("info") or {}
        if self.bar is not None:
            if self.task is None and info:
                self.task = self.bar.add_task("rounds", total=info.get("rounds") or None)
            if self.task is not None:
                done = info.get("completed_rounds")
                self.bar.update(
                    self.task,
                    description=event.message,
                    **({"completed": done} if isinstance(done, int) else {}),
                )
            return
        if event.message != self.last:
            self.last = event.message
            err_console.print(f"[{event.kind}] {event.message}")

    def stop(self) -> None:
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


@app.command("feature-stats")
def feature_stats(
    data: Annotated[Path, typer.Option("--data", help="This site's CSV file.", exists=True, dir_okay=False)],
    columns: Annotated[str, typer.Option(help="Numeric columns, comma-separated.")],
    as_json: JsonOpt = False,
) -> None:
    """At a site, before a federation exists: per numeric column the row count, sum and sum of
    squares (aggregates only, never a row). The coordinator puts every site's output in the
    declaration's ``site_statistics``; the server pools them into the standardisation all sites use."""
    from bastion.errors import BastionError
    from bastion.federation.features import site_statistics
    from bastion.federation.sitedata import MAX_CSV_BYTES

    names = [c.strip() for c in columns.split(",") if c.strip()]
    try:
        stats = site_statistics(data, names, MAX_CSV_BYTES)
    except BastionError as exc:
        raise fail(exc.message) from None
    emit(stats, as_json=as_json)


@app.command("show")
@client_command()
def show_federation(
    remote: Remote,
    federation: FederationArg,
) -> None:
    """A federation in full: config, rounds, participants, privacy."""
    with remote.connect() as client:
        emit(client.federations.get(federation), as_json=remote.as_json)


@app.command("participants")
@client_command()
def list_participants(
    remote: Remote,
    federation: FederationArg,
    quiet: QuietOpt = False,
) -> None:
    """Enrolled sites."""
    with remote.connect() as client:
        rows = client.federations.participants(federation)
    columns = ["id", "name", "registered", "last_seen_at", "revoked_at"]
    emit(rows, as_json=remote.as_json, quiet=quiet, columns=columns, title="Participants")


@app.command("remove")
@client_command()
def remove_participant(
    remote: Remote,
    federation: FederationArg,
    participant_id: str,
) -> None:
    """Revoke a site's credential (its updates are refused from now on)."""
    with remote.connect() as client:
        emit(client.federations.revoke(federation, participant_id), as_json=remote.as_json)
