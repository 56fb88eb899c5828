"""Wiring fine-tuning into a Context (after the job subsystem; called by bastion.wiring.install_services)."""

from __future__ import annotations

from bastion.context import Context
from bastion.llm.base_models import BaseModels
from bastion.llm.files import FineTuneFiles
from bastion.llm.generate import Generator
from bastion.llm.service import FineTuning


def install(ctx: Context) -> None:
    bases = BaseModels(ctx.db, ctx.audit)
    files = FineTuneFiles(
        ctx.db,
        ctx.vault,
        ctx.audit,
        ctx.services["datasets"].hmac_key,
        ctx.settings.max_upload_bytes,
        quota_bytes=ctx.settings.user_storage_quota_bytes,
    )
    ctx.services["llm_bases"] = bases
    ctx.services["ft_files"] = files
    ctx.services["fine_tuning"] = FineTuning(ctx, bases, files)
    ctx.services["generation"] = Generator(ctx, bases)
