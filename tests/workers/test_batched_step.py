"""The vectorised step (``workers.sampling.batched_step``, with ``unipc_step`` and
``dpmpp_step`` for the multistep solvers) reproduces each image's own ``scheduler.step`` bit for
bit over whole trajectories, for every sampler and branch, both prediction types, guided or not;
an image's noise comes from its own generator."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest
import torch
from pydantic import ValidationError

from protocol.resolution import Limits, resolve_request
from protocol.schema import GenerationRequest, ResolvedConfig
from workers.models.loaded_model import Condition, LoadedModel
from workers.sampling import dpmpp_step, unipc_step
from workers.sampling.ddim import VarianceControlledDDIMScheduler
from workers.sampling.engine import SamplingEngine
from workers.sampling.state import SamplingState, new_states, rows_of
from workers.sampling.step_plans import plan_family
from workers.settings import WorkerSettings

# every sampler, and every branch of each step with a batched form (and some without)
REQUESTS: list[dict[str, Any]] = [
    {"sampler": "ddim"},
    {"sampler": "ddim", "eta": 1.0},
    {"sampler": "ddim", "eta": 0.5, "variance_bound": 0.1},
    {"sampler": "ddim", "eta": 1.0, "variance_scale": 0.5, "schedule": "karras"},
    {"sampler": "ddim", "clip_sample": True, "schedule": "quadratic"},
    {"sampler": "ddim", "dynamic_thresholding": True, "schedule": "cosine"},  # per image
    {"sampler": "ddim", "schedule": "leading", "guidance_scale": 4.0, "guidance_rescale": 0.7},
    {"sampler": "ddpm"},
    {"sampler": "ddpm", "variance_type": "fixed_large", "schedule": "linspace"},
    {"sampler": "ddpm", "variance_bound": 0.05},
    {"sampler": "ddpm", "variance_bound": 0.05, "variance_form": "posterior"},
    {"sampler": "ddpm", "variance_scale": 0.3, "clip_sample": True, "schedule": "karras"},
    {"sampler": "euler"},
    {"sampler": "euler", "schedule": "karras", "guidance_scale": 1.0},
    {"sampler": "euler_a"},
    {"sampler": "euler_a", "schedule": "linspace", "variance_bound": 0.05},
    {"sampler": "euler_a", "variance_scale": 0.5, "guidance_scale": 1.0},
    {"sampler": "dpmpp_2m", "schedule": "karras"},
    {"sampler": "dpmpp_2m", "schedule": "cosine", "guidance_scale": 1.0},
    {"sampler": "dpmpp_2m", "steps": 16},
    {"sampler": "dpmpp_2m", "steps": 1},
    {"sampler": "dpmpp_2m", "dynamic_thresholding": True},  # per image
    {"sampler": "unipc"},
    {"sampler": "unipc", "schedule": "karras", "guidance_scale": 1.0},
    {"sampler": "unipc", "schedule": "leading", "steps": 2},
    {"sampler": "unipc", "steps": 1},
    {"sampler": "unipc", "dynamic_thresholding": True},  # per image
    {},  # the model's default request (UniPC on its optimized schedule)
]


class ToyModel(LoadedModel):
    """The bundled model's shapes, conditions and training schedule, with a cheap network that
    computes every row on its own (so a crowd and a lone image see the same outputs) and any
    prediction type."""

    def __init__(self, base: LoadedModel, prediction_type: str) -> None:
        config = {**base.scheduler_config, "prediction_type": prediction_type}
        super().__init__(base.info, config, base.device, base.dtype)
        self.base = base
        self.optimized_schedules = base.optimized_schedules

    @property
    def network(self) -> torch.nn.Module:
        return self.base.network

    def latent_shape(self, width: int, height: int) -> tuple[int, int, int]:
        return self.base.latent_shape(width, height)

    def conditions(self, config: ResolvedConfig) -> tuple[Condition, Condition]:
        return self.base.conditions(config)

    def unconditional_condition(self) -> Condition:
        return self.base.unconditional_condition()

    def forward(
        self, latents: torch.Tensor, timesteps: torch.Tensor, conditions: Sequence[Condition]
    ) -> torch.Tensor:
        labels = torch.tensor([float(c) if isinstance(c, int) else 0.0 for c in conditions])
        shift = (timesteps / 1000 + 0.05 * labels).reshape(-1, 1, 1, 1)
        return torch.tanh(0.7 * latents + shift)


def configs(model: LoadedModel) -> list[ResolvedConfig]:
    out = []
    for i, fields in enumerate(REQUESTS):
        steps = {"steps": 5 + i % 5} if "sampler" in fields else {}
        body = {"class_label": i % 10, "seed": 100 + i, **steps, **fields}
        request = GenerationRequest(**body)
        out.append(
            resolve_request(request, {model.info.name: model.info}, model.info.name, Limits.absolute())
        )
    return out


def crowd(model: LoadedModel) -> list[SamplingState]:
    return [s for i, c in enumerate(configs(model)) for s in new_states(f"job{i}", c, model)]


def run(model: LoadedModel, states: list[SamplingState], step_mode: Any) -> list[SamplingState]:
    return SamplingEngine(model, max_rows=max(1, rows_of(states)), step_mode=step_mode).run_to_completion(
        states
    )


@pytest.mark.parametrize("prediction_type", ["epsilon", "v_prediction"])
def test_vectorised_trajectories_equal_the_per_image_steps_bit_for_bit(
    bundled_model, prediction_type
) -> None:  # type: ignore[no-untyped-def]
    model = ToyModel(bundled_model, prediction_type)
    vectorised = crowd(model)
    families = {plan_family(s.scheduler) for s in vectorised}
    assert {"ddim", "ddpm", "euler", "euler_a", None} <= families
    assert sum(unipc_step.batchable(s.scheduler) for s in vectorised) == 5
    assert sum(dpmpp_step.batchable(s.scheduler) for s in vectorised) == 4
    for state in vectorised:  # the batched path must not fall back to scheduler.step
        if plan_family(state.scheduler) is not None or any(
            solver.batchable(state.scheduler) for solver in (unipc_step, dpmpp_step)
        ):
            state.scheduler.step = _refuse  # type: ignore[method-assign]
    run(model, vectorised, "vectorised")
    reference = run(model, crowd(model), "per_image")
    for fast, slow in zip(vectorised, reference, strict=True):
        assert fast.step_index == slow.step_index == len(slow.scheduler.timesteps)
        assert torch.equal(fast.latent, slow.latent), fast.config.sampler
        assert fast.x0 is not None and slow.x0 is not None and torch.equal(fast.x0, slow.x0)
        assert getattr(fast.scheduler, "injected_noise_std", None) == getattr(
            slow.scheduler, "injected_noise_std", None
        )
        assert getattr(fast.scheduler, "step_index", None) == getattr(slow.scheduler, "step_index", None)


def test_a_vectorised_image_is_its_replay_alone_bit_for_bit(bundled_model) -> None:  # type: ignore[no-untyped-def]
    """The toy network computes every row alone, so any difference would come from the step:
    its noise is each image's own."""
    model = ToyModel(bundled_model, "v_prediction")
    together = run(model, crowd(model), "vectorised")
    for config, state in zip(configs(model), together, strict=True):
        alone = run(model, new_states("alone", config, model), "vectorised")[0]
        assert torch.equal(alone.latent, state.latent), config.sampler


def test_the_bundled_model_gives_the_same_bits_either_way(bundled_model) -> None:  # type: ignore[no-untyped-def]
    """The real network, a crowd of every sampler: the same forward inputs, the same images."""
    states = [s for s in crowd(bundled_model) if s.config.steps <= 6]
    fast = run(bundled_model, states, "vectorised")
    slow = run(bundled_model, [s for s in crowd(bundled_model) if s.config.steps <= 6], "per_image")
    for a, b in zip(fast, slow, strict=True):
        assert torch.equal(a.latent, b.latent), a.config.sampler


class HalvingDDIM(VarianceControlledDDIMScheduler):
    """A scheduler the vectorised step does not know: its own input scaling and step."""

    def scale_model_input(self, sample: torch.Tensor, timestep: object = None) -> torch.Tensor:
        return sample * 0.5


def test_a_scheduler_of_its_own_keeps_its_own_scaling_and_step(bundled_model) -> None:  # type: ignore[no-untyped-def]
    model = ToyModel(bundled_model, "epsilon")
    runs = []
    for step_mode in ("vectorised", "per_image"):
        states = crowd(model)
        for state in states:
            if type(state.scheduler) is VarianceControlledDDIMScheduler:
                state.scheduler.__class__ = HalvingDDIM
        assert plan_family(states[0].scheduler) is None
        runs.append(run(model, states, step_mode))
    for fast, slow in zip(*runs, strict=True):
        assert torch.equal(fast.latent, slow.latent), fast.config.sampler


def test_the_step_mode_is_validated(bundled_model) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="step_mode must be 'vectorised' or 'per_image'"):
        SamplingEngine(bundled_model, max_rows=4, step_mode="batched")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="step_mode"):
        WorkerSettings(step_mode="batched")  # type: ignore[arg-type]
    assert WorkerSettings().step_mode == "vectorised"


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("scheduler.step was called for an image with a batched step")
