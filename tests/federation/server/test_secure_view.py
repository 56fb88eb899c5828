"""Secure-aggregation polls answered without the federation lock say exactly what the locked view says."""

from __future__ import annotations

from typing import Any

from bastion.client.fl import SiteClient
from bastion.context import Context
from tests.federation.server.test_secure_rounds import Federation, clock, fed  # noqa: F401  (fixtures)


def test_polls_from_memory_match_the_locked_view_at_every_stage(fed: Federation, ctx: Context) -> None:  # noqa: F811
    fed.create(4)
    sites = ctx.services.fl_sites
    stages: list[str] = []

    def compare(_name: str, site: SiteClient) -> bool:
        token = str(site.transport.access_token)
        ident = sites.authenticate(fed.fid, token, None, "test")
        locked: dict[str, Any] = sites.secagg_view(ident)
        free = sites.secagg_view_nowait(ident)
        if free is not None:
            assert free == locked
            stages.append(free["stage"])
        return False

    fed.drive(fed.round_closed(1), compare)
    assert {"advertise", "share", "mask", "unmask"} <= set(stages), stages
