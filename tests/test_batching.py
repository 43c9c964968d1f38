"""Continuous batching never changes an image: 16 different requests in flight together give
the same PNGs (within 1/255 per pixel) as each request run alone, and a request replayed alone
is bit-identical."""

from __future__ import annotations

import base64
import io
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
from PIL import Image

SAMPLERS = [
    {"sampler": "ddim"},
    {"sampler": "ddim", "eta": 1.0},
    {"sampler": "ddim", "eta": 0.5, "variance_bound": 0.1},
    {"sampler": "ddpm"},
    {"sampler": "ddpm", "variance_type": "fixed_large"},
    {"sampler": "dpmpp_2m", "schedule": "karras"},
    {"sampler": "unipc"},
    {"sampler": "euler_a"},
]


def requests() -> list[dict[str, object]]:
    out = []
    for i in range(16):
        body: dict[str, object] = {"class_label": i % 10, "seed": 500 + i, "steps": 6 + i % 5}
        body.update(SAMPLERS[i % len(SAMPLERS)])
        body["guidance_scale"] = 1.0 if i % 4 == 0 else 1.5 + 0.5 * (i % 3)
        out.append(body)
    return out


def pixels(response_body: dict) -> np.ndarray:  # type: ignore[type-arg]
    png = base64.b64decode(response_body["images"][0]["png_base64"])
    return np.asarray(Image.open(io.BytesIO(png)), dtype=np.int16)


def forwards_wider_than(metrics_url: str, rows: int, model: str = "mnist-unet") -> float:
    """How many forwards of ``model`` so far carried more than ``rows`` rows (from the worker's
    histogram)."""
    text = httpx.get(metrics_url).text
    count = below = 0.0
    for line in text.splitlines():
        if line.startswith(f'denoise_worker_batch_rows_count{{model="{model}"}}'):
            count = float(line.split()[-1])
        if line.startswith(f'denoise_worker_batch_rows_bucket{{le="{float(rows)}",model="{model}"}}'):
            below = float(line.split()[-1])
    return count - below


def test_images_do_not_depend_on_what_else_is_in_flight(
    client: httpx.Client, worker_process: dict[str, str]
) -> None:
    wide_before = forwards_wider_than(worker_process["metrics_url"], 16)
    bodies = requests()
    accepted = [
        client.post("/v1/generations", json=b, headers={"Prefer": "respond-async"}).json()["id"]
        for b in bodies
    ]

    def finished(job_id: str) -> dict:  # type: ignore[type-arg]
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            body = client.get(f"/v1/jobs/{job_id}").json()
            if body["status"] in {"succeeded", "failed", "cancelled"}:
                return body  # type: ignore[no-any-return]
            time.sleep(0.1)
        raise TimeoutError(job_id)

    with ThreadPoolExecutor(4) as pool:
        together = list(pool.map(finished, accepted))
    assert all(t["status"] == "succeeded" for t in together)
    # they really shared forwards: some forward carried more than 16 rows
    assert forwards_wider_than(worker_process["metrics_url"], 16) > wide_before

    worst = 0
    for body, crowd in zip(bodies, together, strict=True):
        alone = client.post("/v1/generations", json=body).json()
        again = client.post("/v1/generations", json=body).json()
        assert alone["images"][0]["png_base64"] == again["images"][0]["png_base64"], body  # replay: exact
        difference = int(np.abs(pixels(alone) - pixels(crowd)).max())
        worst = max(worst, difference)
        assert difference <= 1, (body, difference)
    print(f"\nlargest per-pixel difference, crowd vs alone: {worst}/255")
