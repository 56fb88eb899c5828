"""What every client command shares: where the server is, which key, and error translation."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.output import fail

if TYPE_CHECKING:
    from bastion.client.errors import BastionClientError
    from bastion.client.sdk import BastionClient

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="BASTION_URL", help="Server URL (default http://127.0.0.1:5000)."),
]
KeyOpt = Annotated[
    str | None, typer.Option("--api-key", envvar="BASTION_API_KEY", help="API key.", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
ProjectOpt = Annotated[
    str | None,
    typer.Option(help="Project id: create in it / list only it (default: personal project / all yours)."),
]
CaOpt = Annotated[
    Path | None,
    typer.Option(
        "--ca-cert",
        envvar="BASTION_CA_CERT",
        help="CA bundle (PEM) to trust for the server's TLS, e.g. a hospital's own CA.",
        show_default=False,
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print ids only, one a line.")]


def client_failure(exc: BastionClientError, as_json: bool) -> typer.Exit:
    """One translation of SDK errors for every client command: a JSON error object under ``--json``,
    else one line on stderr; exit 1 either way, never a traceback."""
    retry = getattr(exc, "retry_after", None)
    if as_json:
        error: dict[str, object] = {"code": exc.code, "message": exc.message}
        if retry is not None:
            error["retry_after"] = retry
        typer.echo(json.dumps({"success": False, "error": error}))
        return typer.Exit(1)
    if retry is not None:
        return fail(f"{exc.message} ({exc.code}); retry in {_duration(retry)}")
    return fail(f"{exc.message} ({exc.code})")


def _duration(seconds: float) -> str:
    whole = max(1, round(seconds))
    minutes, secs = divmod(whole, 60)
    return f"{minutes} min {secs} s" if minutes else f"{secs} s"


@contextmanager
def connect(
    url: str | None, api_key: str | None, ca_cert: Path | None = None, *, as_json: bool = False
) -> Iterator[BastionClient]:
    """A client for the duration of one command; API errors go through :func:`client_failure`."""
    from bastion.client.errors import BastionClientError
    from bastion.client.sdk import BastionClient
    from bastion.client.transport import default_verify

    client = BastionClient(url, api_key, verify=default_verify(str(ca_cert) if ca_cert else None))
    try:
        yield client
    except BastionClientError as exc:
        raise client_failure(exc, as_json) from None
    finally:
        client.close()
