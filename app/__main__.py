"""python -m app: serve the API with uvicorn (settings from the environment)."""

from __future__ import annotations

from types import FrameType

import uvicorn
from fastapi import FastAPI

from app.http_protocol import header_timeout_protocol
from app.main import create_app, release_waiters
from app.settings import ApiSettings


class GracefulServer(uvicorn.Server):
    """On SIGTERM/SIGINT uvicorn stops accepting connections and lets in-flight requests finish
    (up to ``graceful_shutdown_s``); sync requests waiting for a job answer 202 with its URL at
    once, so a rolling restart never keeps a client waiting on a process that is going away."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self._app = app

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        super().handle_exit(sig, frame)
        release_waiters(self._app)


def main() -> None:
    settings = ApiSettings()
    app = create_app(settings)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level="info",
        timeout_graceful_shutdown=settings.graceful_shutdown_s,
        http=header_timeout_protocol(settings.header_timeout_s),
        timeout_keep_alive=settings.keep_alive_s,
        limit_concurrency=settings.max_connections,
    )
    GracefulServer(config, app).run()


if __name__ == "__main__":
    main()
