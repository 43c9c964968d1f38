"""Records the README's screenshots from real processes, in headless Chromium:
docs/img/docs-page.png (the /docs page) and docs/img/playground.png (the playground after a
three-way comparison, with a worker serving the bundled model).

python -m tests.browser.screenshot               # rewrites both (on purpose only)
python -m tests.browser.screenshot playground    # or one of them: docs, playground
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from devstack.redis_server import RedisServer
from tests.browser.harness import headless_chromium
from tests.browser.playground_page import COMPARISON, SHARED, PlaygroundPage
from tests.conftest import running_api, running_worker

ROOT = Path(__file__).resolve().parents[2]
IMAGES = ROOT / "docs" / "img"


def docs_page(scratch: Path) -> None:
    with (
        RedisServer(appendonly=False) as server,
        running_api(server.url, scratch / "api.log", ready_path="/healthz") as api,
        headless_chromium(width=1280, height=1000) as browser,
    ):
        browser.open(f"{api.url}/docs")
        browser.wait_for(".swagger-ui .opblock")
        print(f"wrote {browser.screenshot(IMAGES / 'docs-page.png')}")


def playground(scratch: Path) -> None:
    with (
        RedisServer(appendonly=False) as server,
        running_worker(server, scratch / "worker.log", "screenshot-worker", DENOISE_MODELS="mnist-unet"),
        running_api(server.url, scratch / "api.log") as api,
        headless_chromium(width=1280, height=1150) as browser,
    ):
        page = PlaygroundPage(browser)
        page.open(f"{api.url}/")
        page.fill(SHARED, COMPARISON)
        page.run()
        print(f"wrote {browser.screenshot(IMAGES / 'playground.png')}")


PAGES = {"docs": docs_page, "playground": playground}


def main() -> None:
    names = sys.argv[1:] or list(PAGES)
    for name in names:
        with tempfile.TemporaryDirectory() as scratch:
            PAGES[name](Path(scratch))


if __name__ == "__main__":
    main()
