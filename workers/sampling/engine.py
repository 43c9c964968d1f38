"""The sampling engine: in-flight images advanced one denoising step at a time, with ONE
batched model call per step.

Each image is a ``SamplingState``: its own scheduler (schedulers are stateful), its own
``torch.Generator`` seeded with ``seed + index`` (on the CPU for the initial latent, so the
starting noise is the same on every device; on the model's device for the noise injected by
stochastic steps, so no draw crosses the bus), its latent and its step index. On CUDA the step
loop never waits for the GPU: per-row timesteps and labels go up from pinned memory without
blocking, and only a finished image is copied back. A tick stacks the latent of every state with its own
timestep, adds an unconditional row for each state that uses guidance, runs the UNet once,
and lets each state take its own scheduler step. States with different samplers, step
counts and guidance scales share the forward pass; an image never depends on its batch
mates because nothing random is shared and every row is computed independently.

Classifier-free guidance (Ho & Salimans 2022): ε̂ = ε_u + w (ε_c − ε_u), applied to the model's
output whatever it predicts (ε or v: both are linear in the score, so the combination is the same).
Guidance rescale (Lin et al. 2024, eq. 15-16): ε_rescaled = ε̂ · std(ε_c) / std(ε̂),
ε = φ ε_rescaled + (1 − φ) ε̂.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from protocol.schema import ResolvedConfig
from workers.host_upload import upload
from workers.models.loading import LoadedModel
from workers.sampling.scheduler_factory import build_scheduler


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
    class_row: int | None  # class label for the conditional row (null class when unconditional)
    step_index: int = 0
    step_seconds: list[float] = field(default_factory=list)

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
        return 2 if self.guided else 1

    @property
    def timestep(self) -> torch.Tensor:
        return self.scheduler.timesteps[self.step_index]


def visited_timesteps(scheduler: SchedulerMixin) -> list[float]:
    return [round(float(t), 4) for t in scheduler.timesteps]


def new_states(job_id: str, config: ResolvedConfig, model: LoadedModel) -> list[SamplingState]:
    """One state per image; image i is seeded with ``seed + i``."""
    states = []
    shape = (1, model.info.channels, model.info.image_size, model.info.image_size)
    for index in range(config.num_images):
        scheduler = build_scheduler(config, model.scheduler_config)
        generator = torch.Generator(device="cpu").manual_seed(config.seed + index)
        noise = torch.randn(shape, generator=generator, dtype=torch.float32)
        if model.device.type == "cpu":
            noise_generator = generator  # one stream: the initial latent, then the step noise
        else:
            noise_generator = torch.Generator(device=model.device).manual_seed(config.seed + index)
        latent = (noise * scheduler.init_noise_sigma).to(model.device)
        class_row = config.class_label if config.class_label is not None else model.null_class
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
                class_row=class_row,
            )
        )
    return states


def combine_guidance(
    eps_cond: torch.Tensor, eps_uncond: torch.Tensor, scale: float, rescale: float
) -> torch.Tensor:
    guided = eps_uncond + scale * (eps_cond - eps_uncond)
    if rescale > 0:
        dims = list(range(1, eps_cond.ndim))
        std_cond = eps_cond.std(dim=dims, keepdim=True)
        std_guided = guided.std(dim=dims, keepdim=True)
        rescaled = guided * (std_cond / std_guided)
        guided = rescale * rescaled + (1 - rescale) * guided
    return guided


class SamplingEngine:
    """Advances a set of states by one step each with a single batched UNet call."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.last_batch_rows = 0
        self.last_forward_seconds = 0.0

    @torch.inference_mode()
    def step(self, states: list[SamplingState]) -> None:
        """One denoising step for every state in ``states`` (none of them may be done)."""
        if not states:
            return
        started = time.perf_counter()
        model = self.model
        inputs: list[torch.Tensor] = []
        timesteps: list[torch.Tensor] = []
        labels: list[int] = []
        for state in states:
            scaled = state.scheduler.scale_model_input(state.latent, state.timestep)
            repeats = state.rows
            inputs.extend([scaled] * repeats)
            timesteps.extend([state.timestep.reshape(1).float()] * repeats)
            if model.null_class is not None:
                labels.append(state.class_row if state.class_row is not None else model.null_class)
                if state.guided:
                    labels.append(model.null_class)
        batch = torch.cat(inputs).to(model.dtype)
        t_batch = upload(torch.cat(timesteps), model.device)
        kwargs: dict[str, Any] = {}
        if model.null_class is not None:
            kwargs["class_labels"] = upload(torch.tensor(labels), model.device)
        forward_started = time.perf_counter()
        eps_all = model.unet(batch, t_batch, **kwargs).sample.float()
        # host time: on CUDA this is launch time unless something later waits for the result
        self.last_forward_seconds = time.perf_counter() - forward_started
        self.last_batch_rows = batch.shape[0]

        row = 0
        for state in states:
            eps = eps_all[row : row + 1]
            if state.guided:
                eps = combine_guidance(
                    eps,
                    eps_all[row + 1 : row + 2],
                    state.config.guidance_scale,
                    state.config.guidance_rescale,
                )
            row += state.rows
            # deterministic steps never touch the generator (UniPC's step does not even take one)
            extra = {} if state.config.deterministic else {"generator": state.noise_generator}
            output = state.scheduler.step(eps, state.timestep, state.latent, **extra)
            state.latent = output.prev_sample
            state.step_index += 1
        elapsed = time.perf_counter() - started
        for state in states:
            state.step_seconds.append(elapsed)

    def run(self, states: list[SamplingState]) -> None:
        """Runs ``states`` to completion (in-process use: evaluation, benchmarks, tests)."""
        active = [s for s in states if not s.done]
        while active:
            self.step(active)
            active = [s for s in active if not s.done]


def generate(model: LoadedModel, config: ResolvedConfig, job_id: str = "local") -> list[SamplingState]:
    """All images of one resolved request, sampled in-process; returns the finished states."""
    states = new_states(job_id, config, model)
    SamplingEngine(model).run(states)
    return states
