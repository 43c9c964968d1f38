"""The closed-form sampler error on the exact model (``workers/evaluation/exact_error.py``) is what
sampling many images measures, noise-free."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from workers.evaluation.exact_error import exact_error
from workers.evaluation.noise_metrics import structured_frechet_distance, variance_ratios
from workers.evaluation.noise_models import class_gaussians, exact_mixture, load_sweep_model
from workers.evaluation.noise_settings import Setting, SweepSize
from workers.evaluation.noise_sweep import sample_setting
from workers.evaluation.optimize_schedules import resolved
from workers.models.loading import LoadedModel


@pytest.fixture(scope="module")
def exact_model() -> LoadedModel:
    torch.set_num_threads(1)
    return load_sweep_model("exact")


def error(model: LoadedModel, classes: tuple[int, ...] = (1,), **fields: Any):  # type: ignore[no-untyped-def]
    config = resolved(model, guidance_scale=1.0, **fields)
    return exact_error(exact_mixture(model), model.scheduler_config, config, classes)


@pytest.mark.parametrize(
    "fields",
    [
        {"sampler": "ddim", "steps": 8},
        {"sampler": "dpmpp_2m", "steps": 6, "schedule": "karras"},
        {"sampler": "ddpm", "steps": 8, "variance_type": "fixed_large"},
    ],
    ids=["ddim", "dpmpp_2m-karras", "ddpm-fixed_large"],
)
def test_the_closed_form_agrees_with_many_samples(exact_model: LoadedModel, fields: dict[str, Any]) -> None:
    exact = error(exact_model, **fields)
    setting = Setting("exact", **fields)  # type: ignore[arg-type]
    sampled = sample_setting(exact_model, setting, SweepSize((1,), 768, 1))
    reference = class_gaussians(exact_model, (1,))[1]
    low, high = variance_ratios(sampled.latents, reference)
    assert low == pytest.approx(exact.low_ratio, rel=0.03)
    assert high == pytest.approx(exact.high_ratio, rel=0.06)
    # the estimator's own bias at n = 768 is ~Σλ/(2n) ≈ 0.05; its spread grows with FD* (10.3% seen
    # at FD* ≈ 2.5 for dpmpp_2m on karras: one fixed draw of 768 samples)
    assert structured_frechet_distance(sampled.latents, reference) == pytest.approx(
        exact.fd, rel=0.15, abs=0.15
    )


def test_ddim_with_eta_one_is_ddpm_and_a_thousand_ddpm_steps_are_exact(exact_model: LoadedModel) -> None:
    ddpm = error(exact_model, (0, 8), sampler="ddpm", steps=10)
    ddim = error(exact_model, (0, 8), sampler="ddim", steps=10, eta=1.0)
    assert ddpm.fd == pytest.approx(ddim.fd, rel=1e-5)
    assert error(exact_model, (0, 8), sampler="ddpm", steps=1000).fd < 0.01
    assert ddpm.fd > 5


def test_a_guided_sampler_has_no_closed_form(exact_model: LoadedModel) -> None:
    with pytest.raises(ValueError, match="guidance 1"):
        config = resolved(exact_model, sampler="ddim", steps=5, guidance_scale=2.0)
        exact_error(exact_mixture(exact_model), exact_model.scheduler_config, config, (0,))
