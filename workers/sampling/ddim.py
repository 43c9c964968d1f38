"""DDIM with any timestep list and a bounded, annealed injected variance.

Song, Meng & Ermon (2021), "Denoising Diffusion Implicit Models", eq. (12) and (16):

    x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_t²) ε̂ + σ_t z,     z ~ N(0, I)
    σ_t(η) = η √((1 − ᾱ_{t'}) / (1 − ᾱ_t)) √(1 − ᾱ_t / ᾱ_{t'})

where t' is the next timestep *in the visited list* (diffusers' DDIMScheduler assumes an even
stride, so quadratic or cosine spacings need this). Variance control replaces σ_t by

    σ'_t = min(s · σ_t(η), b)        s = variance_scale, b = variance_bound

and uses σ'_t in both the noise and the direction term, so every step stays a member of the
DDIM family (the marginals q(x_t | x_0) are preserved for any σ'_t ≤ √(1 − ᾱ_{t'})).

Notation map: model_output -> ε̂, v̂ or x̂_0 (prediction_type), alpha_prod_t -> ᾱ_t,
alpha_prod_t_prev -> ᾱ_{t'}, std_dev_t -> σ'_t, eta -> η, pred_original_sample -> x̂_0,
pred_epsilon -> ε̂.
"""

from __future__ import annotations

from typing import Any

import torch
from diffusers import DDIMScheduler
from diffusers.configuration_utils import register_to_config
from diffusers.schedulers.scheduling_ddim import DDIMSchedulerOutput

from workers.sampling.predictions import NoiseSource, original_and_noise, standard_normal
from workers.sampling.registered_config import extends_config


class VarianceControlledDDIMScheduler(DDIMScheduler):
    """DDIMScheduler whose ``step`` follows the visited list and bounds σ_t (see module doc).

    η, ``variance_scale`` (s) and ``variance_bound`` (b) are registered config, next to the
    parent's: ``scheduler.config`` shows everything that shapes a step.
    """

    @register_to_config
    @extends_config(DDIMScheduler)
    def __init__(
        self,
        *args: Any,
        eta: float = 0.0,
        variance_scale: float = 1.0,
        variance_bound: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.injected_noise_std: list[float] = []  # σ'_t of each step taken (0 when η = 0)
        # draws z; the exact evaluation (``workers.evaluation.exact_error``) swaps in its own
        self.noise_source: NoiseSource = standard_normal

    def set_timesteps(
        self,
        num_inference_steps: int | None = None,
        device: str | torch.device | None = None,
        timesteps: list[int] | None = None,
    ) -> None:
        """Visits exactly ``timesteps`` (descending) when given, like ``DDPMScheduler``."""
        if timesteps is None:
            if num_inference_steps is None:
                raise ValueError("set_timesteps needs num_inference_steps or timesteps")
            super().set_timesteps(num_inference_steps, device)  # type: ignore[arg-type]
            return
        self.num_inference_steps = len(timesteps)
        self.timesteps = torch.tensor(timesteps, dtype=torch.int64)

    def _next_timestep(self, timestep: int) -> int:
        index = int((self.timesteps == timestep).nonzero()[0][0])
        return int(self.timesteps[index + 1]) if index + 1 < len(self.timesteps) else -1

    def step(  # type: ignore[override]
        self,
        model_output: torch.Tensor,
        timestep: int | torch.Tensor,
        sample: torch.Tensor,
        generator: torch.Generator | None = None,
        return_dict: bool = True,
    ) -> DDIMSchedulerOutput:
        t = int(timestep)
        # 1. previous (next visited) timestep t'
        t_prev = self._next_timestep(t)

        # 2. ᾱ_t and ᾱ_{t'}
        alpha_prod_t = self.alphas_cumprod[t]
        alpha_prod_t_prev = self.alphas_cumprod[t_prev] if t_prev >= 0 else self.final_alpha_cumprod

        # 3. predicted x̂_0 and ε̂ (eq. 9; for v-prediction, Salimans & Ho 2022 §4), x̂_0 clipped or
        #    thresholded
        pred_original_sample, pred_epsilon = original_and_noise(self, model_output, sample, alpha_prod_t)

        # 4. σ_t(η) (eq. 16), then scale and bound it
        eta = self.config.eta
        variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
        std_dev_t = eta * float(variance) ** 0.5 * self.config.variance_scale
        if self.config.variance_bound is not None:
            std_dev_t = min(std_dev_t, self.config.variance_bound)
        std_dev_t = min(std_dev_t, float(1 - alpha_prod_t_prev) ** 0.5)

        # 5. direction pointing to x_t, and x_{t'} without noise (eq. 12)
        pred_sample_direction = (1 - alpha_prod_t_prev - std_dev_t**2) ** 0.5 * pred_epsilon
        prev_sample = alpha_prod_t_prev**0.5 * pred_original_sample + pred_sample_direction

        # 6. inject σ'_t z; a deterministic run (η = 0) draws nothing from the generator
        if eta > 0:
            prev_sample = prev_sample + std_dev_t * self.noise_source(model_output, generator)
        self.injected_noise_std.append(std_dev_t if eta > 0 else 0.0)

        return DDIMSchedulerOutput(prev_sample=prev_sample, pred_original_sample=pred_original_sample)
