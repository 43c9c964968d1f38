"""The OpenAPI pages, /docs (Swagger UI) and /redoc, with their assets served by this process.

FastAPI's own pages load Swagger UI and ReDoc from a CDN, which GPU clusters and air-gapped hosts
cannot reach: a blank page. The distribution builds of both come installed with the
``fastapi-offline`` package (MIT; its ``swagger-ui-bundle.js`` and ``swagger-ui.css`` are Swagger
UI's, Apache-2.0, and ``redoc.standalone.js`` is ReDoc's, MIT) and are served from
``DOCS_ASSETS_PATH``; ReDoc is asked for no web fonts, and a Content Security Policy keeps both
pages on this origin. The pages, their assets and the schema are always open (no API key, no rate
limit).
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

DOCS_ASSETS_PATH = "/docs/assets"
ASSETS = Path(str(files("fastapi_offline") / "static"))
# The pages may load from this origin only, so nothing in them reaches another host, even what an
# asset asks for by itself (ReDoc's sidebar shows Redocly's logo from its CDN: blocked, and hidden).
# Both UIs start from an inline script and style themselves inline; ReDoc searches in a blob worker.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self' 'unsafe-inline'",
        "style-src 'self' 'unsafe-inline'",
        "img-src 'self' data:",
        "font-src 'self' data:",
        "worker-src 'self' blob:",
        "connect-src 'self'",
        "base-uri 'self'",
        "form-action 'self'",
    ]
)


def _self_only(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    return page


def install_docs(app: FastAPI) -> None:
    """Mounts the assets and adds ``/docs`` and ``/redoc`` (the app is created without FastAPI's)."""
    app.mount(DOCS_ASSETS_PATH, StaticFiles(directory=ASSETS), name="docs-assets")

    def assets(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{DOCS_ASSETS_PATH}"

    def openapi_url(request: Request) -> str:
        return f"{request.scope.get('root_path', '')}{app.openapi_url}"

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        return _self_only(
            get_swagger_ui_html(
                openapi_url=openapi_url(request),
                title=f"{app.title} - Swagger UI",
                swagger_js_url=f"{assets(request)}/swagger-ui-bundle.js",
                swagger_css_url=f"{assets(request)}/swagger-ui.css",
                swagger_favicon_url=f"{assets(request)}/favicon.png",
                swagger_ui_parameters=app.swagger_ui_parameters,
            )
        )

    @app.get("/redoc", include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        return _self_only(
            get_redoc_html(
                openapi_url=openapi_url(request),
                title=f"{app.title} - ReDoc",
                redoc_js_url=f"{assets(request)}/redoc.standalone.js",
                redoc_favicon_url=f"{assets(request)}/favicon.png",
                with_google_fonts=False,
            )
        )
