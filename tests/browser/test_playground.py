"""The playground at ``/``, in real headless Chromium on the live test API (the session's worker serves
mnist-unet and mnist-gauss): its controls are the API's, a three-way comparison runs live and shows
what the API stored, its link brings the comparison back, and refusals land next to their field."""

from __future__ import annotations

import base64
import io
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from tests.browser.harness import Browser
from tests.browser.playground_page import COMPARISON, SHARED, PlaygroundPage, column_css
from tests.conftest import ApiProcess

FIRST = column_css(1)
KEY = "playground-key-0123456789abcdef"


def request_properties(openapi: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """POST /v1/generations' fields, each as its non-null JSON Schema branch."""
    ref = openapi["paths"]["/v1/generations"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    schema = openapi["components"]["schemas"][ref["$ref"].rsplit("/", 1)[-1]]
    return {
        name: next((b for b in prop.get("anyOf", [prop]) if b.get("type") != "null"), {})
        for name, prop in schema["properties"].items()
    }


def number_text(value: float) -> str:
    """A schema bound as an HTML attribute holds it (JavaScript's shortest form: 1000, 0.5)."""
    return str(int(value)) if float(value).is_integer() else repr(value)


def test_the_controls_are_built_from_the_api(browser: Browser, api_url: str, client: httpx.Client) -> None:
    models = client.get("/v1/models").json()
    samplers = client.get("/v1/samplers").json()
    fields = request_properties(client.get("/openapi.json").json())
    page = PlaygroundPage(browser)
    started = time.perf_counter()
    page.open(f"{api_url}/")
    built_s = time.perf_counter() - started

    assert page.options("#shared", "model") == [m["name"] for m in models]
    assert page.value("#shared", "model") == "mnist-unet"  # the API's default model
    unet = next(m for m in models if m["name"] == "mnist-unet")
    assert page.options("#shared", "class_label") == [str(i) for i in range(unet["num_classes"])] + [""]
    assert page.value("#shared", "width") == str(unet["image_size"])  # drawn at its native size only
    assert not page.control("#shared", "width").is_enabled()
    assert not page.control("#shared", "prompt").is_displayed()  # a class model takes no prompt
    assert page.options(FIRST, "sampler") == [s["name"] for s in samplers]
    assert page.value(FIRST, "sampler") == unet["default_sampler"]
    assert page.value(FIRST, "steps") == str(unet["default_steps"])
    # every numeric knob carries the schema's bounds
    numeric = {n: f for n, f in fields.items() if f.get("type") in ("integer", "number")}
    for name in ("steps", "eta", "variance_bound", "variance_scale", "guidance_scale", "guidance_rescale"):
        control = page.control(FIRST, name)
        assert control.get_attribute("min") == number_text(numeric[name]["minimum"]), name
        assert control.get_attribute("max") == number_text(numeric[name]["maximum"]), name
    assert page.control("#shared", "num_images").get_attribute("max") == number_text(
        numeric["num_images"]["maximum"]
    )
    assert page.options(FIRST, "variance_type") == ["", *fields["variance_type"]["enum"]]

    # each sampler: its schedules, and exactly its knobs enabled
    knobs = {knob for s in samplers for knob in s["knobs"]}
    for sampler in samplers:
        page.set(FIRST, "sampler", sampler["name"])
        assert page.options(FIRST, "schedule") == sampler["schedules"], sampler["name"]
        enabled = {k for k in knobs if page.control(FIRST, k).is_enabled()}
        if sampler["noise"] == "either":  # deterministic by default: no variance to bound or scale
            enabled |= {"variance_bound", "variance_scale"} & set(sampler["knobs"])
        assert enabled == set(sampler["knobs"]), sampler["name"]
        assert page.control(FIRST, "deterministic").is_enabled() == (sampler["noise"] == "either")
    page.set(FIRST, "sampler", "ddim")
    page.set(FIRST, "eta", "0.5")  # DDIM with η > 0 injects noise: its variance can be bounded
    assert page.control(FIRST, "variance_bound").is_enabled()
    print(f"\nthe playground built its controls from the API in {built_s:.2f} s")


def test_a_three_way_comparison_runs_live_and_shows_what_the_api_stored(
    browser: Browser, api_url: str, client: httpx.Client, tmp_path: Path
) -> None:
    page = PlaygroundPage(browser)
    page.open(f"{api_url}/")
    page.fill(SHARED, COMPARISON)
    started = time.perf_counter()
    page.run(timeout_s=120)
    ran_s = time.perf_counter() - started

    pngs = []
    for index, setting in enumerate(COMPARISON, 1):
        shown = page.result(index)
        assert shown.status == "succeeded" and shown.job_id, (index, shown.error)
        job = client.get(f"/v1/jobs/{shown.job_id}").json()
        config = job["config"]
        assert (config["sampler"], config["steps"], config["seed"], config["class_label"]) == (
            setting["sampler"],
            10,
            1234,
            3,
        )
        assert shown.config == config  # the resolved config, as GET /v1/jobs/{id} has it
        assert set(shown.timings) == {name.replace("_ms", "").replace("_", " ") for name in job["timings"]}
        assert shown.previews >= 1, "no x̂₀ preview reached the column"
        [image] = shown.images
        [stored] = job["images"]
        assert image["src"] == f"data:image/png;base64,{stored['png_base64']}"
        assert image["complete"] and (image["natural_width"], image["natural_height"]) == (28, 28)
        assert image["shown_width"] == 224 and image["rendering"] == "pixelated"
        assert image["noise_estimate"] == stored["noise_estimate"]
        assert abs(float(re.findall(r"[\d.]+", image["noise_text"])[0]) - stored["noise_estimate"]) <= 0.005
        decoded = Image.open(io.BytesIO(base64.b64decode(stored["png_base64"])))
        assert decoded.size == (28, 28)
        pngs.append(stored["png_base64"])
    assert len(set(pngs)) > 1  # three samplers, not one image three times
    assert [r.url for r in browser.requests() if r.leaves_this_host] == []
    shot = Image.open(browser.screenshot(tmp_path / "playground.png"))
    assert len(shot.convert("L").getcolors(maxcolors=256) or ()) > 16

    # the link brings the same comparison back in a new page, without running it
    link = page.reproduce_link()
    first_tab = browser.driver.current_window_handle
    browser.driver.switch_to.new_window("tab")
    try:
        page.open(link)
        assert page.column_count() == len(COMPARISON)
        for name, value in SHARED.items():
            assert page.value("#shared", name) == value, name
        for index, setting in enumerate(COMPARISON, 1):
            for name, value in setting.items():
                assert page.value(column_css(index), name) == value, (index, name)
        assert browser.driver.execute_script("return document.body.dataset.runs") is None
    finally:
        browser.driver.close()
        browser.driver.switch_to.window(first_tab)
    print(f"\nthree-way comparison (ddpm, ddim, unipc at 10 steps) ran in the page in {ran_s:.2f} s")


def test_a_long_job_shows_its_steps_and_previews_while_it_runs(browser: Browser, api_url: str) -> None:
    page = PlaygroundPage(browser)
    steps = 200
    seen: list[dict[str, Any]] = []

    def running_with_a_preview() -> bool:
        state = page.live_state(1)
        seen.append(state)
        found = re.fullmatch(rf"step (\d+) of {steps}", state["step"])
        return bool(found and 0 < int(found.group(1)) < steps and state["preview"])

    started = time.perf_counter()
    page.open(f"{api_url}/#model=mnist-unet&class_label=5&seed=7&1.sampler=ddim&1.steps={steps}&run=1")
    page.wait_until(running_with_a_preview, 60)
    live_s = time.perf_counter() - started
    assert seen[-1]["status"] == "running" and seen[-1]["preview_natural"] == 28
    browser.wait_for("body[data-runs='1']", 120)
    shown = page.result(1)
    assert shown.status == "succeeded" and shown.previews >= 1 and shown.config is not None
    assert shown.config["steps"] == steps
    print(f"\nlive: {seen[-1]['step']} with an x̂₀ preview {live_s:.2f} s after the page was asked for")


def test_refusals_are_shown_next_to_their_column_and_field(browser: Browser, api_url: str) -> None:
    page = PlaygroundPage(browser)
    page.open(
        f"{api_url}/#model=mnist-unet&class_label=3&seed=1"
        "&1.sampler=ddim&1.steps=0"
        "&2.sampler=ddim&2.deterministic=true&2.eta=0.5"
        "&3.sampler=ddim&3.steps=4"
    )
    page.run(timeout_s=60)
    assert "greater than or equal to 1" in page.field_error(column_css(1), "steps")
    assert "eta must be 0 when deterministic is true" in page.field_error(column_css(2), "eta")
    assert page.field_error(column_css(1), "eta") == page.field_error(column_css(2), "steps") == ""
    refused = [page.result(index) for index in (1, 2)]
    assert all(r.status == "refused" and r.job_id is None for r in refused)
    assert page.result(3).status == "succeeded"  # a refused column stops no other

    # a shared field's refusal is shown once, at that field; no column runs on another seed
    page.open(f"{api_url}/#model=mnist-unet&class_label=3&seed=-5&1.sampler=ddim&2.sampler=ddpm&run=1")
    browser.wait_for("body[data-runs='1']", 60)
    assert page.field_error("#shared", "seed") == "seed: Input should be greater than or equal to 0"
    assert all(page.result(index).status == "refused" for index in (1, 2))


def test_an_api_with_keys_takes_the_key_typed_into_the_page(
    browser: Browser, start_api: Callable[..., ApiProcess], worker_process: dict[str, str]
) -> None:
    api = start_api(DENOISE_API_KEYS=KEY)
    page = PlaygroundPage(browser)
    browser.driver.get("about:blank")
    browser.open(f"{api.url}/")  # the page is open; the API is not
    [status] = browser.wait_for("#status.error")
    assert "API key" in status.text and "401" not in status.text
    key = browser.driver.find_element(By.ID, "api-key")
    key.send_keys(KEY, Keys.TAB)
    try:
        browser.wait_for("body[data-ready=true] .column")
        page.fill({"class_label": "1", "seed": "5"}, [{"sampler": "euler", "steps": "3"}])
        page.run(timeout_s=60)  # POST and the event stream carry the key, as `Authorization: Bearer`
        assert page.result(1).status == "succeeded"
        page.open(f"{api.url}/")  # kept in the browser's storage for the next visit
        assert browser.driver.find_element(By.ID, "api-key").get_attribute("value") == KEY
    finally:
        browser.driver.execute_script("localStorage.clear()")
