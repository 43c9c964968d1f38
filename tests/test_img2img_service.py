"""img2img and denoising through the live service (real Redis, worker and API): an init image posted
as base64, the resolved config that comes back, replay bit for bit, latent models, and every refusal
a 4xx naming its field with nothing enqueued."""

from __future__ import annotations

import base64
import hashlib
import io
import os

import httpx
import numpy as np
import redis
from PIL import Image

from protocol.keys import init_image_key
from tests.test_hostile_input import queue_state
from tests.workers.test_noise_level import noisy_digits
from workers.noise_estimate import noise_estimate


def png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def decoded(image: dict[str, object]) -> np.ndarray:
    with Image.open(io.BytesIO(base64.b64decode(str(image["png_base64"])))) as opened:
        return np.asarray(opened)


def test_auto_strength_denoises_and_reports_its_start(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    noisy = noisy_digits(50, count=1, seed=31)[0]
    clean = noisy_digits(0, count=1)[0]
    data = png(noisy)
    body = {"model": "mnist-unet", "init_image": b64(data), "strength": "auto", "seed": 5, "steps": 2}
    response = client.post("/v1/generations", json=body)
    assert response.status_code == 200, response.text
    job = response.json()
    config = job["config"]
    assert config["strength"] == "auto" and config["init_image_sha256"] == hashlib.sha256(data).hexdigest()
    assert config["timesteps"][0] == config["start_timestep"] and len(config["timesteps"]) == 2
    assert abs(config["init_noise_estimate"] / 50 - 1) < 0.2
    image = job["images"][0]
    assert image["init_returned"] is False and image["noise_estimate"] <= noise_estimate(noisy)
    out = decoded(image)
    assert np.mean((out.astype(float) - clean) ** 2) < np.mean((noisy.astype(float) - clean) ** 2) / 4
    ttl = redis_client.ttl(init_image_key(job["id"]))
    assert ttl > 0  # the image lives under its own key, expiring like the job
    again = client.post("/v1/generations", json=body).json()
    assert again["images"][0]["png_base64"] == image["png_base64"]  # bit for bit with the seed


def test_a_numeric_strength_on_every_family(client: httpx.Client) -> None:
    digit = noisy_digits(0, count=1)[0]
    for model, extra in (("mnist-unet", {"class_label": 3}), ("mnist-gauss", {"class_label": 3})):
        body = {
            "model": model,
            "init_image": b64(png(digit)),
            "strength": 0.5,
            "steps": 4,
            "seed": 1,
            **extra,
        }
        response = client.post("/v1/generations", json=body)
        assert response.status_code == 200, response.text
        config = response.json()["config"]
        assert len(config["timesteps"]) == 2 and config["start_timestep"] == config["timesteps"][0]
    info = client.get("/v1/models").json()
    text = next(m for m in (info if isinstance(info, list) else info["models"]) if m["name"] == "mnist-text")
    size, channels = text["image_size"], text["channels"]
    pixels = np.zeros((size, size) + ((3,) if channels == 3 else ()), dtype=np.uint8)
    body = {
        "model": "mnist-text",
        "prompt": "seven",
        "init_image": b64(png(pixels)),
        "strength": 0.3,
        "steps": 10,
    }
    response = client.post("/v1/generations", json=body)
    assert response.status_code == 200, response.text
    assert len(response.json()["config"]["timesteps"]) == 3
    refused = client.post("/v1/generations", json={**body, "strength": "auto"})
    assert refused.status_code == 422 and refused.json()["detail"][0]["loc"] == ["body", "strength"]


def test_refusals_name_their_field_and_enqueue_nothing(
    client: httpx.Client, redis_client: redis.Redis
) -> None:
    grey = b64(png(noisy_digits(0, count=1)[0]))
    rgb = b64(png(np.zeros((28, 28, 3), dtype=np.uint8)))
    big = b64(png(np.zeros((32, 32), dtype=np.uint8)))
    huge = b64(os.urandom(2_300_000))  # over max_init_image_bytes (2 MiB), within the body limit
    cases = [
        ({"strength": 0.5}, 422, "strength"),
        ({"init_image": grey, "strength": 0}, 422, "strength"),
        ({"init_image": grey, "strength": "0.5"}, 422, "strength"),
        ({"init_image": grey, "strength": True}, 422, "strength"),
        ({"init_image": "not base64!"}, 422, "init_image"),
        ({"init_image": b64(b"GIF89a not really")}, 422, "init_image"),
        ({"init_image": rgb}, 422, "init_image"),
        ({"init_image": big}, 422, "init_image"),
        ({"init_image": grey, "strength": "auto", "schedule": "optimized", "steps": 8}, 422, "schedule"),
        ({"init_image": grey, "strength": "auto", "sampler": "euler_a"}, 422, "sampler"),
        ({"init_image": huge}, 413, "init_image"),
    ]
    before = queue_state(redis_client)
    images_before = sorted(redis_client.scan_iter("denoise:init-image:*"))
    for fields, status, field in cases:
        response = client.post("/v1/generations", json={"model": "mnist-unet", **fields})
        assert response.status_code == status, (fields.keys(), response.text[:300])
        assert field in [str(p) for p in response.json()["detail"][0]["loc"]], response.text[:300]
    too_long = client.post(
        "/v1/generations",
        content=b'{"init_image": "' + b"A" * (5 * 1024 * 1024) + b'"}',
        headers={"content-type": "application/json"},
    )
    assert too_long.status_code == 413 and "init_image" in too_long.json()["detail"]
    assert queue_state(redis_client) == before
    assert sorted(redis_client.scan_iter("denoise:init-image:*")) == images_before


def test_the_openai_shaped_route_takes_an_init_image_too(client: httpx.Client) -> None:
    noisy = noisy_digits(25, count=1, seed=41)[0]
    body = {"model": "mnist-unet", "prompt": "", "init_image": b64(png(noisy)), "strength": "auto", "seed": 2}
    response = client.post("/v1/images/generations", json=body)
    assert response.status_code == 200, response.text
    details = response.json()["denoise"]
    assert details["config"]["strength"] == "auto" and details["config"]["start_timestep"] is not None
    native = client.post("/v1/generations", json={k: v for k, v in body.items() if k != "prompt"}).json()
    assert response.json()["data"][0]["b64_json"] == native["images"][0]["png_base64"]
    refused = client.post("/v1/images/generations", json={**body, "init_image": "!!"})
    assert refused.status_code == 400 and refused.json()["error"]["param"] == "init_image"
