"""/docs: Swagger UI from the swagger-ui-py package; a CSP with no CDN and nothing inline."""

from __future__ import annotations

import re

from fastapi.testclient import TestClient


def test_docs_page_loads_only_same_origin_assets(client: TestClient) -> None:
    r = client.get("/docs")
    assert r.status_code == 200
    html = r.text
    sources = re.findall(r'(?:src|href)="([^"]+)"', html)
    assert sources and all(s.startswith("/docs/") for s in sources), sources
    assert "<script>" not in html, "no inline script"
    csp = r.headers["content-security-policy"]
    assert "unsafe-inline" not in csp and "http" not in csp, csp  # neither scripts nor styles inline
    for src in sources:
        asset = client.get(src)
        assert asset.status_code == 200 and len(asset.content) > 100, src
    init = client.get("/docs/init.js")
    assert init.headers["content-type"].startswith("text/javascript") and "/openapi.json" in init.text
    assert client.get("/docs/assets/../../pyproject.toml").status_code == 404
