"""Variance control on the samplers that inject noise (``workers/sampling/ddpm.py``,
``euler_ancestral.py``): unbounded steps are diffusers' own; DDPM's marginal form is the DDIM
family, its posterior form the literal clamp; Euler ancestral's bound moves it toward Euler. On the
exact model a tighter bound never makes DDPM's samples worse, and where DDPM injects more than the
marginals need (``fixed_large``) it never makes them noisier."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from diffusers import DDPMScheduler, EulerAncestralDiscreteScheduler, EulerDiscreteScheduler

from workers.evaluation.exact_error import exact_error
from workers.evaluation.noise_metrics import variance_ratios
from workers.evaluation.noise_models import class_gaussians, load_sweep_model
from workers.evaluation.noise_settings import Setting, SweepSize
from workers.evaluation.noise_sweep import mean_noise_estimate, sample_setting
from workers.evaluation.optimize_schedules import resolved
from workers.models.loading import LoadedModel
from workers.sampling.ddim import VarianceControlledDDIMScheduler
from workers.sampling.ddpm import VarianceControlledDDPMScheduler
from workers.sampling.euler_ancestral import VarianceControlledEulerAncestralScheduler

ROOT = Path(__file__).resolve().parents[2]
TRAINING = {
    k: v
    for k, v in json.loads(
        (ROOT / "workers/models/mnist-unet/scheduler/scheduler_config.json").read_text()
    ).items()
    if not k.startswith("_")
}
VISITED = [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]


class PosteriorClampDDPM(DDPMScheduler):
    """The literal clamp as it was served before the marginal form: diffusers' step, with the
    variance it injects scaled and bounded."""

    def __init__(self, *args: Any, scale: float = 1.0, bound: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.scale, self.bound = scale, bound

    def _get_variance(self, t, predicted_variance=None, variance_type=None):  # type: ignore[no-untyped-def]
        variance = super()._get_variance(t, predicted_variance, variance_type) * self.scale**2
        return variance if self.bound is None else torch.clamp(variance, max=self.bound**2)


def run_chain(scheduler: Any, seed: int = 0) -> torch.Tensor:
    """A 10-step chain on fixed inputs (the model output is a fixed function of the sample)."""
    if isinstance(scheduler, EulerDiscreteScheduler | EulerAncestralDiscreteScheduler):
        scheduler.set_timesteps(10)  # trailing (below): Euler ancestral takes no list
    else:
        scheduler.set_timesteps(timesteps=VISITED)
    generator = torch.Generator().manual_seed(seed)
    sample = torch.randn(2, 1, 8, 8, generator=generator) * scheduler.init_noise_sigma
    for t in scheduler.timesteps:
        model_output = 0.5 * torch.tanh(scheduler.scale_model_input(sample, t)) - 0.1
        sample = scheduler.step(model_output, t, sample, generator=generator).prev_sample
    return sample


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
@pytest.mark.parametrize("form", ["marginal", "posterior"])
def test_an_unbound_step_is_diffusers_own_bit_for_bit(variance_type: str, form: str) -> None:
    ours = VarianceControlledDDPMScheduler.from_config(
        TRAINING, variance_type=variance_type, variance_form=form, variance_bound=50.0
    )
    theirs = DDPMScheduler.from_config(TRAINING, variance_type=variance_type)
    assert torch.equal(run_chain(ours), run_chain(theirs))


@pytest.mark.parametrize("variance_type", ["fixed_small", "fixed_large"])
def test_the_posterior_form_is_the_literal_clamp(variance_type: str) -> None:
    for knobs in ({"variance_bound": 0.05}, {"variance_scale": 0.3}):
        ours = VarianceControlledDDPMScheduler.from_config(
            TRAINING, variance_type=variance_type, variance_form="posterior", **knobs
        )
        literal = PosteriorClampDDPM(
            **{**TRAINING, "variance_type": variance_type},
            scale=knobs.get("variance_scale", 1.0),
            bound=knobs.get("variance_bound"),
        )
        assert torch.equal(run_chain(ours), run_chain(literal))


@pytest.mark.parametrize("bound", [0.2, 0.05, 0.0])
def test_the_marginal_form_is_ddim_with_the_bounded_sigma(bound: float) -> None:
    """fixed_small's σ is the posterior's, DDIM η = 1's: bounded, both are the same DDIM member."""
    ddpm = VarianceControlledDDPMScheduler.from_config(TRAINING, variance_bound=bound)
    ddim = VarianceControlledDDIMScheduler.from_config(
        TRAINING, eta=1.0, variance_bound=bound, set_alpha_to_one=True
    )
    torch.testing.assert_close(run_chain(ddpm), run_chain(ddim), rtol=1e-4, atol=1e-5)
    assert max(ddpm.injected_noise_std) <= bound + 1e-7


def test_a_zero_scale_gives_deterministic_ddim() -> None:
    ddpm = VarianceControlledDDPMScheduler.from_config(TRAINING, variance_scale=0.0)
    ddim = VarianceControlledDDIMScheduler.from_config(TRAINING, eta=0.0, set_alpha_to_one=True)
    torch.testing.assert_close(run_chain(ddpm), run_chain(ddim), rtol=1e-4, atol=1e-5)


def test_an_unbound_euler_ancestral_step_is_diffusers_own_bit_for_bit() -> None:
    ours = VarianceControlledEulerAncestralScheduler.from_config(
        TRAINING, timestep_spacing="trailing", variance_bound=50.0
    )
    theirs = EulerAncestralDiscreteScheduler.from_config(TRAINING, timestep_spacing="trailing")
    assert torch.equal(run_chain(ours), run_chain(theirs))


@pytest.mark.parametrize("knobs", [{"variance_bound": 0.0}, {"variance_scale": 0.0}])
def test_euler_ancestral_without_noise_is_euler(knobs: dict[str, float]) -> None:
    quiet = VarianceControlledEulerAncestralScheduler.from_config(
        TRAINING, timestep_spacing="trailing", **knobs
    )
    euler = EulerDiscreteScheduler.from_config(TRAINING, timestep_spacing="trailing")
    torch.testing.assert_close(run_chain(quiet), run_chain(euler), rtol=1e-4, atol=1e-5)
    assert max(quiet.injected_noise_std) == 0


def test_euler_ancestrals_bound_caps_the_noise_in_x_t_units() -> None:
    free = VarianceControlledEulerAncestralScheduler.from_config(TRAINING, timestep_spacing="trailing")
    bounded = VarianceControlledEulerAncestralScheduler.from_config(
        TRAINING, timestep_spacing="trailing", variance_bound=0.05
    )
    run_chain(free), run_chain(bounded)
    assert max(free.injected_noise_std) > 0.05
    for f, b in zip(free.injected_noise_std, bounded.injected_noise_std, strict=True):
        assert b == pytest.approx(min(f, 0.05), rel=1e-5)


def test_an_unknown_form_is_refused() -> None:
    with pytest.raises(ValueError, match="marginal' or 'posterior"):
        VarianceControlledDDPMScheduler.from_config(TRAINING, variance_form="both")


# ------------------------------------------------------------------ on the exact-score model
BOUNDS = (None, 0.5, 0.2, 0.1, 0.05, 0.02, 0.0)


@pytest.fixture(scope="module")
def exact_model() -> LoadedModel:
    return load_sweep_model("exact")


def _exact_fd(model: LoadedModel, variance_type: str, bound: float | None, form: str = "marginal") -> float:
    fields: dict[str, Any] = {"sampler": "ddpm", "steps": 10, "variance_type": variance_type}
    if bound is not None:
        fields.update(variance_bound=bound, variance_form=form)
    config = resolved(model, guidance_scale=1.0, **fields)
    return exact_error(model.network.mixture, model.scheduler_config, config, (0, 1, 8)).fd  # type: ignore[union-attr]


def test_a_tighter_bound_never_makes_the_exact_samples_worse(exact_model: LoadedModel) -> None:
    """fixed_small: the closed-form FD* (noise-free) never rises as b tightens, from DDPM's to
    deterministic DDIM's; the posterior form's explodes (the chain loses its variance)."""
    marginal = [_exact_fd(exact_model, "fixed_small", b) for b in BOUNDS]
    assert all(later <= earlier + 1e-3 for earlier, later in itertools.pairwise(marginal)), marginal
    assert _exact_fd(exact_model, "fixed_small", 0.0, "posterior") > 10 * marginal[0]


def test_a_bound_on_the_large_variance_stays_between_its_ends(exact_model: LoadedModel) -> None:
    """fixed_large: FD* stays between the unbounded step's and deterministic DDIM's (b = 0); at 10
    steps the excess variance of β_t happens to offset DDPM's under-dispersion, so b = 0 is the
    worse end (``docs/noise.md``)."""
    fds = [_exact_fd(exact_model, "fixed_large", b) for b in BOUNDS]
    assert all(fd <= max(fds[0], fds[-1]) + 1e-3 for fd in fds), fds


def test_the_noise_estimate_falls_monotonically_as_the_bound_removes_excess_noise(
    exact_model: LoadedModel,
) -> None:
    """``fixed_large`` injects β_t, more than the marginals need: every tighter bound removes some
    of it and σ̂ (gray levels, what the API returns) never rises; the low-direction variance falls
    from over 2× the truth toward it."""
    size = SweepSize((0, 1, 8), 16, 1)
    gaussians = class_gaussians(exact_model, size.classes)
    estimates, low_ratios = [], []
    for bound in BOUNDS:
        setting = Setting("exact", "ddpm", 10, variance_type="fixed_large", variance_bound=bound)
        sampled = sample_setting(exact_model, setting, size)
        estimates.append(mean_noise_estimate(sampled.pixels))
        low_ratios.append(
            float(
                np.mean(
                    [
                        variance_ratios(sampled.latents[sampled.labels == c], g)[0]
                        for c, g in gaussians.items()
                    ]
                )
            )
        )
    assert all(later <= 1.01 * earlier for earlier, later in itertools.pairwise(estimates)), estimates
    assert estimates[-1] < 0.6 * estimates[0]
    assert low_ratios[0] > 2 and 0.3 < low_ratios[-1] < 1, low_ratios
