"""The options many commands share, declared once: `Annotated` types a command's signature names.

`client_common.client_command` adds the connection block (--url, --api-key, --ca-cert, --json) to a
client command by itself; the others name these types directly."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", envvar="BASTION_URL", help="Server URL (default http://127.0.0.1:5000)."),
]
KeyOpt = Annotated[
    str | None, typer.Option("--api-key", envvar="BASTION_API_KEY", help="API key.", show_default=False)
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
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="Print ids only, one a line.")]
ProjectOpt = Annotated[
    str | None,
    typer.Option(help="Project id: create in it / list only it (default: personal project / all yours)."),
]
AccessCodeOpt = Annotated[
    str | None,
    typer.Option(
        "--access-code", envvar="BASTION_ACCESS_CODE", help="The object's access code, if it has one."
    ),
]
