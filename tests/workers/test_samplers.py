"""The reverse process on the real bundled model: every knob does what it says."""

from __future__ import annotations

import pytest
import torch

from protocol.resolution import Limits, resolve_request
from protocol.samplers import SAMPLERS
from protocol.schema import GenerationRequest, ResolvedConfig
from workers.images import to_uint8
from workers.sampling.engine import SamplingEngine, generate
from workers.sampling.state import new_states, rows_of

LIMITS = Limits.absolute()


@pytest.fixture(scope="module")
def config_for(bundled_model):  # type: ignore[no-untyped-def]
    def make(**fields: object) -> ResolvedConfig:
        fields.setdefault("class_label", 7)
        fields.setdefault("seed", 1)
        fields.setdefault("steps", 12)
        request = GenerationRequest(**fields)  # type: ignore[arg-type]
        return resolve_request(request, {"mnist-unet": bundled_model.info}, "mnist-unet", LIMITS)

    return make


def sample(model, config: ResolvedConfig) -> torch.Tensor:  # type: ignore[no-untyped-def]
    return torch.cat([s.latent for s in generate(model, config)])


def test_deterministic_ddim_repeats_bit_identically(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    config = config_for(sampler="ddim")
    assert torch.equal(sample(bundled_model, config), sample(bundled_model, config))
    other_seed = config_for(sampler="ddim", seed=2)
    assert not torch.equal(sample(bundled_model, config), sample(bundled_model, other_seed))


def test_deterministic_sampling_draws_nothing_after_the_initial_latent(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    for name, sampler in SAMPLERS.items():
        if sampler.noise == "stochastic":
            continue
        config = config_for(sampler=name)
        state = generate(bundled_model, config)[0]
        fresh = torch.Generator().manual_seed(config.seed)
        torch.randn((1, 1, 28, 28), generator=fresh)
        assert torch.equal(state.generator.get_state(), fresh.get_state()), name


def test_stochastic_sampling_is_seeded_per_image(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    config = config_for(sampler="ddim", eta=1.0, num_images=2, seed=10)
    pair = sample(bundled_model, config)
    assert torch.equal(pair, sample(bundled_model, config))  # reproducible
    assert not torch.equal(pair[0], pair[1])  # seeds 10 and 11 differ
    alone = sample(bundled_model, config_for(sampler="ddim", eta=1.0, seed=11))
    assert (to_uint8(pair[1:2]) == to_uint8(alone)).all()  # image i == image 0 of seed + i


def test_eta_injects_noise_and_changes_the_image(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    deterministic = sample(bundled_model, config_for(sampler="ddim"))
    stochastic_a = sample(bundled_model, config_for(sampler="ddim", eta=0.8, seed=1))
    stochastic_b = sample(bundled_model, config_for(sampler="ddim", eta=0.8, seed=2))
    assert not torch.equal(deterministic, stochastic_a)
    assert not torch.equal(stochastic_a, stochastic_b)


def test_variance_bound_caps_the_injected_standard_deviation(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    for sampler in ("ddim", "ddpm"):
        extra = {"eta": 1.0} if sampler == "ddim" else {}
        free = generate(bundled_model, config_for(sampler=sampler, **extra))[0].scheduler
        bounded = generate(bundled_model, config_for(sampler=sampler, variance_bound=0.05, **extra))[
            0
        ].scheduler
        assert max(free.injected_noise_std) > 0.05
        assert max(bounded.injected_noise_std) <= 0.05 + 1e-7
        assert all(
            b == pytest.approx(min(f, 0.05), rel=1e-5)
            for f, b in zip(free.injected_noise_std, bounded.injected_noise_std, strict=True)
        )


def test_variance_scale_multiplies_sigma_and_zero_recovers_ddim(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    full = generate(bundled_model, config_for(sampler="ddim", eta=1.0))[0].scheduler
    half = generate(bundled_model, config_for(sampler="ddim", eta=1.0, variance_scale=0.5))[0].scheduler
    for f, h in zip(full.injected_noise_std, half.injected_noise_std, strict=True):
        assert h == pytest.approx(0.5 * f, rel=1e-5)
    annealed_to_zero = sample(bundled_model, config_for(sampler="ddim", eta=1.0, variance_scale=0.0))
    assert torch.equal(annealed_to_zero, sample(bundled_model, config_for(sampler="ddim")))


def test_ddpm_variance_types(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    small = generate(bundled_model, config_for(sampler="ddpm", variance_type="fixed_small"))[0]
    large = generate(bundled_model, config_for(sampler="ddpm", variance_type="fixed_large"))[0]
    assert all(
        a < b
        for a, b in zip(small.scheduler.injected_noise_std, large.scheduler.injected_noise_std, strict=True)
    )
    assert not torch.equal(small.latent, large.latent)


def test_guidance_and_rescale_change_the_image(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    off = sample(bundled_model, config_for(guidance_scale=1.0))
    on = sample(bundled_model, config_for(guidance_scale=3.0))
    rescaled = sample(bundled_model, config_for(guidance_scale=3.0, guidance_rescale=0.7))
    assert (off - on).abs().max() > 0.05
    assert (on - rescaled).abs().max() > 1e-3


def test_clipping_and_thresholding_bound_the_prediction(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    plain = sample(bundled_model, config_for(sampler="ddim", guidance_scale=4.0))
    clipped = sample(bundled_model, config_for(sampler="ddim", guidance_scale=4.0, clip_sample=True))
    thresholded = sample(
        bundled_model, config_for(sampler="ddim", guidance_scale=4.0, dynamic_thresholding=True)
    )
    assert clipped.abs().max() <= 1.0 + 1e-6
    assert thresholded.abs().max() <= 1.0 + 1e-6
    assert not torch.equal(plain, clipped) or plain.abs().max() <= 1.0


@pytest.mark.parametrize(
    ("sampler", "schedule"),
    [(s.name, schedule) for s in SAMPLERS.values() for schedule in s.schedules],
)
def test_every_sampler_and_schedule_runs_the_requested_steps(
    bundled_model, config_for, sampler, schedule
) -> None:  # type: ignore[no-untyped-def]
    if schedule == "ays" or (
        schedule == "optimized" and 5 not in bundled_model.info.optimized_schedules.get(sampler, [])
    ):
        pytest.skip(f"mnist-unet offers no {schedule} schedule for {sampler} at 5 steps")
    config = config_for(sampler=sampler, schedule=schedule, steps=5)
    state = generate(bundled_model, config)[0]
    assert len(state.scheduler.timesteps) == 5 and state.step_index == 5
    assert torch.isfinite(state.latent).all()
    assert state.latent.shape == (1, 1, 28, 28)


def test_an_image_does_not_depend_on_its_batch_mates(bundled_model, config_for) -> None:  # type: ignore[no-untyped-def]
    """16 different requests (every sampler, stochastic ones included) in one batch vs each alone."""
    from tests.test_batching import requests

    configs = [config_for(**body) for body in requests()]
    crowd = [new_states(f"job{i}", config, bundled_model)[0] for i, config in enumerate(configs)]
    SamplingEngine(bundled_model, max_rows=rows_of(crowd)).run_to_completion(crowd)
    worst_pixels = 0.0
    for config, together in zip(configs, crowd, strict=True):
        alone = generate(bundled_model, config)[0].latent
        assert torch.equal(alone, generate(bundled_model, config)[0].latent)  # replay alone: exact
        # before encoding, in pixel units (the latent's [-1, 1] spans 255 levels)
        worst_pixels = max(worst_pixels, 127.5 * float((alone - together.latent).abs().max()))
        assert abs(to_uint8(alone).astype(int) - to_uint8(together.latent).astype(int)).max() <= 1
    print(f"\nlargest difference before encoding, batch of 16 vs alone: {worst_pixels:.2e} pixel levels")
    assert worst_pixels < 0.5
