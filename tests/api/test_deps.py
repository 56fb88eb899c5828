"""The role gate authenticates by itself, once per request, however many dependencies ask."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi import Depends, FastAPI
from fastapi.testclient import TestClient

from bastion.api.deps import AdminPrincipal, CurrentPrincipal, UserPrincipal
from bastion.api.problems import install as install_problems
from bastion.auth.principal import Principal
from bastion.context import Context
from tests.conftest import Caller


async def _also_wants_principal(principal: CurrentPrincipal) -> str:
    return principal.user_id


def _app(ctx: Context) -> FastAPI:
    app = FastAPI()
    app.state.ctx = ctx
    install_problems(app)

    @app.get("/both")
    async def both(principal: UserPrincipal, again: str = Depends(_also_wants_principal)) -> dict[str, str]:
        return {"gate": principal.user_id, "dependency": again}

    return app


def test_gate_and_current_principal_authenticate_and_charge_once(
    ctx: Context, alice: Caller, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []
    hits: list[tuple[Any, ...]] = []
    authenticate, hit = ctx.auth.authenticate_async, ctx.limiter.hit

    async def counting(credential: str, ip: str | None) -> Principal:
        calls.append(credential)
        return await authenticate(credential, ip)

    def counting_hit(*args: Any) -> None:
        hits.append(args)
        hit(*args)

    monkeypatch.setattr(ctx.auth, "authenticate_async", counting)
    monkeypatch.setattr(ctx.limiter, "hit", counting_hit)
    client = TestClient(_app(ctx))
    r = client.get("/both", headers=alice.headers)
    assert r.json() == {"gate": alice.user_id, "dependency": alice.user_id}
    assert len(calls) == 1 and len(hits) == 1
    r = client.get("/both", headers=alice.headers)  # a second request authenticates afresh
    assert len(calls) == 2 and len(hits) == 2
    assert client.get("/both").status_code == 401


def test_gate_refuses_a_role_below_it(ctx: Context, make_caller: Any) -> None:
    app = FastAPI()
    app.state.ctx = ctx
    install_problems(app)

    @app.get("/admin-only")
    async def admin_only(principal: AdminPrincipal) -> dict[str, str]:
        return {"id": principal.user_id}

    client = TestClient(app)
    user, admin = make_caller("user"), make_caller("admin")
    assert client.get("/admin-only", headers=user.headers).status_code == 403
    assert client.get("/admin-only", headers=admin.headers).json() == {"id": admin.user_id}
