"""``/docs``: Swagger UI served from the ``swagger-ui-bundle`` package, never from a CDN.

The page loads only same-origin files (the bundle's CSS and JS and a small initializer served here),
so its Content-Security-Policy needs no CDN and no inline script (see ``api.middleware``).
"""

from __future__ import annotations

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


def install(app: FastAPI) -> None:
    """Mount the packaged Swagger UI assets and the two routes of the page (call with docs_url=None)."""
    from swagger_ui_bundle import swagger_ui_path

    page = _PAGE.format(title=app.title, assets=ASSETS, docs=DOCS)
    init = _INIT.format(openapi=app.openapi_url or "/openapi.json")
    app.mount(ASSETS, StaticFiles(directory=swagger_ui_path), name="swagger-ui-assets")

    @app.get(DOCS, include_in_schema=False)
    def docs() -> HTMLResponse:
        return HTMLResponse(page)

    @app.get(f"{DOCS}/init.js", include_in_schema=False)
    def docs_init() -> Response:
        return Response(init, media_type="text/javascript")
