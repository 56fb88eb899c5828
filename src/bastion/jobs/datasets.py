"""What a job trains on: resolved and checked at submit time, loaded only in the job's process.

``resolve_dataset`` answers three questions without loading any data: does the source exist (422
listing the choices), may this caller use it (404 for somebody else's upload), and how big is it
and which task does it pose (for the task check and the cost estimate). The job stores the
resulting :class:`DatasetRef`; the job process turns it into a Dataset with :func:`load_for_job`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from bastion.errors import Conflict, Invalid, NotFound
from bastion.projects.policy import Action, authorize

if TYPE_CHECKING:
    from bastion.auth.principal import Principal
    from bastion.context import Context
    from bastion.data.dataset import Dataset

USER_PROVIDED = "user_provided"
_CATEGORICAL_DTYPES = ("object", "string", "str", "category", "bool", "boolean")


@dataclass(frozen=True)
class DatasetRef:
    source: str
    dataset_id: str | None = None
    target: str | None = None
    n_samples: int = 0
    n_features: int = 0
    task: str | None = None
    artifact_id: str | None = None
    # Stored columns never used as features (identifiers, free text), with the reason for the results.
    exclude: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> DatasetRef:
        fields: dict[str, Any] = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**fields)


def source_names() -> list[str]:
    from bastion.data.builtin import DATASET_SOURCES

    return list(DATASET_SOURCES)


def _builtin(source: str, target: str | None) -> DatasetRef:
    """From the built-ins' table (shape and task), so that submit and cost estimates load nothing."""
    from bastion.data.builtin import BUILTINS

    entry = BUILTINS[source]
    if target is not None and target != entry.target:
        raise Invalid(
            f"dataset {source!r} has the fixed target {entry.target!r}; leave 'target' out",
            code="invalid_target",
        )
    return DatasetRef(source, None, entry.target, entry.n_samples, entry.n_features or 0, entry.task)


def _uploaded(
    ctx: Context, principal: Principal, dataset_id: str | None, target: str | None, require_target: bool
) -> DatasetRef:
    if not dataset_id:
        raise Invalid(
            "dataset_id required: name the uploaded dataset to train on", code="dataset_id_required"
        )
    view: dict[str, Any] = ctx.services.datasets.get(
        principal, dataset_id
    )  # NotFound for unknown or foreign ids
    if view.get("format") == "jsonl":
        raise Invalid(
            "this dataset is a fine-tuning (JSONL) file: use it with /api/v1/fine_tuning/jobs",
            code="not_a_table",
        )
    columns = [str(c.get("name")) for c in view.get("schema", []) if isinstance(c, dict)]
    if not target and require_target:
        raise Invalid(
            "target required: name the column to predict",
            code="target_required",
            valid_targets=columns[:200],
        )
    if target and columns and target not in columns:
        raise Invalid(
            f"dataset has no column {target!r}; valid choices: {', '.join(columns[:50])}",
            code="invalid_target",
            valid_targets=columns[:200],
        )
    from bastion.data.deid import training_exclusions

    exclude = training_exclusions(view.get("deidentification", []))
    if target and target in exclude:
        raise Invalid(
            f"column {target!r} cannot be a target: {exclude[target]}",
            code="invalid_target",
            valid_targets=[c for c in columns if c not in exclude][:200],
        )
    dtype = next((str(c.get("dtype")) for c in view.get("schema", []) if c.get("name") == target), "")
    task = "classification" if dtype in _CATEGORICAL_DTYPES else None
    if view.get("access_protected"):
        raise Conflict(
            "this dataset is protected by an access code, which a queued job cannot hold: remove the "
            "code (DELETE /api/v1/datasets/{id}/access-code) to train on it",
            code="dataset_access_protected",
        )
    artifact_id = _artifact_of(ctx, principal, dataset_id)
    return DatasetRef(
        USER_PROVIDED,
        dataset_id,
        target,
        int(view.get("rows") or 0),
        max(0, int(view.get("columns") or 1) - 1 - len(exclude)),
        task,
        artifact_id,
        exclude,
    )


def _artifact_of(ctx: Context, principal: Principal, dataset_id: str) -> str:
    """The vault artifact that holds the upload, read from the catalog's own table.

    The project policy already granted the read (``service.get`` above), so any member of the
    dataset's project may train on it, not only its uploader; the job then holds the artifact, not
    a person's grant, so it still runs when the uploader or the submitter leaves the project.
    """
    from bastion.store.tables import DatasetRecord

    with ctx.db.session() as s:
        row = s.get(DatasetRecord, dataset_id)
        if row is None or row.deleted_at is not None:
            raise NotFound("dataset not found")
        authorize(
            s, principal, row.project_id, Action.READ, NotFound("dataset not found"), owner_id=row.owner_id
        )
    return str(row.artifact_id)


def resolve_dataset(
    ctx: Context,
    principal: Principal,
    dataset_source: str,
    dataset_id: str | None,
    target: str | None,
    *,
    require_target: bool = True,
) -> DatasetRef:
    """Check a job's data request; raises Invalid (422) listing valid choices, NotFound (404)."""
    choices = source_names()
    if dataset_source not in choices:
        raise Invalid(
            f"unknown dataset source {dataset_source!r}; valid choices: {', '.join(choices)}",
            code="unknown_dataset",
            choices=choices,
        )
    if dataset_source == USER_PROVIDED:
        return _uploaded(ctx, principal, dataset_id, target, require_target)
    if dataset_id:
        raise Invalid(f"dataset {dataset_source!r} is built in; dataset_id is only for user_provided")
    return _builtin(dataset_source, target)


def load_for_job(ref: DatasetRef, *, seed: int, kaggle_path: str | None, vault: Any = None) -> Dataset:
    """Load the data in the job's process: a built-in source, or an upload decrypted from the vault."""
    from bastion.data.builtin import load_dataset

    if ref.source != USER_PROVIDED:
        return load_dataset(ref.source, seed=seed, kaggle_path=kaggle_path)
    import io

    import pandas as pd

    if vault is None or not ref.artifact_id:
        raise Invalid("the uploaded dataset is not reachable from this worker")
    frame = pd.read_parquet(io.BytesIO(vault.get_bytes(ref.artifact_id)))
    return without_excluded(
        frame, ref.exclude, lambda f: load_dataset(USER_PROVIDED, frame=f, target=ref.target, seed=seed)
    )


def without_excluded(frame: Any, exclude: dict[str, str], build: Any) -> Dataset:
    """Build the dataset from ``frame`` minus the excluded columns, and say in its meta (hence in the
    job's results) which were dropped and why."""
    present = {c: r for c, r in exclude.items() if c in frame.columns}
    dataset: Dataset = build(frame.drop(columns=list(present)))
    if present:
        dropped = dict(dataset.meta.get("dropped_columns") or {})
        dropped.update(present)
        dataset.meta["dropped_columns"] = dropped
    return dataset
