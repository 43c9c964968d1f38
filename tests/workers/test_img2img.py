"""img2img and auto-strength denoising in-process, through resolution, ``new_states`` and the engine:
the tail of the schedule, replay bit for bit, strength 1 against text-to-image, the auto start's
timestep against the true noise, and the never-noisier guarantee, on pixel and latent models."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pytest
import torch

from protocol.init_images import AUTO_SAMPLERS, AUTO_SCHEDULES, InitImageHeader
from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest, ResolvedConfig
from tests.conftest import _load_in_process
from tests.workers.test_noise_level import noisy_digits
from workers.images import to_uint8
from workers.init_images import InitImage
from workers.models.loaded_model import LoadedModel
from workers.noise_estimate import noise_estimate
from workers.results import delivered_pixels
from workers.sampling.engine import generate
from workers.sampling.img2img import GRAY_HALF_RANGE, training_sigmas
from workers.sampling.state import SamplingState, visited_timesteps
from workers.training.data import load_mnist_digits

MODES = {1: "L", 3: "RGB"}


def run(model: LoadedModel, pixels: np.ndarray, **fields: Any) -> tuple[ResolvedConfig, list[SamplingState]]:
    info = model.info
    height, width = pixels.shape[:2]
    header = InitImageHeader(
        "PNG", width, height, MODES[info.channels], hashlib.sha256(pixels.tobytes()).hexdigest(), pixels.size
    )
    request = GenerationRequest(model=info.name, init_image="(in-process)", **fields)
    config = resolve_request(request, {info.name: info}, info.name, Limits.absolute(), header)
    return config, generate(model, config, init=InitImage(pixels=pixels))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 10 * np.log10(255.0**2 / max(mse, 1e-12))


@pytest.fixture(scope="module")
def digit() -> np.ndarray:
    return load_mnist_digits()[0][7]


def test_a_numeric_strength_runs_the_schedules_tail_and_replays_bit_for_bit(
    bundled_model: LoadedModel, digit: np.ndarray
) -> None:
    fields = {
        "class_label": 3,
        "steps": 10,
        "strength": 0.5,
        "seed": 11,
        "sampler": "unipc",
        "schedule": "uniform",
    }
    _config, states = run(bundled_model, digit, **fields)
    full = visited_timesteps(states[0].scheduler)
    assert states[0].first_step == 5 and states[0].steps_taken == 5
    assert visited_timesteps(states[0].scheduler, 5) == full[5:] and states[0].start is not None
    assert states[0].start.start_timestep == full[5]
    _, again = run(bundled_model, digit, **fields)
    assert torch.equal(states[0].image, again[0].image)
    _, other = run(bundled_model, digit, **{**fields, "seed": 12})
    assert not torch.equal(states[0].image, other[0].image)


@pytest.mark.parametrize("sampler", ["ddim", "euler", "dpmpp_2m"])
def test_strength_one_starts_where_text_to_image_starts(
    bundled_model: LoadedModel, digit: np.ndarray, sampler: str
) -> None:
    """At strength 1 the image enters only through √ᾱ_999 x₀ (about 5e-5 with the cosine schedule),
    so with the same seed the result is text-to-image's to within a gray level or two."""
    fields = {"class_label": 5, "steps": 8, "seed": 3, "sampler": sampler, "schedule": "uniform"}
    _, img2img = run(bundled_model, digit, strength=1.0, **fields)
    info = bundled_model.info
    text = resolve_request(
        GenerationRequest(model=info.name, **fields), {info.name: info}, info.name, Limits.absolute()
    )
    plain = generate(bundled_model, text)
    assert visited_timesteps(img2img[0].scheduler) == visited_timesteps(plain[0].scheduler)
    difference = np.abs(to_uint8(img2img[0].image).astype(int) - to_uint8(plain[0].image).astype(int))
    assert difference.max() <= 3, difference.max()


def test_a_small_strength_keeps_the_image(bundled_model: LoadedModel, digit: np.ndarray) -> None:
    _, states = run(bundled_model, digit, steps=10, strength=0.1, seed=0, sampler="ddim", schedule="uniform")
    assert psnr(to_uint8(states[0].image), digit) > 25


@pytest.mark.parametrize("sigma", [25, 50])
def test_auto_starts_at_the_timestep_of_the_true_noise(bundled_model: LoadedModel, sigma: int) -> None:
    sigmas = training_sigmas(bundled_model.scheduler_config)
    noisy = noisy_digits(sigma, count=12, seed=sigma)
    levels = []
    for pixels in noisy:
        _config, states = run(
            bundled_model, pixels, strength="auto", steps=1, sampler="ddim", schedule="uniform"
        )
        start = states[0].start
        assert start is not None and start.noise_sigma == states[0].init.noise_sigma  # type: ignore[union-attr]
        assert visited_timesteps(states[0].scheduler) == [start.start_timestep]
        levels.append(GRAY_HALF_RANGE * sigmas[start.start_timestep])
    errors = np.abs(np.array(levels) / sigma - 1)
    assert errors.mean() < 0.1 and np.median(errors) < 0.1, errors


def test_auto_never_returns_a_noisier_image_and_denoises(
    bundled_model: LoadedModel, digit: np.ndarray
) -> None:
    for sigma in (5, 25, 50):
        for pixels in noisy_digits(sigma, count=3, seed=100 + sigma):
            _, states = run(
                bundled_model, pixels, strength="auto", steps=2, sampler="ddim", schedule="uniform"
            )
            _delivered, estimate, returned = delivered_pixels(states[0])
            assert estimate <= noise_estimate(pixels) and returned is not None
            if sigma >= 25:  # denoised for real, not by returning the input
                assert not returned and estimate < noise_estimate(pixels), (sigma, estimate)
    # a clean image: σ̂ = 0 starts at t = 0 and comes back all but unchanged
    _, states = run(bundled_model, digit, strength="auto", steps=4, sampler="ddim", schedule="uniform")
    assert states[0].start is not None and states[0].start.start_timestep == 0
    assert states[0].steps_to_run == 1 and psnr(delivered_pixels(states[0])[0], digit) > 40


def test_every_auto_sampler_and_schedule_denoises(bundled_model: LoadedModel) -> None:
    pixels = noisy_digits(50, count=1, seed=5)[0]
    clean = noisy_digits(0, count=1)[0]
    for sampler in AUTO_SAMPLERS:
        for schedule in AUTO_SCHEDULES:
            _config, states = run(
                bundled_model, pixels, strength="auto", steps=3, sampler=sampler, schedule=schedule
            )
            out = to_uint8(states[0].image)
            timesteps = visited_timesteps(states[0].scheduler)
            assert len(timesteps) == 3 and timesteps[0] == states[0].start.start_timestep  # type: ignore[union-attr]
            assert psnr(out, clean) > psnr(pixels, clean) + 3, (sampler, schedule)


def test_the_stochastic_samplers_replay_from_an_init_image(bundled_model: LoadedModel) -> None:
    pixels = noisy_digits(25, count=1, seed=9)[0]
    for fields in ({"strength": "auto", "sampler": "ddpm"}, {"strength": 0.6, "sampler": "euler_a"}):
        _, first = run(bundled_model, pixels, steps=4, seed=21, schedule="uniform", **fields)
        _, second = run(bundled_model, pixels, steps=4, seed=21, schedule="uniform", **fields)
        assert torch.equal(first[0].image, second[0].image)


def test_the_exact_score_model_denoises_too(gauss_model: LoadedModel) -> None:
    pixels = noisy_digits(50, count=1, seed=4)[0]
    clean = noisy_digits(0, count=1)[0]
    _, states = run(gauss_model, pixels, strength="auto", steps=1, sampler="ddim", schedule="uniform")
    assert psnr(to_uint8(states[0].image), clean) > psnr(pixels, clean) + 3


def test_a_latent_model_starts_from_the_vae_latent(digit: np.ndarray) -> None:
    model = _load_in_process("mnist-text")
    size = model.info.image_size
    pixels = np.zeros((size, size), dtype=np.uint8)
    pixels[: digit.shape[0], : digit.shape[1]] = digit
    if model.info.channels == 3:
        pixels = np.stack([pixels] * 3, axis=-1)
    fields = {"prompt": "seven", "steps": 10, "seed": 2, "sampler": "ddim", "schedule": "uniform"}
    _, kept = run(model, pixels, strength=0.2, **fields)
    _, again = run(model, pixels, strength=0.2, **fields)
    assert torch.equal(kept[0].image, again[0].image) and kept[0].steps_to_run == 2
    _, redrawn = run(model, pixels, strength=1.0, **fields)
    # a little strength stays near the image (through the VAE); full strength draws a new one
    assert psnr(to_uint8(kept[0].image), pixels) > psnr(to_uint8(redrawn[0].image), pixels)


def test_an_output_noisier_than_its_input_gives_the_input_back(bundled_model: LoadedModel) -> None:
    pixels = noisy_digits(10, count=1, seed=3)[0]
    _, states = run(bundled_model, pixels, strength="auto", steps=1, sampler="ddim", schedule="uniform")
    state = states[0]
    state.image = torch.rand(1, 1, 28, 28, generator=torch.Generator().manual_seed(0)) * 2 - 1  # pure noise
    delivered, estimate, returned = delivered_pixels(state)
    assert returned is True and np.array_equal(delivered, pixels) and estimate == noise_estimate(pixels)
