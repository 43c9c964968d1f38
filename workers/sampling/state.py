"""One image in flight: ``SamplingState``, and ``new_states`` that makes a job's states.

Each image has its own scheduler (schedulers are stateful), its own ``torch.Generator`` seeded
with ``seed + index`` (on the CPU for the initial latent, so the starting noise is the same on
every device; on the model's device for the noise injected by stochastic steps, so no draw
crosses the bus), its latent and its step index. A request with an ``init_image`` starts from
that image instead of pure noise (``workers.sampling.img2img``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from protocol.schema import ResolvedConfig
from workers.init_images import InitImage
from workers.models.loaded_model import Condition, LoadedModel
from workers.sampling.img2img import (
    ImageStart,
    auto_start,
    auto_timesteps,
    matched_timestep,
    numeric_start,
    training_sigmas,
)
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
    first_step: int = 0  # img2img: the schedule's steps before this one are skipped
    init: InitImage | None = None  # the request's init image, if any
    start: ImageStart | None = None  # how an init image started the reverse process
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
    def steps_to_run(self) -> int:
        """The steps this image takes (all of the schedule's, or the tail an init image runs)."""
        return self.num_steps - self.first_step

    @property
    def steps_taken(self) -> int:
        return self.step_index - self.first_step

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


def visited_timesteps(scheduler: SchedulerMixin, first_step: int = 0) -> list[float]:
    return [round(float(t), 4) for t in scheduler.timesteps[first_step:]]


def new_states(
    job_id: str, config: ResolvedConfig, model: LoadedModel, init: InitImage | None = None
) -> list[SamplingState]:
    """One state per image; image i is seeded with ``seed + i``. ``init`` is the request's init
    image (required when ``config.strength`` is set)."""
    if (config.strength is None) != (init is None):
        raise ValueError("an init image goes with a strength, and a strength with an init image")
    states = []
    shape = (1, *model.latent_shape(config.width, config.height))
    condition, uncondition = model.conditions(config)
    x0: torch.Tensor | None = None  # the init image in the model's space (noisy itself under auto)
    auto_start_t: int | None = None
    sigma_hat = 0.0
    if init is not None:
        x0 = model.encode(init.tensor()).float().cpu()  # once per job: every image starts from it
        if config.strength == "auto":
            sigma_hat = init.noise_sigma
            auto_start_t = matched_timestep(sigma_hat, training_sigmas(model.scheduler_config))
    for index in range(config.num_images):
        scheduler = build_scheduler(config, model.scheduler_config, model.optimized_schedules)
        generator = torch.Generator(device="cpu").manual_seed(config.seed + index)
        start = None
        if x0 is None:
            noise = torch.randn(shape, generator=generator, dtype=torch.float32)
            latent = (noise * scheduler.init_noise_sigma).to(model.device)
        elif auto_start_t is not None:
            scheduler.set_timesteps(timesteps=auto_timesteps(config, auto_start_t, model.scheduler_config))
            start = auto_start(scheduler, x0, sigma_hat, auto_start_t, generator)
            latent = start.latent.to(model.device)
        else:
            assert isinstance(config.strength, float | int)
            start = numeric_start(scheduler, x0, float(config.strength), generator)
            latent = start.latent.to(model.device)
        if model.device.type == "cpu":
            noise_generator = generator  # one stream: the initial latent, then the step noise
        else:
            noise_generator = torch.Generator(device=model.device).manual_seed(config.seed + index)
        state = SamplingState(
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
            init=init,
            start=start,
        )
        if start is not None:
            state.first_step = state.step_index = start.first_step
        states.append(state)
    return states
