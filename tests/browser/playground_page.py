"""The playground page (``/``) as a test sees it: open it, fill it in as a person would, run it, read
each column back. Used by ``test_playground.py`` and by ``screenshot.py``."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import Select, WebDriverWait

from tests.browser.harness import Browser

# The README's comparison: one digit, one seed, three samplers at 10 steps (the test and screenshot)
SHARED = {"model": "mnist-unet", "class_label": "3", "seed": "1234"}
COMPARISON = [
    {"sampler": "ddpm", "steps": "10"},
    {"sampler": "ddim", "steps": "10"},
    {"sampler": "unipc", "steps": "10"},
]


def column_css(index: int) -> str:
    """Column ``index`` (1-based, as in the page's links)."""
    return f'.column[data-column="{index}"]'


@dataclass
class ColumnResult:
    """What a finished column shows."""

    job_id: str | None
    status: str | None
    previews: int
    images: list[dict[str, Any]]  # src, natural and shown size, noise estimate
    config: dict[str, Any] | None
    timings: dict[str, str]
    init: dict[str, str]  # what became of the init image, by config/image field name: σ̂, start, returned
    error: str


@dataclass
class PlaygroundPage:
    browser: Browser

    @property
    def driver(self) -> Any:
        return self.browser.driver

    def open(self, url: str, timeout_s: float = 30) -> None:
        """Loads the page afresh (``url`` may carry a comparison in its hash) until its controls are
        built. (A page that differs from the open one by its hash only would not be reloaded.)"""
        self.driver.get("about:blank")
        self.browser.open(url)
        self.browser.wait_for("body[data-ready=true] .column", timeout_s)

    def control(self, css: str, name: str) -> WebElement:
        return self.driver.find_element(By.CSS_SELECTOR, f'{css} [name="{name}"]')

    def options(self, css: str, name: str) -> list[str]:
        """The values of a select's options, disabled ones included."""
        return [o.get_attribute("value") for o in Select(self.control(css, name)).options]

    def word_box(self, css: str, name: str, word: str) -> WebElement | None:
        """The checkbox of a word a number field also takes (strength's "auto"), if it has one."""
        boxes = self.driver.find_elements(
            By.CSS_SELECTOR, f'{css} [data-field="{name}"] input[data-word="{word}"]'
        )
        return boxes[0] if boxes else None

    def set(self, css: str, name: str, value: str) -> None:
        """Sets a control as typing or picking would (a select's option, a box's text, a checkbox, a
        number field's word by its box)."""
        element = self.control(css, name)
        word = self.word_box(css, name, value)
        if word is not None:
            if not word.is_selected():
                word.click()
        elif element.tag_name == "select":
            Select(element).select_by_value(value)
        elif element.get_attribute("type") == "checkbox":
            if element.is_selected() != (value == "true"):
                element.click()
        else:
            element.clear()
            element.send_keys(value)

    def value(self, css: str, name: str) -> str:
        element = self.control(css, name)
        if element.get_attribute("type") == "checkbox":
            return "true" if element.is_selected() else ""
        words = self.driver.find_elements(By.CSS_SELECTOR, f'{css} [data-field="{name}"] input[data-word]')
        checked = [str(box.get_attribute("data-word")) for box in words if box.is_selected()]
        return checked[0] if checked else str(element.get_attribute("value"))

    def pick_file(self, css: str, name: str, path: Path, timeout_s: float = 10) -> None:
        """Picks ``path`` in a file field as the file dialog would, and waits until the page has read it
        (its thumbnail shows the image)."""
        self.control(css, name).send_keys(str(path.resolve()))
        self.wait_until(lambda: self.thumbnail(css, name)["natural_width"] > 0, timeout_s)

    def thumbnail(self, css: str, name: str) -> dict[str, Any]:
        """A file field's preview: shown or not, its source, natural and shown size, rendering."""
        return dict(
            self.driver.execute_script(
                """const img = document.querySelector(arguments[0]);
                return {shown: !!img && !img.hidden, src: img ? img.getAttribute('src') || '' : '',
                        natural_width: img && !img.hidden && img.complete ? img.naturalWidth : 0,
                        shown_height: img ? img.getBoundingClientRect().height : 0,
                        rendering: img ? getComputedStyle(img).imageRendering : ''};""",
                f'{css} [data-field="{name}"] img.thumb',
            )
        )

    def hint(self, css: str, name: str) -> str:
        return str(
            self.driver.find_element(By.CSS_SELECTOR, f'{css} [data-field="{name}"] .hint').get_attribute(
                "textContent"
            )
        )

    def column_count(self) -> int:
        return len(self.driver.find_elements(By.CSS_SELECTOR, ".column"))

    def fill(self, shared: dict[str, str], columns: list[dict[str, str]]) -> None:
        """The shared fields, then one column per entry of ``columns`` (added with "+ setting")."""
        for name, value in shared.items():
            self.set("#shared", name, value)
        for index, values in enumerate(columns, 1):
            if index > self.column_count():
                self.driver.find_element(By.ID, "add-column").click()
            for name, value in values.items():
                self.set(column_css(index), name, value)

    def run(self, timeout_s: float = 120) -> None:
        """Clicks Run and waits until every column has finished (or been refused)."""
        runs = int(self.driver.execute_script("return Number(document.body.dataset.runs || 0)"))
        self.driver.find_element(By.ID, "run").click()
        self.browser.wait_for(f"body[data-runs='{runs + 1}']", timeout_s)

    def reproduce_link(self) -> str:
        return str(self.driver.find_element(By.ID, "reproduce").get_attribute("href"))

    def field_error(self, css: str, name: str) -> str:
        errors = self.driver.find_elements(By.CSS_SELECTOR, f'{css} [data-field="{name}"] .error')
        return " ".join(e.text for e in errors if e.is_displayed())

    def live_state(self, index: int) -> dict[str, Any]:
        """The column's live view now: its status, step text and whether a preview image shows."""
        return dict(
            self.driver.execute_script(
                """const column = document.querySelector(arguments[0]);
                const step = column.querySelector('.live .step');
                const preview = column.querySelector('img.preview');
                return {status: column.dataset.status || '', step: step ? step.textContent : '',
                        preview: !!preview && !preview.hidden && preview.src.startsWith('data:image/png'),
                        preview_natural: preview ? preview.naturalWidth : 0};""",
                column_css(index),
            )
        )

    def result(self, index: int) -> ColumnResult:
        column = self.driver.find_element(By.CSS_SELECTOR, column_css(index))
        images = self.driver.execute_script(
            """return [...arguments[0].querySelectorAll('img.final')].map(img => ({
                src: img.src, complete: img.complete, natural_width: img.naturalWidth,
                natural_height: img.naturalHeight, shown_width: img.getBoundingClientRect().width,
                rendering: getComputedStyle(img).imageRendering,
                noise_estimate: Number(img.closest('figure').querySelector('.noise').dataset.noiseEstimate),
                noise_text: img.closest('figure').querySelector('.noise').textContent}));""",
            column,
        )
        configs = column.find_elements(By.CSS_SELECTOR, "details.config pre")
        config = json.loads(configs[0].get_attribute("textContent")) if configs else None
        timings = {
            row.find_element(By.TAG_NAME, "dt").get_attribute("textContent"): row.find_element(
                By.TAG_NAME, "dd"
            ).get_attribute("textContent")
            for row in column.find_elements(By.CSS_SELECTOR, ".timings div")
        }
        init = {
            str(row.get_attribute("data-name")): str(
                row.find_element(By.TAG_NAME, "dd").get_attribute("textContent")
            )
            for row in column.find_elements(By.CSS_SELECTOR, "dl.init div")
        }
        errors = column.find_elements(By.CSS_SELECTOR, ".column-error")
        return ColumnResult(
            job_id=column.get_attribute("data-job-id"),
            status=column.get_attribute("data-status"),
            previews=int(column.get_attribute("data-previews") or 0),
            images=list(images),
            config=config,
            timings={str(k): str(v) for k, v in timings.items()},
            init=init,
            error=" ".join(e.text for e in errors if e.is_displayed()),
        )

    def wait_until(self, predicate: Any, timeout_s: float, poll_s: float = 0.1) -> Any:
        return WebDriverWait(self.driver, timeout_s, poll_frequency=poll_s).until(lambda _: predicate())
