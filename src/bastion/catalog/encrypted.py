"""Encrypted predictions on registered models: spec for the client, bounded evaluation, audit row.

The server sees only ciphertexts and public evaluation keys; it keeps neither (no table, vault
artifact or log line receives them) and records only sizes, counts and timings in the audit log.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from bastion.audit import AuditLog, AuditRecord
from bastion.auth.principal import Principal
from bastion.catalog.model_versions import ModelVersions, VersionView
from bastion.errors import BastionError, RateLimited

HE_ACTION = "model.predict_encrypted"


@dataclass(frozen=True)
class Prepared:
    view: VersionView
    circuit: Any
    params: Any


class EncryptedInference:
    def __init__(
        self, registry: ModelVersions, audit: AuditLog, limits: Any, max_concurrent: int = 2
    ) -> None:
        self.registry = registry
        self.audit = audit
        self.limits = limits
        self._slots = threading.BoundedSemaphore(max_concurrent)

    def prepare(
        self, principal: Principal, model_ref: str, version: int | None, access_code: str | None
    ) -> Prepared:
        """The model as a circuit with its CKKS parameters; Invalid (with the reason) if it has none."""
        from bastion.ml.he.circuit import compile_model
        from bastion.ml.he.params import params_for_depth

        view, predictor = self.registry.predictor(principal, model_ref, version, access_code)
        circuit = compile_model(predictor)
        return Prepared(view, circuit, params_for_depth(circuit.depth))

    def spec(
        self, principal: Principal, model_ref: str, version: int | None, access_code: str | None
    ) -> dict[str, Any]:
        p = self.prepare(principal, model_ref, version, access_code)
        c = p.circuit
        return {
            "model_id": p.view.model_id,
            "version": p.view.version,
            "scheme": "ckks",
            "kind": c.kind,
            "packing": "columns",
            "inputs": c.inputs,
            "n_outputs": c.n_outputs,
            "link": c.link,
            "classes": c.classes,
            "depth": c.depth,
            "parameters": p.params.to_json(),
            "needs_relin_keys": c.needs_relin_keys,
            "needs_galois_keys": False,
            "limits": {
                "max_context_bytes": self.limits.max_context_bytes,
                "max_ciphertext_bytes": self.limits.max_ciphertext_bytes,
                "max_total_bytes": self.limits.max_total_bytes,
                "max_rows": self.limits.max_rows,
                "time_budget_seconds": self.limits.time_budget_seconds,
            },
        }

    def predict(
        self,
        principal: Principal,
        model_ref: str,
        version: int | None,
        access_code: str | None,
        context: bytes,
        groups: list[Any],
        ip: str | None = None,
    ) -> dict[str, Any]:
        from bastion.ml.he.evaluate import evaluate

        if not self._slots.acquire(blocking=False):
            raise RateLimited(
                "the server is already evaluating its limit of encrypted requests; retry shortly",
                code="he_busy",
                retry_after=2,
            )
        details: dict[str, Any] = {"model": model_ref, "version": version, "encrypted": True}
        try:
            p = self.prepare(principal, model_ref, version, access_code)
            details.update({"model": p.view.model_id, "version": p.view.version})
            result = evaluate(p.circuit, context, groups, self.limits)
        except BastionError as exc:
            self._audit(principal, details | {"reason": exc.code}, "failure", ip)
            raise
        finally:
            self._slots.release()
        details.update(
            rows=result.rows,
            bytes_in=result.bytes_in,
            bytes_out=result.bytes_out,
            server_seconds=round(result.seconds, 4),
        )
        self._audit(principal, details, "success", ip)
        return {
            "model_id": p.view.model_id,
            "version": p.view.version,
            "rows": result.rows,
            "link": p.circuit.link,
            "classes": p.circuit.classes,
            "groups": [{"ciphertexts": outs} for outs in result.outputs],
            "server_seconds": round(result.seconds, 4),
        }

    def _audit(self, principal: Principal, details: dict[str, Any], outcome: str, ip: str | None) -> None:
        self.audit.append(
            AuditRecord(
                HE_ACTION,
                outcome,  # type: ignore[arg-type]
                principal.user_id,
                principal.username,
                "model",
                str(details.get("model")),
                ip,
                details,
            )
        )
