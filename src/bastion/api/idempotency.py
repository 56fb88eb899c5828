"""``Idempotency-Key`` on submits and creates: a retry returns the first answer instead of a second object.

Same caller + operation + key: the same body gets the stored answer back (status, body, ``Location``);
another body is 409 ``idempotency_key_reused``. The key is reserved (a row under a unique constraint)
before the operation runs, so a retry racing the first request answers 409 ``idempotency_key_in_use``
instead of creating a second object; a failed operation frees its key. Records are kept for
:data:`RETENTION` and purged lazily.

    @router.post("", status_code=201, response_model=Thing)
    def create(body: ThingCreate, idem: Idempotent, response: Response, ...) -> Thing | JSONResponse:
        if (replay := idem.replay()) is not None:
            return replay
        thing = ...
        return idem.created(response, thing, f"/api/v1/things/{thing.id}")

Responses that carry a secret shown once (API keys, site tokens) do not take the header: replaying
them would mean storing the secret.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Annotated, Any, TypeVar

import anyio
from fastapi import Depends, Header, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError

from bastion.api.deps import ContextDep, CurrentPrincipal
from bastion.context import Context
from bastion.errors import Conflict
from bastion.store.base import utcnow
from bastion.store.tables import IdempotencyRecord

RETENTION = timedelta(hours=24)
M = TypeVar("M", bound=BaseModel)
KeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        pattern=r"^[\x21-\x7e]+$",
        description="Retry-safe: the same key and body return the first answer; another body is 409",
    ),
]


def request_hash(request: Request, body: bytes) -> str:
    """What "the same request" means: the query and the body (a multipart boundary does not count)."""
    content_type = request.headers.get("content-type", "")
    _, _, boundary = content_type.partition("boundary=")
    if boundary:
        body = body.replace(boundary.strip('"').encode("latin-1"), b"")
    digest = hashlib.sha256(request.url.query.encode("latin-1"))
    digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


class Idempotency:
    """One request's claim on its key: reserved before the operation runs, filled in after it."""

    def __init__(
        self, ctx: Context, owner_id: str, operation: str, key: str | None, fingerprint: str
    ) -> None:
        self.ctx, self.owner_id, self.operation = ctx, owner_id, operation
        self.key, self.fingerprint = key, fingerprint
        self.stored: IdempotencyRecord | None = None
        self.reserved: str | None = None
        self.done = False

    def begin(self) -> None:
        """Reserve the key, or find the earlier answer (409 if it differs or is still running)."""
        if self.key is None:
            return
        now = utcnow()
        try:
            with self.ctx.db.session() as s:
                s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.created_at < now - RETENTION))
                row = IdempotencyRecord(
                    owner_id=self.owner_id,
                    operation=self.operation,
                    key=self.key,
                    request_hash=self.fingerprint,
                    status_code=0,
                    response_json="",
                )
                s.add(row)
                s.flush()
                self.reserved = row.id
            return
        except IntegrityError:
            pass
        with self.ctx.db.session() as s:
            found = s.scalars(
                select(IdempotencyRecord).where(
                    IdempotencyRecord.owner_id == self.owner_id,
                    IdempotencyRecord.operation == self.operation,
                    IdempotencyRecord.key == self.key,
                )
            ).first()
        if found is None:  # purged in between: treat as in use, the client retries
            raise Conflict("this Idempotency-Key is being reused; retry", code="idempotency_key_in_use")
        if found.request_hash != self.fingerprint:
            raise Conflict(
                "this Idempotency-Key was used with a different request", code="idempotency_key_reused"
            )
        if found.status_code == 0:
            raise Conflict(
                "a request with this Idempotency-Key is still being processed",
                code="idempotency_key_in_use",
            )
        self.stored = found

    def release(self) -> None:
        """The operation failed or answered otherwise: free the key for a retry."""
        if self.reserved is None or self.done:
            return
        with self.ctx.db.session() as s:
            s.execute(delete(IdempotencyRecord).where(IdempotencyRecord.id == self.reserved))

    def replay(self) -> JSONResponse | None:
        """The stored answer to this key, or None when the operation must run."""
        row = self.stored
        if row is None:
            return None
        headers = {"Idempotent-Replayed": "true"}
        if row.location:
            headers["Location"] = row.location
        return JSONResponse(json.loads(row.response_json), status_code=row.status_code, headers=headers)

    def created(self, response: Response, result: M, location: str | None, status: int = 201) -> M:
        """Set ``Location``, remember the answer under the key (if one was sent), and return ``result``."""
        if location:
            response.headers["Location"] = location
        self.remember(result, location, status)
        return result

    def remember(self, result: BaseModel | dict[str, Any], location: str | None, status: int) -> None:
        if self.reserved is None:
            return
        body = json.dumps(jsonable_encoder(result), separators=(",", ":"))
        with self.ctx.db.session() as s:
            row = s.get(IdempotencyRecord, self.reserved)
            if row is not None:
                row.status_code, row.response_json, row.location = status, body, location
        self.done = True


async def idempotency(
    request: Request, principal: CurrentPrincipal, ctx: ContextDep, key: KeyHeader = None
) -> AsyncIterator[Idempotency]:
    route = request.scope.get("route")
    operation = f"{request.method} {getattr(route, 'path', request.url.path)}"
    fingerprint = request_hash(request, await request.body()) if key else ""
    idem = Idempotency(ctx, principal.user_id, operation, key, fingerprint)
    await anyio.to_thread.run_sync(idem.begin)
    try:
        yield idem
    finally:
        if idem.reserved is not None and not idem.done:
            await anyio.to_thread.run_sync(idem.release)


Idempotent = Annotated[Idempotency, Depends(idempotency)]
