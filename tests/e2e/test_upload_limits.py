"""Uploads that expand: the API process stays small and other users stay served while they are refused.

Reproduces the penetration test's item 1 against a real ``bastion serve``: for each malicious upload
the server's peak RSS (``VmHWM``) may grow by less than 256 MiB, and another user's ``/auth/me``
answers, while the upload is being handled, within twice its idle median (measured in the same test).
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import ServerProcess
from tests.data.bombs import comma_bomb, parquet_bomb, xlsx_bomb

pytestmark = pytest.mark.e2e
MIB = 2**20


def _peak_rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def _latencies(client: httpx.Client, key: str, until: Callable[[], bool], at_least: int) -> list[float]:
    out: list[float] = []
    while not until() or len(out) < at_least:
        start = time.perf_counter()
        assert client.get("/api/v1/auth/me", headers={"X-API-Key": key}).status_code == 200
        out.append(time.perf_counter() - start)
    return out


def _upload_while_polling(
    url: str, key: str, data: bytes, client: httpx.Client, other: str
) -> tuple[httpx.Response, list[float]]:
    """Send ``data`` as an upload from a thread; poll ``/auth/me`` as ``other`` until it is answered."""
    result: dict[str, httpx.Response] = {}

    def send() -> None:
        with httpx.Client(base_url=url, timeout=120) as own:
            result["r"] = own.post(
                "/api/v1/datasets",
                content=data,
                headers={"X-API-Key": key, "content-type": "application/octet-stream"},
            )

    sender = threading.Thread(target=send)
    sender.start()
    busy = _latencies(client, other, lambda: not sender.is_alive(), 20)
    sender.join()
    return result["r"], busy


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    return {"parquet": parquet_bomb(), "csv": comma_bomb(), "xlsx": xlsx_bomb(1_000_000)}


def test_expanding_uploads_stay_out_of_the_api_process(
    server_factory: Callable[..., ServerProcess], bombs: dict[str, bytes]
) -> None:
    server = server_factory(
        BASTION_PARSE_CPU_SECONDS="5", BASTION_PARSE_TIMEOUT_SECONDS="30", BASTION_RATE_LIMIT="100000/minute"
    ).start()
    assert server.proc is not None
    user, admin = server.keys["user"], server.keys["admin"]
    with httpx.Client(base_url=server.url, timeout=60) as client:
        ok = client.post(
            "/api/v1/datasets?name=warm",
            content=b"age,score\n30,1\n40,2\n",
            headers={"X-API-Key": user, "content-type": "text/csv"},
        )
        assert ok.status_code == 201, ok.text
        idle = statistics.median(_latencies(client, admin, lambda: True, 40))
        for kind, data in bombs.items():
            before = _peak_rss(server.proc.pid)
            r, busy = _upload_while_polling(server.url, user, data, client, admin)
            assert r.status_code in (413, 422), (kind, r.status_code, r.text)
            growth = _peak_rss(server.proc.pid) - before
            assert growth < 256 * MIB, f"{kind}: the API process grew by {growth / MIB:.0f} MiB"
            during = statistics.median(busy)
            assert during <= 2 * idle, (
                f"{kind}: /auth/me median {during * 1e3:.1f} ms vs idle {idle * 1e3:.1f} ms"
            )
            print(
                f"{kind}: {r.status_code} {r.json()['error']['code']}, RSS +{growth / MIB:.1f} MiB, "
                f"/auth/me {during * 1e3:.1f} ms (idle {idle * 1e3:.1f} ms)"
            )
