"""Printing for humans (Rich tables) or machines (``--json``) from one call site."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

console = Console()
err_console = Console(stderr=True)


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return value


def plain_model(value: Any) -> Any:
    """An SDK answer (a pydantic model) as plain JSON-ready data; anything else unchanged."""
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def emit(
    data: Any,
    *,
    as_json: bool,
    columns: Sequence[str] | None = None,
    title: str | None = None,
    quiet: bool = False,
) -> None:
    """JSON, or a table whose ids are never cut short; ``quiet`` prints the first column (the id)
    of each row, one a line, for scripts."""
    if as_json:
        typer.echo(json.dumps(data, default=_plain, indent=2))
        return
    if quiet and isinstance(data, list) and columns:
        for row in data:
            typer.echo(str(row.get(columns[0], "")))
        return
    if isinstance(data, list) and columns:
        table = Table(title=title)
        for col in columns:
            if col == "id" or col.endswith("_id"):
                table.add_column(col, no_wrap=True, min_width=36, overflow="fold")
            else:
                table.add_column(col, overflow="fold")
        for row in data:
            table.add_row(*("" if row.get(c) is None else str(_plain(row.get(c))) for c in columns))
        _table_console(table).print(table)
    elif isinstance(data, dict):
        for k, v in data.items():
            console.print(f"[bold]{k}[/bold]: {_plain(v)}")
    else:
        console.print(data)


def _table_console(table: Table) -> Console:
    """On a terminal, its width; piped or redirected (where Rich assumes 80 columns and would fold
    every cell), the table's natural width, so ``bastion … | less`` and logs read like the terminal."""
    if console.is_terminal:
        return console
    natural = console.measure(table, options=console.options.update_width(1000)).maximum
    return Console(width=max(console.width, natural))


def fail(message: str, code: int = 1) -> typer.Exit:
    err_console.print(f"[red]error:[/red] {message}")
    return typer.Exit(code)
