"""The sampling engine: the images in flight and the row budget, advanced one denoising step
at a time with ONE batched model call per step.

The engine is the one loop: the worker, the evaluation, the benchmarks and the tests all
``admit`` jobs and ``tick``. A tick takes the oldest unfinished images (``SamplingState``,
``workers.sampling.state``) that fit in ``max_rows`` rows, stacks the latent of every one with
its own timestep, adds an unconditional row for each image that uses guidance, runs the
network once, and advances every image by one step: by default in a few batched tensor updates
(``workers.sampling.batched_step``: one per branch of the step, with per-row coefficients and
each image's own noise, bit-identical to the per-image path), or with ``step_mode="per_image"``
each image's own ``scheduler.step`` (the reference). Images with different samplers,
step counts and guidance scales share the forward pass; an image never depends on its batch
mates because nothing random is shared and every row is computed independently. On CUDA the
step loop never waits for the GPU: per-row timesteps and labels go up from pinned memory
without blocking, and only a finished image is copied back.

Classifier-free guidance (Ho & Salimans 2022): ε̂ = ε_u + w (ε_c − ε_u), applied to the model's
output whatever it predicts (ε or v: both are linear in the score, so the combination is the same).
Guidance rescale (Lin et al. 2024, eq. 15-16): ε_rescaled = ε̂ · std(ε_c) / std(ε̂),
ε = φ ε_rescaled + (1 − φ) ε̂.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

from protocol.schema import ResolvedConfig
from workers.host_upload import upload
from workers.init_images import InitImage
from workers.models.loaded_model import Condition, LoadedModel
from workers.sampling import batched_step
from workers.sampling.guidance import combine_guidance
from workers.sampling.predictions import predicted_x0
from workers.sampling.state import SamplingState, new_states, rows_of

StepMode = Literal["vectorised", "per_image"]


@dataclass(frozen=True)
class TickStats:
    """What one tick did."""

    rows: int  # rows of the forward pass (a guided image adds two)
    states: int  # images advanced by one step
    forward_seconds: float  # host time of the model call (on CUDA: launch time unless something waits)
    step_seconds: float  # the whole step: inputs, forward, guidance and every scheduler step


class BatchFailed(Exception):
    """A step raised (``error``); ``job_ids`` had images in its batch. Their states stay in flight
    (some may have taken the step, some not): the caller drops them."""

    def __init__(self, job_ids: list[str], error: Exception) -> None:
        super().__init__(f"step failed for jobs {', '.join(job_ids)}: {type(error).__name__}: {error}")
        self.job_ids = job_ids
        self.error = error


class SamplingEngine:
    """The images in flight, job by job in admission order, and a budget of ``max_rows`` rows
    per forward pass (``DENOISE_MAX_BATCH`` in the worker)."""

    def __init__(self, model: LoadedModel, max_rows: int, step_mode: StepMode = "vectorised") -> None:
        if max_rows < 1:
            raise ValueError(f"max_rows must be at least 1, got {max_rows}")
        if step_mode not in ("vectorised", "per_image"):
            raise ValueError(f"step_mode must be 'vectorised' or 'per_image', got {step_mode!r}")
        self.model = model
        self.max_rows = max_rows
        self.step_mode = step_mode
        self._jobs: list[list[SamplingState]] = []  # one list per admitted job, oldest first

    # ------------------------------------------------------------------ the in-flight set
    def admit(self, states: Sequence[SamplingState]) -> None:
        """Adds one job's images after those in flight. A job is admitted whole, even past the
        budget: the budget caps each forward pass, and callers ask ``rows_free`` before they take
        on work."""
        job_ids = sorted({s.job_id for s in states})
        if len(job_ids) != 1:
            raise ValueError(f"admit takes the images of one job, got jobs {job_ids or 'none'}")
        if any(job[0].job_id == job_ids[0] for job in self._jobs):
            raise ValueError(f"job {job_ids[0]} is already in flight")
        self._jobs.append(list(states))

    @property
    def rows_in_flight(self) -> int:
        """Rows the unfinished images add to a forward pass (a guided image: 2, unguided: 1)."""
        return sum(rows_of(states) for states in self._jobs)

    @property
    def rows_free(self) -> int:
        """Rows of the budget that no unfinished image claims (0 when the set is over budget)."""
        return max(0, self.max_rows - self.rows_in_flight)

    def finished(self) -> list[list[SamplingState]]:
        """Hands back the jobs whose images are all done (oldest first), each image decoded to
        pixels (``state.image``; the VAE runs once over all of them), and forgets them."""
        done = [states for states in self._jobs if all(s.done for s in states)]
        self._jobs = [states for states in self._jobs if not all(s.done for s in states)]
        self._decode([state for states in done for state in states if state.image is None])
        return done

    @torch.inference_mode()
    def _decode(self, states: list[SamplingState]) -> None:
        by_shape: dict[tuple[int, ...], list[SamplingState]] = {}
        for state in states:
            by_shape.setdefault(tuple(state.latent.shape), []).append(state)
        for group in by_shape.values():
            pixels = self.model.decode(torch.cat([state.latent for state in group]))
            for row, state in enumerate(group):
                state.image = pixels[row : row + 1]

    def drop(self, job_id: str) -> list[SamplingState]:
        """Forgets a job's images (cancelled, expired or failed); returns them (none if unknown)."""
        dropped = [s for states in self._jobs if states[0].job_id == job_id for s in states]
        self._jobs = [states for states in self._jobs if states[0].job_id != job_id]
        return dropped

    # ------------------------------------------------------------------ the loop
    def batch(self) -> list[SamplingState]:
        """The images the next tick advances: the oldest unfinished ones within ``max_rows``.

        Jobs go in admission order and a job's images in index order. A job's first image that
        does not fit ends that job's share (its later images wait for the next tick) and the
        next job may still fill the rows left. The first image always goes, even one wider
        than the budget, so that every job makes progress.
        """
        batch: list[SamplingState] = []
        rows = 0
        for states in self._jobs:
            for state in states:
                if state.done:
                    continue
                if batch and rows + state.rows > self.max_rows:
                    break
                batch.append(state)
                rows += state.rows
        return batch

    def tick(self) -> TickStats | None:
        """One denoising step for ``batch()``; None when nothing is in flight.

        Raises:
            BatchFailed: the step raised; it names the jobs with images in the batch.
        """
        batch = self.batch()
        if not batch:
            return None
        try:
            return self._step(batch)
        except Exception as error:
            raise BatchFailed(list(dict.fromkeys(s.job_id for s in batch)), error) from error

    def run_to_completion(self, states: Sequence[SamplingState]) -> list[SamplingState]:
        """Admits ``states`` (each run of consecutive images of one job is one admission) and
        ticks until every image in flight is done; returns ``states``, finished (offline use:
        evaluation, benchmarks, tests). The budget is this engine's ``max_rows``: give it
        ``rows_of(states)`` to advance them all in every forward pass."""
        for _job_id, job in itertools.groupby(states, key=lambda s: s.job_id):
            self.admit(list(job))
        try:
            while self.tick() is not None:
                pass
        except BatchFailed as failed:
            raise failed.error from None
        self.finished()
        return list(states)

    @torch.inference_mode()
    def _step(self, states: list[SamplingState]) -> TickStats:
        """One denoising step for every state in ``states`` (none of them may be done): one
        forward per latent shape among them (one in all unless a model draws several sizes)."""
        started = time.perf_counter()
        forward_seconds = 0.0
        rows = 0
        by_shape: dict[tuple[int, ...], list[SamplingState]] = {}
        for state in states:
            by_shape.setdefault(tuple(state.latent.shape), []).append(state)
        for group in by_shape.values():
            if self.step_mode == "vectorised":
                samples, model_input, timesteps = batched_step.model_inputs(group)
                output, seconds = self._call_model(model_input, timesteps, group)
                batched_step.advance(group, samples, batched_step.guided_outputs(group, output))
            else:
                output, seconds = self._forward(group)
                self._advance(group, output)
            forward_seconds += seconds
            rows += output.shape[0]
        elapsed = time.perf_counter() - started
        for state in states:
            state.step_seconds.append(elapsed)
        return TickStats(rows=rows, states=len(states), forward_seconds=forward_seconds, step_seconds=elapsed)

    def _forward(self, states: list[SamplingState]) -> tuple[torch.Tensor, float]:
        """The per-image path's inputs: every row of ``states`` (a guided image: its conditional
        row, then its unconditional one), each scaled by its own scheduler; the model's output and
        the host time of the model call."""
        inputs: list[torch.Tensor] = []
        timesteps: list[torch.Tensor] = []
        for state in states:
            scaled = state.scheduler.scale_model_input(state.latent, state.timestep)
            repeats = state.rows
            inputs.extend([scaled] * repeats)
            timesteps.extend([state.timestep.reshape(1).float()] * repeats)
        return self._call_model(torch.cat(inputs), torch.cat(timesteps), states)

    def _call_model(
        self, batch: torch.Tensor, timesteps: torch.Tensor, states: list[SamplingState]
    ) -> tuple[torch.Tensor, float]:
        """The model's float32 output for the rows ``batch`` (of ``states``, in order), and the
        host time of the call."""
        model = self.model
        conditions: list[Condition] = []
        for state in states:
            conditions.append(state.condition)
            if state.guided:
                conditions.append(state.uncondition)
        t_batch = upload(timesteps, model.device)
        batch = batch.to(model.dtype)
        forward_started = time.perf_counter()
        output = model.forward(batch, t_batch, conditions).float()
        # host time: on CUDA this is launch time unless something later waits for the result
        return output, time.perf_counter() - forward_started

    @staticmethod
    def _advance(states: list[SamplingState], output: torch.Tensor) -> None:
        """The per-image path (``step_mode="per_image"``, the reference that the vectorised step
        reproduces): guidance, then each state's own scheduler step."""
        row = 0
        for state in states:
            eps = output[row : row + 1]
            if state.guided:
                eps = combine_guidance(
                    eps,
                    output[row + 1 : row + 2],
                    state.config.guidance_scale,
                    state.config.guidance_rescale,
                )
            row += state.rows
            # deterministic steps never touch the generator (UniPC's step does not even take one)
            extra = {} if state.config.deterministic else {"generator": state.noise_generator}
            step = state.scheduler.step(eps, state.timestep, state.latent, **extra)
            state.latent = step.prev_sample
            state.x0 = predicted_x0(step, state.scheduler)
            state.step_index += 1


def generate(
    model: LoadedModel, config: ResolvedConfig, job_id: str = "local", init: InitImage | None = None
) -> list[SamplingState]:
    """All images of one resolved request, sampled in-process with every image in each forward
    pass (as a worker runs a request alone); returns the finished states. ``init``: the request's
    init image, if it has one."""
    states = new_states(job_id, config, model, init)
    return SamplingEngine(model, max_rows=max(1, rows_of(states))).run_to_completion(states)
