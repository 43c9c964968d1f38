"""Each step of a scheduler as a plan: which branch the step takes and its coefficients, computed
once per visited step with the scheduler's own scalar arithmetic, so that a batch of images can
take their steps in one tensor update (``workers.sampling.batched_step``).

The coefficients are the 0-dim float32 values the per-image ``scheduler.step`` multiplies the
image tensors by (and the Python floats it passes as scalars, rounded to float32 as torch does
when it applies them), so the batched update applies the same float32 operations, in the same
order, to every element: it reproduces ``scheduler.step`` bit for bit
(``tests/workers/test_batched_step.py`` checks whole trajectories of every sampler).

The formulas are those of the schedulers' modules (``ddim.py``, ``ddpm.py``,
``euler_ancestral.py``, and diffusers' ``EulerDiscreteScheduler``); the names here follow them:

- DDIM (Song et al. 2021, eq. 12): x_{t'} = √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ_t²) ε̂ + σ_t z
- DDPM (Ho et al. 2020, eq. 7): x_{t'} = c_0 x̂_0 + c_t x_t + σ_t z (posterior form), or the DDIM
  form above with σ_dir where the bound binds (marginal form)
- Euler (Karras et al. 2022, Alg. 2 with S_churn = 0): x_{next} = x + (x − x̂_0)/σ · (σ_next − σ)
- Euler ancestral: the Euler step down to σ_down, then σ_up z

Notation map (coefficient names): sqrt_alpha_prod_t -> √ᾱ_t, sqrt_beta_prod_t -> √(1 − ᾱ_t),
sqrt_alpha_prod_t_prev -> √ᾱ_{t'}, direction_coeff -> √(1 − ᾱ_{t'} − σ_dir²), std_dev_t -> σ'_t,
pred_original_sample_coeff -> c_0, current_sample_coeff -> c_t, sigma -> σ, c_in -> √(σ² + 1).

Which samplers have plans: ``plan_family`` says. The multistep solvers (DPM-Solver++ 2M, UniPC)
depend on each image's history as well as its step index: ``dpmpp_step`` and ``unipc_step``
plan them. Dynamic thresholding (a per-image quantile) stays per image.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import torch
from diffusers import DDPMScheduler, EulerDiscreteScheduler

from workers.sampling.ddim import VarianceControlledDDIMScheduler
from workers.sampling.ddpm import VarianceControlledDDPMScheduler
from workers.sampling.euler_ancestral import VarianceControlledEulerAncestralScheduler
from workers.sampling.predictions import standard_normal

Family = Literal["ddim", "ddpm", "euler", "euler_a"]
# the branch a step takes; rows in one batched update share it
Kind = Literal["ddim", "ddpm_marginal", "ddpm_posterior", "euler", "euler_a"]

_FAMILIES: dict[type, Family] = {
    VarianceControlledDDIMScheduler: "ddim",
    VarianceControlledDDPMScheduler: "ddpm",
    EulerDiscreteScheduler: "euler",
    VarianceControlledEulerAncestralScheduler: "euler_a",
}
_PREDICTIONS = ("epsilon", "v_prediction")


@dataclass(frozen=True)
class StepPlan:
    """One visited step of one scheduler.

    ``coefficients`` (float32, [K]) are named by the kind's entry in ``COEFFICIENTS``;
    ``draws_noise``: the step draws z from the image's generator; ``injected_std``: what the
    per-image step appends to ``scheduler.injected_noise_std`` (None: nothing).
    """

    kind: Kind
    coefficients: torch.Tensor
    draws_noise: bool
    injected_std: float | None


COEFFICIENTS: dict[Kind, tuple[str, ...]] = {
    "ddim": (
        "sqrt_alpha_prod_t",
        "sqrt_beta_prod_t",
        "sqrt_alpha_prod_t_prev",
        "direction_coeff",
        "std_dev_t",
    ),
    "ddpm_marginal": (
        "sqrt_alpha_prod_t",
        "sqrt_beta_prod_t",
        "sqrt_alpha_prod_t_prev",
        "direction_coeff",
        "std_dev_t",
    ),
    "ddpm_posterior": (
        "sqrt_alpha_prod_t",
        "sqrt_beta_prod_t",
        "pred_original_sample_coeff",
        "current_sample_coeff",
        "std_dev_t",
    ),
    "euler": ("sigma", "c_out", "c_skip_divisor", "dt"),
    "euler_a": ("sigma", "c_out", "c_skip_divisor", "dt", "sigma_up"),
}


def plan_family(scheduler: Any) -> Family | None:
    """The family whose batched update reproduces this scheduler's step, or None (per image):
    the multistep solvers, a swapped noise source (the exact evaluation's), thresholding, a
    prediction type or variance type without a batched form."""
    family = _FAMILIES.get(type(scheduler))
    if family is None:
        return None
    config = scheduler.config
    if config.prediction_type not in _PREDICTIONS or getattr(config, "thresholding", False):
        return None
    if family != "euler" and scheduler.noise_source is not standard_normal:
        return None
    if family == "ddpm" and config.variance_type not in ("fixed_small", "fixed_large"):
        return None
    if family == "euler" and config.timestep_type != "discrete":
        return None
    return family


def _f32(*values: float | torch.Tensor) -> torch.Tensor:
    # each value as float32 exactly as torch applies it: a Python float rounds to nearest
    return torch.stack([torch.as_tensor(v, dtype=torch.float32).reshape(()) for v in values])


def _ddim(s: VarianceControlledDDIMScheduler, k: int) -> StepPlan:
    # ddim.py's step, its scalar part; t = the k-th visited timestep
    t = int(s.timesteps[k])
    # 1. next visited timestep t'
    t_prev = s._next_timestep(t)
    # 2. ᾱ_t and ᾱ_{t'}
    alpha_prod_t = s.alphas_cumprod[t]
    alpha_prod_t_prev = s.alphas_cumprod[t_prev] if t_prev >= 0 else s.final_alpha_cumprod
    beta_prod_t = 1 - alpha_prod_t
    # 4. σ_t(η), scaled and bounded
    eta = s.config.eta
    variance = (1 - alpha_prod_t_prev) / (1 - alpha_prod_t) * (1 - alpha_prod_t / alpha_prod_t_prev)
    std_dev_t = eta * float(variance) ** 0.5 * s.config.variance_scale
    if s.config.variance_bound is not None:
        std_dev_t = min(std_dev_t, s.config.variance_bound)
    std_dev_t = min(std_dev_t, float(1 - alpha_prod_t_prev) ** 0.5)
    # 5. the direction's coefficient √(1 − ᾱ_{t'} − σ_t²)
    direction_coeff = (1 - alpha_prod_t_prev - std_dev_t**2) ** 0.5
    coefficients = _f32(
        alpha_prod_t**0.5, beta_prod_t**0.5, alpha_prod_t_prev**0.5, direction_coeff, std_dev_t
    )
    return StepPlan("ddim", coefficients, eta > 0, std_dev_t if eta > 0 else 0.0)


def _ddpm(s: VarianceControlledDDPMScheduler, k: int) -> StepPlan:
    # ddpm.py's step, its scalar part
    t = int(s.timesteps[k])
    # 1. t', ᾱ_t, ᾱ_{t'}, β_t of the respaced chain
    prev_t = int(s.previous_timestep(t))
    alpha_prod_t = s.alphas_cumprod[t]
    alpha_prod_t_prev = s.alphas_cumprod[prev_t] if prev_t >= 0 else s.one
    beta_prod_t = 1 - alpha_prod_t
    beta_prod_t_prev = 1 - alpha_prod_t_prev
    current_alpha_t = alpha_prod_t / alpha_prod_t_prev
    current_beta_t = 1 - current_alpha_t
    sqrt_alpha_prod_t, sqrt_beta_prod_t = alpha_prod_t**0.5, beta_prod_t**0.5
    # 3. σ'_t² (none at t = 0)
    if t > 0:
        variance = s._get_variance(t)
        std_dev_t = float(variance) ** 0.5
        if s.config.variance_form == "marginal" and bool(variance < DDPMScheduler._get_variance(s, t)):
            # 4m. the bound binds: the DDIM-family step
            posterior_variance = torch.clamp(beta_prod_t_prev / beta_prod_t * current_beta_t, min=1e-20)
            direction_std = min(std_dev_t, float(posterior_variance) ** 0.5)
            direction_coeff = torch.clamp(beta_prod_t_prev - direction_std**2, min=0) ** 0.5
            coefficients = _f32(
                sqrt_alpha_prod_t, sqrt_beta_prod_t, alpha_prod_t_prev**0.5, direction_coeff, std_dev_t
            )
            return StepPlan("ddpm_marginal", coefficients, True, std_dev_t)
    # 4p. the posterior mean's coefficients (eq. 7), and σ'_t as the tensor the step multiplies by
    pred_original_sample_coeff = (alpha_prod_t_prev ** (0.5) * current_beta_t) / beta_prod_t
    current_sample_coeff = current_alpha_t ** (0.5) * beta_prod_t_prev / beta_prod_t
    noise_std = variance**0.5 if t > 0 else 0.0
    coefficients = _f32(
        sqrt_alpha_prod_t, sqrt_beta_prod_t, pred_original_sample_coeff, current_sample_coeff, noise_std
    )
    return StepPlan("ddpm_posterior", coefficients, t > 0, std_dev_t if t > 0 else None)


def _euler(s: EulerDiscreteScheduler, i: int) -> StepPlan:
    # diffusers' EulerDiscreteScheduler.step at its defaults (S_churn = 0: γ = 0, σ̂ = σ)
    sigma = s.sigmas[i]
    gamma = min(0.0 / (len(s.sigmas) - 1), 2**0.5 - 1) if 0.0 <= sigma <= float("inf") else 0.0
    sigma_hat = sigma * (gamma + 1)
    c_out = -sigma / (sigma**2 + 1) ** 0.5  # v-prediction only
    dt = s.sigmas[i + 1] - sigma_hat
    return StepPlan("euler", _f32(sigma_hat, c_out, sigma**2 + 1, dt), False, None)


def _euler_a(s: VarianceControlledEulerAncestralScheduler, i: int) -> StepPlan:
    # euler_ancestral.py's step, its scalar part
    sigma_from = s.sigmas[i]
    sigma_to = s.sigmas[i + 1]
    sigma_up = (sigma_to**2 * (sigma_from**2 - sigma_to**2) / sigma_from**2) ** 0.5
    vp_scale = float(sigma_to**2 + 1) ** 0.5
    limit = float(sigma_up) * s.config.variance_scale
    if s.config.variance_bound is not None:
        limit = min(limit, s.config.variance_bound * vp_scale)
    if limit < float(sigma_up):
        sigma_up = torch.tensor(limit, dtype=sigma_up.dtype)
    sigma_down = (sigma_to**2 - sigma_up**2) ** 0.5
    c_out = -sigma_from / (sigma_from**2 + 1) ** 0.5
    dt = sigma_down - sigma_from
    coefficients = _f32(sigma_from, c_out, sigma_from**2 + 1, dt, sigma_up)
    return StepPlan("euler_a", coefficients, True, float(sigma_up) / vp_scale)


_BUILDERS = {"ddim": _ddim, "ddpm": _ddpm, "euler": _euler, "euler_a": _euler_a}
_CACHE: dict[tuple[Any, ...], list[StepPlan]] = {}
_CACHE_SIZE = 512


def step_plans(scheduler: Any, family: Family) -> list[StepPlan]:
    """The plan of every step of ``scheduler`` (indexed like its ``timesteps``; for the Euler
    family, by its ``step_index``). Schedulers with the same class, config and timesteps share
    one list (computed once)."""
    plans: list[StepPlan] | None = getattr(scheduler, "_step_plans", None)  # this image's, once found
    if plans is not None:
        return plans
    key = (type(scheduler), schedule_key(scheduler))
    plans = _CACHE.get(key)
    if plans is None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        build = _BUILDERS[family]
        plans = [build(scheduler, k) for k in range(len(scheduler.timesteps))]
        _CACHE[key] = plans
    scheduler._step_plans = plans
    return plans


def schedule_key(scheduler: Any) -> tuple[Any, ...]:
    """What a scheduler's per-step coefficients depend on: its config and the visited steps."""
    return (
        repr(sorted(scheduler.config.items())),
        tuple(scheduler.timesteps.tolist()),
        tuple(scheduler.sigmas.tolist()) if hasattr(scheduler, "sigmas") else (),
    )


def euler_input_scale(scheduler: Any) -> torch.Tensor:
    """√(σ² + 1) of an Euler-family scheduler's current step: ``scale_model_input`` divides by it."""
    sigma = scheduler.sigmas[scheduler.step_index]
    return (sigma**2 + 1) ** 0.5  # type: ignore[no-any-return]
