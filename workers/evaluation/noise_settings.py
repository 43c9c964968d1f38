"""The settings the sampling-noise sweep visits, and how many images it draws per setting.

Each group answers one question (see ``noise_sweep``'s module doc):

- ``ladder``: stochastic and deterministic samplers at growing step counts (does the variance
  left in the low-variance directions approach the data's as steps grow?);
- ``reference``: 1,000-step DDPM (100 steps in quick mode), the Fréchet distance to beat;
- ``ordering``: the DDIM paper's comparison at 10–20 steps (η = 0 vs DDPM with σ̂ = β_t,
  ``fixed_large``, vs β̃_t, ``fixed_small``);
- ``bound``: the variance_bound b at fixed steps for the stochastic samplers (DDPM in its default
  marginal form and, for contrast, the literal posterior form);
- ``solver``: schedules and higher-order solvers at 10/20 steps;
- ``schedules``: the model's optimized schedule against uniform and Karras at 4–20 NFE;
- ``guidance``: classifier-free guidance scales;
- ``default``: the model's default request (no sampler, steps or schedule given), and the
  50-step DDIM that was the default before it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

from protocol.schema import GenerationRequest, SamplerName, ScheduleName, VarianceForm, VarianceType

ModelKind = Literal["exact", "trained"]
MODEL_NAMES: dict[ModelKind, str] = {"exact": "mnist-gauss", "trained": "mnist-unet"}
BOUNDS_FULL: tuple[float, ...] = (0.2, 0.1, 0.05, 0.02, 0.0)
BOUNDS_QUICK: tuple[float, ...] = (0.1, 0.0)
# exact-model settings shown in the sample grid (with the reference and exact draws), where run
EXACT_GRID = {
    "ddpm fixed_small 10",
    "ddpm fixed_large 10",
    "ddim η=0 10",
    "dpmpp_2m karras 20",
    "ddpm fixed_small b=0 10",
    "ddpm fixed_small posterior b=0 10",
}


@dataclass(frozen=True)
class Setting:
    """One reverse-process configuration; ``None`` fields take the model's defaults."""

    model: ModelKind
    sampler: SamplerName
    steps: int
    schedule: ScheduleName = "uniform"
    eta: float | None = None
    variance_type: VarianceType | None = None
    variance_bound: float | None = None
    variance_form: VarianceForm | None = None
    guidance_scale: float | None = None
    groups: tuple[str, ...] = ()
    grid: bool = False  # shown in the sample-grid figure
    model_default: bool = False  # the model's default request: sampler, steps and schedule not sent

    def request(self) -> GenerationRequest:
        if self.model_default:
            return GenerationRequest()
        fields: dict[str, Any] = {"steps": self.steps, "sampler": self.sampler, "schedule": self.schedule}
        for name in ("eta", "variance_type", "variance_bound", "variance_form", "guidance_scale"):
            if getattr(self, name) is not None:
                fields[name] = getattr(self, name)
        return GenerationRequest.model_validate(fields)

    @property
    def family(self) -> str:
        """The plot line this setting belongs to: everything but the step count."""
        if self.model_default:
            return "default"
        parts: list[str] = [self.sampler]
        if self.sampler == "ddpm":
            parts.append(self.variance_type or "fixed_small")
        if self.eta is not None:
            parts.append(f"η={self.eta:g}")
        if self.schedule != "uniform":
            parts.append(self.schedule)
        if self.variance_form == "posterior":
            parts.append("posterior")
        if self.variance_bound is not None:
            parts.append(f"b={self.variance_bound:g}")
        if self.guidance_scale is not None:
            parts.append(f"w={self.guidance_scale:g}")
        return " ".join(parts)

    @property
    def label(self) -> str:
        return "default request" if self.model_default else f"{self.family} {self.steps}"


@dataclass(frozen=True)
class SweepSize:
    """Images per setting: ``per_class`` for each class in ``classes``."""

    classes: tuple[int, ...]
    per_class: int
    floor_repeats: int  # independent draws of the reference sets (their FD's spread)


SIZES: dict[bool, dict[ModelKind, SweepSize]] = {
    # quick: every metric exercised in about a minute of sampling
    True: {"exact": SweepSize((1, 8), 48, 3), "trained": SweepSize(tuple(range(10)), 2, 3)},
    False: {"exact": SweepSize((0, 1, 8), 128, 5), "trained": SweepSize(tuple(range(10)), 10, 5)},
}


SCHEDULE_SAMPLERS: tuple[SamplerName, ...] = ("unipc", "dpmpp_2m", "ddim")
SCHEDULE_STEPS: dict[ModelKind, tuple[int, ...]] = {
    "exact": (4, 5, 6, 8, 10, 15, 20),
    "trained": (4, 5, 6, 8, 10),
}
OLD_DEFAULT_STEPS = 50  # the default request before defaults were measured: 50 DDIM steps


def _schedules(
    model: ModelKind,
    steps: tuple[int, ...],
    samplers: tuple[SamplerName, ...],
    schedules: tuple[ScheduleName, ...] = ("uniform", "karras", "optimized"),
) -> list[Setting]:
    """The optimized schedule against the hand-made ones (uniform, Karras) at each NFE."""
    return [
        Setting(
            model,
            sampler,
            n,
            schedule=schedule,
            eta=0.0 if sampler == "ddim" else None,
            groups=("schedules",),
        )
        for sampler in samplers
        for n in steps
        for schedule in schedules
    ]


def _defaults(model: ModelKind) -> list[Setting]:
    """The model's default request, and the 50-step DDIM that was the default before."""
    return [
        Setting(model, "ddim", 0, groups=("default",), model_default=True, grid=model == "trained"),
        Setting(model, "ddim", OLD_DEFAULT_STEPS, eta=0.0, groups=("default",), grid=model == "trained"),
    ]


def _merge(settings: list[Setting]) -> list[Setting]:
    """One setting per label, carrying the groups of every duplicate (first occurrence kept)."""
    merged: dict[str, Setting] = {}
    for setting in settings:
        first = merged.get(setting.label)
        groups = setting.groups if first is None else first.groups + setting.groups
        merged[setting.label] = replace(first or setting, groups=tuple(dict.fromkeys(groups)))
    return list(merged.values())


def _ladder(model: ModelKind, sampler: SamplerName, steps: tuple[int, ...], **knobs: Any) -> list[Setting]:
    return [Setting(model, sampler, n, groups=("ladder",), **knobs) for n in steps]


def exact_settings(quick: bool) -> list[Setting]:
    """Settings on the exact-score model (guidance 1, its default, unless a group varies it)."""
    small: dict[str, Any] = {"variance_type": "fixed_small"}
    large: dict[str, Any] = {"variance_type": "fixed_large"}
    if quick:
        settings = [
            *_ladder("exact", "ddpm", (10, 20), **small),
            Setting("exact", "ddpm", 100, groups=("ladder", "reference"), grid=True, **small),
            *_ladder("exact", "ddpm", (10,), **large),
            *_ladder("exact", "ddim", (10,), eta=0.0),
            *_ladder("exact", "ddim", (10,), eta=1.0),
            *_ladder("exact", "dpmpp_2m", (10,)),
            *_ladder("exact", "unipc", (10,)),
            Setting("exact", "ddim", 10, schedule="karras", eta=0.0, groups=("solver",)),
            Setting("exact", "ddim", 10, eta=0.0, guidance_scale=2.0, groups=("guidance",)),
            *_schedules("exact", (5, 8), ("unipc",)),
            *_defaults("exact"),
        ]
        bounds, bound_steps = BOUNDS_QUICK, 10
    else:
        settings = [
            *_ladder("exact", "ddpm", (10, 20, 50, 100, 250), **small),
            Setting("exact", "ddpm", 1000, groups=("ladder", "reference"), grid=True, **small),
            *_ladder("exact", "ddpm", (10, 20, 50, 100), **large),
            *_ladder("exact", "ddim", (5, 10, 20, 50), eta=0.0),
            # DDIM η=1 is DDPM fixed_small (same σ_t, same draws): one point checks it
            *_ladder("exact", "ddim", (10,), eta=1.0),
            *_ladder("exact", "euler_a", (10, 20, 50)),
            *_ladder("exact", "euler", (10, 20)),
            *_ladder("exact", "dpmpp_2m", (5, 10, 20)),
            *_ladder("exact", "unipc", (5, 10, 20)),
        ]
        for schedule in ("quadratic", "cosine", "karras"):
            settings += [
                Setting("exact", "ddim", n, schedule=schedule, eta=0.0, groups=("solver",)) for n in (10, 20)
            ]
            settings.append(Setting("exact", "ddpm", 20, schedule=schedule, groups=("solver",), **small))
        settings += [Setting("exact", "dpmpp_2m", n, schedule="karras", groups=("solver",)) for n in (10, 20)]
        settings += _schedules("exact", SCHEDULE_STEPS["exact"], SCHEDULE_SAMPLERS) + _defaults("exact")
        for scale in (2.0, 3.0):
            settings.append(Setting("exact", "ddim", 20, eta=0.0, guidance_scale=scale, groups=("guidance",)))
            settings.append(Setting("exact", "ddpm", 20, guidance_scale=scale, groups=("guidance",), **small))
        bounds, bound_steps = BOUNDS_FULL, 10
    settings += _bounds("exact", bound_steps, bounds, full=not quick)
    settings = [replace(s, grid=True) if s.label in EXACT_GRID else s for s in settings]
    return _mark_groups(_merge(settings), bound_steps)


def _bounds(model: ModelKind, steps: int, bounds: tuple[float, ...], full: bool) -> list[Setting]:
    """The variance bound on DDPM (marginal form; posterior form for contrast; fixed_large) and,
    on the exact model, on DDIM η = 1."""
    rows: list[Setting] = []
    large = (None, 0.2, 0.1, 0.05, 0.02, 0.0) if full and model == "exact" else (None, 0.1, 0.02, 0.0)
    posterior = bounds if model == "exact" else (0.1, 0.0)  # the trained model's images cost
    for bound in bounds:
        rows.append(
            Setting(
                model, "ddpm", steps, variance_type="fixed_small", variance_bound=bound, groups=("bound",)
            )
        )
        if bound in posterior:
            rows.append(
                Setting(
                    model,
                    "ddpm",
                    steps,
                    variance_type="fixed_small",
                    variance_bound=bound,
                    variance_form="posterior",
                    groups=("bound",),
                )
            )
        if model == "exact":
            rows.append(Setting(model, "ddim", steps, eta=1.0, variance_bound=bound, groups=("bound",)))
    rows += [
        Setting(model, "ddpm", steps, variance_type="fixed_large", variance_bound=bound, groups=("bound",))
        for bound in large
    ]
    return rows


def trained_settings(quick: bool) -> list[Setting]:
    """Settings on the trained UNet (its default guidance 2 unless a group varies it)."""
    small: dict[str, Any] = {"variance_type": "fixed_small"}
    if quick:
        settings = [
            Setting("trained", "ddim", 10, eta=0.0, groups=("ordering",), grid=True),
            Setting("trained", "ddpm", 10, groups=("ordering",), grid=True, **small),
            Setting("trained", "dpmpp_2m", 10, groups=("solver",)),
            Setting("trained", "ddim", 10, eta=0.0, guidance_scale=1.0, groups=("guidance",)),
            *_schedules("trained", (5,), ("unipc",)),
            Setting("trained", "ddim", 0, groups=("default",), model_default=True),
        ]
        bounds: tuple[float, ...] = (0.0,)
    else:
        settings = [
            Setting("trained", "ddim", 10, eta=0.0, groups=("ordering",)),
            Setting("trained", "ddim", 20, eta=0.0, groups=("ordering", "guidance"), grid=True),
            Setting("trained", "ddpm", 20, groups=("ordering",), grid=True, **small),
            Setting("trained", "ddpm", 20, variance_type="fixed_large", groups=("ordering",), grid=True),
            Setting("trained", "ddpm", 10, groups=("ordering",), **small),
            Setting("trained", "dpmpp_2m", 10, groups=("solver",), grid=True),
            Setting("trained", "unipc", 10, groups=("solver",)),
            Setting("trained", "ddim", 20, eta=0.0, guidance_scale=1.0, groups=("guidance",)),
            Setting("trained", "ddim", 20, eta=0.0, guidance_scale=3.0, groups=("guidance",)),
            # the images cost: every schedule for UniPC, fewer for the others
            *_schedules("trained", SCHEDULE_STEPS["trained"], ("unipc",)),
            *_schedules("trained", (5, 8, 10), ("dpmpp_2m",), ("uniform", "optimized")),
            *_schedules("trained", (5, 10), ("ddim",), ("optimized",)),
            *_defaults("trained"),
        ]
        bounds = BOUNDS_FULL
    settings += [
        replace(s, grid=s.variance_bound in (0.1, 0.0) and s.variance_type == "fixed_small")
        for s in _bounds("trained", 10, bounds, full=not quick)
    ]
    if not quick:  # at 20 steps DDIM (the bound's end) is cleaner than DDPM on this model
        settings += [
            Setting("trained", "ddpm", 20, variance_bound=bound, groups=("bound",), **small)
            for bound in (None, 0.1, 0.0)
        ]
    return _mark_groups(_merge(settings), 10)


def _mark_groups(settings: list[Setting], bound_steps: int) -> list[Setting]:
    """Adds ``ordering`` to 10–20-step DDIM η=0 / DDPM rows, ``bound`` to the unbounded
    stochastic rows at the bound sweep's steps (its "none" point) and ``guidance`` to the
    default-guidance rows of the guided families, so each question's rows carry its group
    without being run twice."""
    guided = {(s.family.split(" w=")[0], s.steps) for s in settings if s.guidance_scale is not None}
    marked = []
    for s in settings:
        groups = list(s.groups)
        plain = (
            s.schedule == "uniform"
            and s.guidance_scale is None
            and s.variance_bound is None
            and not s.model_default
        )
        if plain and s.steps in (10, 20) and (s.sampler == "ddpm" or s.eta == 0.0):
            groups.append("ordering")
        stochastic = (s.sampler == "ddpm" and s.variance_type == "fixed_small") or s.eta == 1.0
        if plain and stochastic and s.steps == bound_steps:
            groups.append("bound")
        if plain and s.sampler in ("dpmpp_2m", "unipc", "euler") and s.steps in (10, 20):
            groups.append("solver")
        if s.guidance_scale is None and (s.family, s.steps) in guided:
            groups.append("guidance")
        marked.append(replace(s, groups=tuple(dict.fromkeys(groups))))
    return marked
