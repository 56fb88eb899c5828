"""Run a whole federation in one process, through the real server and site code, for figures and tests.

Test support (used by tests/federation/server/test_quality.py and bench/fl_quality.py,
bench/fl_private_quality.py), kept out of the package: it builds the API app and FastAPI's TestClient.

:func:`simulate` starts a throw-away server context (SQLite and a vault in a temporary directory),
creates the federation, and drives one :class:`~bastion.client.site.SiteClient` per site over an
in-process HTTP transport, round by round: every update is sealed, signed, admitted, stored and folded
exactly as in production. :func:`centralized` trains the same model on the pooled training data with
the same settings, the baseline the federated accuracy is compared with.
"""

from __future__ import annotations

import secrets
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np


@dataclass(frozen=True)
class SimulationResult:
    federation_id: str
    rounds: list[dict[str, Any]]
    final_metrics: dict[str, float]
    test_accuracy: float


def _evaluate(
    model_cfg: dict[str, Any], params: dict[str, np.ndarray], source: str, evaluation: dict[str, Any]
) -> float:
    from bastion.federation.sitedata import holdout
    from bastion.ml import fl_models

    X, y = holdout(source, model_cfg, evaluation)
    model = fl_models.build_model(model_cfg)
    fl_models.set_parameters(model, params)
    return float(fl_models.evaluate(model, X, y)["accuracy"])


def simulate(
    spec: dict[str, Any], source: str, sites: int, *, alpha: float | None = None
) -> SimulationResult:
    """Federate ``source`` (a ``builtin:`` name) split across ``sites`` sites under ``spec``."""
    from fastapi.testclient import TestClient

    from bastion.api.app import create_app
    from bastion.client.site.runtime import SiteClient
    from bastion.client.site.trainer import TorchTrainer
    from bastion.config import Settings
    from bastion.context import build_context
    from bastion.federation.tensors import decode
    from bastion.wiring import install_services

    with tempfile.TemporaryDirectory(prefix="bastion-sim-") as tmp:
        root = Path(tmp)
        settings = Settings(
            data_dir=root / "data",
            master_key=secrets.token_urlsafe(48),
            jwt_secret=secrets.token_urlsafe(48),
            rate_limit="100000/minute",
        )
        ctx = build_context(settings)
        install_services(ctx)
        app = create_app(context=ctx)
        try:
            user = ctx.accounts.create_user("simulation", "user")
            headers = {"X-API-Key": ctx.accounts.create_key(user.id, "sim").plaintext}
            coordinator = TestClient(app)
            created = coordinator.post("/api/v1/federations", json=spec, headers=headers)
            created.raise_for_status()
            fid = created.json()["id"]
            clients = []
            for i in range(1, sites + 1):
                token = coordinator.post(
                    f"/api/v1/federations/{fid}/participants", json={"name": f"site-{i}"}, headers=headers
                ).json()["token"]
                trainer = TorchTrainer(source, partition=(i, sites), alpha=alpha)
                site = SiteClient(
                    "http://testserver",
                    fid,
                    token,
                    trainer,
                    state_dir=root / f"site-{i}",
                    http=cast(Any, TestClient(app)),  # starlette's TestClient is an httpx2.Client
                    poll_timeout=0.1,
                )
                site.join()
                clients.append(site)
            while (
                coordinator.get(f"/api/v1/federations/{fid}/status", headers=headers).json()["state"]
                != "completed"
            ):
                for site in clients:
                    info = site.info()
                    if info["state"] == "running":
                        site.step(info)
            rounds = coordinator.get(f"/api/v1/federations/{fid}/rounds", headers=headers).json()["data"]
            params = decode(coordinator.get(f"/api/v1/federations/{fid}/model", headers=headers).content)
            accuracy = _evaluate(spec["model"], dict(params), source, spec.get("evaluation", {}))
            return SimulationResult(fid, rounds, rounds[-1]["metrics"], accuracy)
        finally:
            ctx.close()


def centralized(spec: dict[str, Any], source: str, *, seed: int = 0) -> float:
    """Test accuracy of the same model trained on the pooled training data for rounds x epochs epochs."""
    from bastion.federation.sitedata import load_site_data
    from bastion.ml import fl_models

    evaluation = dict(spec.get("evaluation", {}))
    data = load_site_data(source, spec["model"], {**evaluation, "local_validation_fraction": 0.0})
    training = spec.get("training", {})
    model = fl_models.build_model(spec["model"], seed=spec.get("seed", 0))
    fl_models.fit(
        model,
        data.X_train,
        data.y_train,
        epochs=int(training.get("epochs", 1)) * int(spec.get("rounds", 10)),
        lr=float(training.get("lr", 0.05)),
        batch_size=int(training.get("batch_size", 32)),
        momentum=float(training.get("momentum", 0.0)),
        seed=seed,
    )
    return _evaluate(spec["model"], fl_models.get_parameters(model), source, evaluation)
