"""Encrypted predictions (CKKS): the model's encryption spec, and evaluation on client ciphertexts.

Ciphertexts and the public context travel base64-encoded in JSON; the route's body limit is
``BASTION_HE_MAX_REQUEST_BYTES`` and every further cap is checked before anything is deserialized
(see :mod:`bastion.ml.he.evaluate`). Neither the context nor the ciphertexts are stored or logged.
"""

from __future__ import annotations

import base64
import binascii
from typing import Annotated, Any, Literal

from fastapi import Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from bastion.api.deps import CurrentPrincipal, EncryptedDep, client_ip
from bastion.api.middleware import audits_success
from bastion.api.openapi import errors
from bastion.api.routing import PrefixRouter
from bastion.errors import Invalid

router = PrefixRouter(prefix="/api/v1/models", tags=["encrypted inference"])
AccessCode = Annotated[str | None, Header(alias="X-Access-Code", max_length=1024)]
# A base64 string bound well above any allowed ciphertext; exact byte caps are settings, checked later.
MAX_B64 = 96 * 1024 * 1024


class InputColumn(BaseModel):
    feature: str
    category: str | None = Field(None, description="Set: a 0/1 indicator of this category")


class CkksParameters(BaseModel):
    poly_modulus_degree: int
    coeff_mod_bit_sizes: list[int]
    global_scale_bits: int
    slots: int
    security_bits: int


class HeLimits(BaseModel):
    max_context_bytes: int
    max_ciphertext_bytes: int
    max_total_bytes: int
    max_rows: int
    time_budget_seconds: float


class EncryptionSpec(BaseModel):
    """What a client needs to encrypt rows for this model version."""

    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    version: int
    scheme: Literal["ckks"]
    kind: str
    packing: Literal["columns"]
    inputs: list[InputColumn]
    n_outputs: int
    link: Literal["logistic", "softmax", "identity"]
    classes: list[str] | None
    depth: int
    parameters: CkksParameters
    needs_relin_keys: bool
    needs_galois_keys: bool
    limits: HeLimits


class CiphertextGroup(BaseModel):
    n_rows: int = Field(ge=1, le=65_536)
    columns: list[Annotated[str, Field(max_length=MAX_B64)]] = Field(min_length=1, max_length=4096)


class EncryptedPredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: int | None = Field(None, ge=1)
    context: str = Field(
        min_length=1, max_length=MAX_B64, description="TenSEAL context, public parts only (base64)"
    )
    groups: list[CiphertextGroup] = Field(min_length=1, max_length=64)


class OutputGroup(BaseModel):
    ciphertexts: list[str]


class EncryptedPredictResponse(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str
    version: int
    rows: int
    link: Literal["logistic", "softmax", "identity"]
    classes: list[str] | None
    groups: list[OutputGroup]
    server_seconds: float


def _decode(text: str, what: str) -> bytes:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise Invalid(f"{what} is not valid base64", code="he_bad_request") from None


@router.get(
    "/{model_id}/encrypted/spec",
    response_model=EncryptionSpec,
    responses=errors(401, 403, 404, 422, 423),
)
async def encryption_spec(
    model_id: str,
    principal: CurrentPrincipal,
    encrypted: EncryptedDep,
    version: Annotated[int | None, Query(ge=1)] = None,
    access_code: AccessCode = None,
) -> dict[str, Any]:
    """Input layout, CKKS parameters and link function; 422 ``he_unsupported_model`` says why not."""
    return await run_in_threadpool(encrypted.spec, principal, model_id, version, access_code)


@router.post(
    "/{model_id}/predict/encrypted",
    response_model=EncryptedPredictResponse,
    responses=errors(400, 401, 403, 404, 413, 422, 423, 429, 503),
)
@audits_success
async def predict_encrypted(
    model_id: str,
    body: EncryptedPredictRequest,
    request: Request,
    principal: CurrentPrincipal,
    encrypted: EncryptedDep,
    access_code: AccessCode = None,
) -> dict[str, Any]:
    """Evaluate the model on CKKS ciphertexts; the answer is ciphertexts only the caller can decrypt."""
    from bastion.ml.he.evaluate import Group

    def run() -> dict[str, Any]:
        context = _decode(body.context, "context")
        groups = [
            Group(g.n_rows, [_decode(c, f"ciphertext {j} of group {i}") for j, c in enumerate(g.columns)])
            for i, g in enumerate(body.groups)
        ]
        out = encrypted.predict(
            principal, model_id, body.version, access_code, context, groups, client_ip(request)
        )
        out["groups"] = [
            {"ciphertexts": [base64.b64encode(b).decode("ascii") for b in g["ciphertexts"]]}
            for g in out["groups"]
        ]
        return out

    return await run_in_threadpool(run)
