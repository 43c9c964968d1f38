"""The public description of each sampler: its name, the diffusers scheduler class behind it,
whether it injects noise, the knobs and schedules it honours (``GET /v1/samplers``).

The worker's table (``workers.sampling.sampler_table``) builds each sampler's scheduler from
the entry of the same name; a test checks that the two tables name the same samplers, classes
and knobs.
"""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from protocol.schema import SamplerName, ScheduleName

# samplers that can visit any list of timesteps take every schedule; the others (euler_a) only
# the even spacings that their diffusers class computes itself
TIMESTEP_LIST_SCHEDULES: tuple[ScheduleName, ...] = get_args(ScheduleName)
EVEN_SCHEDULES: tuple[ScheduleName, ...] = ("uniform", "leading", "linspace")

PredictionType = Literal["epsilon", "v_prediction", "sample"]
KnobName = Literal[
    "eta",
    "variance_bound",
    "variance_scale",
    "variance_type",
    "variance_form",
    "clip_sample",
    "dynamic_thresholding",
]


class SamplerInfo(BaseModel):
    """What one sampler is and which knobs it honours (served by ``GET /v1/samplers``)."""

    model_config = ConfigDict(frozen=True)

    name: SamplerName
    scheduler_class: str = Field(description="the diffusers scheduler class behind it")
    noise: Literal["deterministic", "stochastic", "either"] = Field(
        description="whether it injects noise after the initial latent"
    )
    knobs: tuple[KnobName, ...] = Field(description="optional knobs it honours")
    schedules: tuple[ScheduleName, ...]
    default_schedule: ScheduleName = "uniform"
    prediction_types: tuple[PredictionType, ...] = Field(
        ("epsilon", "v_prediction", "sample"), description="what a model may predict for this sampler"
    )
    summary: str


SAMPLERS: dict[str, SamplerInfo] = {
    s.name: s
    for s in (
        SamplerInfo(
            name="ddpm",
            scheduler_class="DDPMScheduler",
            noise="stochastic",
            knobs=(
                "variance_type",
                "variance_bound",
                "variance_scale",
                "variance_form",
                "clip_sample",
                "dynamic_thresholding",
            ),
            schedules=TIMESTEP_LIST_SCHEDULES,
            summary="Ancestral sampling of Ho et al. (2020) on the visited timesteps; the "
            "injected variance is the posterior's (fixed_small) or β_t (fixed_large). A binding "
            "variance_bound or variance_scale keeps the step in the DDIM family (variance_form marginal).",
        ),
        SamplerInfo(
            name="ddim",
            scheduler_class="DDIMScheduler",
            noise="either",
            knobs=("eta", "variance_bound", "variance_scale", "clip_sample", "dynamic_thresholding"),
            schedules=TIMESTEP_LIST_SCHEDULES,
            summary="Song et al. (2021), eq. 12: eta = 0 is the deterministic DDIM, eta = 1 "
            "injects the DDPM posterior variance.",
        ),
        SamplerInfo(
            name="dpmpp_2m",
            scheduler_class="DPMSolverMultistepScheduler",
            noise="deterministic",
            knobs=("dynamic_thresholding",),
            schedules=TIMESTEP_LIST_SCHEDULES,
            summary="DPM-Solver++(2M), Lu et al. (2022): second-order multistep ODE solver.",
        ),
        SamplerInfo(
            name="unipc",
            scheduler_class="UniPCMultistepScheduler",
            noise="deterministic",
            knobs=("dynamic_thresholding",),
            schedules=TIMESTEP_LIST_SCHEDULES,
            summary="UniPC, Zhao et al. (2023): predictor-corrector multistep ODE solver.",
        ),
        SamplerInfo(
            name="euler",
            scheduler_class="EulerDiscreteScheduler",
            noise="deterministic",
            knobs=(),
            schedules=TIMESTEP_LIST_SCHEDULES,
            summary="Euler's method on the probability-flow ODE (Karras et al. 2022).",
        ),
        SamplerInfo(
            name="euler_a",
            prediction_types=("epsilon", "v_prediction"),  # diffusers' step has no x₀ branch
            scheduler_class="EulerAncestralDiscreteScheduler",
            noise="stochastic",
            knobs=("variance_bound", "variance_scale"),
            schedules=EVEN_SCHEDULES,
            summary="Euler ancestral: an Euler step down to σ_down, then fresh noise σ_up; a bound or "
            "scale on σ_up moves the step toward Euler's (σ_down² + σ_up² = σ² keeps the marginals).",
        ),
    )
}
