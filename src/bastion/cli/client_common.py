"""What every client command shares: where the server is, which key, and error translation."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated

import typer

from bastion.cli.output import fail

if TYPE_CHECKING:
    from bastion.client.sdk import BastionClient

UrlOpt = Annotated[str | None, typer.Option("--url", envvar="BASTION_URL", help="Server URL.")]
KeyOpt = Annotated[
    str | None, typer.Option("--api-key", envvar="BASTION_API_KEY", help="API key.", show_default=False)
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Machine-readable output.")]


@contextmanager
def connect(url: str | None, api_key: str | None) -> Iterator[BastionClient]:
    """A client for the duration of one command; API errors become a clean exit, never a traceback."""
    from bastion.client.errors import BastionClientError
    from bastion.client.sdk import BastionClient

    client = BastionClient(url, api_key)
    try:
        yield client
    except BastionClientError as exc:
        raise fail(f"{exc} ({getattr(exc, 'code', 'error')})") from exc
    finally:
        client.close()
