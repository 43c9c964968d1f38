"""The vectorised step: the images of a tick take their denoising step in a few batched tensor
updates instead of one Python ``scheduler.step`` (a dozen small tensor operations) each.

A tick's images are grouped by the branch their step takes (``StepPlan.kind``: DDIM, the two
DDPM forms, Euler, Euler ancestral; for the multistep solvers, ``unipc_step`` and
``dpmpp_step``, the orders of the step) and their prediction type; each group advances in one
update whose per-row coefficients are gathered from plans computed once per visited step. The
noise of a stochastic step is drawn row by row from each image's own generator, exactly as its
``scheduler.step`` would draw it, so an image never depends on its batch mates. The update
applies the per-image step's float32 operations in the same order, so its images are
bit-identical to the per-image path's (``tests/workers/test_batched_step.py``; the golden PNG
hashes hold with it on). The multistep solvers keep each image's history (its last model
outputs, its last sample) in the image's own scheduler, as their ``step`` leaves it.

What stays per image, through the scheduler's own ``step``: dynamic thresholding (a per-image
quantile), a prediction type without a batched form (``sample``), a scheduler class this module
does not know (a subclass with its own step included), and a swapped noise source (the exact
evaluation's). Guidance rescale (per-image standard deviations) is combined per image; its step
is batched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from diffusers import (
    DDIMScheduler,
    DDPMScheduler,
    DPMSolverMultistepScheduler,
    EulerAncestralDiscreteScheduler,
    EulerDiscreteScheduler,
    UniPCMultistepScheduler,
)

from workers.host_upload import upload
from workers.sampling import dpmpp_step, unipc_step
from workers.sampling.guidance import combine_guidance
from workers.sampling.predictions import predicted_x0, standard_normal
from workers.sampling.step_plans import (
    COEFFICIENTS,
    Kind,
    StepPlan,
    euler_input_scale,
    plan_family,
    step_plans,
)

if TYPE_CHECKING:
    from workers.sampling.state import SamplingState

# the multistep solvers' batched steps, by the tag their group keys start with
MULTISTEP = {"unipc": unipc_step, "dpmpp": dpmpp_step}

# diffusers' scale_model_input methods that return the input unchanged, and those that divide it
# by √(σ² + 1) (the Euler family); a class that brings its own is called per image
_UNSCALED = {
    cls.scale_model_input
    for cls in (DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler, UniPCMultistepScheduler)
}
_EULER = {EulerDiscreteScheduler.scale_model_input, EulerAncestralDiscreteScheduler.scale_model_input}


def model_inputs(states: Sequence[SamplingState]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(samples [S], model input [R], timesteps [R]): every image's latent x_t, the network's
    input rows (``scale_model_input`` applied; a guided image's row twice) and their timesteps."""
    samples = torch.cat([state.latent for state in states])
    divisors: list[torch.Tensor | float] = []
    own: list[int] = []  # positions whose scheduler scales its input its own way
    for position, state in enumerate(states):
        scheduler = state.scheduler
        method = type(scheduler).scale_model_input
        if method in _EULER:
            if scheduler.step_index is None:
                scheduler._init_step_index(state.timestep)
            divisors.append(euler_input_scale(scheduler))
            scheduler.is_scale_input_called = True
        else:
            divisors.append(1.0)  # x / 1 is x, bit for bit
            if method not in _UNSCALED:
                own.append(position)
    scaled = samples
    if any(isinstance(d, torch.Tensor) for d in divisors):
        divisor = torch.stack([torch.as_tensor(d, dtype=torch.float32) for d in divisors])
        scaled = samples / upload(divisor, samples.device).reshape(-1, *[1] * (samples.ndim - 1))
    for position in own:
        state = states[position]
        if scaled is samples:
            scaled = samples.clone()
        scaled[position : position + 1] = state.scheduler.scale_model_input(state.latent, state.timestep)
    timesteps = torch.tensor([float(state.timestep) for state in states], dtype=torch.float32)
    if all(state.rows == 1 for state in states):
        return samples, scaled, timesteps
    # each row's image, computed on the host (a repeat count on the device would make torch read
    # the output size back from it)
    rows = torch.tensor([state.rows for state in states])
    row_states = torch.repeat_interleave(torch.arange(len(states)), rows)
    return samples, scaled.index_select(0, upload(row_states, samples.device)), timesteps[row_states]


def guided_outputs(states: Sequence[SamplingState], output: torch.Tensor) -> torch.Tensor:
    """Each image's model output [S] after classifier-free guidance, ε̂ = ε_u + w (ε_c − ε_u)
    (Ho & Salimans 2022), for all guided images at once; rescaled guidance per image."""
    first_rows: list[int] = []
    guided: list[int] = []
    scales: list[float] = []
    rescaled: list[int] = []
    row = 0
    for position, state in enumerate(states):
        first_rows.append(row)
        if state.guided:
            if state.config.guidance_rescale > 0:
                rescaled.append(position)
            else:
                guided.append(position)
                scales.append(state.config.guidance_scale)
        row += state.rows
    device = output.device
    if row == len(states):
        return output  # no guided image: one row each, in order
    eps = output.index_select(0, upload(torch.tensor(first_rows), device))
    if guided:
        cond_rows = torch.tensor([first_rows[p] for p in guided])
        eps_cond = output.index_select(0, upload(cond_rows, device))
        eps_uncond = output.index_select(0, upload(cond_rows + 1, device))
        # w as float32, as torch applies the Python float w of the per-image step
        scale = upload(torch.tensor(scales, dtype=torch.float32), device).reshape(
            -1, *[1] * (output.ndim - 1)
        )
        eps.index_copy_(0, upload(torch.tensor(guided), device), eps_uncond + scale * (eps_cond - eps_uncond))
    for position in rescaled:
        state, r = states[position], first_rows[position]
        eps[position : position + 1] = combine_guidance(
            output[r : r + 1],
            output[r + 1 : r + 2],
            state.config.guidance_scale,
            state.config.guidance_rescale,
        )
    return eps


def advance(states: Sequence[SamplingState], samples: torch.Tensor, eps: torch.Tensor) -> None:
    """One step for every image: one batched update per group of images whose steps take the
    same branch, ``scheduler.step`` for the rest (module doc)."""
    groups: dict[tuple[Any, ...], list[tuple[int, StepPlan]]] = {}
    multistep: dict[tuple[Any, ...], list[int]] = {}
    alone: list[int] = []
    for position, state in enumerate(states):
        family = plan_family(state.scheduler)
        if family is None:
            solver = next((m for m in MULTISTEP.values() if m.batchable(state.scheduler)), None)
            if solver is None:
                alone.append(position)
            else:
                multistep.setdefault(solver.group_key(state), []).append(position)
            continue
        config = state.scheduler.config
        index = state.scheduler.step_index if family in ("euler", "euler_a") else state.step_index
        plan = step_plans(state.scheduler, family)[index]
        clip = (bool(getattr(config, "clip_sample", False)), float(getattr(config, "clip_sample_range", 1.0)))
        key = (plan.kind, plan.draws_noise, config.prediction_type, clip)
        groups.setdefault(key, []).append((position, plan))
    for (kind, _, prediction_type, clip), members in groups.items():
        positions = [position for position, _ in members]
        plans = [plan for _, plan in members]
        _update(kind, prediction_type, clip, [states[p] for p in positions], positions, plans, samples, eps)
    for key, positions in multistep.items():
        index = upload(torch.tensor(positions), samples.device)
        rows = samples.index_select(0, index), eps.index_select(0, index)
        MULTISTEP[key[0]].advance([states[p] for p in positions], *rows)
    for position in alone:
        state = states[position]
        extra = {} if state.config.deterministic else {"generator": state.noise_generator}
        step = state.scheduler.step(eps[position : position + 1], state.timestep, state.latent, **extra)
        state.latent = step.prev_sample
        state.x0 = predicted_x0(step, state.scheduler)
        state.step_index += 1


def _update(
    kind: Kind,
    prediction_type: str,
    clip: tuple[bool, float],
    states: list[SamplingState],
    positions: list[int],
    plans: list[StepPlan],
    samples: torch.Tensor,
    eps: torch.Tensor,
) -> None:
    """One batched step for ``states`` (rows ``positions`` of ``samples`` and ``eps``), whose
    steps all take the branch ``kind`` (``step_plans`` names the coefficients and the equations)."""
    device = samples.device
    if len(positions) == len(samples):
        sample, model_output = samples, eps
    else:
        index = upload(torch.tensor(positions), device)
        sample, model_output = samples.index_select(0, index), eps.index_select(0, index)
    table = upload(torch.stack([plan.coefficients for plan in plans]).T.contiguous(), device)
    shape = (len(states), *[1] * (samples.ndim - 1))
    c = {name: table[j].reshape(shape) for j, name in enumerate(COEFFICIENTS[kind])}
    noise = None
    if plans[0].draws_noise:
        # z from each image's own generator, as its scheduler.step draws it (like = its ε̂ row)
        noise = torch.cat(
            [
                standard_normal(
                    model_output[g : g + 1], None if s.config.deterministic else s.noise_generator
                )
                for g, s in enumerate(states)
            ]
        )

    if kind in ("euler", "euler_a"):
        # 1. x̂_0 (c_out, c_skip); 2. the Euler step x + (x − x̂_0)/σ · dt; 3. + σ_up z (ancestral)
        if prediction_type == "epsilon":
            pred_original_sample = sample - c["sigma"] * model_output
        else:
            pred_original_sample = model_output * c["c_out"] + (sample / c["c_skip_divisor"])
        derivative = (sample - pred_original_sample) / c["sigma"]
        prev_sample = sample + derivative * c["dt"]
        if noise is not None:
            prev_sample = prev_sample + noise * c["sigma_up"]
    else:
        # 1. x̂_0 and ε̂ (predictions.original_and_noise), x̂_0 clipped
        if prediction_type == "v_prediction":
            pred_original_sample = c["sqrt_alpha_prod_t"] * sample - c["sqrt_beta_prod_t"] * model_output
            pred_epsilon = c["sqrt_alpha_prod_t"] * model_output + c["sqrt_beta_prod_t"] * sample
        else:
            pred_epsilon = model_output
            pred_original_sample = (sample - c["sqrt_beta_prod_t"] * pred_epsilon) / c["sqrt_alpha_prod_t"]
        if clip[0]:
            pred_original_sample = pred_original_sample.clamp(-clip[1], clip[1])
            pred_epsilon = (sample - c["sqrt_alpha_prod_t"] * pred_original_sample) / c["sqrt_beta_prod_t"]
        if kind == "ddpm_posterior":
            # 2. the posterior mean μ̃_t = c_0 x̂_0 + c_t x_t, then + σ'_t z
            prev_sample = c["pred_original_sample_coeff"] * pred_original_sample
            prev_sample = prev_sample + c["current_sample_coeff"] * sample
        else:
            # 2. the DDIM form √ᾱ_{t'} x̂_0 + √(1 − ᾱ_{t'} − σ²) ε̂, then + σ'_t z
            direction = c["direction_coeff"] * pred_epsilon
            prev_sample = c["sqrt_alpha_prod_t_prev"] * pred_original_sample + direction
        if noise is not None:
            prev_sample = prev_sample + c["std_dev_t"] * noise

    for state, plan, latent, x0 in zip(
        states, plans, prev_sample.split(1), pred_original_sample.split(1), strict=True
    ):
        state.latent = latent
        state.x0 = x0
        state.step_index += 1
        scheduler = state.scheduler
        if plan.injected_std is not None:
            scheduler.injected_noise_std.append(plan.injected_std)
        if kind in ("euler", "euler_a"):
            scheduler._step_index += 1
