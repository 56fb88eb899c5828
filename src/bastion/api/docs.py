"""``/docs``: Swagger UI served from the ``swagger-ui-py`` package's assets, never from a CDN.

(``swagger-ui-bundle`` ships Swagger UI 4, which cannot render FastAPI's OpenAPI 3.1 documents;
``swagger-ui-py`` ships Swagger UI 5. Only its static files are used, never its Python code.)

The page loads only same-origin files (the bundle's CSS and JS and a small initializer served here),
so its Content-Security-Policy needs no CDN and no inline script (see ``api.middleware``).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse, Response
from starlette.staticfiles import StaticFiles

DOCS = "/docs"
ASSETS = "/docs/assets"
_PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title} - API</title>
<link rel="stylesheet" href="{assets}/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{assets}/swagger-ui-bundle.js"></script>
<script src="{docs}/init.js"></script>
</body>
</html>
"""
_INIT = """window.ui = SwaggerUIBundle({{
  url: {openapi!r},
  dom_id: "#swagger-ui",
  deepLinking: true,
  presets: [SwaggerUIBundle.presets.apis],
  layout: "BaseLayout",
}});
"""


def assets_dir() -> Path:
    """The installed Swagger UI 5 files (found without importing the package's web-framework glue)."""
    spec = importlib.util.find_spec("swagger_ui")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("swagger-ui-py is not installed (a dependency of bastion)")
    return Path(next(iter(spec.submodule_search_locations))) / "static"


def install(app: FastAPI) -> None:
    """Mount the packaged Swagger UI assets and the two routes of the page (call with docs_url=None)."""
    page = _PAGE.format(title=app.title, assets=ASSETS, docs=DOCS)
    init = _INIT.format(openapi=app.openapi_url or "/openapi.json")
    app.mount(ASSETS, StaticFiles(directory=assets_dir()), name="swagger-ui-assets")

    @app.get(DOCS, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get(f"{DOCS}/init.js", include_in_schema=False)
    def docs_init() -> Response:
        return Response(init, media_type="text/javascript")
