"""Model versions: named models, their trained versions in the vault, metrics, lineage and the best one."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar, cast

from sqlalchemy import Row, Table, bindparam, func, insert, select
from sqlalchemy.exc import IntegrityError as DBIntegrityError
from sqlalchemy.orm import Session

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.principal import Principal
from bastion.catalog.access import AccessCodeGuard
from bastion.catalog.stored import RAW, StoredRef, own_artifact, own_copy, read_model, release
from bastion.errors import Conflict, Invalid, NotFound
from bastion.projects.personal import personal_project_id
from bastion.projects.policy import Action, ScopedList, authorize
from bastion.store import Database
from bastion.store.base import new_id, utcnow
from bastion.store.paging import Keyset
from bastion.store.tables import ModelRecord, ModelVersionRecord
from bastion.vault.store import VaultStore

# Metrics where smaller is better; every other metric is maximised.
LOWER_IS_BETTER = frozenset({"mae", "rmse", "mse", "loss", "val_loss", "log_loss", "epsilon"})


@dataclass(frozen=True)
class VersionView:
    id: str
    model_id: str
    version: int
    model_format: str
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    input_schema: dict[str, Any]
    config: dict[str, Any]
    size_bytes: int
    access_protected: bool
    created_at: str

    @classmethod
    def of(cls, row: ModelVersionRecord) -> VersionView:
        return cls(
            id=row.id,
            model_id=row.model_id,
            version=row.version,
            model_format=row.model_format,
            metrics=row.metrics_json,
            lineage=row.lineage_json,
            input_schema=row.input_schema_json,
            config=row.config_json,
            size_bytes=row.size_bytes,
            access_protected=row.access_protected,
            created_at=row.created_at.isoformat(),
        )

    def public(self) -> dict[str, Any]:
        """Everything but the internal config (architecture, scaler statistics)."""
        out = self.__dict__.copy()
        out.pop("config")
        return out


MODELS = Keyset(ModelRecord.created_at, ModelRecord.id, descending=False)
_LIST = ScopedList(select(ModelRecord.__table__), ModelRecord.project_id, MODELS)
# Every version of a page's models, in one query (prepared: the ids are one expanding parameter).
_PAGE_VERSIONS = (
    select(ModelVersionRecord.model_id, ModelVersionRecord.version, ModelVersionRecord.metrics_json)
    .where(ModelVersionRecord.model_id.in_(bindparam("model_ids", expanding=True)))
    .order_by(ModelVersionRecord.model_id, ModelVersionRecord.version)
)


# Registration's statements, built once (a federation registers a version every round): the ORM's
# entity load and unit of work cost more than the statements themselves.
_MODELS, _VERSIONS = cast(Table, ModelRecord.__table__), cast(Table, ModelVersionRecord.__table__)
_FIND_MODEL = select(_MODELS.c.id).where(
    _MODELS.c.project_id == bindparam("project_id"), _MODELS.c.name == bindparam("name")
)
_LAST_VERSION = select(func.max(_VERSIONS.c.version)).where(_VERSIONS.c.model_id == bindparam("model_id"))
_INSERT_VERSION = insert(_VERSIONS)
_VERSION_COLUMNS = tuple(c.key for c in _VERSIONS.columns)


class _Scored(Protocol):
    """What choosing the best version reads of one."""

    @property
    def version(self) -> int: ...
    @property
    def metrics(self) -> dict[str, Any]: ...


S = TypeVar("S", bound=_Scored)


class _Scores(NamedTuple):
    """A version as the models list needs it: its number and metrics, not its config or lineage."""

    version: int
    metrics: dict[str, Any]


def better(metric: str, a: float, b: float) -> bool:
    return a < b if metric in LOWER_IS_BETTER else a > b


class ModelVersions:
    def __init__(self, db: Database, vault: VaultStore, audit: AuditLog, guard: AccessCodeGuard) -> None:
        self.db = db
        self.vault = vault
        self.audit = audit
        self.guard = guard

    def register(
        self,
        owner: Principal | str,
        name: str,
        model_bytes: bytes,
        model_format: str,
        *,
        config: dict[str, Any],
        metrics: dict[str, Any],
        lineage: dict[str, Any] | None = None,
        input_schema: dict[str, Any] | None = None,
        access_code: str | None = None,
        primary_metric: str | None = None,
        project_id: str | None = None,
        stored: StoredRef | None = None,
        session: Session | None = None,
    ) -> VersionView:
        """Store a new version of ``name`` in a project (creating the model on first use).

        The project is the one given, else that of the job or federation named in ``lineage`` (a
        model joins the project of what produced it), else the owner's personal project. ``stored``
        names the vault version that already holds ``model_bytes`` (a job's package, a federation's
        global model): the version then refers to it instead of storing a copy (bastion.catalog.stored).
        With ``session`` the version is written in the caller's transaction (a job's completion:
        the version and the ``completed`` state commit together, or neither does); a vault copy,
        made only without ``stored``, is written at once either way.
        """
        from bastion.ml.serialize import sniff_format

        owner_id = owner if isinstance(owner, str) else owner.user_id
        if not name or len(name) > 200:
            raise Invalid("model name must be 1-200 characters")
        if sniff_format(model_bytes) != model_format:  # refuses pickles and anything unrecognised
            raise Invalid(f"the bytes are not a {model_format} model", code="unsafe_model_format")
        if stored is not None and access_code is not None:
            stored = None  # a code is per key slot: a protected version gets its own copy
        if stored is not None:
            stored.check(self.vault, model_bytes)
        for attempt in range(3):
            try:
                with self._unit(session) as s:
                    pid = project_id or _producer_project(s, lineage or {})
                    pid = pid or personal_project_id(s.connection(), owner_id)
                    conn = s.connection()
                    model_id = conn.execute(_FIND_MODEL, {"project_id": pid, "name": name}).scalar()
                    if model_id is None:
                        model = ModelRecord(
                            owner_id=owner_id, project_id=pid, name=name, primary_metric=primary_metric
                        )
                        s.add(model)
                        s.flush()
                        model_id = model.id
                    version = 1 + int(conn.execute(_LAST_VERSION, {"model_id": model_id}).scalar() or 0)
                    if stored is None:
                        where: tuple[str, int | None, str] = (own_artifact(model_id, version), None, RAW)
                        self.vault.put_bytes(
                            where[0],
                            model_bytes,
                            access_code=access_code,
                            meta={"kind": "model", "format": model_format},
                        )
                    else:
                        where = (stored.artifact_id, stored.version, stored.layout)
                    row = ModelVersionRecord(
                        id=new_id(),
                        model_id=model_id,
                        version=version,
                        artifact_id=where[0],
                        artifact_version=where[1],
                        artifact_layout=where[2],
                        model_format=model_format,
                        config_json=config,
                        metrics_json=metrics,
                        lineage_json=lineage or {},
                        input_schema_json=input_schema or {},
                        size_bytes=len(model_bytes),
                        access_protected=access_code is not None,
                        created_at=utcnow(),
                    )
                    conn.execute(_INSERT_VERSION, {c: getattr(row, c) for c in _VERSION_COLUMNS})
                    self.audit.append(
                        AuditRecord(
                            "model.register",
                            actor_id=owner_id,
                            target_type="model",
                            target_id=model_id,
                            details={"version": version, "lineage": lineage or {}},
                        ),
                        s,
                    )
                    return VersionView.of(row)
            except DBIntegrityError:
                if attempt == 2:
                    raise Conflict("model version was registered concurrently; retry") from None
        raise AssertionError("unreachable")

    @contextmanager
    def _unit(self, session: Session | None) -> Iterator[Session]:
        """One try at a registration: a transaction of its own, or a savepoint in the caller's (so a
        lost race for the version number rolls back only the try, never the caller's work)."""
        if session is None:
            with self.db.session() as s:
                yield s
        else:
            with session.begin_nested():
                yield session

    # -- reading ---------------------------------------------------------------------------------
    def _model(
        self, s: Session, principal: Principal, model_ref: str, action: Action = Action.READ
    ) -> ModelRecord:
        """A model by id (or by a name of the caller's own) that the project policy lets them ``action``."""
        model = s.get(ModelRecord, model_ref) if len(model_ref) <= 36 else None
        if model is None:  # names are unique per project: the caller's own may repeat across projects
            named = s.scalars(
                select(ModelRecord)
                .where(ModelRecord.owner_id == principal.user_id, ModelRecord.name == model_ref)
                .limit(2)
            ).all()
            if len(named) > 1:
                # 404 (declared on every model route), with a code that says why: no one model is meant.
                raise NotFound(
                    "you have models of this name in several projects; name it by its id",
                    code="ambiguous_model_name",
                )
            model = named[0] if named else None
        if model is None:
            raise NotFound("model not found")
        authorize(
            s, principal, model.project_id, action, NotFound("model not found"), owner_id=model.owner_id
        )
        return model

    def check(self, principal: Principal, model_ref: str, action: Action) -> str | None:
        """Raise unless the caller may ``action`` the model; its project id."""
        with self.db.session() as s:
            return self._model(s, principal, model_ref, action).project_id

    def _versions(self, s: Session, model_id: str) -> list[ModelVersionRecord]:
        return list(
            s.scalars(
                select(ModelVersionRecord)
                .where(ModelVersionRecord.model_id == model_id)
                .order_by(ModelVersionRecord.version)
            )
        )

    def list_for(
        self, principal: Principal, limit: int = 100, cursor: str | None = None, project: str | None = None
    ) -> tuple[list[dict[str, Any]], str | None]:
        """The models of the caller's projects (or of one), oldest first, and the next page's cursor:
        two queries whatever the page size (the page, then every version of its models at once)."""
        with self.db.reader() as conn:
            models = _LIST.rows(conn, principal, project, cursor, limit)
            page = models[:limit]
            scores: dict[str, list[_Scores]] = {m.id: [] for m in page}
            if page:
                for row in conn.execute(_PAGE_VERSIONS, {"model_ids": list(scores)}):
                    scores[row.model_id].append(_Scores(row.version, row.metrics_json))
        return [self._summary(m, scores[m.id]) for m in page], MODELS.next_cursor(models, limit)

    def _summary(self, model: ModelRecord | Row[Any], versions: Sequence[_Scored]) -> dict[str, Any]:
        """``versions`` in version order."""
        best = self._best(versions, model.primary_metric)
        return {
            "id": model.id,
            "project_id": model.project_id,
            "name": model.name,
            "created_at": model.created_at.isoformat(),
            "primary_metric": model.primary_metric,
            "versions": len(versions),
            "latest_version": versions[-1].version if versions else None,
            "best_version": best.version if best else None,
        }

    def get(self, principal: Principal, model_ref: str) -> dict[str, Any]:
        with self.db.session() as s:
            model = self._model(s, principal, model_ref)
            versions = [VersionView.of(v) for v in self._versions(s, model.id)]
            out = self._summary(model, versions)
            out["history"] = [v.public() for v in versions]
            return out

    @staticmethod
    def _best(versions: Sequence[S], metric: str | None) -> S | None:
        best: S | None = None
        for v in versions:
            name = metric or _default_metric(v.metrics)
            value = v.metrics.get(name) if name else None
            if not isinstance(value, int | float):
                continue
            if best is None:
                best = v
                continue
            current = best.metrics.get(name) if name else None
            if not isinstance(current, int | float) or better(str(name), float(value), float(current)):
                best = v
        return best

    def best(self, principal: Principal, model_ref: str, metric: str | None = None) -> dict[str, Any]:
        with self.db.session() as s:
            model = self._model(s, principal, model_ref)
            versions = [VersionView.of(v) for v in self._versions(s, model.id)]
        chosen = self._best(versions, metric or model.primary_metric)
        if chosen is None:
            raise NotFound(f"no version of {model.name!r} reports the metric {metric or 'accuracy/r2'}")
        return {
            "model_id": model.id,
            "name": model.name,
            "metric": metric or model.primary_metric or _default_metric(chosen.metrics),
            **chosen.public(),
        }

    def version(self, principal: Principal, model_ref: str, version: int | None = None) -> VersionView:
        with self.db.session() as s:
            model = self._model(s, principal, model_ref)
            versions = self._versions(s, model.id)
            if not versions:
                raise NotFound("model has no versions")
            if version is None:
                return VersionView.of(versions[-1])
            for v in versions:
                if v.version == version:
                    return VersionView.of(v)
        raise NotFound(f"model version {version} not found")

    def read_bytes(self, principal: Principal, view: VersionView, access_code: str | None) -> bytes:
        with self.db.session() as s:
            row = s.get(ModelVersionRecord, view.id)
            assert row is not None
            artifact, at, layout = row.artifact_id, row.artifact_version, row.artifact_layout
        return self.guard.run(
            principal,
            artifact,
            lambda: read_model(
                self.vault, artifact, at, layout, access_code=access_code if view.access_protected else None
            ),
            has_code=access_code is not None,
        )

    def set_access_code(
        self,
        principal: Principal,
        model_ref: str,
        version: int | None,
        *,
        current: str | None,
        new: str | None,
    ) -> dict[str, Any]:
        """Set, change or remove the access code of one version, or of every version (``None``).

        Owner only (another user's model is NotFound); a wrong ``current`` is a 403 that counts
        towards the lockout. Versions registered later (a new job, a quantization) carry their own.
        Setting a code on a version that shares its job's or federation's bytes first gives it its
        own copy (``stored.own_copy``): the producer's routes read without a code.
        """
        with self.db.session() as s:
            model = self._model(s, principal, model_ref, Action.WRITE)
            rows = [r for r in self._versions(s, model.id) if version is None or r.version == version]
            if not rows:
                raise NotFound(f"model version {version} not found" if version else "model has no versions")
            released = [old for r in rows if new is not None and (old := own_copy(s, self.vault, r))]
            targets = [(r.id, r.artifact_id, r.version) for r in rows]
            # a shared version (never behind a code) is not its producer's to recode
            owned = [r.artifact_id for r in rows if r.artifact_version is None]
            model_id = model.id
        with self.db.session() as s:
            for ref in released:  # the job or federation may still hold it; else it goes now
                release(s, self.vault, ref.artifact_id, [ref.version])
        self.guard.change(
            principal,
            self.vault,
            "model",
            model_id,
            owned,
            current=current,
            new=new,
        )
        with self.db.session() as s:
            for row_id, _, _ in targets:
                row = s.get(ModelVersionRecord, row_id)
                if row is not None:
                    row.access_protected = new is not None
        return {
            "model_id": model_id,
            "versions": [v for _, _, v in targets],
            "access_protected": new is not None,
        }

    def download(
        self,
        principal: Principal,
        model_ref: str,
        version: int | None,
        *,
        access_code: str | None,
        api_key: str | None,
        scheme: Any = None,
    ) -> dict[str, Any]:
        """One version as a model package encrypted for the caller alone (as a job's download is),
        bound to the version's id; any version, quantized ones included."""
        from bastion.jobs.download import seal_for_caller
        from bastion.jobs.package import ModelPackage, pack

        view = self.version(principal, model_ref, version)
        model_bytes = self.read_bytes(principal, view, access_code)
        model_type = str(view.lineage.get("model_type") or view.config.get("model_type") or "model")
        package = pack(ModelPackage(view.id, model_type, view.model_format, view.config, model_bytes))
        sealed_part = seal_for_caller(self, principal, view.id, package, api_key=api_key, scheme=scheme)
        self.audit.append(
            AuditRecord(
                "model.download",
                actor_id=principal.user_id,
                actor=principal.username,
                target_type="model",
                target_id=view.model_id,
                details={"version": view.version, "scheme": sealed_part["scheme"]},
            )
        )
        return {
            "success": True,
            "encrypted_model": sealed_part.pop("encrypted_model"),
            "job_id": view.id,
            **sealed_part,
            "model_id": view.model_id,
            "version": view.version,
            "model_type": model_type,
            "model_format": view.model_format,
            "package_bytes": len(package),
        }

    def predictor(
        self, principal: Principal, model_ref: str, version: int | None, access_code: str | None
    ) -> Any:
        from bastion.ml.serialize import load_model

        view = self.version(principal, model_ref, version)
        data = self.read_bytes(principal, view, access_code)
        if view.config.get("model_type") == "dqn":  # a policy: actions and Q-values, not classes
            from bastion.ml.rl.policy import load

            return view, load(data, view.config)
        return view, load_model(data, view.model_format, view.config)


def quantize_version(
    registry: ModelVersions,
    principal: Principal,
    model_ref: str,
    version: int | None,
    dataset: Any,
    *,
    seed: int = 0,
    access_code: str | None = None,
) -> dict[str, Any]:
    """int8 weight-only quantization of a torch version into a new version, with the size and
    accuracy change measured on the held-out rows of ``dataset`` (the split training used)."""
    from bastion.ml.quantize import quantize_for_dataset, quantize_model

    project_id = registry.check(principal, model_ref, Action.WRITE)  # a new version is a change
    view = registry.version(principal, model_ref, version)
    if view.model_format != "safetensors":
        raise Invalid(
            f"this version is a {view.model_format} (scikit-learn) model: int8 quantization applies to "
            "PyTorch weight matrices; tree ensembles and linear pipelines have no dense weights to "
            "shrink (their size is dominated by split thresholds and preprocessing), so none is made",
            code="not_quantizable",
        )
    if view.config.get("quantization"):
        raise Conflict("this version is already quantized", code="already_quantized")
    model_bytes = registry.read_bytes(principal, view, access_code)
    if dataset is None:
        result = quantize_model(model_bytes, view.config, None, None)
    else:
        result = quantize_for_dataset(model_bytes, view.config, dataset, seed=seed)
    name = registry.get(principal, model_ref)["name"]
    new = registry.register(
        principal,
        name,
        result.model_bytes,
        "safetensors",
        config=result.model_config,
        metrics={**view.metrics, "quantization": result.report},
        lineage={**view.lineage, "quantized_from": view.version},
        input_schema=view.input_schema,
        access_code=access_code if view.access_protected else None,
        project_id=project_id,
    )
    return {"version": new.public(), "report": result.report}


def _default_metric(metrics: dict[str, Any]) -> str | None:
    for name in ("accuracy", "f1", "roc_auc", "r2", "rmse", "mae"):
        if isinstance(metrics.get(name), int | float):
            return name
    return None


def _producer_project(s: Session, lineage: dict[str, Any]) -> str | None:
    """The project of the job or federation a new version came from (named in its lineage)."""
    from bastion.store.tables import Federation, TrainingJob

    if isinstance(job_id := lineage.get("job_id"), str):
        return s.scalar(select(TrainingJob.project_id).where(TrainingJob.id == job_id))
    if isinstance(fed_id := lineage.get("federation_id"), str):
        return s.scalar(select(Federation.project_id).where(Federation.id == fed_id))
    return None
