"""What every DDIM-family step (DDIM, and DDPM in its marginal form) shares: x̂_0 and ε̂ from the
network's output, and the standard normal draw of the injected noise.

Salimans & Ho (2022), §4, and Ho et al. (2020), eq. (15): with x_t = √ᾱ_t x_0 + √(1 − ᾱ_t) ε,

    epsilon:       x̂_0 = (x_t − √(1 − ᾱ_t) ε̂) / √ᾱ_t
    v_prediction:  x̂_0 = √ᾱ_t x_t − √(1 − ᾱ_t) v̂,    ε̂ = √ᾱ_t v̂ + √(1 − ᾱ_t) x_t
    sample:        ε̂ = (x_t − √ᾱ_t x̂_0) / √(1 − ᾱ_t)

A clipped or thresholded x̂_0 is followed by the ε̂ that is consistent with it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

NoiseSource = Callable[[torch.Tensor, "torch.Generator | None"], torch.Tensor]


def standard_normal(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """z ~ N(0, I) shaped and typed like ``like``, drawn on the generator's device (the CPU stream
    of a CPU worker, the model's device otherwise) and moved to ``like``'s device."""
    device = generator.device if generator is not None else like.device
    return torch.randn(like.shape, generator=generator, dtype=like.dtype, device=device).to(like.device)


def original_and_noise(
    scheduler: Any, model_output: torch.Tensor, sample: torch.Tensor, alpha_prod_t: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(x̂_0, ε̂) of a DDIM/DDPM scheduler's ``prediction_type``, x̂_0 clipped or thresholded as its
    config says (``clip_sample``, ``thresholding``)."""
    config = scheduler.config
    beta_prod_t = 1 - alpha_prod_t
    if config.prediction_type == "v_prediction":
        pred_original_sample = alpha_prod_t**0.5 * sample - beta_prod_t**0.5 * model_output
        pred_epsilon = alpha_prod_t**0.5 * model_output + beta_prod_t**0.5 * sample
    elif config.prediction_type == "epsilon":
        pred_epsilon = model_output
        pred_original_sample = (sample - beta_prod_t**0.5 * pred_epsilon) / alpha_prod_t**0.5
    elif config.prediction_type == "sample":
        pred_original_sample = model_output
        pred_epsilon = (sample - alpha_prod_t**0.5 * pred_original_sample) / beta_prod_t**0.5
    else:
        raise ValueError(
            f"prediction_type {config.prediction_type!r}: expected epsilon, v_prediction or sample"
        )
    if config.thresholding or config.clip_sample:
        if config.thresholding:
            pred_original_sample = scheduler._threshold_sample(pred_original_sample)
        else:
            limit = config.clip_sample_range
            pred_original_sample = pred_original_sample.clamp(-limit, limit)
        # keep ε̂ consistent with the x̂_0 that is used
        pred_epsilon = (sample - alpha_prod_t**0.5 * pred_original_sample) / beta_prod_t**0.5
    return pred_original_sample, pred_epsilon


def predicted_x0(step: Any, scheduler: Any) -> torch.Tensor | None:
    """The x̂₀ this step predicted, without computing anything new: the step output's
    ``pred_original_sample`` (DDIM, DDPM, Euler), else the multistep solvers' last converted model
    output, which is their x̂₀ (DPM-Solver++, UniPC with ``predict_x0``)."""
    x0 = getattr(step, "pred_original_sample", None)
    if x0 is None:
        outputs = getattr(scheduler, "model_outputs", None)
        x0 = outputs[-1] if outputs else None
    return x0
