"""The published contract is the API that answers: Schemathesis against a real `bastion serve`.

Every check is on (server errors, status codes, content types, response schemas and headers,
negative data, schema-valid data accepted, stateful links), with a fixed seed and a bounded number
of examples per operation, as a user and as an admin. Operations whose server-side validation goes
beyond JSON Schema are listed, with the reason, in schemathesis.toml next to this file.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ServerProcess

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = 20261203
MAX_EXAMPLES = 3


@pytest.fixture(scope="module")
def fuzzed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    server = _server(tmp_path_factory.mktemp("contract"))
    yield server
    server.stop()


def _server(tmp: Path) -> ServerProcess:
    import os

    from tests.conftest import JWT, MASTER

    env = {k: v for k, v in os.environ.items() if not k.startswith("BASTION_")}
    env.update(
        BASTION_DATA_DIR=str(tmp / ".bastion"),
        BASTION_MASTER_KEY=MASTER,
        BASTION_JWT_SECRET=JWT,
        PYTHONUNBUFFERED="1",
        # Negative-auth cases send wrong keys (or none) on purpose; without these the address would be
        # locked out (423) and rate-limited (429, per account and per anonymous address) for the rest
        # of the run, and nothing else would be tested.
        BASTION_MAX_FAILED_ATTEMPTS="1000000",
        BASTION_RATE_LIMIT="1000000/minute",
        BASTION_LOGIN_RATE_LIMIT="1000000/minute",
        BASTION_ANONYMOUS_RATE_LIMIT="1000000/minute",
    )
    # --no-worker: fuzzed submits stay queued instead of training hundreds of models on two cores.
    return ServerProcess(tmp, env, ["--no-worker"]).start()


def _run(server: ServerProcess, key: str) -> subprocess.CompletedProcess[str]:
    """Run from the server's temp dir: Schemathesis and Hypothesis keep their caches in the cwd."""
    cmd = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{server.url}/openapi.json",
        "--header",
        f"X-API-Key: {key}",
        "--checks",
        "all",
        "--max-examples",
        str(MAX_EXAMPLES),
        "--seed",
        str(SEED),
        "--workers",
        "1",
        "--no-color",
    ]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=900, check=False, cwd=server.data_dir)


@pytest.mark.parametrize("role", ["user", "admin"])
def test_schemathesis_finds_nothing(fuzzed_server: ServerProcess, role: str) -> None:
    result = _run(fuzzed_server, fuzzed_server.keys[role])
    report = result.stdout + result.stderr
    assert result.returncode == 0, report[-20000:] + _slow_and_warnings(fuzzed_server)
    selected = re.search(r"Selected: (\d+)/(\d+)", report)
    tested = re.search(r"Tested: (\d+)", report)
    assert selected and tested, report[-4000:]
    # Every operation in the document was exercised; none was left out.
    assert int(tested.group(1)) == int(selected.group(1)) == int(selected.group(2)), report[-4000:]


def _slow_and_warnings(server: ServerProcess, over_ms: float = 2000) -> str:
    """The server's access-log lines of requests slower than ``over_ms``, and its warnings and errors:
    what a response-time failure (ST112) needs to show who else was running at the time."""
    picked: list[str] = []
    for line in server.text().splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if not isinstance(entry, dict):
            continue
        if float(entry.get("duration_ms") or 0) >= over_ms or entry.get("level") in ("warning", "error"):
            picked.append(line[:2000])
    return "\n\nserver: slow requests, warnings and errors\n" + "\n".join(picked[-60:])
