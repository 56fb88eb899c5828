"""`bastion models predict`: predictions from a registered model, optionally under encryption."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from bastion.cli.client_common import Remote, client_command
from bastion.cli.options import AccessCodeOpt
from bastion.cli.output import emit, fail


@client_command()
def predict(
    remote: Remote,
    model_id: Annotated[str, typer.Argument(help="Model id or name.")],
    input_file: Annotated[
        Path, typer.Option("--input", "-i", help="CSV or JSON rows keyed by feature name.")
    ],
    encrypted: Annotated[
        bool,
        typer.Option(
            "--encrypted",
            help="CKKS: encrypt the rows here, the server computes on ciphertexts, decrypt here.",
        ),
    ] = False,
    version: Annotated[int | None, typer.Option("--version", min=1)] = None,
    access_code: AccessCodeOpt = None,
) -> None:
    """Predict with a registered model; with --encrypted the server never sees rows or results."""
    from bastion.cli.train import _read_rows
    from bastion.client.he import EncryptionInputError

    try:
        rows = _read_rows(input_file)
    except (OSError, ValueError) as exc:
        raise fail(f"cannot read {input_file}: {type(exc).__name__}") from None
    with remote.connect() as client:
        try:
            out: dict[str, Any] = (
                client.models.predict_encrypted(model_id, rows, version=version, access_code=access_code)
                if encrypted
                else client.models.predict(
                    model_id, rows, version=version, probabilities=True, access_code=access_code
                )
            )
        except EncryptionInputError as exc:
            raise fail(str(exc)) from None
    if remote.as_json:
        emit(out, as_json=True)
        return
    for i, label in enumerate(out["predictions"]):
        extra = f"  {out['probabilities'][i]}" if "probabilities" in out else ""
        typer.echo(f"{label}{extra}")
