"""DPM-Solver++(2M)'s step for a batch of images, each image's last model output kept in its own
scheduler.

Lu et al. (2022), "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion Probabilistic
Models", Algorithm 2 (multistep, data prediction), as diffusers' ``DPMSolverMultistepScheduler``
computes it (``algorithm_type="dpmsolver++"``, order ≤ 2):

    first order:   x_t = (σ_t/σ_s) x_s − α_t (e^{−h} − 1) D_0
    second order:  x_t = (σ_t/σ_s0) x_s0 − α_t (e^{−h} − 1) D_0 − ½ α_t (e^{−h} − 1) D_1   (midpoint)
                   x_t = (σ_t/σ_s0) x_s0 − α_t (e^{−h} − 1) D_0 + α_t ((e^{−h} − 1)/h + 1) D_1   (heun)
    D_0 = m_0,  D_1 = (m_0 − m_1) / r_0,  r_0 = h_0 / h,  h = λ_t − λ_s0,  λ = log α − log σ

with m the model output converted to x̂_0. The scalar coefficients of each visited step are
computed once with diffusers' own arithmetic and the tensor operations are diffusers' in the
same order, so the batched update is bit-identical to ``scheduler.step``.

Notation map: sigma_ratio -> σ_t/σ_s0, d0_coeff -> α_t (e^{−h} − 1), d1_coeff -> ½ α_t (e^{−h} − 1)
(midpoint) or α_t ((e^{−h} − 1)/h + 1) (heun), inverse_r0 -> 1/r_0, m0 -> m_0, m1 -> m_1.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from diffusers import DPMSolverMultistepScheduler

from workers.host_upload import upload
from workers.sampling.step_plans import schedule_key

if TYPE_CHECKING:
    from workers.sampling.state import SamplingState

_CACHE: dict[tuple[Any, ...], dict[str, torch.Tensor]] = {}
_CACHE_SIZE = 4096


def batchable(scheduler: Any) -> bool:
    """Whether ``scheduler`` takes DPM-Solver++ steps this module reproduces (deterministic,
    order ≤ 2, ε or v prediction, no thresholding)."""
    if type(scheduler) is not DPMSolverMultistepScheduler:
        return False
    config = scheduler.config
    return bool(
        config.algorithm_type == "dpmsolver++"
        and config.solver_order <= 2
        and config.solver_type in ("midpoint", "heun")
        and config.prediction_type in ("epsilon", "v_prediction")
        and config.variance_type not in ("learned", "learned_range")
        and not config.thresholding
        and not config.use_flow_sigmas
    )


def _order(s: Any) -> int:
    """The order of the step ``s`` takes next, as ``DPMSolverMultistepScheduler.step`` decides."""
    i, n, config = s.step_index, len(s.timesteps), s.config
    lower_order_final = i == n - 1 and (
        config.euler_at_final or (config.lower_order_final and n < 15) or config.final_sigmas_type == "zero"
    )
    return 1 if config.solver_order == 1 or s.lower_order_nums < 1 or lower_order_final else 2


def _plan(s: Any, i: int, order: int) -> dict[str, torch.Tensor]:
    schedule = getattr(s, "_schedule_key", None)
    if schedule is None:
        schedule = s._schedule_key = schedule_key(s)
    key = (schedule, i, order)
    plan = _CACHE.get(key)
    if plan is not None:
        return plan
    if len(_CACHE) >= _CACHE_SIZE:
        _CACHE.clear()
    # 1. the model output as x̂_0: α and σ at the current step
    alpha_i, sigma_i = s._sigma_to_alpha_sigma_t(s.sigmas[i])
    plan = {"alpha_t": alpha_i, "sigma_t": sigma_i}
    # 2. α, σ, λ at the target t and at s_0 (and s_1, order 2); h = λ_t − λ_s0
    alpha_t, sigma_t = s._sigma_to_alpha_sigma_t(s.sigmas[i + 1])
    alpha_s0, sigma_s0 = s._sigma_to_alpha_sigma_t(s.sigmas[i])
    lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
    lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
    h = lambda_t - lambda_s0
    plan["sigma_ratio"] = sigma_t / sigma_s0
    plan["d0_coeff"] = alpha_t * (torch.exp(-h) - 1.0)
    if order == 2:
        # 3. r_0 = h_0 / h and the D_1 coefficient of the solver type
        alpha_s1, sigma_s1 = s._sigma_to_alpha_sigma_t(s.sigmas[i - 1])
        lambda_s1 = torch.log(alpha_s1) - torch.log(sigma_s1)
        r0 = (lambda_s0 - lambda_s1) / h
        plan["inverse_r0"] = 1.0 / r0
        if s.config.solver_type == "midpoint":
            plan["d1_coeff"] = 0.5 * (alpha_t * (torch.exp(-h) - 1.0))
        else:
            plan["d1_coeff"] = alpha_t * ((torch.exp(-h) - 1.0) / h + 1.0)
    _CACHE[key] = plan
    return plan


def group_key(state: SamplingState) -> tuple[Any, ...]:
    """Images whose next steps take the same branch (order, prediction and solver type)."""
    s = state.scheduler
    if s.step_index is None:
        s._init_step_index(state.timestep)
    return ("dpmpp", _order(s), s.config.prediction_type, s.config.solver_type)


def advance(states: list[SamplingState], sample: torch.Tensor, model_output: torch.Tensor) -> None:
    """One DPM-Solver++ step for ``states`` (all with the same ``group_key``): ``sample`` x_s0
    and ``model_output`` (after guidance) are their rows, in order."""
    schedulers = [state.scheduler for state in states]
    order = _order(schedulers[0])
    config = schedulers[0].config
    plans = [_plan(s, s.step_index, order) for s in schedulers]
    shape = (len(states), *[1] * (sample.ndim - 1))

    def c(name: str) -> torch.Tensor:
        return upload(torch.stack([plan[name] for plan in plans]), sample.device).reshape(shape)

    # 1. m_0 = x̂_0 from the model output
    if config.prediction_type == "v_prediction":
        m0 = c("alpha_t") * sample - c("sigma_t") * model_output
    else:
        m0 = (sample - c("sigma_t") * model_output) / c("alpha_t")

    # 2. the first- or second-order update
    if order == 1:
        prev_sample = c("sigma_ratio") * sample - c("d0_coeff") * m0
    else:
        m1 = torch.cat([s.model_outputs[-1] for s in schedulers])  # the last step's, not yet shifted
        D1 = c("inverse_r0") * (m0 - m1)
        prev_sample = c("sigma_ratio") * sample - c("d0_coeff") * m0
        if config.solver_type == "midpoint":
            prev_sample = prev_sample - c("d1_coeff") * D1
        else:
            prev_sample = prev_sample + c("d1_coeff") * D1

    # 3. each scheduler's own history, as its step leaves it
    for state, m, latent in zip(states, m0.split(1), prev_sample.split(1), strict=True):
        s = state.scheduler
        for i in range(s.config.solver_order - 1):
            s.model_outputs[i] = s.model_outputs[i + 1]
        s.model_outputs[-1] = m
        if s.lower_order_nums < s.config.solver_order:
            s.lower_order_nums += 1
        s._step_index += 1
        state.latent = latent
        state.x0 = m
        state.step_index += 1
