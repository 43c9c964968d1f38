"""One image in flight: ``SamplingState``, and ``new_states`` that makes a job's states.

Each image has its own scheduler (schedulers are stateful), its own ``torch.Generator`` seeded
with ``seed + index`` (on the CPU for the initial latent, so the starting noise is the same on
every device; on the model's device for the noise injected by stochastic steps, so no draw
crosses the bus), its latent and its step index.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from protocol.schema import ResolvedConfig
from workers.models.loaded_model import Condition, LoadedModel
from workers.sampling.scheduler_factory import build_scheduler

GUIDED_ROWS = 2  # a guided image's forward rows: conditional and unconditional


@dataclass(eq=False)
class SamplingState:
    """One image in flight."""

    job_id: str
    index: int
    seed: int
    config: ResolvedConfig
    scheduler: SchedulerMixin
    generator: torch.Generator  # CPU: the initial latent
    noise_generator: torch.Generator  # the model's device: noise injected by stochastic steps
    latent: torch.Tensor  # [1, C, H, W] on the model's device, float32
    condition: Condition  # of the conditional row (a class label, prompt embeddings, or None)
    uncondition: Condition  # of the unconditional row, for guidance
    step_index: int = 0
    step_seconds: list[float] = field(default_factory=list)
    image: torch.Tensor | None = None  # [1, C, H, W] pixels in [-1, 1], once decoded
    x0: torch.Tensor | None = None  # the latest predicted x̂₀ (for previews), in the latent space

    @property
    def guided(self) -> bool:
        return self.config.guidance_scale != 1.0

    @property
    def num_steps(self) -> int:
        return len(self.scheduler.timesteps)

    @property
    def done(self) -> bool:
        return self.step_index >= self.num_steps

    @property
    def rows(self) -> int:
        """Rows this state adds to a forward pass."""
        return GUIDED_ROWS if self.guided else 1

    @property
    def timestep(self) -> torch.Tensor:
        return self.scheduler.timesteps[self.step_index]


def rows_of(states: Iterable[SamplingState]) -> int:
    """Rows that the unfinished ``states`` add to a forward pass."""
    return sum(s.rows for s in states if not s.done)


def visited_timesteps(scheduler: SchedulerMixin) -> list[float]:
    return [round(float(t), 4) for t in scheduler.timesteps]


def new_states(job_id: str, config: ResolvedConfig, model: LoadedModel) -> list[SamplingState]:
    """One state per image; image i is seeded with ``seed + i``."""
    states = []
    shape = (1, *model.latent_shape(config.width, config.height))
    condition, uncondition = model.conditions(config)
    for index in range(config.num_images):
        scheduler = build_scheduler(config, model.scheduler_config, model.optimized_schedules)
        generator = torch.Generator(device="cpu").manual_seed(config.seed + index)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if model.device.type == "cpu":
            noise_generator = generator  # one stream: the initial latent, then the step noise
        else:
            noise_generator = torch.Generator(device=model.device).manual_seed(config.seed + index)
        latent = (noise * scheduler.init_noise_sigma).to(model.device)
        states.append(
            SamplingState(
                job_id=job_id,
                index=index,
                seed=config.seed + index,
                config=config,
                scheduler=scheduler,
                generator=generator,
                noise_generator=noise_generator,
                latent=latent,
                condition=condition,
                uncondition=uncondition,
            )
        )
    return states
