"""DDPM ancestral sampling with a bounded, annealed injected variance that keeps the marginals.

Ho, Jain & Abbeel (2020), "Denoising Diffusion Probabilistic Models", eq. (6)-(7) and §3.2, on
the visited (respaced) chain t → t':

    x_{t'} = μ̃_t(x_t, x̂_0) + σ_t z,     z ~ N(0, I)
    μ̃_t = √ᾱ_{t'} β_t / (1 − ᾱ_t) · x̂_0 + √(α_t) (1 − ᾱ_{t'}) / (1 − ᾱ_t) · x_t,   α_t = ᾱ_t / ᾱ_{t'}
    fixed_small: σ_t² = β̃_t = (1 − ᾱ_{t'}) / (1 − ᾱ_t) · β_t      (the posterior variance)
    fixed_large: σ_t² = β_t = 1 − ᾱ_t / ᾱ_{t'}

Variance control: σ'_t = min(s σ_t, b), s = ``variance_scale``, b = ``variance_bound``. Where
σ'_t < σ_t (the bound or the scale binds), ``variance_form`` says how the step uses it:

- ``marginal`` (default): the step stays in the DDIM family (Song et al. 2021, eq. 12), whose
  every member keeps the marginals q(x_{t'} | x_0) of the training process::

      x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_dir²) ε̂ + σ'_t z,     σ_dir = min(σ'_t, √β̃_t)

  With σ_dir = σ'_t ≤ √β̃_t this is DDIM with that σ (σ'_t = √β̃_t is the posterior step above,
  written through ε̂), so tightening the bound moves the chain toward deterministic DDIM (η = 0).
  Above √β̃_t (``fixed_large`` only) the mean stays the posterior's and only the excess noise
  σ'_t² − β̃_t shrinks: the bound first removes the variance that β_t adds beyond the marginals.
  The step is continuous in b: at b ≥ σ_t it is the unbounded DDPM step.
- ``posterior``: the literal form, μ̃_t + σ'_t z. μ̃_t assumes that x_t carries the full noise of
  level t, so a bounded chain loses variance step after step (``docs/noise.md`` measures it).

Where the bound and the scale do not bind (σ'_t = σ_t) both forms take the unbounded step with
the same arithmetic as diffusers' ``DDPMScheduler.step``, so unbounded images are unchanged.

Notation map: alpha_prod_t -> ᾱ_t, alpha_prod_t_prev -> ᾱ_{t'}, current_beta_t -> β_t,
posterior_variance -> β̃_t, std_dev_t -> σ'_t, direction_std -> σ_dir,
pred_original_sample -> x̂_0, pred_epsilon -> ε̂.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from diffusers import DDPMScheduler
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_ddpm import DDPMSchedulerOutput

from workers.sampling.predictions import NoiseSource, original_and_noise, standard_normal
from workers.sampling.registered_config import extends_config

VarianceForm = Literal["marginal", "posterior"]


class VarianceControlledDDPMScheduler(DDPMScheduler):
    """DDPMScheduler whose injected σ_t is scaled by s and bounded by b, in the marginal form by
    default (see module doc).

    ``variance_scale`` (s), ``variance_bound`` (b) and ``variance_form`` are registered config,
    next to the parent's ``variance_type``: ``scheduler.config`` shows everything that shapes a step.
    """

    @register_to_config
    @extends_config(DDPMScheduler)
    def __init__(
        self,
        *args: Any,
        variance_scale: float = 1.0,
        variance_bound: float | None = None,
        variance_form: VarianceForm = "marginal",
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        if variance_form not in ("marginal", "posterior"):
            raise ValueError(f"variance_form must be 'marginal' or 'posterior'; got {variance_form!r}")
        self.injected_noise_std: list[float] = []  # σ'_t of each step that injects noise
        # draws z; the exact evaluation (``workers.evaluation.exact_error``) swaps in its own
        self.noise_source: NoiseSource = standard_normal

    def _get_variance(  # type: ignore[override]
        self,
        t: int,
        predicted_variance: torch.Tensor | None = None,
        variance_type: str | None = None,
    ) -> torch.Tensor:
        """σ'_t² = min(s² σ_t², b²) of the configured variance type."""
        sigma_squared = super()._get_variance(t, predicted_variance, variance_type)  # type: ignore[arg-type]
        sigma_squared = sigma_squared * self.config.variance_scale**2
        if self.config.variance_bound is not None:
            sigma_squared = torch.clamp(sigma_squared, max=self.config.variance_bound**2)
        return sigma_squared

    def step(  # type: ignore[override]
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> DDPMSchedulerOutput:
        t = int(timestep)
        if self.config.variance_type not in ("fixed_small", "fixed_large"):
            raise ValueError(f"variance_type {self.config.variance_type!r} is not served")
        # 1. previous (next visited) timestep t', ᾱ_t, ᾱ_{t'} and β_t of the respaced chain
        prev_t = int(self.previous_timestep(t))
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[prev_t] if prev_t >= 0 else self.one
        beta_prod_t = 1 - alpha_prod_t
        beta_prod_t_prev = 1 - alpha_prod_t_prev
        current_alpha_t = alpha_prod_t / alpha_prod_t_prev
        current_beta_t = 1 - current_alpha_t

        # 2. predicted x̂_0 (eq. 15) and ε̂, x̂_0 clipped or thresholded
        pred_original_sample, pred_epsilon = original_and_noise(self, model_output, sample, alpha_prod_t)

        # 3. σ_t² of the variance type, and the injected σ'_t² = min(s² σ_t², b²); the step to
        #    x_0 (t = 0) injects nothing
        noise: torch.Tensor | None = None
        if t > 0:
            noise = self.noise_source(model_output, generator)
            variance = self._get_variance(t)
            std_dev_t = float(variance) ** 0.5
            self.injected_noise_std.append(std_dev_t)
            if self.config.variance_form == "marginal" and bool(variance < super()._get_variance(t)):
                # 4m. the bound binds: the DDIM-family step, σ'_t in the direction term (module doc)
                posterior_variance = torch.clamp(beta_prod_t_prev / beta_prod_t * current_beta_t, min=1e-20)
                direction_std = min(std_dev_t, float(posterior_variance) ** 0.5)
                direction = torch.clamp(beta_prod_t_prev - direction_std**2, min=0) ** 0.5
                prev_sample = alpha_prod_t_prev**0.5 * pred_original_sample + direction * pred_epsilon
                return DDPMSchedulerOutput(
                    prev_sample=prev_sample + std_dev_t * noise, pred_original_sample=pred_original_sample
                )

        # 4p. the posterior mean μ̃_t (eq. 7) plus σ'_t z, with diffusers' arithmetic
        pred_original_sample_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
        current_sample_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
        pred_prev_sample = pred_original_sample_coeff * pred_original_sample + current_sample_coeff * sample
        if noise is not None:
            pred_prev_sample = pred_prev_sample + (variance**0.5) * noise
        return DDPMSchedulerOutput(prev_sample=pred_prev_sample, pred_original_sample=pred_original_sample)
