"""python -m app: serve the API with uvicorn (settings from the environment)."""

from __future__ import annotations

import uvicorn

from app.main import create_app
from app.settings import ApiSettings


def main() -> None:
    settings = ApiSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="info")


if __name__ == "__main__":
    main()
