"""Dataset resolution at submit time: choices, ownership of uploads, and the built-in shapes."""

from __future__ import annotations

import pytest

from bastion.context import Context
from bastion.data.builtin import BUILTINS, load_dataset
from bastion.errors import Invalid, NotFound
from bastion.federation.sitedata import load_site_data
from bastion.jobs.datasets import load_for_job, resolve_dataset, source_names
from tests.conftest import Caller
from tests.jobs.support import principal

CSV = b"age,score,label\n" + b"".join(
    f"{20 + i % 50},{i % 7}.5,{'yes' if i % 3 else 'no'}\n".encode() for i in range(60)
)


def test_builtin_figures_match_the_real_data() -> None:
    for entry in BUILTINS.values():
        if not entry.jobs:
            continue
        data = load_dataset(entry.name)
        classes = len(data.target_names) if data.target_names is not None else None
        assert (data.n_samples, data.n_features, data.task, classes) == (
            entry.n_samples,
            entry.n_features,
            entry.task,
            entry.n_classes,
        ), entry.name
    assert {b.name for b in BUILTINS.values() if b.jobs} | {"user_provided"} == set(source_names())


def test_federated_builtin_figures_match_what_sites_load() -> None:
    evaluation = {"holdout_fraction": 0.2, "local_validation_fraction": 0.0}
    for entry in BUILTINS.values():
        if not entry.federated:
            continue
        kind = "tabular_mlp" if entry.tabular else "brain_tumour_cnn"
        model = {
            "type": kind,
            "in_features": entry.n_features,
            "num_classes": entry.n_classes,
            "image_size": 16,
        }
        data = load_site_data(f"builtin:{entry.name}", model, evaluation)
        assert data.num_train == entry.n_samples - round(entry.n_samples * 0.2), entry.name
        assert int(data.y_train.max()) + 1 == entry.n_classes, entry.name
        if entry.tabular:
            assert data.X_train.shape[1] == entry.n_features, entry.name


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_unknown_source_lists_choices(ctx: Context, alice: Caller) -> None:
    with pytest.raises(Invalid) as err:
        resolve_dataset(ctx, principal(alice), "mnist", None, None)
    assert err.value.code == "unknown_dataset" and "synthetic_test_data" in err.value.message
    assert "wine" in err.value.details["choices"]
    with pytest.raises(Invalid, match="fixed target"):
        resolve_dataset(ctx, principal(alice), "wine", None, "colour")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_user_provided_needs_an_id(ctx: Context, alice: Caller) -> None:
    with pytest.raises(Invalid) as err:
        resolve_dataset(ctx, principal(alice), "user_provided", None, "label")
    assert err.value.code == "dataset_id_required" and "dataset_id required" in err.value.message


def test_uploaded_dataset_is_owner_only_and_loads_from_the_vault(
    ctx: Context, alice: Caller, bob: Caller
) -> None:
    view = ctx.services.datasets.upload(principal(alice), CSV, name="tiny", policy=None)
    ref = resolve_dataset(ctx, principal(alice), "user_provided", view["id"], "label")
    assert ref.n_samples == 60 and ref.n_features == 2 and ref.task == "classification"
    with pytest.raises(NotFound):
        resolve_dataset(ctx, principal(bob), "user_provided", view["id"], "label")
    with pytest.raises(NotFound):
        resolve_dataset(
            ctx, principal(alice), "user_provided", "00000000-0000-0000-0000-000000000000", "label"
        )
    with pytest.raises(Invalid) as err:
        resolve_dataset(ctx, principal(alice), "user_provided", view["id"], "nope")
    assert "label" in err.value.details["valid_targets"]
    data = load_for_job(ref, seed=0, kaggle_path=None, vault=ctx.vault)
    assert data.n_samples == 60 and data.target_names == ["no", "yes"]
