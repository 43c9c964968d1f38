"""The playground's init image, in real headless Chromium on the live test API and worker: a PNG picked
from disk (the file input, as a person would) goes to every column as base64; strength waits for it
and takes a number or "auto"; each column shows what the worker made of the image (σ̂, the start
timestep, whether the image came back); the API's refusal of a wrong image lands under the picker;
and the comparison's link keeps strength but leaves the image out."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path

import httpx
import numpy as np
from PIL import Image
from selenium.webdriver.common.by import By

from tests.browser.harness import Browser
from tests.browser.playground_page import PlaygroundPage, column_css
from tests.workers.test_noise_level import noisy_digits
from workers.noise_estimate import noise_estimate

FIRST = column_css(1)
SIGMA = 25  # gray levels of Gaussian noise on the digit
PICKER = ("#shared", "init_image")


def png_file(path: Path, pixels: np.ndarray) -> Path:
    Image.fromarray(pixels).save(path, format="PNG")
    return path


def decoded(png_base64: str) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(png_base64))) as opened:
        return np.asarray(opened)


def test_strength_waits_for_an_init_image_and_takes_a_number_or_auto(
    browser: Browser, api_url: str, tmp_path: Path
) -> None:
    page = PlaygroundPage(browser)
    page.open(f"{api_url}/")
    assert page.control(*PICKER).get_attribute("type") == "file"
    assert page.control(*PICKER).get_attribute("accept") == "image/png,image/jpeg"
    assert page.hint(*PICKER).startswith("a 28×28 grey PNG or JPEG")  # the served model's size
    assert not page.thumbnail(*PICKER)["shown"]
    auto = page.word_box(FIRST, "strength", "auto")
    assert auto is not None
    assert not page.control(FIRST, "strength").is_enabled() and not auto.is_enabled()
    assert page.hint(FIRST, "strength") == "needs an init image (under Every column)"

    digit = png_file(tmp_path / "digit.png", noisy_digits(0, count=1)[0])
    page.pick_file(*PICKER, digit)
    thumbnail = page.thumbnail(*PICKER)
    expected = base64.b64encode(digit.read_bytes()).decode("ascii")
    assert thumbnail["src"] == f"data:image/png;base64,{expected}"  # the file's bytes, as they are
    assert thumbnail["natural_width"] == 28 and thumbnail["rendering"] == "pixelated"
    assert thumbnail["shown_height"] == 56  # 2× its pixels
    assert page.hint(*PICKER) == f"digit.png, {digit.stat().st_size} bytes, 28×28"
    assert page.control(FIRST, "strength").is_enabled() and auto.is_enabled()
    assert page.hint(FIRST, "strength") == ""

    page.set(FIRST, "strength", "auto")
    assert page.value(FIRST, "strength") == "auto"
    assert page.control(FIRST, "strength").get_attribute("placeholder") == "auto"
    page.set(FIRST, "strength", "0.4")  # typing a number takes "auto" back
    assert page.value(FIRST, "strength") == "0.4" and not auto.is_selected()
    assert "1.strength=0.4" in page.reproduce_link()

    page.driver.find_element(By.CSS_SELECTOR, '#shared [data-field="init_image"] button.clear').click()
    assert not page.thumbnail(*PICKER)["shown"] and page.value(*PICKER) == ""
    assert not page.control(FIRST, "strength").is_enabled()
    assert "strength" not in page.reproduce_link()  # a disabled field is not sent, nor linked


def test_a_noisy_digit_picked_from_disk_is_denoised_with_auto_strength(
    browser: Browser, api_url: str, client: httpx.Client, tmp_path: Path
) -> None:
    clean = noisy_digits(0, count=1)[0]
    noisy = noisy_digits(SIGMA, count=1, seed=41)[0]
    path = png_file(tmp_path / "noisy-digit.png", noisy)
    page = PlaygroundPage(browser)
    page.open(f"{api_url}/")
    page.pick_file(*PICKER, path)
    # the page's defaults but strength, against a numeric strength; no class: the digit is unknown
    page.fill(
        {"class_label": "", "seed": "11"}, [{"strength": "auto"}, {"sampler": "ddim", "strength": "0.5"}]
    )
    page.run(timeout_s=120)

    auto, numeric = page.result(1), page.result(2)
    assert auto.status == "succeeded" and auto.job_id, auto.error
    job = client.get(f"/v1/jobs/{auto.job_id}").json()
    config = job["config"]
    assert auto.config == config
    assert config["strength"] == "auto"
    assert config["init_image_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    sigma = config["init_noise_estimate"]
    assert abs(sigma / SIGMA - 1) < 0.2, sigma
    [image] = job["images"]
    assert auto.init == {
        "init_noise_estimate": f"{sigma:.2f} gray levels",
        "start_timestep": str(config["start_timestep"]),
        "init_returned": "no" if image["init_returned"] is False else "yes",
    }
    assert image["init_returned"] is False
    [shown] = auto.images
    assert shown["src"] == f"data:image/png;base64,{image['png_base64']}"
    denoised = decoded(image["png_base64"]).astype(np.float64)
    noisy_mse = np.mean((noisy.astype(np.float64) - clean) ** 2)
    assert np.mean((denoised - clean) ** 2) < noisy_mse / 2
    assert image["noise_estimate"] < noise_estimate(noisy)

    # a number is sent as a JSON number (the API refuses "0.5", a string): no σ̂ to show
    assert numeric.status == "succeeded" and numeric.job_id, numeric.error
    numeric_config = client.get(f"/v1/jobs/{numeric.job_id}").json()["config"]
    assert numeric_config["strength"] == 0.5 and numeric_config["init_noise_estimate"] is None
    assert numeric.init == {"start_timestep": str(numeric_config["start_timestep"])}

    link = page.reproduce_link()
    assert "init_image" not in link and len(link) < 1000
    assert "1.strength=auto" in link and "2.strength=0.5" in link
    [note] = browser.wait_for("#link-note")
    assert "leaves out the init image" in note.text
    print(
        f"\nthe page's file input: σ̂ = {sigma:.2f} of σ = {SIGMA}, start timestep {config['start_timestep']}"
    )


def test_the_apis_refusal_of_an_image_is_shown_under_the_picker(
    browser: Browser, api_url: str, tmp_path: Path
) -> None:
    page = PlaygroundPage(browser)
    page.open(f"{api_url}/#model=mnist-unet&class_label=3&seed=1&1.sampler=ddim&1.steps=2&2.sampler=euler")
    page.pick_file(*PICKER, png_file(tmp_path / "big.png", np.zeros((32, 32), dtype=np.uint8)))
    page.run(timeout_s=60)
    # both columns heard it; the shared field shows it once
    assert (
        page.field_error(*PICKER)
        == "init_image is 32×32; model 'mnist-unet' at this request's size needs 28×28"
    )
    assert all(page.result(index).status == "refused" for index in (1, 2))
    assert all(page.result(index).job_id is None for index in (1, 2))

    not_an_image = tmp_path / "not-an-image.png"
    not_an_image.write_bytes(b"these bytes are no PNG")
    page.control(*PICKER).send_keys(str(not_an_image))
    page.wait_until(lambda: page.field_error(*PICKER) == "", 10)  # a new file: the old word is gone
    page.run(timeout_s=60)
    assert page.field_error(*PICKER) == "init_image is not a PNG or JPEG image"
    assert not page.thumbnail(*PICKER)["natural_width"]  # nothing the browser could show either
