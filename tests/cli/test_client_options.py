"""Every client command gets the same connection flags from one place (`client_command`)."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import typer

from bastion.cli.client_common import Remote, client_command
from bastion.cli.main import app


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    if hasattr(cmd, "commands"):
        return [c for name, sub in cmd.commands.items() for c in _commands(sub, (*path, name))]
    return [(path, cmd)]


def test_every_client_command_takes_ca_cert_and_json() -> None:
    """README: every client command takes --json and --ca-cert (login, signup, sso-link lacked --ca-cert)."""
    client = [
        (path, {o for p in cmd.params for o in p.opts})
        for path, cmd in _commands(typer.main.get_command(app))
        if any("--url" in p.opts for p in cmd.params)
    ]
    assert len(client) > 50
    missing = [" ".join(path) for path, opts in client if not {"--ca-cert", "--json"} <= opts]
    assert missing == []
    assert ("login",) in [path for path, _ in client]
    lists = [
        " ".join(path) for path, opts in client if path[-1] in ("list", "users", "keys") and "-q" not in opts
    ]
    assert lists == []  # README: list commands take -q (ft list and llm list lacked it)


def test_client_command_passes_one_remote_and_keeps_the_flag_order() -> None:
    seen: list[Any] = []

    @client_command()
    def listing(remote: Remote, name: str = "x", quiet: bool = False) -> None:
        seen.append((remote, name, quiet))

    assert list(inspect.signature(listing).parameters) == [
        "name",
        "url",
        "api_key",
        "ca_cert",
        "quiet",
        "as_json",
    ]
    listing(name="n", url="http://h", api_key="k", ca_cert=None, quiet=True, as_json=True)
    assert seen == [(Remote("http://h", "k", None, True), "n", True)]

    with pytest.raises(TypeError, match="remote: Remote"):
        client_command()(lambda name: None)
