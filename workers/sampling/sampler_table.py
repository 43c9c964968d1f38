"""Every sampler, defined once: its public name, the diffusers scheduler class behind it and how
its scheduler is built from a resolved configuration (``build_scheduler`` reads this table).

The public description of the same samplers (``protocol.samplers.SAMPLERS``: knobs, schedules,
noise) lives in the protocol package because the API never imports diffusers;
``tests/workers/test_sampler_table.py`` checks that the two name the same samplers, the same
scheduler classes and the same knobs.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from diffusers import (
    DPMSolverMultistepScheduler,
    EulerDiscreteScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin

from protocol.resolution import DEFAULT_THRESHOLDING_RATIO
from protocol.samplers import KnobName
from protocol.schema import ResolvedConfig, SamplerName, ScheduleName
from workers.sampling.ddim import VarianceControlledDDIMScheduler
from workers.sampling.ddpm import VarianceControlledDDPMScheduler
from workers.sampling.euler_ancestral import VarianceControlledEulerAncestralScheduler
from workers.sampling.schedules import DIFFUSERS_SPACING
from workers.sampling.unipc import TimestepListUniPCScheduler

# Each public knob, as the scheduler config keys it sets (from the resolved configuration).
KNOB_CONFIG: dict[KnobName, Callable[[ResolvedConfig], dict[str, Any]]] = {
    "eta": lambda c: {"eta": c.eta or 0.0},
    "variance_bound": lambda c: {"variance_bound": c.variance_bound},
    "variance_scale": lambda c: {"variance_scale": 1.0 if c.variance_scale is None else c.variance_scale},
    "variance_type": lambda c: {"variance_type": c.variance_type or "fixed_small"},
    "variance_form": lambda c: {"variance_form": c.variance_form or "marginal"},
    "clip_sample": lambda c: {"clip_sample": c.clip_sample},
    "dynamic_thresholding": lambda c: {
        "thresholding": c.dynamic_thresholding,
        "dynamic_thresholding_ratio": c.dynamic_thresholding_ratio or DEFAULT_THRESHOLDING_RATIO,
        "sample_max_value": 1.0,
    },
}

EvenSpacing = Literal["timestep_schedule", "diffusers"]


@dataclass(frozen=True)
class SamplerEntry:
    """How one sampler's scheduler is built.

    ``fixed`` are constructor options that every request of this sampler gets; ``knobs`` are the
    public knobs it honours, each turned into config by ``KNOB_CONFIG`` (so a sampler supports
    dynamic thresholding exactly when it declares that knob).
    ``even_spacing`` says who computes the ``uniform``, ``leading`` and ``linspace`` schedules:
    ``timestep_schedule`` (the scheduler visits our list, like every other schedule) or the
    diffusers class itself, through its ``timestep_spacing`` and ``set_timesteps(steps)``
    (``workers.sampling.schedules`` records where the two differ). Every other schedule (the
    hand-made spacings, ``ays`` and the model's ``optimized`` table) reaches the scheduler as
    ``set_timesteps(timesteps=...)``, so a sampler offers them only if its class takes a list.
    """

    name: SamplerName
    scheduler_class: type[SchedulerMixin]
    fixed: Mapping[str, Any]
    knobs: tuple[KnobName, ...]
    even_spacing: EvenSpacing

    def spaces_itself(self, schedule: ScheduleName) -> bool:
        """Whether the diffusers class computes the visited timesteps of ``schedule``."""
        return self.even_spacing == "diffusers" and schedule in DIFFUSERS_SPACING

    def constructor_options(self, config: ResolvedConfig) -> dict[str, Any]:
        """Options for ``scheduler_class.from_config`` on top of the training scheduler config."""
        options = dict(self.fixed)
        for knob in self.knobs:
            options.update(KNOB_CONFIG[knob](config))
        if self.spaces_itself(config.schedule):
            options["timestep_spacing"] = DIFFUSERS_SPACING[config.schedule]
        return options


SAMPLER_ENTRIES: tuple[SamplerEntry, ...] = (
    SamplerEntry(
        name="ddpm",
        scheduler_class=VarianceControlledDDPMScheduler,
        fixed={},
        knobs=(
            "variance_type",
            "variance_bound",
            "variance_scale",
            "variance_form",
            "clip_sample",
            "dynamic_thresholding",
        ),
        even_spacing="timestep_schedule",
    ),
    SamplerEntry(
        name="ddim",
        scheduler_class=VarianceControlledDDIMScheduler,
        fixed={"set_alpha_to_one": True},
        knobs=("eta", "variance_bound", "variance_scale", "clip_sample", "dynamic_thresholding"),
        even_spacing="timestep_schedule",
    ),
    SamplerEntry(
        name="dpmpp_2m",
        scheduler_class=DPMSolverMultistepScheduler,
        fixed={"algorithm_type": "dpmsolver++", "solver_order": 2},
        knobs=("dynamic_thresholding",),
        even_spacing="diffusers",
    ),
    SamplerEntry(
        name="unipc",
        scheduler_class=TimestepListUniPCScheduler,
        fixed={"solver_order": 2, "predict_x0": True},
        knobs=("dynamic_thresholding",),
        even_spacing="diffusers",
    ),
    SamplerEntry(
        name="euler",
        scheduler_class=EulerDiscreteScheduler,
        fixed={},
        knobs=(),
        even_spacing="diffusers",
    ),
    SamplerEntry(
        name="euler_a",
        scheduler_class=VarianceControlledEulerAncestralScheduler,
        fixed={},
        knobs=("variance_bound", "variance_scale"),
        even_spacing="diffusers",
    ),
)
SAMPLER_TABLE: dict[SamplerName, SamplerEntry] = {entry.name: entry for entry in SAMPLER_ENTRIES}
