"""The OpenAPI pages render in a real browser from this host alone: no CDN, no request elsewhere.

FastAPI's default pages load Swagger UI and ReDoc from a CDN and stay blank where none is reachable
(this machine, most GPU clusters); ours serve the assets themselves (``app.docs``).
"""

from __future__ import annotations

import time
from pathlib import Path

from PIL import Image
from selenium.webdriver.common.by import By

from tests.browser.harness import Browser

OPERATIONS = {
    "/v1/generations",
    "/v1/images/generations",
    "/v1/images/edits",
    "/v1/jobs/{job_id}",
    "/v1/models",
    "/v1/samplers",
}


def test_swagger_ui_renders_every_operation_offline(browser: Browser, api_url: str, tmp_path: Path) -> None:
    started = time.perf_counter()
    browser.open(f"{api_url}/docs")
    browser.wait_for(".swagger-ui .opblock")
    rendered_s = time.perf_counter() - started
    driver = browser.driver
    paths = {
        e.get_attribute("data-path") for e in driver.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")
    }
    assert paths >= OPERATIONS, paths
    assert "Denoising service" in driver.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    # the UI is live, not just drawn: opening an operation offers to try it out
    driver.find_element(By.CSS_SELECTOR, '.opblock-summary-path[data-path="/v1/images/generations"]').click()
    browser.wait_for(".opblock.is-open .try-out__btn")

    requests = browser.requests()
    assert any(r.url == f"{api_url}/docs/assets/swagger-ui-bundle.js" for r in requests)
    assert any(r.url == f"{api_url}/openapi.json" for r in requests)
    assert [r.url for r in requests if r.leaves_this_host] == []
    shot = Image.open(browser.screenshot(tmp_path / "docs.png"))
    assert len(shot.convert("L").getcolors(maxcolors=256) or ()) > 16  # drawn, not a blank page
    print(f"\n/docs rendered in {rendered_s:.2f} s from {len({r.url for r in requests})} local URLs")


def test_redoc_renders_every_operation_offline(browser: Browser, api_url: str) -> None:
    started = time.perf_counter()
    browser.open(f"{api_url}/redoc")
    browser.wait_for('[data-section-id="operation/create_image_v1_images_generations_post"]')
    rendered_s = time.perf_counter() - started
    headings = {h.text for h in browser.driver.find_elements(By.CSS_SELECTOR, ".api-content h2")}
    assert {"Create Generation", "Create Image", "Get Job", "Cancel Job", "List Models"} <= headings, headings

    requests = browser.requests()
    assert any(r.url == f"{api_url}/docs/assets/redoc.standalone.js" for r in requests)
    assert [r.url for r in requests if r.leaves_this_host] == []
    # ReDoc's sidebar asks Redocly's CDN for its logo; the page's Content-Security-Policy refuses it
    refused = sorted({r.url for r in requests if r.blocked_by})
    print(f"\n/redoc rendered in {rendered_s:.2f} s; refused by the page's policy: {refused}")
