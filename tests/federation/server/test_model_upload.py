"""Fine-tune hand-off: a coordinator's uploaded model becomes the next global version, checked and audited."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
from sqlalchemy import select

from bastion.errors import BastionError, Conflict
from bastion.federation.tensors import encode
from bastion.store.tables import AuditEvent
from tests.federation.server.support import World


def test_upload_supersedes_the_open_round(world: World) -> None:
    fid = world.create(min_clients=2, rounds=2)["id"]
    a, b = world.enroll(fid, "a"), world.enroll(fid, "b")
    stale = world.seal(b, fid, 1)
    world.submit(a, world.seal(a, fid, 1))
    tuned = {k: np.full(v.shape, 0.25, np.float32) for k, v in world.global_params(fid).items()}

    out = world.svc.upload_model(world.owner, fid, encode(tuned), "10.0.0.1")
    assert out["superseded_round"] == 1 and out["discarded_updates"] == 1 and out["global_version"] == 2
    status = world.status(fid)
    assert (status["round"], status["pending_updates"], status["completed_rounds"]) == (2, 0, 0)
    assert world.rounds(fid)[0]["state"] == "superseded"
    for name, arr in world.global_params(fid).items():
        np.testing.assert_array_equal(arr, tuned[name])
    with pytest.raises(Conflict) as late:
        world.submit(b, stale)
    assert late.value.code == "round_closed", "updates trained from the replaced model are refused"

    # the next rounds start from the uploaded weights; the federation still runs its 2 rounds
    ua = {k: v + 1.0 for k, v in tuned.items()}
    world.submit(a, world.seal(a, fid, 2, ua))
    world.submit(b, world.seal(b, fid, 2, ua))
    assert world.status(fid)["completed_rounds"] == 1
    with world.ctx.db.session() as s:
        row = s.scalar(select(AuditEvent).where(AuditEvent.action == "fl.model.upload"))
        assert row is not None and row.actor == "coordinator" and row.source_ip == "10.0.0.1"
        assert json.loads(row.details)["discarded_updates"] == 1
    lineage = world.ctx.services.models.get(world.owner, "fl-fed")["history"][1]["lineage"]
    assert lineage["source"] == "upload" and lineage["uploaded_by"] == "coordinator"


def test_upload_accepts_a_torch_safetensors_state_dict(world: World) -> None:
    import torch
    from safetensors.torch import save

    from bastion.ml import fl_models

    fed = world.create(min_clients=1, rounds=1)
    module = fl_models.build_model(fed["config"]["model"], seed=42)
    blob = save({k: v.contiguous() for k, v in module.state_dict().items()})
    world.svc.upload_model(world.owner, fed["id"], blob, None)
    got = world.global_params(fed["id"])
    for name, tensor in module.state_dict().items():
        np.testing.assert_array_equal(got[name], tensor.numpy())
    assert torch.is_tensor(tensor)


@pytest.mark.parametrize(
    ("label", "code"),
    [
        ("shape", "tensor_shape"),
        ("nan", "non_finite"),
        ("missing", "tensor_missing"),
        ("pickle", "invalid"),
        ("float16", "invalid"),
    ],
)
def test_upload_refuses_unsafe_or_mismatched_models(world: World, label: str, code: str) -> None:
    fid = world.create(min_clients=1)["id"]
    params = world.global_params(fid)
    first = next(iter(params))
    if label == "shape":
        params[first] = np.zeros((7, 7), np.float32)
        data = encode(params)
    elif label == "nan":
        params[first].flat[0] = np.nan
        data = encode(params)
    elif label == "missing":
        data = encode(dict(list(params.items())[1:]))
    elif label == "pickle":
        data = pickle.dumps(params)
    else:
        from safetensors.numpy import save

        data = save({k: v.astype(np.float16) for k, v in params.items()})
    with pytest.raises(BastionError) as info:
        world.svc.upload_model(world.owner, fid, data, None)
    assert (info.value.status_code, info.value.code) == (422, code)
    assert world.status(fid)["round"] == 1 and world.svc.get(world.owner, fid)["global_version"] == 1
    with world.ctx.db.session() as s:
        assert (
            s.scalar(
                select(AuditEvent.seq).where(
                    AuditEvent.action == "fl.model.upload", AuditEvent.outcome == "denied"
                )
            )
            is not None
        )
