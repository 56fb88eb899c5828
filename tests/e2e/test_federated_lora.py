"""Federated LoRA: a real server, three `bastion fl client` site processes on their own notes."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from bastion.cli.main import app
from tests.conftest import ServerProcess
from tests.e2e.support import Sites, cli, status, wait_for
from tests.llm.support import build_model, chat_records, jsonl

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


class NoteSites(Sites):
    """Sites whose data is a JSONL file of chat notes (part i of n of one synthetic corpus)."""

    def data(self, part: str) -> Path:
        i, n = (int(x) for x in part.split("/"))
        path = self.tmp / f"notes-{i}-of-{n}.jsonl"
        path.write_bytes(jsonl(chat_records(36)[i - 1 :: n]))
        return path


@pytest.fixture
def sites(tmp_path: Path) -> Iterator[NoteSites]:
    s = NoteSites(tmp_path)
    yield s
    s.kill_all()


def serve_tiny(server_factory: Callable[..., ServerProcess], tmp_path: Path) -> tuple[ServerProcess, Path]:
    """A real server with the tiny base model registered as ``tiny`` (the sites get the same directory)."""
    server = server_factory().start()
    model_dir = build_model(tmp_path / "base")
    admin = {"BASTION_URL": server.url, "BASTION_API_KEY": server.keys["admin"]}
    assert (
        CliRunner().invoke(app, ["llm", "register", str(model_dir), "--name", "tiny"], env=admin).exit_code
        == 0
    )
    return server, model_dir


def test_three_sites_train_one_adapter(
    server_factory: Callable[..., ServerProcess], sites: NoteSites, tmp_path: Path
) -> None:
    server, model_dir = serve_tiny(server_factory, tmp_path)
    spec = {"type": "lora_adapter", "base_model": "tiny", "lora": {"r": 4, "alpha": 8}}
    fed = cli(
        server, "create", "notes", "--model", json.dumps(spec), "--rounds", "2", "--min-clients", "3",
        "--lr", "0.01", "--batch-size", "4", "--round-timeout", "300",
    )  # fmt: skip
    fid = fed["id"]
    tokens = {n: cli(server, "enroll", fid, "--name", n)["token"] for n in ("a", "b", "c", "d")}
    for i, name in enumerate(("a", "b", "c"), start=1):
        sites.start(server, fid, name, tokens[name], f"{i}/3", "--base-model", str(model_dir))
    # A site holding a different base model (same shapes, other weights) is refused before it trains.
    other = build_model(tmp_path / "other-seed")
    (other / "model.safetensors").write_bytes((other / "model.safetensors").read_bytes()[:-4] + b"\0\0\0\1")
    sites.start(server, fid, "d", tokens["d"], "1/3", "--base-model", str(other))
    assert sites.wait("d", 120) != 0 and "base_model_mismatch" in sites.log("d")
    for name in ("a", "b", "c"):
        assert sites.wait(name, 600) == 0, sites.log(name)
    final = wait_for(
        "the federation to complete", lambda: (s := status(server, fid))["state"] == "completed" and s
    )
    assert final["completed_rounds"] == 2
    headers = {"X-API-Key": server.keys["user"]}
    model = httpx.get(f"{server.url}/api/v1/models/fl-notes", headers=headers).json()
    rounds = [v["lineage"].get("round") for v in model["history"]]
    assert rounds == [0, 1, 2], "the initial adapter and every round's adapter are in the registry"
    out = httpx.post(
        f"{server.url}/api/v1/models/{model['id']}/generate",
        json={
            "messages": [{"role": "user", "content": "Patient has cough. Treatment?"}],
            "max_new_tokens": 4,
            "compare": True,
        },
        headers=headers,
        timeout=120,
    )
    assert out.status_code == 200, out.text
    assert out.json()["base_model"] == "tiny"


def test_three_sites_train_an_adapter_through_secure_aggregation_with_distributed_dp(
    server_factory: Callable[..., ServerProcess], sites: NoteSites, tmp_path: Path
) -> None:
    from bastion.privacy import RdpAccountant
    from bastion.vault.store import VaultStore
    from tests.conftest import MASTER

    noise, clip, delta = 0.8, 1.0, 1e-5
    server, model_dir = serve_tiny(server_factory, tmp_path)
    spec = {"type": "lora_adapter", "base_model": "tiny", "lora": {"r": 2, "alpha": 4}}
    fid = cli(
        server, "create", "secure-notes", "--model", json.dumps(spec), "--rounds", "1", "--min-clients", "3",
        "--lr", "0.01", "--batch-size", "4", "--round-timeout", "300",
        "--secure-aggregation", "--dp-noise", str(noise), "--dp-clip", str(clip),
    )["id"]  # fmt: skip
    tokens = {n: cli(server, "enroll", fid, "--name", n)["token"] for n in ("a", "b", "c")}
    for name, token in tokens.items():
        sites.register(server, fid, token, name)
    peers = tmp_path / "peers.json"
    peers.write_text(json.dumps(cli(server, "peers", fid)))
    for i, (name, token) in enumerate(tokens.items(), start=1):
        sites.start(
            server, fid, name, token, f"{i}/3", "--base-model", str(model_dir), "--peer-keys", str(peers)
        )
    for name in tokens:
        assert sites.wait(name, 600) == 0, sites.log(name)
    final = wait_for(
        "the federation to complete", lambda: (s := status(server, fid))["state"] == "completed" and s
    )
    assert final["completed_rounds"] == 1
    (r,) = cli(server, "rounds", fid)
    assert (r["state"], r["close_reason"], r["updates"]) == ("closed", "secure_aggregation", 3), r
    accountant = RdpAccountant(noise, sampling_rate=1.0)
    accountant.step(1)
    assert r["metrics"]["dp_delta"] == delta
    assert r["metrics"]["dp_epsilon"] == pytest.approx(accountant.epsilon(delta), rel=1e-6)
    # Only the masked sum was ever unmasked: no single site's adapter is stored anywhere.
    vault = VaultStore.open(server.data_dir / ".bastion" / "vault", MASTER.encode())
    assert not [i for i in vault.list() if i.startswith("flu-")]
    headers = {"X-API-Key": server.keys["user"]}
    model = httpx.get(f"{server.url}/api/v1/models/fl-secure-notes", headers=headers).json()
    assert [v["lineage"].get("round") for v in model["history"]] == [0, 1]
    out = httpx.post(
        f"{server.url}/api/v1/models/{model['id']}/generate",
        json={"prompt": "Patient has cough.", "max_new_tokens": 2},
        headers=headers,
        timeout=120,
    )
    assert out.status_code == 200, out.text
