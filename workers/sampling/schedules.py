"""Which training timesteps the reverse process visits (descending, integers in [0, T)).

The evenly spaced spacings follow Lin et al. (2024), "Common Diffusion Noise Schedules and
Sample Steps are Flawed", table 2. The public name ``uniform`` is diffusers' ``trailing``:
strides of T/N counted back from T, so the first step is at the noisiest timestep T-1
(``leading`` and ``linspace`` keep diffusers' names). ``quadratic`` is the DDIM paper's spacing
(Song et al. 2021, appendix D.2: τ_i = ⌊c i²⌋ with c chosen so the last step lands at 0.8 T),
which spends more steps at low noise; ``cosine`` places steps at t_i = T (1 - cos(π i / 2N)),
denser still near t = 0.
``ays`` is Align Your Steps (Sabour et al. 2024) for Stable Diffusion's noise schedule (scaled_linear
betas 0.00085–0.012, T = 1000; ``is_stable_diffusion_schedule``): the published 10-step table that
diffusers ships (``AysSchedules["StableDiffusionTimesteps"]``), and for other step counts that table
interpolated linearly in log σ (the paper's ``loglinear_interp``) and mapped back to the nearest
training timesteps. ``optimized`` is not computed here: the model's own table
(``workers.models.optimized_schedules``) gives its timesteps.
``karras`` is Karras et al. (2022), eq. (5): σ_i = (σ_max^(1/ρ) + i/(N−1) (σ_min^(1/ρ) − σ_max^(1/ρ)))^ρ
with ρ = 7, mapped to the nearest training timesteps by σ_t = √((1 − ᾱ_t) / ᾱ_t). σ_max is capped at
80 as in that paper: a cosine training schedule reaches σ ≈ 2·10⁴ at t = T−1, and an uncapped ρ = 7
spacing would spend most steps at noise levels where the image carries no signal.

Two implementations of the even spacings serve today, and they are not the same function
(``tests/workers/test_schedules.py`` pins the relation for every bundled training config).
``ddim`` and ``ddpm`` visit ``timestep_schedule``; the other samplers get ``uniform``, ``leading``
and ``linspace`` from their diffusers class (``timestep_spacing`` = ``DIFFUSERS_SPACING[name]``)
and ``quadratic``, ``cosine``, ``karras`` from ``timestep_schedule``. With T = 1000:

- ``uniform`` = diffusers' ``trailing`` (every class computes it the same way) wherever the float
  ``arange`` of T/N strides yields N points. For the 62 values of N ≤ 1000 where it yields N+1
  (N = 61, 103, 121, 122, 201, ...) both visit N+1 timesteps, one more than asked. Diffusers'
  list then ends at −1; ours is that list clipped to [0, T-1] and kept distinct (N = 61: diffusers
  ends 32, 15, −1, ours 32, 15, 0; N = 769: diffusers ends 2, 0, −1, ours 2, 1, 0).
- ``leading``: equal for DDIM, DDPM, Euler and Euler ancestral. DPM-Solver and UniPC space N+1
  points and drop the last: their N steps are ``timestep_schedule("leading", N + 1, T)[:-1]``
  for N < T (for N = T, all T of their timesteps are 0).
- ``linspace``: equal for DDIM and DDPM; Euler and Euler ancestral keep the points unrounded
  (fractional timesteps within 0.5 of ours); DPM-Solver and UniPC visit
  ``timestep_schedule("linspace", N + 1, T)[:-1]`` for N < T (for N = T, 999 down to 1 with
  one timestep repeated).

Unifying them would change the images of those samplers; the differences are recorded here instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from diffusers.schedulers.scheduling_utils import AysSchedules

from protocol.schema import ScheduleName


def _strictly_increasing(values: np.ndarray, upper: int) -> np.ndarray:
    """Rounds and nudges ``values`` (ascending) into distinct integers in [0, upper]."""
    steps = np.floor(values).astype(np.int64)
    for i in range(1, len(steps)):
        steps[i] = max(steps[i], steps[i - 1] + 1)
    steps[-1] = min(steps[-1], upper)
    for i in range(len(steps) - 2, -1, -1):
        steps[i] = min(steps[i], steps[i + 1] - 1)
    return steps


# the diffusers ``timestep_spacing`` that samplers spacing their steps themselves use for our names
DIFFUSERS_SPACING: dict[ScheduleName, str] = {
    "uniform": "trailing",
    "leading": "leading",
    "linspace": "linspace",
}

KARRAS_RHO = 7.0
KARRAS_SIGMA_MAX = 80.0


def karras_ascending(num_steps: int, alphas_cumprod: np.ndarray) -> np.ndarray:
    """Fractional timesteps (ascending) of the Karras σ spacing on a training schedule."""
    sigmas_train = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)
    sigma_min = float(sigmas_train[0])
    sigma_max = min(float(sigmas_train[-1]), KARRAS_SIGMA_MAX)
    ramp = np.linspace(0, 1, num_steps)
    inv_rho = 1.0 / KARRAS_RHO
    sigmas = (sigma_max**inv_rho + ramp * (sigma_min**inv_rho - sigma_max**inv_rho)) ** KARRAS_RHO
    # σ_t increases with t: interpolate t as a function of log σ
    timesteps = np.interp(np.log(sigmas), np.log(sigmas_train), np.arange(len(sigmas_train)))
    return np.round(timesteps[::-1])


AYS_TIMESTEPS: tuple[int, ...] = tuple(AysSchedules["StableDiffusionTimesteps"])
STABLE_DIFFUSION_SCHEDULE = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
}


def is_stable_diffusion_schedule(training_scheduler_config: Mapping[str, Any]) -> bool:
    """Whether a training noise schedule is Stable Diffusion's, the one the AYS tables were made for."""
    for key, value in STABLE_DIFFUSION_SCHEDULE.items():
        stated = training_scheduler_config.get(key)
        if isinstance(value, float):
            if not isinstance(stated, int | float) or abs(float(stated) - value) > 1e-9:
                return False
        elif stated != value:
            return False
    return not training_scheduler_config.get("trained_betas") and not training_scheduler_config.get(
        "rescale_betas_zero_snr"
    )


def ays_ascending(num_steps: int, alphas_cumprod: np.ndarray) -> np.ndarray:
    """Fractional timesteps (ascending) of the AYS table, log-σ interpolated to ``num_steps``."""
    sigmas_train = np.sqrt((1 - alphas_cumprod) / alphas_cumprod)
    table = np.array(AYS_TIMESTEPS)
    if num_steps == 1:
        return table[:1].astype(np.float64)
    log_sigmas = np.log(sigmas_train[table])[::-1]  # ascending
    log_sigmas = np.interp(np.linspace(0, 1, num_steps), np.linspace(0, 1, len(table)), log_sigmas)
    return np.round(np.interp(log_sigmas, np.log(sigmas_train), np.arange(len(sigmas_train))))


def timestep_schedule(
    schedule: ScheduleName,
    num_steps: int,
    num_train_timesteps: int,
    alphas_cumprod: np.ndarray | None = None,
) -> list[int]:
    """Returns ``num_steps`` distinct timesteps, noisiest first.

    ``alphas_cumprod`` (ᾱ_t of the training schedule) is needed for ``karras`` and ``ays``.
    """
    T, N = num_train_timesteps, num_steps
    if not 1 <= N <= T:
        raise ValueError(f"num_steps must be between 1 and {T}; got {N}")
    if schedule == "uniform":  # diffusers' "trailing"
        ascending = np.round(np.arange(T, 0, -T / N))[::-1] - 1
    elif schedule == "leading":
        ascending = np.arange(0, N) * (T // N)
    elif schedule == "linspace":
        ascending = np.round(np.linspace(0, T - 1, N))
    elif schedule == "quadratic":
        ascending = np.linspace(0, np.sqrt(0.8 * T), N) ** 2
    elif schedule == "cosine":
        i = np.arange(1, N + 1)
        ascending = np.round(T * (1 - np.cos(np.pi * i / (2 * N))), 6) - 1
    elif schedule == "karras":
        if alphas_cumprod is None:
            raise ValueError("the karras schedule needs the training alphas_cumprod")
        ascending = karras_ascending(N, alphas_cumprod)
    elif schedule == "ays":
        if alphas_cumprod is None:
            raise ValueError("the ays schedule needs the training alphas_cumprod")
        ascending = ays_ascending(N, alphas_cumprod)
    elif schedule == "optimized":
        raise ValueError(
            "optimized timesteps come from the model's table (workers.models.optimized_schedules)"
        )
    else:
        raise ValueError(f"unknown schedule {schedule!r}")
    ascending = np.clip(ascending, 0, T - 1)
    return [int(t) for t in _strictly_increasing(ascending, T - 1)[::-1]]
