"""The vendored dashboard assets are the pinned, hashed files of their manifest, and only those load."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from bastion.web import STATIC_DIR, TEMPLATE_DIR

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "vendor_web_assets.py"


def test_vendored_files_match_their_manifest() -> None:
    spec = importlib.util.spec_from_file_location("vendor_web_assets", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.check() == 0
    manifest = json.loads((STATIC_DIR / "vendor" / "MANIFEST.json").read_text())
    assert {"htmx.org", "uplot", "axe-core"} <= set(manifest)
    for entry in manifest.values():
        assert entry["version"] and entry["license"] and entry["integrity"].startswith("sha512-")


def test_templates_load_nothing_from_elsewhere_and_run_no_inline_script() -> None:
    for template in TEMPLATE_DIR.rglob("*.html"):
        text = template.read_text()
        assert "http://" not in text and "https://" not in text and "//cdn" not in text, template
        assert " on" + "click=" not in text and "javascript:" not in text, template
        for chunk in text.split("<script")[1:]:
            assert chunk.lstrip().startswith("src="), f"inline script in {template}"
