"""The one wiring point: typed services built once, nothing of the subsystems imported before."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bastion.api.app import create_app
from bastion.context import build_context
from bastion.federation.server.coordinator import Coordinator
from bastion.jobs.service import JobService
from bastion.wiring import install_services
from tests.conftest import make_settings


def test_services_are_built_once_and_share_their_parts(tmp_path: Path) -> None:
    ctx = build_context(make_settings(tmp_path, f"sqlite:///{tmp_path / 'w.db'}", embedded_worker=False))
    try:
        with pytest.raises(RuntimeError, match="not wired"):
            _ = ctx.services
        install_services(ctx)
        services = ctx.services
        assert isinstance(services.jobs, JobService) and isinstance(services.fl_coordinator, Coordinator)
        assert services.worker is None and services.sso is None
        assert services.fine_tuning.jobs is services.jobs
        assert services.generation.registry is services.models
        assert services.federations.coordinator is services.fl_coordinator
        assert "training_manager" in ctx.health_checks
    finally:
        ctx.close()


def test_the_app_wires_a_context_handed_to_it_unwired(tmp_path: Path) -> None:
    ctx = build_context(make_settings(tmp_path, f"sqlite:///{tmp_path / 'w.db'}", embedded_worker=False))
    try:
        assert not ctx.wired
        create_app(context=ctx)
        assert ctx.wired
    finally:
        ctx.close()


def _loaded_in_a_fresh_process(setup: str, modules: str) -> None:
    """Run ``setup`` in a new interpreter and fail with the list if any of ``modules`` got loaded
    (``modules``: a Python expression, a tuple of names or prefixes)."""
    code = (
        f"import sys\n{setup}\n"
        f"heavy = [m for m in sys.modules if m.startswith({modules})]\n"
        "print(heavy)\n"
        "sys.exit(1 if heavy else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr


def test_importing_the_wiring_imports_no_subsystem() -> None:
    _loaded_in_a_fresh_process(
        "import bastion.wiring",
        "('bastion.jobs', 'bastion.federation', 'bastion.llm', 'bastion.api', 'torch')",
    )


def test_building_the_server_app_loads_no_sign_in_or_page_libraries(tmp_path: Path) -> None:
    """authlib and joserfc load at the first SSO sign-in, Jinja2 at the first dashboard page, torch
    at the first model work: none of them with every `bastion serve` (they were ~0.2 s of its start)."""
    setup = (
        "from pathlib import Path\n"
        "from bastion.api.app import create_app\n"
        "from bastion.context import build_context\n"
        "from tests.conftest import make_settings\n"
        f"d = Path({str(tmp_path)!r})\n"
        "create_app(context=build_context(make_settings(d, f'sqlite:///{d}/a.db', embedded_worker=False)))"
    )
    _loaded_in_a_fresh_process(setup, "('authlib', 'joserfc', 'jinja2', 'torch', 'sklearn')")


def test_the_command_line_loads_the_sdk_only_when_a_command_uses_it() -> None:
    _loaded_in_a_fresh_process("import bastion.cli.main", "('bastion.client.sdk', 'httpx2', 'torch')")
