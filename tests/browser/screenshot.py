"""Records docs/img/docs-page.png: the /docs page of a real API process, in headless Chromium.

python -m tests.browser.screenshot     # rewrites docs/img/docs-page.png (on purpose only)
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from devstack.redis_server import RedisServer
from tests.browser.harness import headless_chromium
from tests.conftest import running_api

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "img" / "docs-page.png"


def main() -> None:
    with (
        tempfile.TemporaryDirectory() as scratch,
        RedisServer(appendonly=False) as server,
        running_api(server.url, Path(scratch) / "api.log", ready_path="/healthz") as api,
        headless_chromium(width=1280, height=1000) as browser,
    ):
        browser.open(f"{api.url}/docs")
        browser.wait_for(".swagger-ui .opblock")
        print(f"wrote {browser.screenshot(OUT)}")


if __name__ == "__main__":
    main()
