"""The federation coordinator inside the server: rounds, admission of sealed updates, aggregation.

:func:`install` is called by ``bastion.wiring.install_services``; it adds the coordinator (whose
``start``/``close`` run the deadline ticker) and the two services the routes call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from bastion.context import Context


def install(ctx: Context) -> None:
    from bastion.federation.server.coordinator import Coordinator
    from bastion.federation.server.service import FederationService
    from bastion.federation.server.site import SiteService

    coordinator = Coordinator(
        ctx.db,
        ctx.vault,
        ctx.audit,
        ctx.services.get("models"),
        tick_seconds=float(getattr(ctx.settings, "fl_tick_seconds", 1.0)),
    )
    ctx.services["fl_coordinator"] = coordinator
    ctx.services["federations"] = FederationService(
        coordinator,
        max_parameters=ctx.settings.fl_max_model_parameters,
        max_per_user=ctx.settings.fl_max_federations_per_user,
    )
    ctx.services["fl_sites"] = SiteService(coordinator)
