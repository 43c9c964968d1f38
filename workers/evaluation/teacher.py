"""A fine teacher trajectory of the probability-flow ODE on a trained model, and what a schedule's
error is against it (GITS, Chen et al. 2024, for models without a closed form).

1. ``teacher_trajectory``: UniPC on a fine grid of timesteps (``TEACHER_GRID``: every 8th timestep
   from T − 1 plus the last few, ~130 model evaluations) from fixed initial latents, through the
   serving engine (guidance and all); at every grid point g_i it keeps the model's input x_i and
   its prediction x̂_0(x_i), and at the end the teacher's image.
2. ``ddim_step_costs``: cost[i, j] = mean over images of ‖DDIM(x_i → g_j) − x_j‖ / √D, the error of
   one deterministic DDIM step (η = 0; also the Euler step in σ-space) from the teacher's state at
   g_i to grid point g_j, without another model evaluation:
   x̂_j = √ᾱ_j x̂_0(x_i) + √(1 − ᾱ_j) ε̂_i, ε̂_i = (x_i − √ᾱ_i x̂_0(x_i)) / √(1 − ᾱ_i); the clean end
   (j = M) is x̂_0(x_i) against the teacher's image. ``schedule_search.dynamic_programming`` finds
   the N-step path with the least summed cost: the GITS schedule.
3. ``teacher_error``: the RMS difference (per pixel, model space) between a sampler's images on a
   timestep list and the teacher's, from the same latents: the error a schedule leaves, used to
   refine the multistep solvers' schedules, whose steps depend on their history.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np
import torch

from protocol.schema import GenerationRequest, SamplerName
from workers.evaluation.class_accuracy import class_states
from workers.models.loading import LoadedModel
from workers.models.optimized_schedules import steps_by_sampler
from workers.sampling.engine import SamplingEngine
from workers.sampling.state import SamplingState, rows_of

TEACHER_GRID: tuple[int, ...] = tuple(sorted(set(range(999, 0, -8)) | {5, 3, 2, 1, 0}, reverse=True))


@dataclass
class Teacher:
    """The teacher's trajectory on ``grid`` (descending timesteps), for the images it drew."""

    grid: list[int]
    alphas: np.ndarray  # ᾱ at each grid point [M]
    states: np.ndarray  # x_i, the model input at g_i [M, B, D] (float32)
    predictions: np.ndarray  # x̂_0(x_i) [M, B, D]
    final: np.ndarray  # the teacher's image [B, D]
    request: GenerationRequest  # the fields the students share (guidance, ...)
    classes: list[int]
    per_class: int
    seed: int


@contextmanager
def visiting(model: LoadedModel, sampler: SamplerName, timesteps: Sequence[int]) -> Iterator[None]:
    """Within the block, the model's ``optimized`` schedule for ``sampler`` at ``len(timesteps)``
    steps is ``timesteps``: a request with ``schedule: "optimized"`` visits them through the
    serving path (resolution, ``build_scheduler``, the initial latent's scale)."""
    saved_table, saved_info = model.optimized_schedules, model.info
    table = {**saved_table, sampler: {**saved_table.get(sampler, {}), len(timesteps): list(timesteps)}}
    model.optimized_schedules = table
    model.info = saved_info.model_copy(update={"optimized_schedules": steps_by_sampler(table)})
    try:
        yield
    finally:
        model.optimized_schedules, model.info = saved_table, saved_info


def _states(
    model: LoadedModel,
    request: GenerationRequest,
    timesteps: Sequence[int],
    classes: list[int],
    per_class: int,
    seed: int,
) -> list[SamplingState]:
    sampler = request.sampler or model.info.default_sampler
    with visiting(model, sampler, timesteps):
        update = {"sampler": sampler, "steps": len(timesteps), "schedule": "optimized"}
        return class_states(model, request.model_copy(update=update), classes, per_class, seed)


@torch.inference_mode()
def teacher_trajectory(
    model: LoadedModel,
    classes: list[int],
    per_class: int,
    seed: int,
    grid: Sequence[int] = TEACHER_GRID,
    request: GenerationRequest | None = None,
) -> Teacher:
    """Runs the teacher (UniPC on ``grid``) and records its trajectory (module doc, 1)."""
    request = request or GenerationRequest(sampler="unipc")
    states = _states(model, request.model_copy(update={"sampler": "unipc"}), grid, classes, per_class, seed)
    engine = SamplingEngine(model, max_rows=rows_of(states))
    for job_id in dict.fromkeys(s.job_id for s in states):
        engine.admit([s for s in states if s.job_id == job_id])
    inputs, predictions = [], []
    while True:
        before = torch.cat([s.latent for s in states]).reshape(len(states), -1).float().cpu().numpy()
        if engine.tick() is None:
            break
        inputs.append(before)
        predictions.append(
            torch.cat([s.x0 for s in states]).reshape(len(states), -1).float().cpu().numpy()  # type: ignore[misc]
        )
    engine.finished()
    final = torch.cat([s.latent for s in states]).reshape(len(states), -1).float().cpu().numpy()
    alphas = states[0].scheduler.alphas_cumprod.double().numpy()[list(grid)]
    return Teacher(
        grid=list(grid),
        alphas=alphas,
        states=np.stack(inputs),
        predictions=np.stack(predictions),
        final=final,
        request=request,
        classes=classes,
        per_class=per_class,
        seed=seed,
    )


def ddim_step_costs(teacher: Teacher) -> np.ndarray:
    """cost [M + 1, M + 1] of one DDIM step between grid points (module doc, 2)."""
    m = len(teacher.grid)
    dim = teacher.states.shape[-1]
    cost = np.full((m + 1, m + 1), np.inf)
    sqrt_a = np.sqrt(teacher.alphas)[:, None, None]
    sqrt_1ma = np.sqrt(1 - teacher.alphas)[:, None, None]
    targets = np.concatenate([teacher.states, teacher.final[None]]).astype(np.float64)
    for i in range(m):
        x0 = teacher.predictions[i].astype(np.float64)
        eps = (teacher.states[i] - sqrt_a[i] * x0) / sqrt_1ma[i]
        later = slice(i + 1, m)
        jumped = np.concatenate([sqrt_a[later] * x0 + sqrt_1ma[later] * eps, x0[None]])
        error = np.linalg.norm(jumped - targets[i + 1 :], axis=-1) / np.sqrt(dim)  # [j, B]
        cost[i, i + 1 :] = error.mean(axis=1)
    return cost


@torch.inference_mode()
def teacher_error(
    model: LoadedModel,
    teacher: Teacher,
    request: GenerationRequest,
    timesteps: Sequence[int] | None,
    images: int,
    first: int = 0,
) -> float:
    """RMS per pixel between the sampler's images and the teacher's, over the teacher's images
    ``first`` to ``first + images`` of each class (same latents). The sampler visits ``timesteps``,
    or the schedule of ``request`` when None."""
    per_class = min(images, teacher.per_class - first)
    seed = teacher.seed + first  # image i of class c has seed ``seed + 1000 c + i``
    if timesteps is None:
        states = class_states(model, request, teacher.classes, per_class, seed)
    else:
        states = _states(model, request, timesteps, teacher.classes, per_class, seed)
    SamplingEngine(model, max_rows=rows_of(states)).run_to_completion(states)
    out = torch.cat([s.latent for s in states]).reshape(len(states), -1).double().cpu().numpy()
    index = [c * teacher.per_class + first + i for c in range(len(teacher.classes)) for i in range(per_class)]
    return float(np.sqrt(np.mean((out - teacher.final[index]) ** 2)))
