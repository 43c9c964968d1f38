"""The client against the live test API (real redis-server, worker and API processes)."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Iterator

import httpx
import pytest

from client import AsyncDenoiseClient, DenoiseClient, NotFound, ValidationError, job_png_bytes, to_pil
from protocol.events import JobEvent
from protocol.samplers import SAMPLERS

pytestmark = pytest.mark.usefixtures("worker_process")


@pytest.fixture
def denoise(api_url: str) -> Iterator[DenoiseClient]:
    with DenoiseClient(api_url, poll_interval_s=0.05) as api:
        yield api


class WithoutEvents(httpx.BaseTransport):
    """The live API as a server without the events endpoint (404), whatever this one serves."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.events_requests = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/events"):
            self.events_requests += 1
            return httpx.Response(404, json={"detail": "Not Found"})
        return self.inner.handle_request(request)

    def close(self) -> None:
        self.inner.close()


def test_generate_returns_the_png_bytes_of_a_raw_post_with_the_same_seed(
    denoise: DenoiseClient, client: httpx.Client
) -> None:
    knobs = {"class_label": 7, "sampler": "dpmpp_2m", "steps": 12, "seed": 11, "num_images": 2}
    raw = client.post("/v1/generations", json=knobs)
    assert raw.status_code == 200, raw.text
    job = denoise.generate(**knobs)  # type: ignore[arg-type]
    assert job.status == "succeeded" and job.config.seed == 11
    assert job_png_bytes(job) == [base64.b64decode(image["png_base64"]) for image in raw.json()["images"]]
    picture = to_pil(job.images[0])  # type: ignore[index]
    assert picture.size == (28, 28) and picture.mode == "L"


def test_a_bad_steps_value_is_a_validation_error_naming_steps_and_its_range(denoise: DenoiseClient) -> None:
    for steps in (0, 5000):
        with pytest.raises(ValidationError) as raised:
            denoise.generate(class_label=1, steps=steps)
        assert [error.field for error in raised.value.errors] == ["steps"]
        assert f"steps: steps must be between 1 and 1000; got {steps}" in str(raised.value)
    with pytest.raises(ValidationError, match=r"eta: .*ddim"):  # the API's own check, passed through
        denoise.generate(sampler="ddpm", eta=0.5)
    with pytest.raises(NotFound):
        denoise.job("0" * 32)


def test_events_fall_back_to_polling_on_a_server_without_the_endpoint(api_url: str) -> None:
    transport = WithoutEvents()
    with DenoiseClient(api_url, transport=transport, poll_interval_s=0.02) as api:
        job = api.submit(class_label=4, steps=20, seed=2)
        events = list(api.events(job.id))
        assert api.follow(api.submit(class_label=4, steps=2, seed=2).id).status == "succeeded"
    assert transport.events_requests == 1  # remembered: the second follow polled at once
    *progress, final = events
    assert final.type == "succeeded" and final.final and final.job is not None
    assert final.job.images and final.job.progress.step == 20
    assert all(not event.final for event in progress)
    steps = [event.step or 0 for event in progress if event.type == "running"]
    assert steps == sorted(steps) and all(event.total == 20 for event in progress if event.type == "running")


def test_events_from_the_live_api_end_with_the_final_event(denoise: DenoiseClient) -> None:
    """SSE where the API serves it, polling where it does not: the caller sees the same events."""
    seen: list[JobEvent] = []
    job = denoise.generate(class_label=2, steps=8, seed=3, on_event=seen.append)
    assert seen[-1].type == "succeeded" and seen[-1].job is not None
    assert seen[-1].job.id == job.id and all(event.job_id == job.id for event in seen)


def test_wait_and_cancel(denoise: DenoiseClient) -> None:
    job = denoise.submit(class_label=5, steps=1000, seed=1)
    assert job.status == "queued"
    denoise.cancel(job.id)
    assert denoise.wait(job.id, timeout=60).status == "cancelled"


def test_the_async_client(api_url: str) -> None:
    async def run() -> None:
        async with AsyncDenoiseClient(api_url, poll_interval_s=0.05) as api:
            models, samplers = await asyncio.gather(api.models(), api.samplers())
            assert "mnist-unet" in {model.name for model in models}
            assert [sampler.name for sampler in samplers] == list(SAMPLERS)
            seen: list[JobEvent] = []
            first, second = await asyncio.gather(
                api.generate(class_label=9, steps=6, seed=4, on_event=seen.append),
                api.generate(class_label=9, steps=6, seed=4),
            )
            assert job_png_bytes(first) == job_png_bytes(second)
            assert seen[-1].final
            queued = await api.submit(class_label=9, steps=3, seed=5)
            events = [event async for event in api.events(queued.id)]
            assert events[-1].type == "succeeded"
            with pytest.raises(ValidationError, match="steps must be between 1 and 1000"):
                await api.generate(steps=0)

    asyncio.run(run())


def test_an_init_image_from_a_file_or_a_pil_image_denoises(denoise: DenoiseClient, tmp_path) -> None:  # type: ignore[no-untyped-def]
    from PIL import Image

    from client.images import init_image
    from tests.workers.test_noise_level import noisy_digits

    picture = Image.fromarray(noisy_digits(25, count=1, seed=51)[0])
    picture.save(tmp_path / "noisy.png")
    from_file = denoise.generate(init_image=init_image(tmp_path / "noisy.png"), strength="auto", seed=3)
    from_pil = denoise.generate(init_image=init_image(picture), strength="auto", seed=3)
    assert from_file.config.start_timestep is not None and from_file.config.init_noise_estimate is not None
    assert job_png_bytes(from_file) == job_png_bytes(from_pil)
    with pytest.raises(ValidationError) as refused:
        denoise.generate(init_image=init_image(picture), strength=0)
    # a union's two branches each say why (a number in (0, 1], or "auto")
    assert refused.value.errors and all(error.field.startswith("strength") for error in refused.value.errors)
