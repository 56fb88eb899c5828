"""Base language models (admins register, users list) and testing a model: generate and perplexity."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import Header, Query, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bastion.api.deps import AdminPrincipal, BaseModelsDep, GenerationDep, UserPrincipal
from bastion.api.openapi import errors
from bastion.api.routing import PrefixRouter
from bastion.errors import Invalid
from bastion.llm.generate import MAX_NEW_TOKENS, GenerateParams

router = PrefixRouter(tags=["llm"])
AccessCode = Annotated[str | None, Header(alias="X-Access-Code", max_length=1024)]


class RegisterBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    path: str = Field(min_length=1, max_length=4096, description="A model directory on the server")
    name: str = Field(min_length=1, max_length=100)


class BaseModelObject(BaseModel):
    id: str
    object: Literal["model"] = "model"
    name: str
    architecture: str
    model_type: str
    parameter_count: int
    weights_sha256: str
    created_at: str


class BaseModelList(BaseModel):
    data: list[BaseModelObject]
    next_cursor: str | None = None


@router.post(
    "/api/v1/llm/base_models",
    status_code=201,
    response_model=BaseModelObject,
    responses=errors(401, 403, 409, 422),
)
def register_base_model(
    body: RegisterBody, principal: AdminPrincipal, response: Response, bases: BaseModelsDep
) -> BaseModelObject:
    """Register a local Hugging Face directory (safetensors only, no remote code)."""
    try:
        out = BaseModelObject(**bases.register(principal, body.path, body.name))
    except OSError as exc:  # e.g. a path component over the file system's name limit
        raise Invalid(f"{body.path[:200]} cannot be read: {exc.strerror}", code="model_dir_invalid") from exc
    response.headers["Location"] = f"/api/v1/llm/base_models/{out.name}"
    return out


@router.get("/api/v1/llm/base_models", response_model=BaseModelList, responses=errors(401, 403))
def list_base_models(
    _: UserPrincipal,
    bases: BaseModelsDep,
    limit: Annotated[int, Query(ge=1, le=100)] = 100,
    cursor: Annotated[str | None, Query(max_length=100, description="Names after this one")] = None,
) -> BaseModelList:
    rows = [r for r in bases.list() if cursor is None or r["name"] > cursor]
    page = rows[:limit]
    return BaseModelList(
        data=[BaseModelObject(**r) for r in page], next_cursor=page[-1]["name"] if len(rows) > limit else None
    )


@router.get("/api/v1/llm/base_models/{name}", response_model=BaseModelObject, responses=errors(401, 403, 404))
def get_base_model(name: str, _: UserPrincipal, bases: BaseModelsDep) -> BaseModelObject:
    from bastion.llm.base_models import view

    return BaseModelObject(**view(bases.get(name)))


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["system", "user", "assistant"]
    content: str = Field(max_length=20000)


class GenerateBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    prompt: str | None = Field(None, max_length=20000)
    messages: list[Message] | None = Field(None, min_length=1, max_length=64)
    max_new_tokens: int = Field(64, ge=1, le=MAX_NEW_TOKENS)
    temperature: float = Field(1.0, ge=0.0, le=5.0, description="0 means greedy decoding")
    top_p: float = Field(1.0, gt=0.0, le=1.0)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    version: int | None = Field(None, ge=1)
    stream: bool = Field(False, description="Tokens as Server-Sent Events")
    compare: bool = Field(False, description="Also answer with the base model (adapter switched off)")

    @model_validator(mode="after")
    def _one_input(self) -> GenerateBody:
        if (self.prompt is None) == (self.messages is None):
            raise ValueError("give exactly one of 'prompt' or 'messages'")
        if self.stream and self.compare:
            raise ValueError("compare is not available with stream")
        return self

    def params(self) -> GenerateParams:
        return GenerateParams(
            prompt=self.prompt,
            messages=[m.model_dump() for m in self.messages] if self.messages else None,
            max_new_tokens=self.max_new_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            seed=self.seed,
        )


class Generation(BaseModel):
    text: str
    completion_tokens: int
    prompt_tokens: int
    finish_reason: str


class GenerateResponse(Generation):
    model: str
    base_model: str
    base: Generation | None = None


@router.post(
    "/api/v1/models/{model_id}/generate",
    response_model=GenerateResponse,
    responses={**errors(401, 403, 404, 409, 422, 429), 200: {"content": {"text/event-stream": {}}}},
)
async def generate(
    model_id: str,
    body: GenerateBody,
    principal: UserPrincipal,
    generation: GenerationDep,
    access_code: AccessCode = None,
) -> Any:
    """Generate from a fine-tuned model (or a base model); ``compare`` adds the base model's answer."""
    gen = generation
    if body.stream:
        pieces = await run_in_threadpool(
            gen.stream, principal, model_id, body.params(), version=body.version, access_code=access_code
        )

        def sse() -> Iterator[str]:
            for piece in pieces:
                if piece:
                    yield f"event: token\ndata: {json.dumps({'text': piece})}\n\n"
            yield "event: end\ndata: {}\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"X-Accel-Buffering": "no"})
    out = await run_in_threadpool(
        gen.generate,
        principal,
        model_id,
        body.params(),
        version=body.version,
        access_code=access_code,
        compare=body.compare,
    )
    return GenerateResponse(**out)


class PerplexityBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    file: str = Field(min_length=1, max_length=64, description="A fine-tuning file of the caller")
    version: int | None = Field(None, ge=1)


class PerplexityResponse(BaseModel):
    model: str
    file: str
    examples: int
    loss: float
    perplexity: float | None


@router.post(
    "/api/v1/models/{model_id}/perplexity",
    response_model=PerplexityResponse,
    responses=errors(401, 403, 404, 422, 429),
)
async def perplexity(
    model_id: str,
    body: PerplexityBody,
    principal: UserPrincipal,
    generation: GenerationDep,
    access_code: AccessCode = None,
) -> PerplexityResponse:
    out = await run_in_threadpool(
        generation.perplexity,
        principal,
        model_id,
        body.file,
        version=body.version,
        access_code=access_code,
    )
    return PerplexityResponse(**out)
