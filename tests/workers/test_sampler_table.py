"""The worker's sampler table against the public description (``protocol.samplers``), and the
scheduler config it builds: every knob visible in ``scheduler.config``, which round-trips."""

from __future__ import annotations

import inspect
import json
from pathlib import Path
from typing import Any, get_args

import diffusers
import pytest
import torch

from protocol.resolution import Limits, resolve_request
from protocol.samplers import SAMPLERS
from protocol.schema import GenerationRequest, ModelInfo, ResolvedConfig, SamplerName
from workers.sampling.ddim import VarianceControlledDDIMScheduler
from workers.sampling.ddpm import VarianceControlledDDPMScheduler
from workers.sampling.euler_ancestral import VarianceControlledEulerAncestralScheduler
from workers.sampling.registered_config import extends_config
from workers.sampling.sampler_table import KNOB_CONFIG, SAMPLER_ENTRIES, SAMPLER_TABLE
from workers.sampling.scheduler_factory import build_scheduler

ROOT = Path(__file__).resolve().parents[2]
TRAINING = json.loads((ROOT / "workers/models/mnist-unet/scheduler/scheduler_config.json").read_text())
MODEL = ModelInfo(
    name="mnist-unet",
    conditioning="class_label",
    num_classes=10,
    image_size=28,
    channels=1,
    training_noise_schedule=TRAINING["beta_schedule"],
    num_train_timesteps=TRAINING["num_train_timesteps"],
    prediction_type=TRAINING["prediction_type"],
    # every schedule resolves: an optimized table at 10 steps for each sampler that takes one, and
    # AYS (whose timesteps are computable on any training schedule)
    optimized_schedules={s.name: [10] for s in SAMPLERS.values() if "optimized" in s.schedules},
    ays_schedule=True,
)
TABLE = {
    sampler: {10: [990, 900, 800, 700, 600, 400, 200, 100, 20, 1]} for sampler in MODEL.optimized_schedules
}
LIMITS = Limits(max_steps=1000, max_images=16, max_guidance_scale=30)
# A public knob, as a request sets it to a value other than its default.
KNOB_REQUESTS: dict[str, dict[str, Any]] = {
    "eta": {"eta": 0.5},
    "variance_bound": {"variance_bound": 0.2},
    "variance_scale": {"variance_scale": 0.5},
    "variance_type": {"variance_type": "fixed_large"},
    "variance_form": {"variance_form": "posterior", "variance_bound": 0.2},
    "clip_sample": {"clip_sample": True},
    "dynamic_thresholding": {"dynamic_thresholding": True, "dynamic_thresholding_ratio": 0.9},
}
# Advertised and accepted, never applied (workers/sampling/sampler_table.py, module doc). Fixing
# this changes images: move the knob to the entry's ``knobs`` and re-record its golden hash.
NOISE_KNOBS: dict[str, dict[str, Any]] = {
    "ddim": {"eta": 0.7, "variance_scale": 0.5, "variance_bound": 0.2},
    "ddpm": {"variance_scale": 0.5, "variance_bound": 0.2, "variance_type": "fixed_large"},
    "euler_a": {"variance_scale": 0.5, "variance_bound": 0.2},
}


def resolved(sampler: str, **fields: Any) -> ResolvedConfig:
    # variance control needs injected noise: DDIM's eta must be above 0
    if sampler == "ddim" and {"variance_bound", "variance_scale"} & set(fields):
        fields.setdefault("eta", 0.5)
    request = GenerationRequest(sampler=sampler, class_label=7, seed=1, steps=10, **fields)  # type: ignore[arg-type]
    return resolve_request(request, {MODEL.name: MODEL}, MODEL.name, LIMITS)


def public(config: Any) -> dict[str, Any]:
    """A scheduler config without diffusers' bookkeeping (``_class_name``, ``_use_default_values``)."""
    return {k: v for k, v in config.items() if not k.startswith("_")}


def test_every_public_sampler_has_exactly_one_entry() -> None:
    names = sorted(entry.name for entry in SAMPLER_ENTRIES)
    assert names == sorted(get_args(SamplerName)) == sorted(SAMPLERS)
    assert all(SAMPLER_TABLE[entry.name] is entry for entry in SAMPLER_ENTRIES)


@pytest.mark.parametrize(
    ("sampler", "schedule"), [(s.name, schedule) for s in SAMPLERS.values() for schedule in s.schedules]
)
def test_the_built_scheduler_is_the_advertised_diffusers_class(sampler: SamplerName, schedule: str) -> None:
    advertised = getattr(diffusers, SAMPLERS[sampler].scheduler_class)
    config = resolved(sampler, schedule=schedule)
    scheduler = build_scheduler(config, TRAINING, TABLE)
    assert type(scheduler) is SAMPLER_TABLE[sampler].scheduler_class
    assert advertised in type(scheduler).__mro__
    if schedule == "optimized":  # the engine visits exactly the model's list
        assert [int(t) for t in scheduler.timesteps] == TABLE[sampler][10]
    assert isinstance(scheduler, advertised)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_each_entry_maps_exactly_the_advertised_knobs(sampler: SamplerName) -> None:
    assert sorted(SAMPLER_TABLE[sampler].knobs) == sorted(SAMPLERS[sampler].knobs)


@pytest.mark.parametrize(("sampler", "knob"), [(e.name, knob) for e in SAMPLER_ENTRIES for knob in e.knobs])
def test_knobs_are_registered_scheduler_config(sampler: SamplerName, knob: str) -> None:
    config = resolved(sampler, **KNOB_REQUESTS[knob])
    scheduler = build_scheduler(config, TRAINING)
    plain = build_scheduler(resolved(sampler), TRAINING)
    keys = KNOB_CONFIG[knob](config)  # type: ignore[index]
    for key, value in keys.items():
        assert scheduler.config[key] == value, (sampler, knob, key)
    assert any(scheduler.config[key] != plain.config[key] for key in keys), (sampler, knob)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_scheduler_config_round_trips_through_json(sampler: SamplerName) -> None:
    knobs = NOISE_KNOBS.get(sampler, {})
    config = resolved(sampler, **knobs)
    scheduler = build_scheduler(config, TRAINING)
    for knob, value in knobs.items():
        assert scheduler.config[knob] == value
    rebuilt = type(scheduler).from_config(json.loads(scheduler.to_json_string()))
    assert public(rebuilt.config) == public(scheduler.config)
    assert torch.equal(rebuilt.alphas_cumprod, scheduler.alphas_cumprod)

    # the same config takes the same step (the knobs are read from the config, not set aside)
    if SAMPLER_TABLE[sampler].spaces_itself(config.schedule):
        rebuilt.set_timesteps(config.steps)
    else:
        rebuilt.set_timesteps(timesteps=[int(t) for t in scheduler.timesteps])
    assert torch.equal(rebuilt.timesteps, scheduler.timesteps)
    sample, model_output = torch.randn(2, 1, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    t = scheduler.timesteps[0]
    steps = []
    for s in (scheduler, rebuilt):
        # as the engine does: deterministic steps get no generator (UniPC's step takes none)
        noise = {} if SAMPLERS[sampler].noise == "deterministic" else {"generator": torch.Generator()}
        steps.append(s.step(model_output, t, s.scale_model_input(sample, t), **noise))
    assert torch.equal(steps[0].prev_sample, steps[1].prev_sample)


@pytest.mark.parametrize(
    ("subclass", "parent", "added"),
    [
        (
            VarianceControlledDDIMScheduler,
            diffusers.DDIMScheduler,
            {"eta", "variance_scale", "variance_bound"},
        ),
        (
            VarianceControlledDDPMScheduler,
            diffusers.DDPMScheduler,
            {"variance_scale", "variance_bound", "variance_form"},
        ),
        (
            VarianceControlledEulerAncestralScheduler,
            diffusers.EulerAncestralDiscreteScheduler,
            {"variance_scale", "variance_bound"},
        ),
    ],
)
def test_variance_control_adds_its_knobs_to_the_parents_config(subclass, parent, added) -> None:  # type: ignore[no-untyped-def]
    parameters = set(inspect.signature(subclass.__init__).parameters)
    assert parameters == set(inspect.signature(parent.__init__).parameters) | added
    defaults = public(subclass().config)
    assert {k: v for k, v in defaults.items() if k not in added} == public(parent().config)
    assert defaults["variance_scale"] == 1.0 and defaults["variance_bound"] is None
    assert defaults.get("variance_form", "marginal") == "marginal"


def test_a_subclass_cannot_redefine_a_parent_parameter() -> None:
    def __init__(self, *args: Any, beta_start: float = 0.1, **kwargs: Any) -> None:  # type: ignore[no-untyped-def]
        pass

    with pytest.raises(TypeError, match=r"redefines DDIMScheduler parameters \['beta_start'\]"):
        extends_config(diffusers.DDIMScheduler)(__init__)
