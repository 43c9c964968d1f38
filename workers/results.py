"""A finished job's ``JobResult``: the PNG and noise estimate of each image, the timings and the
configuration that ran (with the timesteps it visited). No side effects: the clock is a
parameter and the caller observes the metrics."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from protocol.schema import GeneratedImage, JobRecord, JobResult, Timings
from workers.images import png_base64, to_uint8
from workers.noise_estimate import noise_estimate
from workers.sampling.state import SamplingState, visited_timesteps


def delivered_pixels(state: SamplingState) -> tuple[np.ndarray, float, bool | None]:
    """(uint8 pixels, their noise estimate, whether the init image was returned instead) of a
    decoded image. A denoising request (``strength: "auto"``) never returns an image noisier than
    it was given, by the estimate every response reports: when the result scores above the init
    image, the init image is returned (``init_returned``; None for other requests)."""
    assert state.image is not None
    pixels = to_uint8(state.image)
    estimate = noise_estimate(pixels)
    if state.config.strength != "auto" or state.init is None:
        return pixels, estimate, None
    if estimate > state.init.noise_estimate:
        return state.init.pixels, state.init.noise_estimate, True
    return pixels, estimate, False


def build_result(
    states: Sequence[SamplingState],
    record: JobRecord,
    admitted_at: float,
    worker: str,
    clock: Callable[[], float] = time.time,
) -> JobResult:
    """Encodes the finished ``states`` of ``record`` (image order) into its result.

    Args:
        admitted_at: when the worker admitted the job (``time.time()``), the end of its queue wait.
        clock: read when sampling ended (this call) and once the images are encoded.
    """
    inference_done = clock()
    cfg = record.config
    images = []
    for state in states:
        if state.image is None:
            raise ValueError(f"job {record.id}: image {state.index} was not decoded (engine.finished)")
        pixels, estimate, init_returned = delivered_pixels(state)
        images.append(
            GeneratedImage(
                index=state.index,
                seed=state.seed,
                class_label=cfg.class_label,
                width=pixels.shape[1],
                height=pixels.shape[0],
                png_base64=png_base64(pixels),
                noise_estimate=estimate,
                init_returned=init_returned,
            )
        )
    finished = clock()
    step_times = [t for s in states for t in s.step_seconds]
    timings = Timings(
        queue_wait_ms=round(1000 * max(0.0, admitted_at - record.created_at), 3),
        inference_ms=round(1000 * (inference_done - admitted_at), 3),
        step_ms_mean=round(1000 * sum(step_times) / max(1, len(step_times)), 3),
        encode_ms=round(1000 * (finished - inference_done), 3),
        total_ms=round(1000 * max(0.0, finished - record.created_at), 3),
    )
    first = states[0]
    update: dict[str, object] = {"timesteps": visited_timesteps(first.scheduler, first.first_step)}
    if first.start is not None:
        update.update(start_timestep=first.start.start_timestep, init_noise_estimate=first.start.noise_sigma)
    config = cfg.model_copy(update=update)
    return JobResult(images=images, config=config, timings=timings, worker=worker)
