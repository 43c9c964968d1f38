"""UniPC's step for a batch of images: the corrector and the predictor as batched tensor
updates, each image's history of model outputs kept in its own scheduler.

Zhao et al. (2023), "UniPC: A Unified Predictor-Corrector Framework for Fast Sampling of
Diffusion Models", Algorithms 1-2 (UniC-p and UniP-p, data prediction, B(h) = e^h − 1: "bh2"),
as diffusers' ``UniPCMultistepScheduler`` computes them for order p ≤ 2:

    x̂_0 = m_t                                    (the model output converted to data prediction)
    UniC:  x_t^c = σ_t/σ_s x_s − α_t (e^{−h} − 1) m_s − α_t B(h) (r_c · D_1 + ρ_c (m_t − m_s))
    UniP:  x_{t'} = σ_{t'}/σ_t x_t^c − α_{t'} (e^{−h} − 1) m_t − α_{t'} B(h) ρ_p D_1
           D_1 = (m_{prev} − m_0) / r_1,   h = λ_t − λ_s,   λ = log α − log σ

The scalar coefficients of each visited step (which depend on its index and the orders, set
by the image's step count and how many steps it has taken) are computed once with diffusers'
own scalar arithmetic; the tensor operations are diffusers' in the same order, so the batched
update is bit-identical to ``scheduler.step`` (``tests/workers/test_batched_step.py``).

Notation map: sigma_ratio -> σ_t/σ_s, data_coeff -> α_t (e^{−h} − 1) (diffusers' alpha_t * h_phi_1),
r_k -> r_1, rho_first -> the first ρ (of D_1), rho_last -> ρ_c of m_t − m_s,
correction_coeff -> α_t B(h), m0 -> m_s, model_t -> m_t.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from workers.host_upload import upload
from workers.sampling.step_plans import schedule_key
from workers.sampling.unipc import TimestepListUniPCScheduler

if TYPE_CHECKING:
    from workers.sampling.state import SamplingState

_CACHE: dict[tuple[Any, ...], dict[str, torch.Tensor]] = {}
_CACHE_SIZE = 4096


def batchable(scheduler: Any) -> bool:
    """Whether ``scheduler`` takes UniPC steps this module reproduces: data prediction (x̂_0),
    order ≤ 2, no predictor solver of its own, no thresholding, ε or v prediction."""
    if type(scheduler) is not TimestepListUniPCScheduler:
        return False
    config = scheduler.config
    return bool(
        scheduler.predict_x0
        and scheduler.solver_p is None
        and config.solver_order <= 2
        and config.solver_type in ("bh1", "bh2")
        and config.prediction_type in ("epsilon", "v_prediction")
        and not config.thresholding
        and not config.use_flow_sigmas
    )


def _coefficients(
    s: Any, index_t: int, index_s0: int, order: int, corrector: bool
) -> dict[str, torch.Tensor]:
    """diffusers' multistep_uni_{c,p}_bh_update, its scalar part, from σ at ``index_t`` (the
    target) and ``index_s0`` (the last model output's)."""
    # 1. α, σ and λ = log α − log σ at the target and at s_0; h = λ_t − λ_s0
    alpha_t, sigma_t = s._sigma_to_alpha_sigma_t(s.sigmas[index_t])
    alpha_s0, sigma_s0 = s._sigma_to_alpha_sigma_t(s.sigmas[index_s0])
    lambda_t = torch.log(alpha_t) - torch.log(sigma_t)
    lambda_s0 = torch.log(alpha_s0) - torch.log(sigma_s0)
    h = lambda_t - lambda_s0
    # 2. r_k of the earlier model output (order 2): the corrector's is two steps back
    rks = []
    out: dict[str, torch.Tensor] = {}
    for i in range(1, order):
        si = index_s0 - i
        alpha_si, sigma_si = s._sigma_to_alpha_sigma_t(s.sigmas[si])
        lambda_si = torch.log(alpha_si) - torch.log(sigma_si)
        rk = (lambda_si - lambda_s0) / h
        rks.append(rk)
        out["r_k"] = rk
    rks.append(torch.ones(()))
    rks_tensor = torch.stack(rks)
    # 3. B(h) and the order conditions R ρ = b
    hh = -h
    h_phi_1 = torch.expm1(hh)
    h_phi_k = h_phi_1 / hh - 1
    factorial_i = 1
    B_h = hh if s.config.solver_type == "bh1" else torch.expm1(hh)
    R, b = [], []
    for i in range(1, order + 1):
        R.append(torch.pow(rks_tensor, i - 1))
        b.append(h_phi_k * factorial_i / B_h)
        factorial_i *= i + 1
        h_phi_k = h_phi_k / hh - 1 / factorial_i
    R_matrix, b_vector = torch.stack(R), torch.stack(b)
    # 4. ρ: the corrector solves for all of them, the predictor of order 2 uses ρ = 1/2
    if corrector:
        rhos = torch.ones(1) * 0.5 if order == 1 else torch.linalg.solve(R_matrix, b_vector).to(torch.float32)
        out["rho_last"] = rhos[-1]
        if order == 2:
            out["rho_first"] = rhos[0]
    elif order == 2:
        out["rho_first"] = (torch.ones(1) * 0.5)[0]
    out["sigma_ratio"] = sigma_t / sigma_s0
    out["data_coeff"] = alpha_t * h_phi_1
    out["correction_coeff"] = alpha_t * B_h
    return out


def _plan(s: Any, i: int, order_c: int, order_p: int) -> dict[str, Any]:
    schedule = getattr(s, "_schedule_key", None)
    if schedule is None:
        schedule = s._schedule_key = schedule_key(s)
    key = (schedule, i, order_c, order_p)
    plan = _CACHE.get(key)
    if plan is None:
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.clear()
        alpha, sigma = s._sigma_to_alpha_sigma_t(s.sigmas[i])
        plan = {"alpha_t": alpha, "sigma_t": sigma}
        if order_c:
            plan.update({f"c_{k}": v for k, v in _coefficients(s, i, i - 1, order_c, corrector=True).items()})
        plan.update({f"p_{k}": v for k, v in _coefficients(s, i + 1, i, order_p, corrector=False).items()})
        _CACHE[key] = plan
    return plan


def _orders(s: Any) -> tuple[int, int]:
    """(corrector order, 0 without a corrector; predictor order) of the step ``s`` takes next,
    as ``UniPCMultistepScheduler.step`` decides them."""
    i = s.step_index
    use_corrector = i > 0 and i - 1 not in s.disable_corrector and s.last_sample is not None
    if s.config.lower_order_final:
        this_order = min(s.config.solver_order, len(s.timesteps) - i)
    else:
        this_order = s.config.solver_order
    return (s.this_order if use_corrector else 0), min(this_order, s.lower_order_nums + 1)


def group_key(state: SamplingState) -> tuple[Any, ...]:
    """Images whose next steps take the same branch (orders, prediction type) share an update."""
    s = state.scheduler
    if s.step_index is None:
        s._init_step_index(state.timestep)
    return ("unipc", *_orders(s), s.config.prediction_type)


def advance(states: list[SamplingState], sample: torch.Tensor, model_output: torch.Tensor) -> None:
    """One UniPC step for ``states`` (all with the same ``group_key``): ``sample`` x_t and
    ``model_output`` (after guidance) are their rows, in order."""
    schedulers = [state.scheduler for state in states]
    order_c, order_p = _orders(schedulers[0])
    plans = [_plan(s, s.step_index, order_c, order_p) for s in schedulers]
    shape = (len(states), *[1] * (sample.ndim - 1))

    def c(name: str) -> torch.Tensor:
        return upload(torch.stack([plan[name] for plan in plans]), sample.device).reshape(shape)

    def history(back: int) -> torch.Tensor:
        return torch.cat([s.model_outputs[-back] for s in schedulers])

    # 1. the model output as data prediction m_t = x̂_0
    if schedulers[0].config.prediction_type == "v_prediction":
        model_t = c("alpha_t") * sample - c("sigma_t") * model_output
    else:
        model_t = (sample - c("sigma_t") * model_output) / c("alpha_t")

    # 2. UniC: correct x_t with m_t, from x_s = the last sample and m_s = the last model output
    if order_c:
        x, m0 = torch.cat([s.last_sample for s in schedulers]), history(1)
        x_t_ = c("c_sigma_ratio") * x - c("c_data_coeff") * m0
        corr_res: Any = 0
        if order_c == 2:
            corr_res = c("c_rho_first") * ((history(2) - m0) / c("c_r_k"))
        D1_t = model_t - m0
        sample = x_t_ - c("c_correction_coeff") * (corr_res + c("c_rho_last") * D1_t)

    # 3. UniP: predict x_{t'} from the corrected x_t, m_t and (order 2) the last model output
    x_t_ = c("p_sigma_ratio") * sample - c("p_data_coeff") * model_t
    pred_res: Any = 0
    if order_p == 2:
        pred_res = c("p_rho_first") * ((history(1) - model_t) / c("p_r_k"))
    prev_sample = x_t_ - c("p_correction_coeff") * pred_res

    # 4. each scheduler's own history, as its step leaves it
    rows = zip(states, sample.split(1), model_t.split(1), prev_sample.split(1), strict=True)
    for state, corrected, m, latent in rows:
        s = state.scheduler
        for i in range(s.config.solver_order - 1):
            s.model_outputs[i] = s.model_outputs[i + 1]
            s.timestep_list[i] = s.timestep_list[i + 1]
        s.model_outputs[-1] = m
        s.timestep_list[-1] = state.timestep
        s.this_order = order_p
        s.last_sample = corrected
        if s.lower_order_nums < s.config.solver_order:
            s.lower_order_nums += 1
        s._step_index += 1
        state.latent = latent
        state.x0 = m
        state.step_index += 1
