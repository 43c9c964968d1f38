"""DDPM ancestral sampling with a bounded, annealed injected variance.

Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models", eq. (6)-(7) and §3.2:

    x_{t'} = μ̃_t(x_t, x̂_0) + σ_t z,     z ~ N(0, I)
    fixed_small: σ_t² = β̃_t = (1 − ᾱ_{t'}) / (1 − ᾱ_t) · β_t      (the posterior variance)
    fixed_large: σ_t² = β_t = 1 − ᾱ_t / ᾱ_{t'}

on the visited (respaced) chain t → t'. Variance control acts where diffusers computes the
variance of the injected noise: σ'_t² = min(s² σ_t², b²), s = variance_scale, b = variance_bound.
The mean μ̃_t is untouched, so s = 0 (or b = 0) leaves the posterior-mean chain.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import register_to_config

from workers.sampling.registered_config import extends_config


class VarianceControlledDDPMScheduler(DDPMScheduler):
    """DDPMScheduler whose injected variance is scaled by ``s²`` and bounded by ``b²``.

    ``variance_scale`` (s) and ``variance_bound`` (b) are registered config, next to the parent's
    ``variance_type``: ``scheduler.config`` shows everything that shapes a step.
    """

    @register_to_config
    @extends_config(DDPMScheduler)
    def __init__(
        self, *args: Any, variance_scale: float = 1.0, variance_bound: float | None = None, **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.injected_noise_std: list[float] = []  # σ'_t of each variance computed

    def _get_variance(  # type: ignore[override]
        self,
        t: int,
        predicted_variance: torch.Tensor | None = None,
        variance_type: str | None = None,
    ) -> torch.Tensor:
        sigma_squared = super()._get_variance(t, predicted_variance, variance_type)  # type: ignore[arg-type]
        sigma_squared = sigma_squared * self.config.variance_scale**2
        if self.config.variance_bound is not None:
            sigma_squared = torch.clamp(sigma_squared, max=self.config.variance_bound**2)
        self.injected_noise_std.append(float(sigma_squared) ** 0.5)
        return sigma_squared
