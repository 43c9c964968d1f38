"""The result builder is a pure function: finished states, the record, timestamps and the
worker's name in, ``JobResult`` out; its PNG bytes are the pinned golden ones."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator

import numpy as np
import pytest

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest, JobRecord
from tests.golden.requests import GOLDEN_REQUESTS, load_hashes, request_key
from workers.images import to_uint8
from workers.noise_estimate import noise_estimate
from workers.results import build_result
from workers.sampling.engine import generate
from workers.sampling.state import visited_timesteps

REQUEST = next(r for r in GOLDEN_REQUESTS if r.get("num_images") == 3 and r["model"] == "mnist-unet")


def clock(*readings: float):  # type: ignore[no-untyped-def]
    """A clock that returns ``readings`` in turn."""
    times: Iterator[float] = iter(readings)
    return lambda: next(times)


def test_the_result_of_a_finished_job(bundled_model) -> None:  # type: ignore[no-untyped-def]
    infos = {bundled_model.info.name: bundled_model.info}
    limits = Limits(max_steps=1000, max_images=16, max_guidance_scale=30)
    config = resolve_request(GenerationRequest.model_validate(REQUEST), infos, "mnist-unet", limits)
    record = JobRecord(id="j" * 32, status="running", model="mnist-unet", config=config, created_at=100.0)
    states = generate(bundled_model, config, job_id=record.id)

    result = build_result(states, record, admitted_at=100.25, worker="w-1", clock=clock(101.0, 101.5))

    png_bytes = [base64.b64decode(image.png_base64) for image in result.images]
    assert [hashlib.sha256(png).hexdigest() for png in png_bytes] == load_hashes()[request_key(REQUEST)]
    assert [(i.index, i.seed, i.class_label) for i in result.images] == [(k, 27 + k, 6) for k in range(3)]
    for image, state in zip(result.images, states, strict=True):
        assert (image.width, image.height) == (28, 28)
        assert image.noise_estimate == noise_estimate(to_uint8(state.latent))
    assert result.worker == "w-1"
    assert result.config == config.model_copy(update={"timesteps": visited_timesteps(states[0].scheduler)})
    assert len(result.config.timesteps or []) == 6
    timings = result.timings
    assert (timings.queue_wait_ms, timings.inference_ms) == (250.0, 750.0)
    assert (timings.encode_ms, timings.total_ms) == (500.0, 1500.0)
    step_seconds = [t for s in states for t in s.step_seconds]
    assert timings.step_ms_mean == pytest.approx(1000 * float(np.mean(step_seconds)), abs=1e-3)

    # pure: the same inputs give the same result
    again = build_result(states, record, admitted_at=100.25, worker="w-1", clock=clock(101.0, 101.5))
    assert again == result
