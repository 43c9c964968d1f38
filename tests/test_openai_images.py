"""OpenAI's own SDK against POST /v1/images/generations on the live API (real Redis, worker, API).

The SDK is used as an OpenAI user would (``base_url`` pointing here); the images must be the very
PNGs that POST /v1/generations gives for the same model, class, seed and knobs, and every refusal
must reach the SDK as its own exception type, naming the parameter.
"""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Callable, Iterator

import httpx
import openai
import pytest
import redis
from openai import OpenAI
from PIL import Image

from protocol.keys import jobs_stream_key
from tests.conftest import ApiProcess
from tests.test_api_protection import metric

MODEL = "mnist-unet"
STREAM = jobs_stream_key(MODEL)


@pytest.fixture(scope="module")
def sdk(api_url: str) -> Iterator[OpenAI]:
    # no retries: a retried request would hide which answer came first
    with OpenAI(base_url=f"{api_url}/v1", api_key="unused", max_retries=0, timeout=180) as client:
        yield client


def test_the_sdk_gets_the_pngs_of_the_native_route(sdk: OpenAI, client: httpx.Client) -> None:
    submitted_before = metric(client.get("/metrics").text, "denoise_api_jobs_submitted_total", model=MODEL)
    started = time.time()
    result = sdk.images.generate(
        model="mnist-unet",
        prompt="7",
        n=2,
        size="28x28",
        response_format="b64_json",
        extra_body={"steps": 5, "seed": 1},
    )
    exposition = client.get("/metrics").text
    assert metric(exposition, "denoise_api_jobs_submitted_total", model=MODEL) == submitted_before + 1
    route = {"route": "/v1/images/generations", "method": "POST"}
    assert metric(exposition, "denoise_api_requests_total", code="200", **route) >= 1
    native = client.post(
        "/v1/generations",
        json={"model": "mnist-unet", "class_label": 7, "num_images": 2, "steps": 5, "seed": 1},
    )
    assert native.status_code == 200, native.text
    assert result.data is not None and len(result.data) == 2
    pngs = [image.b64_json for image in result.data]
    assert pngs == [image["png_base64"] for image in native.json()["images"]]
    for png in pngs:
        assert png is not None
        decoded = Image.open(io.BytesIO(base64.b64decode(png)))
        assert decoded.format == "PNG" and decoded.size == (28, 28) and decoded.mode == "L"
    assert all(image.revised_prompt is None for image in result.data)
    assert started - 1 <= result.created <= time.time() + 1
    details = result.to_dict()["denoise"]  # type: ignore[typeddict-item]
    config = details["config"]
    assert (config["class_label"], config["seed"], config["steps"], config["num_images"]) == (7, 1, 5, 2)
    assert details["timings"]["total_ms"] > 0 and len(details["noise_estimates"]) == 2
    assert client.get(f"/v1/jobs/{details['id']}").json()["status"] == "succeeded"

    # the digit's English word, in any case, names the same class: image 0 again
    word = sdk.images.generate(prompt="Seven", extra_body={"steps": 5, "seed": 1})
    assert word.data is not None and [image.b64_json for image in word.data] == pngs[:1]


@pytest.mark.parametrize(
    ("arguments", "param", "says"),
    [
        ({"prompt": "7", "size": "64x64"}, "size", "28x28 only"),
        ({"prompt": "7", "size": "big"}, "size", "should match pattern"),
        ({"prompt": "cat"}, "prompt", "7 (seven)"),
        ({"prompt": "7", "response_format": "url"}, "response_format", "b64_json"),
        ({"prompt": "7", "n": 17}, "n", "less than or equal to 16"),
        ({"prompt": "7", "extra_body": {"steps": 0}}, "steps", "greater than or equal to 1"),
        ({"prompt": "7", "extra_body": {"sampler": "ddpm", "eta": 0.5}}, "eta", "not honoured"),
        ({"prompt": "7", "extra_body": {"width": 28}}, "width", "Send 'size' instead"),
        ({"prompt": "7", "quality": "hd"}, "quality", "Unknown parameter"),
    ],
)
def test_refusals_are_bad_request_errors_naming_the_parameter(
    sdk: OpenAI, redis_client: redis.Redis, arguments: dict[str, object], param: str, says: str
) -> None:
    before = redis_client.xlen(STREAM)
    with pytest.raises(openai.BadRequestError) as raised:
        sdk.images.generate(**arguments)  # type: ignore[call-overload]
    error = raised.value
    assert error.status_code == 400 and error.param == param and error.type == "invalid_request_error"
    assert says in error.message, error.message
    assert redis_client.xlen(STREAM) == before  # nothing was enqueued


def test_an_unknown_model_is_not_found(sdk: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as raised:
        sdk.images.generate(model="dall-e-3", prompt="7")
    assert raised.value.code == "model_not_found" and raised.value.param == "model"
    assert "mnist-unet" in raised.value.message


def test_errors_outside_the_handler_come_in_openais_shape_too(api_url: str) -> None:
    with httpx.Client(base_url=api_url, timeout=30) as http:
        not_json = http.post(
            "/v1/images/generations", content=b"{", headers={"content-type": "application/json"}
        )
        assert not_json.status_code == 400 and not_json.json()["error"]["type"] == "invalid_request_error"
        wrong_method = http.get("/v1/images/generations")
        assert wrong_method.status_code == 405 and wrong_method.headers["allow"] == "POST"
        assert wrong_method.json()["error"]["message"] == "Method Not Allowed"
        missing = http.post("/v1/images/generations", json={"n": 1})
        assert missing.json()["error"] == {
            "message": "Missing required parameter: 'prompt'.",
            "type": "invalid_request_error",
            "param": "prompt",
            "code": "missing_required_parameter",
        }
        # the native route keeps FastAPI's shape and its 422
        assert http.post("/v1/generations", json={"steps": 0}).json()["detail"][0]["loc"] == ["body", "steps"]


def test_a_job_outliving_the_sync_wait_is_a_504_naming_its_url_and_never_retried(
    start_api: Callable[..., ApiProcess], worker_process: dict[str, str], redis_client: redis.Redis
) -> None:
    api = start_api(DENOISE_SYNC_TIMEOUT_S="1")
    before = redis_client.xlen(STREAM)
    # the SDK retries 5xx twice by default; the 504 says not to, as the job goes on
    with OpenAI(base_url=f"{api.url}/v1", api_key="unused", max_retries=2, timeout=60) as sdk:
        started = time.perf_counter()
        with pytest.raises(openai.InternalServerError) as raised:
            sdk.images.generate(prompt="3", n=4, extra_body={"steps": 1000})
        waited_s = time.perf_counter() - started
    error = raised.value
    location = error.response.headers["location"]
    job_id = location.rsplit("/", 1)[-1]
    try:
        print(f"\nsync wait of 1 s over: 504 after {waited_s:.2f} s, naming {location}")
        assert error.status_code == 504 and error.code == "timeout"
        assert f"{api.url}{location}" in error.message
        assert error.response.headers["x-should-retry"] == "false"
        assert redis_client.xlen(STREAM) == before + 1  # one job: no retry made another
        assert waited_s < 5
    finally:
        httpx.delete(f"{api.url}/v1/jobs/{job_id}")
