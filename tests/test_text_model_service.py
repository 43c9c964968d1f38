"""The bundled text-to-image model through the whole service: phrasings it never saw in
training get the digit they ask for (judged by a classifier fitted on the data), the knobs
change its images, and a prompt past its tokenizer's limit is a 422."""

from __future__ import annotations

import base64
import io

import httpx
import numpy as np
import pytest
from PIL import Image

from workers.evaluation.class_accuracy import fit_digit_classifier
from workers.training.data import to_unit_range

PHRASES = {
    "please draw a 7": 7,
    "the number three": 3,
    "nine": 9,
    "4": 4,
    "a handwritten two": 2,
    "digit 0, carefully written": 0,
}


def digits(body: dict) -> np.ndarray:  # type: ignore[type-arg]
    """The images as 28×28 digits (the model draws 32×32: the 28×28 digit padded by 2)."""
    crops = []
    for image in body["images"]:
        pixels = np.asarray(Image.open(io.BytesIO(base64.b64decode(image["png_base64"]))))
        crops.append(pixels[2:30, 2:30])
    return np.stack(crops)


@pytest.fixture(scope="module")
def classifier():  # type: ignore[no-untyped-def]
    return fit_digit_classifier()[0]


def test_prompts_in_new_phrasings_get_the_digit_asked_for(
    client: httpx.Client, worker_process: dict[str, str], classifier
) -> None:  # type: ignore[no-untyped-def]
    right = total = 0
    for phrase, digit in PHRASES.items():
        body = client.post(
            "/v1/generations", json={"model": "mnist-text", "prompt": phrase, "num_images": 4, "seed": 1}
        ).json()
        assert body["status"] == "succeeded", body
        assert body["config"]["guidance_scale"] == 3.0 and body["config"]["width"] == 32
        predicted = classifier.predict(to_unit_range(digits(body).reshape(4, -1)))
        right += int((predicted == digit).sum())
        total += len(predicted)
    assert right / total >= 0.9, f"{right}/{total} images show the digit asked for"


def test_knobs_change_a_text_image(client: httpx.Client, worker_process: dict[str, str]) -> None:
    base = {"model": "mnist-text", "prompt": "seven", "seed": 3, "steps": 10, "sampler": "ddim", "eta": 1.0}

    def png(**change: object) -> str:
        """The image of ``base`` with ``change`` applied (None removes a field)."""
        request = {k: v for k, v in {**base, **change}.items() if v is not None}
        body = client.post("/v1/generations", json=request).json()
        assert body["status"] == "succeeded", body
        return str(body["images"][0]["png_base64"])

    reference = png()
    assert png() == reference  # same seed, same bytes
    for change in (
        {"seed": 4},
        {"prompt": "one"},
        {"guidance_scale": 1.0},
        {"negative_prompt": "seven"},
        {"variance_bound": 0.01},
        {"sampler": "dpmpp_2m", "eta": None},
        {"width": 40, "height": 32},
    ):
        assert png(**change) != reference, change


def test_a_prompt_past_the_tokenizer_limit_is_a_422(
    client: httpx.Client, worker_process: dict[str, str]
) -> None:
    response = client.post(
        "/v1/generations", json={"model": "mnist-text", "prompt": " ".join(["seven"] * 20)}
    )
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"] == ["body", "prompt"] and "at most 14" in detail["msg"]
