"""Real headless Chromium for the tests that look at pages as a person would (Debian's chromium
driven through its chromedriver by selenium; nothing is downloaded).

``headless_chromium()`` starts one browser with a fresh profile and no background traffic of its
own; ``Browser.open`` loads a page and ``Browser.requests`` lists every request the page made
since, from Chrome's network log, so a test can prove that nothing a page did left this host.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions
from selenium.webdriver.support.wait import WebDriverWait

INSTALL_HINT = (
    "run `make system-tools` (.ci/install-system-tools.sh installs Debian's chromium and chromium-driver)"
)
FLAGS = (
    "--headless=new",
    "--no-sandbox",  # root in CI containers
    "--disable-gpu",
    "--disable-dev-shm-usage",  # containers' /dev/shm is small
    "--disable-background-networking",  # no update checks, safe-browsing lists, suggestions
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
)
LOCAL_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"`{name}` is not on PATH; {INSTALL_HINT}", pytrace=False)
    return path


@dataclass(frozen=True)
class PageRequest:
    url: str
    blocked_by: str | None  # why the browser refused to send it (``csp``, ...); None: sent

    @property
    def leaves_this_host(self) -> bool:
        """Sent over the network to another host (``data:``, ``blob:``, ``chrome:`` never are)."""
        parts = urlsplit(self.url)
        remote = parts.scheme in {"http", "https", "ws", "wss", "ftp"} and parts.hostname not in LOCAL_HOSTS
        return remote and self.blocked_by is None


@dataclass
class Browser:
    driver: WebDriver

    def open(self, url: str) -> None:
        """Loads ``url``; the network log starts afresh for it."""
        self.driver.get_log("performance")  # reading drains what earlier pages left
        self.driver.get(url)

    def wait_for(self, css: str, timeout_s: float = 30) -> list[WebElement]:
        """The elements matching ``css`` once at least one is visible (fails after ``timeout_s``)."""
        WebDriverWait(self.driver, timeout_s).until(
            expected_conditions.visibility_of_element_located((By.CSS_SELECTOR, css))
        )
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def requests(self) -> list[PageRequest]:
        """Every request the page made since ``open``: Chrome's network log (with those the browser
        blocked before sending, e.g. by the page's Content-Security-Policy) and the page's resource
        timing entries."""
        sent: dict[str, str] = {}
        blocked: dict[str, str] = {}
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            params = message.get("params", {})
            if message["method"] == "Network.requestWillBeSent":
                sent[params["requestId"]] = params["request"]["url"]
            elif message["method"] == "Network.webSocketCreated":
                sent[params["requestId"]] = params["url"]
            elif message["method"] == "Network.loadingFailed" and params.get("blockedReason"):
                blocked[params["requestId"]] = params["blockedReason"]
        timed = self.driver.execute_script(
            "return performance.getEntriesByType('resource').map(entry => entry.name)"
        )
        logged = [PageRequest(url, blocked.get(request_id)) for request_id, url in sent.items()]
        # Chrome makes a timing entry for a blocked request too: the log says whether it was sent
        refused = {request.url: request.blocked_by for request in logged if request.blocked_by}
        return logged + [PageRequest(str(url), refused.get(str(url))) for url in timed]

    def screenshot(self, path: Path) -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.driver.save_screenshot(str(path)):
            raise RuntimeError(f"no screenshot written to {path}")
        return path


@contextmanager
def headless_chromium(width: int = 1280, height: int = 1400) -> Iterator[Browser]:
    """One headless Chromium with a fresh profile, closed (and the profile removed) on exit."""
    options = webdriver.ChromeOptions()
    options.binary_location = _binary("chromium")
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
            options.add_argument(flag)
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
        driver = webdriver.Chrome(options=options, service=Service(executable_path=_binary("chromedriver")))
        try:
            yield Browser(driver)
        finally:
            driver.quit()
