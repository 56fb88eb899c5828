"""``bastion.cli.exiting``: a finished command can end the process without interpreter teardown,
with its output flushed and its exit code kept; commands that do not ask are untouched."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import atexit, sys
    import typer
    from bastion.cli import exiting

    app = typer.Typer()
    atexit.register(lambda: print("teardown ran", flush=True))

    @app.command()
    def go(skip: bool = False, code: int = 0) -> None:
        sys.stdout.write("result line, unflushed")
        if skip:
            exiting.skip_teardown()
        if code:
            raise typer.Exit(code)

    exiting.run(app)
    """
)


@pytest.mark.parametrize("code", [0, 3])
def test_skip_teardown_keeps_output_and_exit_code(code: int) -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT, "--skip", "--code", str(code)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == code
    assert out.stdout == "result line, unflushed"  # flushed before leaving; atexit never ran


def test_without_asking_the_process_tears_down_as_usual() -> None:
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0
    assert out.stdout == "result line, unflushedteardown ran\n"
