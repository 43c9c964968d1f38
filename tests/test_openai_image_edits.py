"""OpenAI's SDK against POST /v1/images/edits on the live API (real Redis, worker, API): a noisy
digit uploaded as a file comes back denoised, the images are those of POST /v1/images/generations
with the same image as init_image, and every refusal reaches the SDK as a 400 naming its field,
with nothing enqueued."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import numpy as np
import openai
import pytest
import redis
from openai import OpenAI
from PIL import Image

from tests.test_hostile_input import queue_state
from tests.test_img2img_service import b64, png
from tests.workers.test_noise_level import noisy_digits


@pytest.fixture(scope="module")
def sdk(api_url: str) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0, timeout=180) as client:
        yield client


def pixels(b64_json: str | None) -> np.ndarray:
    assert b64_json is not None
    with Image.open(io.BytesIO(base64.b64decode(b64_json))) as image:
        assert image.format == "PNG" and image.size == (28, 28) and image.mode == "L"
        return np.asarray(image).astype(float)


def test_the_sdk_denoises_an_uploaded_digit(sdk: OpenAI, client: httpx.Client) -> None:
    noisy = noisy_digits(50, count=1, seed=31)[0]
    clean = noisy_digits(0, count=1)[0].astype(float)
    # extra_body reaches a multipart request as more form fields (the SDK writes them as text)
    result = sdk.images.edit(
        image=("noisy.png", png(noisy), "image/png"),
        prompt="",
        model="mnist-unet",
        n=1,
        size="28x28",
        response_format="b64_json",
        extra_body={"strength": "auto", "seed": 5, "steps": 2},
    )
    assert result.data is not None and len(result.data) == 1
    out = pixels(result.data[0].b64_json)
    assert np.mean((out - clean) ** 2) < np.mean((noisy.astype(float) - clean) ** 2) / 4
    details = result.model_dump()["denoise"]
    config = details["config"]
    assert config["strength"] == "auto" and config["start_timestep"] == config["timesteps"][0]
    assert (config["seed"], len(config["timesteps"])) == (5, 2)
    # the same image as init_image on the JSON route: the very PNG
    body = {"model": "mnist-unet", "prompt": "", "init_image": b64(png(noisy)), "strength": "auto"}
    native = client.post("/v1/images/generations", json={**body, "seed": 5, "steps": 2})
    assert native.status_code == 200, native.text
    assert native.json()["data"][0]["b64_json"] == result.data[0].b64_json


def test_a_class_label_model_draws_the_class_its_prompt_names(sdk: OpenAI) -> None:
    digit = noisy_digits(0, count=1)[0]
    # image[] with one file is OpenAI's array form; the strength default is the native route's (0.8)
    result = sdk.images.edit(
        image=[("digit.png", png(digit), "image/png")],
        prompt="Three",
        model="mnist-gauss",
        n=2,
        extra_body={"steps": 4, "seed": 1},
    )
    assert result.data is not None and len(result.data) == 2
    config = result.model_dump()["denoise"]["config"]
    assert config["class_label"] == 3 and config["strength"] == 0.8 and config["num_images"] == 2
    assert len(config["timesteps"]) == int(4 * 0.8)
    for image in result.data:
        pixels(image.b64_json)


@pytest.mark.parametrize(
    ("arguments", "status", "param", "says"),
    [
        ({"image": ("big.png", b"SIZE32", "image/png")}, 400, "image", "needs 28×28"),
        ({"mask": ("mask.png", b"GREY", "image/png")}, 400, "mask", "not supported"),
        ({"prompt": "a 3"}, 400, "prompt", "3 (three)"),
        ({"image": ("x.png", b"not an image", "image/png")}, 400, "image", "image is not a PNG or JPEG"),
        ({"image": ("empty.png", b"", "image/png")}, 400, "image", "image is empty"),
        ({"image": [("a.png", b"GREY", "image/png")] * 2}, 400, "image", "one image per request"),
        ({"n": 17}, 400, "n", "less than or equal to 16"),
        ({"extra_body": {"n": "abc"}}, 400, "n", "an integer (decimal digits) in [1, 16]"),
        ({"extra_body": {"strength": "1e309"}}, 400, "strength", '(0, 1] or "auto"'),
        ({"extra_body": {"guidance_scale": "NaN"}}, 400, "guidance_scale", "in [0, 30]"),
        ({"extra_body": {"clip_sample": 1}}, 400, "clip_sample", "true or false"),
        ({"extra_body": {"sampler": "plms"}}, 400, "sampler", "Input should be"),
        ({"extra_body": {"init_image": "AAAA"}}, 400, "init_image", "file part 'image'"),
        ({"response_format": "url"}, 400, "response_format", "b64_json"),
        ({"quality": "hd"}, 400, "quality", "Unknown parameter"),
        ({"extra_body": {"strength": "auto", "sampler": "euler_a"}}, 400, "sampler", "timestep"),
    ],
)
def test_refusals_are_bad_request_errors_naming_the_field(
    sdk: OpenAI,
    redis_client: redis.Redis,
    arguments: dict[str, object],
    status: int,
    param: str,
    says: str,
) -> None:
    grey = png(noisy_digits(0, count=1)[0])
    swaps = {b"SIZE32": png(np.zeros((32, 32), dtype=np.uint8)), b"GREY": grey}
    arguments = {"image": ("digit.png", grey, "image/png"), "prompt": "7", "model": "mnist-unet", **arguments}
    image = arguments["image"]
    if isinstance(image, tuple) and image[1] in swaps:
        arguments["image"] = (image[0], swaps[image[1]], image[2])
    if isinstance(arguments.get("mask"), tuple):
        arguments["mask"] = ("mask.png", grey, "image/png")
    before = queue_state(redis_client)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.images.edit(**arguments)  # type: ignore[call-overload]
    error = raised.value
    assert error.status_code == status and error.param == param, (error.param, error.message)
    assert error.type == "invalid_request_error" and says in error.message, error.message
    assert queue_state(redis_client) == before  # nothing was enqueued


def test_json_is_refused_with_415_naming_the_form_and_limits_are_413s(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    before = queue_state(redis_client)
    as_json = client.post("/v1/images/edits", json={"prompt": "7", "init_image": "AAAA"})
    assert as_json.status_code == 415, as_json.text
    error = as_json.json()["error"]
    assert error["code"] == "unsupported_media_type" and "multipart/form-data" in error["message"]
    # over max_init_image_bytes (2 MiB), within the body limit (4 MiB): a 413 naming the image
    huge = client.post(
        "/v1/images/edits",
        files={"image": ("huge.png", b"\x89PNG" + b"\0" * (2 * 1024 * 1024), "image/png")},
        data={"prompt": "7"},
    )
    assert huge.status_code == 413 and huge.json()["error"]["param"] == "image", huge.text
    assert "max_init_image_bytes" in huge.json()["error"]["message"]
    # over the body limit: refused before it is parsed, with the limit named
    over = client.post(
        "/v1/images/edits",
        files={"image": ("over.png", b"\0" * (5 * 1024 * 1024), "image/png")},
        data={"prompt": "7"},
    )
    assert over.status_code == 413 and "max_image_body_bytes" in over.json()["error"]["message"]
    assert queue_state(redis_client) == before
