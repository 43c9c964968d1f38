"""Where the reverse process starts when a request brings its own image (``init_image``).

Notation: x₀ the init image (its VAE latent for latent models) in the model's space, ᾱ_t the
training schedule's cumulative α, σ_t = √((1 − ᾱ_t) / ᾱ_t) its noise level in Karras et al.'s
(2022) variance-exploding form, y the init image when it is itself noisy.

**Numeric strength** (SDEdit, Meng et al. 2022; the diffusers img2img convention): of the
schedule's N timesteps, the last n = int(N · strength) run. The image is noised to the first of
them with the seed's generator, x_t = √ᾱ_t x₀ + √(1 − ᾱ_t) ε (``scheduler.add_noise``, which writes
x₀ + σ_t ε for the Euler samplers' variance-exploding latent), and the scheduler starts at step
N − n (``set_begin_index``), so its multistep history and σ's are those of the whole schedule.

**Auto strength** (denoising): y = x₀ + s n with s = σ̂ / 127.5 (data in [−1, 1]). Then
√ᾱ_t y = √ᾱ_t x₀ + √ᾱ_t s n has exactly the diffusion marginal q(x_t | x₀) at the t where
ᾱ_t s² = 1 − ᾱ_t, i.e. σ_t = s. So the reverse process starts from √ᾱ_t* y itself, with no fresh
noise, at the training timestep t* whose σ_t is nearest s in log, on N timesteps spaced by the
schedule's rule over [0, t*] (at most t* + 1 of them). Pixels at an end of the 8-bit range are
censored observations (the noise that would have taken them past it was clipped away): before
scaling, each gets its clipped part back, b ∓ σ̂ |z| with z from the seed's generator, which
restores the Gaussian marginal exactly where the clean pixel sits at the bound (a black
background) and approximately elsewhere.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from protocol.schema import ResolvedConfig
from workers.sampling.schedules import timestep_schedule

GRAY_HALF_RANGE = 127.5  # gray levels per unit of the model's [-1, 1] space


@dataclass(frozen=True)
class ImageStart:
    """How an image's reverse process starts: from ``latent`` at ``start_timestep``, the scheduler
    beginning at its step ``first_step``; ``noise_sigma`` is σ̂ (gray levels) under auto strength."""

    latent: torch.Tensor  # [1, C, H, W], float32, on the CPU
    first_step: int
    start_timestep: int
    noise_sigma: float | None


def training_sigmas(training_scheduler_config: dict[str, object]) -> np.ndarray:
    """σ_t = √((1 − ᾱ_t) / ᾱ_t) for every training timestep t."""
    train = {k: v for k, v in training_scheduler_config.items() if not k.startswith("_")}
    alphas_cumprod = DDPMScheduler.from_config(train).alphas_cumprod.double().numpy()
    return np.sqrt((1 - alphas_cumprod) / alphas_cumprod)


def matched_timestep(sigma_gray: float, sigmas: np.ndarray) -> int:
    """t* = the training timestep whose σ_t is nearest s = σ̂ / 127.5 in log (0 below σ_0)."""
    s = sigma_gray / GRAY_HALF_RANGE
    if s <= sigmas[0]:
        return 0
    return int(np.argmin(np.abs(np.log(sigmas) - np.log(s))))


def auto_timesteps(
    config: ResolvedConfig, start: int, training_scheduler_config: dict[str, object]
) -> list[int]:
    """min(N, t* + 1) timesteps from t* down, spaced by the schedule's rule on the horizon [0, t*]."""
    steps = min(config.steps, start + 1)
    train = {k: v for k, v in training_scheduler_config.items() if not k.startswith("_")}
    alphas_cumprod = DDPMScheduler.from_config(train).alphas_cumprod.numpy()[: start + 1]
    visited = timestep_schedule(config.schedule, steps, start + 1, alphas_cumprod)
    if visited[0] != start:  # AUTO_SCHEDULES all start at the horizon's end; a guard for new ones
        raise ValueError(f"schedule {config.schedule!r} does not start at t* = {start}: {visited[:3]}")
    return visited


def restore_clipped(pixels: torch.Tensor, sigma_gray: float, generator: torch.Generator) -> torch.Tensor:
    """[1, C, H, W] in [-1, 1]: pixels at −1 or 1 moved beyond the bound by σ̂ |z| (see module doc)."""
    s = sigma_gray / GRAY_HALF_RANGE
    beyond = s * torch.randn(pixels.shape, generator=generator, dtype=torch.float32).abs()
    restored = torch.where(pixels <= -1.0, -1.0 - beyond, pixels)
    return torch.where(pixels >= 1.0, 1.0 + beyond, restored)


def numeric_start(
    scheduler: SchedulerMixin, x0: torch.Tensor, strength: float, generator: torch.Generator
) -> ImageStart:
    """The last int(N · strength) steps of ``scheduler``'s schedule, from x₀ noised to the first."""
    num_steps = len(scheduler.timesteps)
    first = num_steps - min(int(num_steps * strength), num_steps)
    if hasattr(scheduler, "set_begin_index"):
        scheduler.set_begin_index(first)
    start = scheduler.timesteps[first : first + 1]
    noise = torch.randn(x0.shape, generator=generator, dtype=torch.float32)
    latent = scheduler.add_noise(x0, noise, start)
    return ImageStart(latent=latent, first_step=first, start_timestep=int(start[0]), noise_sigma=None)


def auto_start(
    scheduler: SchedulerMixin, y: torch.Tensor, sigma_gray: float, start: int, generator: torch.Generator
) -> ImageStart:
    """√ᾱ_t* y (x₀ + σ_t* y's noise for the Euler samplers) on a scheduler already set to
    ``auto_timesteps``, with the clipped pixels restored first."""
    restored = restore_clipped(y, sigma_gray, generator)
    t = torch.tensor([start], dtype=torch.int64)
    # add_noise with ε = 0 is the scaling each scheduler's latent needs: √ᾱ_t y, or y itself
    latent = scheduler.add_noise(restored, torch.zeros_like(restored), t)
    return ImageStart(latent=latent, first_step=0, start_timestep=start, noise_sigma=sigma_gray)
