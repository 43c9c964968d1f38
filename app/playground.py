"""The playground: a page at ``/`` to try the API in a browser and compare settings side by side.

Plain HTML, CSS and JavaScript modules shipped in the package (``app/static/playground``; no build
step, nothing from a CDN). The page builds every control from the API itself (``GET /v1/models``,
``GET /v1/samplers`` and the request's JSON Schema in ``/openapi.json``), submits one job per
column with ``Prefer: respond-async`` and follows each job's events. Like ``/docs`` the page and
its assets are always open; the calls it makes carry the API key typed into it, if any.
"""

from __future__ import annotations

import html
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from starlette.responses import Response
from starlette.types import Scope

PLAYGROUND_DIR = Path(__file__).resolve().parent / "static" / "playground"
ASSETS_PATH = "/playground"
# Stricter than the OpenAPI pages' policy: the playground has no inline script or style, so neither
# is allowed; images are this origin's or data: URLs (the PNGs come base64-encoded in JSON).
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'self'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "Cache-Control": "no-cache",  # revalidated (ETag), so an upgraded API serves its own page
    "X-Content-Type-Options": "nosniff",
}


class _PlaygroundFiles(StaticFiles):
    """The page's assets, with the page's headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(HEADERS)
        return response


def install_playground(app: FastAPI, default_model: str) -> None:
    """Serves the page at ``/`` and its assets under ``ASSETS_PATH`` (outside the OpenAPI schema).

    The page is told ``default_model``, the model a request that names none gets, so that it opens
    on that model; everything else it learns from the API.
    """
    page = (PLAYGROUND_DIR / "index.html").read_text(encoding="utf-8")
    page = page.replace("{default_model}", html.escape(default_model, quote=True))
    app.mount(ASSETS_PATH, _PlaygroundFiles(directory=PLAYGROUND_DIR), name="playground-assets")

    @app.get("/", include_in_schema=False)
    async def playground() -> HTMLResponse:
        return HTMLResponse(page, headers=HEADERS)
