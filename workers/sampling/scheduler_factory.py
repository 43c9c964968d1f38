"""Builds one fresh diffusers scheduler per image from a resolved configuration, as the
sampler's entry in ``workers.sampling.sampler_table`` says.

Schedulers are stateful (multistep solvers keep past model outputs), so every sampling
state owns its own instance.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from diffusers import DDPMScheduler
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from protocol.schema import ResolvedConfig, SamplerName
from workers.sampling.sampler_table import SAMPLER_TABLE
from workers.sampling.schedules import timestep_schedule

OptimizedTimesteps = Mapping[SamplerName, Mapping[int, list[int]]]  # sampler -> steps -> visited timesteps


def build_scheduler(
    config: ResolvedConfig,
    training_scheduler_config: dict[str, Any],
    optimized: OptimizedTimesteps | None = None,
) -> SchedulerMixin:
    """A scheduler set to the visited timesteps, with the knobs of ``config`` in its config.

    ``optimized`` is the model's table of optimised timesteps (``schedule: "optimized"``).
    """
    entry = SAMPLER_TABLE[config.sampler]
    train = {k: v for k, v in training_scheduler_config.items() if not k.startswith("_")}
    scheduler = entry.scheduler_class.from_config(train, **entry.constructor_options(config))
    if entry.spaces_itself(config.schedule):
        scheduler.set_timesteps(config.steps)
    elif config.schedule == "optimized":
        table = (optimized or {}).get(config.sampler, {})
        if config.steps not in table:
            raise ValueError(
                f"no optimized schedule for sampler {config.sampler!r} at {config.steps} steps "
                f"(has: {sorted(table) or 'none'})"
            )
        scheduler.set_timesteps(timesteps=list(table[config.steps]))
    else:
        num_train_timesteps = int(train["num_train_timesteps"])
        alphas_cumprod = DDPMScheduler.from_config(train).alphas_cumprod.numpy()
        visited = timestep_schedule(config.schedule, config.steps, num_train_timesteps, alphas_cumprod)
        scheduler.set_timesteps(timesteps=visited)
    return scheduler
