"""Euler ancestral sampling with a bounded, annealed injected noise that keeps the marginals.

Karras et al. (2022), "Elucidating the Design Space of Diffusion-Based Generative Models", and
k-diffusion's ``sample_euler_ancestral``, in diffusers' σ-space (x = x_t √(1 + σ²), σ_t² =
(1 − ᾱ_t) / ᾱ_t): a step from σ_from to σ_to is an Euler step of the probability-flow ODE down to
σ_down, then fresh noise σ_up z, with

    σ_up = √(σ_to² (σ_from² − σ_to²) / σ_from²),     σ_down = √(σ_to² − σ_up²)

so that σ_down² + σ_up² = σ_to²: the marginal at σ_to is kept for *any* σ_up ≤ σ_to. Variance
control therefore acts the same way as DDIM's (``ddim.py``): σ'_up = min(s σ_up, b √(1 + σ_to²))
with s = ``variance_scale`` and b = ``variance_bound``, and σ_down = √(σ_to² − σ'_up²). b bounds
the injected noise in the same units as for DDPM and DDIM (x_t = √ᾱ x_0 + √(1 − ᾱ) ε: σ-space
noise σ'_up is σ'_up / √(1 + σ_to²) there), and s = 0 or b = 0 gives Euler's deterministic step.
Where neither binds, the step is diffusers' ``EulerAncestralDiscreteScheduler.step``, same arithmetic.

Notation map: sigma -> σ_from, sigma_to -> σ_to, sigma_up -> σ'_up, sigma_down -> σ_down,
pred_original_sample -> x̂_0.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import EulerAncestralDiscreteScheduler
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_euler_ancestral_discrete import EulerAncestralDiscreteSchedulerOutput

from workers.sampling.predictions import NoiseSource, standard_normal
from workers.sampling.registered_config import extends_config


class VarianceControlledEulerAncestralScheduler(EulerAncestralDiscreteScheduler):
    """EulerAncestralDiscreteScheduler whose σ_up is scaled by s and bounded by b (module doc).

    ``variance_scale`` (s) and ``variance_bound`` (b) are registered config.
    """

    @register_to_config
    @extends_config(EulerAncestralDiscreteScheduler)
    def __init__(
        self, *args: Any, variance_scale: float = 1.0, variance_bound: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.injected_noise_std: list[float] = []  # σ'_up / √(1 + σ_to²) of each step, x_t units
        # draws z; the exact evaluation (``workers.evaluation.exact_error``) swaps in its own
        self.noise_source: NoiseSource = standard_normal

    def step(  # type: ignore[override]
        self,
        model_output: torch.Tensor,
        timestep: float | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> EulerAncestralDiscreteSchedulerOutput:
        if self.step_index is None:
            self._init_step_index(timestep)
        sigma = self.sigmas[self.step_index]
        sample = sample.to(torch.float32)  # diffusers' upcast

        # 1. x̂_0 from the model output (diffusers' c_out, c_skip)
        if self.config.prediction_type == "epsilon":
            pred_original_sample = sample - sigma * model_output
        elif self.config.prediction_type == "v_prediction":
            pred_original_sample = model_output * (-sigma / (sigma**2 + 1) ** 0.5) + (sample / (sigma**2 + 1))
        else:
            raise ValueError(
                f"prediction_type {self.config.prediction_type!r}: expected epsilon or v_prediction"
            )

        # 2. σ_up and σ_down, σ_up scaled and bounded where that binds
        sigma_from = self.sigmas[self.step_index]
        sigma_to = self.sigmas[self.step_index + 1]
        sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
        vp_scale = float(sigma_to**2 + 1) ** 0.5  # σ-space noise over x_t-space noise at σ_to
        limit = float(sigma_up) * self.config.variance_scale
        if self.config.variance_bound is not None:
            limit = min(limit, self.config.variance_bound * vp_scale)
        if limit < float(sigma_up):
            sigma_up = torch.tensor(limit, dtype=sigma_up.dtype)
        sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
        self.injected_noise_std.append(float(sigma_up) / vp_scale)

        # 3. the Euler step down to σ_down, then σ'_up z
        derivative = (sample - pred_original_sample) / sigma
        dt = sigma_down - sigma
        prev_sample = sample + derivative * dt
        noise = self.noise_source(model_output, generator)
        prev_sample = prev_sample + noise * sigma_up
        prev_sample = prev_sample.to(model_output.dtype)
        self._step_index += 1
        return EulerAncestralDiscreteSchedulerOutput(
            prev_sample=prev_sample, pred_original_sample=pred_original_sample
        )
