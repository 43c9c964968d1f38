"""Builds one fresh diffusers scheduler per image from a resolved configuration.

Schedulers are stateful (multistep solvers keep past model outputs), so every sampling
state owns its own instance.
"""

from __future__ import annotations

from typing import Any

from diffusers import (
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from protocol.schema import ResolvedConfig
from workers.sampling.ddim import VarianceControlledDDIMScheduler
from workers.sampling.ddpm import VarianceControlledDDPMScheduler
from workers.sampling.schedules import timestep_schedule

# diffusers' names for our evenly spaced schedules
_SPACING = {"uniform": "trailing", "leading": "leading", "linspace": "linspace"}
_SIGMA_SCHEDULERS: dict[str, tuple[type[SchedulerMixin], dict[str, Any]]] = {
    "dpmpp_2m": (DPMSolverMultistepScheduler, {"algorithm_type": "dpmsolver++", "solver_order": 2}),
    "unipc": (UniPCMultistepScheduler, {"solver_order": 2, "predict_x0": True}),
    "euler": (EulerDiscreteScheduler, {}),
    "euler_a": (EulerAncestralDiscreteScheduler, {}),
}


def _thresholding(config: ResolvedConfig) -> dict[str, Any]:
    return {
        "thresholding": config.dynamic_thresholding,
        "dynamic_thresholding_ratio": config.dynamic_thresholding_ratio or 0.995,
        "sample_max_value": 1.0,
    }


def build_scheduler(config: ResolvedConfig, training_scheduler_config: dict[str, Any]) -> SchedulerMixin:
    """A scheduler set to the visited timesteps, with the knobs of ``config`` applied."""
    train = {k: v for k, v in training_scheduler_config.items() if not k.startswith("_")}
    num_train_timesteps = int(train["num_train_timesteps"])
    alphas_cumprod = VarianceControlledDDPMScheduler.from_config(train).alphas_cumprod.numpy()

    def visited() -> list[int]:
        return timestep_schedule(config.schedule, config.steps, num_train_timesteps, alphas_cumprod)

    if config.sampler == "ddim":
        ddim = VarianceControlledDDIMScheduler.from_config(
            train, clip_sample=config.clip_sample, set_alpha_to_one=True, **_thresholding(config)
        )
        ddim.configure_noise(config.eta or 0.0, config.variance_scale, config.variance_bound)
        ddim.set_timestep_list(visited())
        return ddim
    if config.sampler == "ddpm":
        ddpm = VarianceControlledDDPMScheduler.from_config(
            train,
            clip_sample=config.clip_sample,
            variance_type=config.variance_type or "fixed_small",
            **_thresholding(config),
        )
        ddpm.configure_noise(config.variance_scale, config.variance_bound)
        ddpm.set_timesteps(timesteps=visited())
        return ddpm

    scheduler_class, extra = _SIGMA_SCHEDULERS[config.sampler]
    options: dict[str, Any] = dict(extra)
    if config.schedule in _SPACING:
        options["timestep_spacing"] = _SPACING[config.schedule]
    if "thresholding" in scheduler_class.__init__.__code__.co_varnames:
        options.update(_thresholding(config))
    scheduler = scheduler_class.from_config(train, **options)
    if config.schedule in _SPACING:
        scheduler.set_timesteps(config.steps)
    else:
        scheduler.set_timesteps(timesteps=visited())
    return scheduler
