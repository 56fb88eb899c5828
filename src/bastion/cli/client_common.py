"""What every client command shares: where the server is, which key, and error translation.

A command declares ``remote: Remote`` as its first parameter and is decorated with
:func:`client_command`, which gives it --url, --api-key, --ca-cert and --json (the same flags and help
on every command) instead of four parameters repeated in each signature."""

from __future__ import annotations

import functools
import inspect
import json
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from bastion.cli.options import CaOpt, JsonOpt, KeyOpt, ProjectOpt, QuietOpt, UrlOpt
from bastion.cli.output import fail

if TYPE_CHECKING:
    from bastion.client.errors import BastionClientError
    from bastion.client.sdk import BastionClient

# The option types used to live here; commands written against that keep working.
__all__ = [
    "CaOpt",
    "JsonOpt",
    "KeyOpt",
    "ProjectOpt",
    "QuietOpt",
    "Remote",
    "UrlOpt",
    "client_command",
    "connect",
]


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

    client = Remote(url, api_key, ca_cert, as_json).client()
    try:
        yield client
    except BastionClientError as exc:
        raise client_failure(exc, as_json) from None
    finally:
        client.close()


@dataclass(frozen=True)
class Remote:
    """The server a command talks to, with which key and CA, and whether it answers in JSON."""

    url: str | None
    api_key: str | None
    ca_cert: Path | None
    as_json: bool

    def connect(self) -> AbstractContextManager[BastionClient]:
        """A client for one command; API errors become one line (or a JSON error) and exit 1."""
        return connect(self.url, self.api_key, self.ca_cert, as_json=self.as_json)

    def client(self) -> BastionClient:
        """A bare client, for commands that translate errors call by call."""
        from bastion.client.sdk import BastionClient
        from bastion.client.transport import default_verify

        return BastionClient(
            self.url, self.api_key, verify=default_verify(str(self.ca_cert) if self.ca_cert else None)
        )


def _option(name: str, annotation: Any, default: Any) -> inspect.Parameter:
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation)


def client_command(*, api_key: bool = True) -> Callable[[Callable[..., None]], Callable[..., None]]:
    """Replace the command's first parameter, ``remote: Remote``, by --url, --api-key (unless
    ``api_key=False``: sign-in commands have none yet), --ca-cert, then --quiet when the command has
    it, then --json, after the command's own parameters, as every client command lists them."""

    def decorate(func: Callable[..., None]) -> Callable[..., None]:
        own = list(inspect.signature(func, eval_str=True).parameters.values())
        if not own or own[0].name != "remote":
            raise TypeError(f"{func.__name__}: a client command's first parameter is `remote: Remote`")
        quiet = [p.replace(kind=inspect.Parameter.KEYWORD_ONLY) for p in own if p.name == "quiet"]
        shared = [_option("url", UrlOpt, None)]
        if api_key:
            shared.append(_option("api_key", KeyOpt, None))
        shared += [_option("ca_cert", CaOpt, None), *quiet, _option("as_json", JsonOpt, False)]
        params = [p for p in own[1:] if p.name != "quiet"] + shared

        @functools.wraps(func, assigned=("__module__", "__name__", "__qualname__", "__doc__"), updated=())
        def command(*args: Any, **kwargs: Any) -> None:
            remote = Remote(
                kwargs.pop("url", None),
                kwargs.pop("api_key", None),
                kwargs.pop("ca_cert", None),
                kwargs.pop("as_json", False),
            )
            func(remote, *args, **kwargs)

        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        return command

    return decorate
