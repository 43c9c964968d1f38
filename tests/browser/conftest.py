"""The ``browser`` fixture: one headless Chromium for the session's browser tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.browser.harness import Browser, headless_chromium


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with headless_chromium() as chromium:
        yield chromium
