"""The one place the server's subsystems are wired into a ``Context``: ``install_services``.

Called by the API app factory, the CLI's server commands (``serve``, ``worker``, admin commands), tests
and benches. It lives below ``bastion.api`` so that no server module has to import wiring from the
HTTP layer. Order matters: fine-tuning uses the job service, and both use the catalog that
``build_context`` wired. The subsystems are imported when called, not at import time.
"""

from __future__ import annotations

from bastion.context import Context


def install_services(ctx: Context) -> Context:
    """Add the job, federation and fine-tuning services to ``ctx`` (in that order); returns it."""
    from bastion.federation.server import install as install_federations
    from bastion.jobs.hooks import install as install_jobs
    from bastion.llm.hooks import install as install_llm

    install_jobs(ctx)
    install_federations(ctx)
    install_llm(ctx)
    return ctx
