"""Timestep schedules: golden values, distinctness and ordering for every spacing."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, DDPMScheduler, DPMSolverMultistepScheduler
from diffusers.schedulers.scheduling_utils import AysSchedules

from protocol.schema import ResolvedConfig
from workers.models.registry import load_registry
from workers.sampling.sampler_table import SAMPLER_TABLE
from workers.sampling.scheduler_factory import build_scheduler
from workers.sampling.schedules import DIFFUSERS_SPACING, is_stable_diffusion_schedule, timestep_schedule
from workers.sampling.unipc import TimestepListUniPCScheduler

ROOT = Path(__file__).resolve().parents[2]
ALPHAS = DDPMScheduler(beta_schedule="squaredcos_cap_v2").alphas_cumprod.numpy()


def test_golden_ten_step_schedules() -> None:
    assert timestep_schedule("uniform", 10, 1000) == [999, 899, 799, 699, 599, 499, 399, 299, 199, 99]
    assert timestep_schedule("leading", 10, 1000) == [900, 800, 700, 600, 500, 400, 300, 200, 100, 0]
    assert timestep_schedule("linspace", 10, 1000) == [999, 888, 777, 666, 555, 444, 333, 222, 111, 0]
    assert timestep_schedule("quadratic", 10, 1000) == [800, 632, 483, 355, 246, 158, 88, 39, 9, 0]
    assert timestep_schedule("cosine", 10, 1000) == [999, 842, 689, 545, 411, 291, 189, 107, 47, 11]
    assert timestep_schedule("karras", 10, 1000, ALPHAS) == [991, 984, 971, 941, 870, 697, 377, 117, 20, 0]


@pytest.mark.parametrize("schedule", ["uniform", "leading", "linspace", "quadratic", "cosine", "karras"])
@pytest.mark.parametrize("steps", [1, 2, 7, 50, 333, 1000])
def test_schedules_are_distinct_descending_and_in_range(schedule: str, steps: int) -> None:
    timesteps = timestep_schedule(schedule, steps, 1000, ALPHAS)  # type: ignore[arg-type]
    assert len(timesteps) == steps
    assert all(a > b for a, b in itertools.pairwise(timesteps))
    assert timesteps[-1] >= 0 and timesteps[0] <= 999


def test_low_noise_schedules_spend_more_steps_near_zero() -> None:
    def below(schedule: str) -> int:
        return sum(t < 250 for t in timestep_schedule(schedule, 20, 1000, ALPHAS))  # type: ignore[arg-type]

    assert below("quadratic") > below("uniform")
    assert below("cosine") > below("uniform")


SD_CONFIG = {
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "num_train_timesteps": 1000,
}
SD_ALPHAS = DDPMScheduler(**SD_CONFIG).alphas_cumprod.numpy()  # type: ignore[arg-type]


def test_ays_is_the_published_table_at_ten_steps_and_log_sigma_interpolated_otherwise() -> None:
    assert timestep_schedule("ays", 10, 1000, SD_ALPHAS) == list(AysSchedules["StableDiffusionTimesteps"])
    sigmas = np.sqrt((1 - SD_ALPHAS) / SD_ALPHAS)
    for steps in (1, 2, 5, 7, 15, 20, 50):
        timesteps = timestep_schedule("ays", steps, 1000, SD_ALPHAS)
        assert len(timesteps) == steps and timesteps[0] == 999
        assert all(a > b for a, b in itertools.pairwise(timesteps))
        if steps > 1:
            assert timesteps[-1] == 24  # the table's ends are kept
            # log σ of the visited steps is the table's, interpolated: evenly spread for 19 = 2·10 − 1
    nineteen = timestep_schedule("ays", 19, 1000, SD_ALPHAS)
    assert nineteen[::2] == list(AysSchedules["StableDiffusionTimesteps"])
    log_sigma = np.log(sigmas[nineteen])
    middle = (log_sigma[:-2:2] + log_sigma[2::2]) / 2
    assert np.allclose(log_sigma[1::2], middle, atol=0.01)


def test_the_ays_schedule_is_offered_for_stable_diffusions_noise_schedule_only() -> None:
    assert is_stable_diffusion_schedule(SD_CONFIG)
    assert is_stable_diffusion_schedule({**SD_CONFIG, "prediction_type": "v_prediction", "_class_name": "x"})
    assert not is_stable_diffusion_schedule({**SD_CONFIG, "beta_end": 0.02})
    assert not is_stable_diffusion_schedule({**SD_CONFIG, "rescale_betas_zero_snr": True})
    assert not any(is_stable_diffusion_schedule(config) for config in TRAINING_CONFIGS.values())


@pytest.mark.parametrize("steps", [1, 5, 10, 23])
def test_unipc_on_a_timestep_list_equals_its_own_trailing_spacing(steps: int) -> None:
    config = TRAINING_CONFIGS["mnist-unet"]
    own = TimestepListUniPCScheduler.from_config(config, timestep_spacing="trailing")
    own.set_timesteps(steps)
    listed = TimestepListUniPCScheduler.from_config(config)
    listed.set_timesteps(timesteps=[int(t) for t in own.timesteps])
    assert torch.equal(own.timesteps, listed.timesteps) and torch.equal(own.sigmas, listed.sigmas)
    with pytest.raises(ValueError, match="distinct and descending"):
        listed.set_timesteps(timesteps=[10, 20])


def test_too_many_steps_is_an_error() -> None:
    with pytest.raises(ValueError, match="between 1 and 1000"):
        timestep_schedule("uniform", 1001, 1000)


# ------------------------------------------ the even spacings against diffusers' timestep_spacing
# The relation is spelled out in workers/sampling/schedules.py (module doc); this pins it for every
# bundled training config, for 1..50 steps and a few large counts.
# The project's own training configs. Stable-Diffusion-layout configs (mnist-text) set
# steps_offset = 1, which diffusers adds to its own "leading" spacing; timestep_schedule does not.
TRAINING_CONFIGS = {
    path.parent.parent.name: {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
    for path in sorted((ROOT / "workers/models").glob("*/scheduler/scheduler_config.json"))
    if (path.parent.parent / "denoise_model.json").is_file()
}
STEP_COUNTS = [*range(1, 51), 61, 100, 103, 250, 500, 769, 999, 1000]
# where the float arange of T/N strides yields N+1 points (T = 1000), within STEP_COUNTS
UNIFORM_DIFFERS = {61, 103, 769}
EVEN = ("uniform", "leading", "linspace")


def test_uniform_differs_exactly_where_the_float_arange_yields_one_point_more() -> None:
    overshoots = {n for n in STEP_COUNTS if len(np.arange(1000, 0, -1000 / n)) == n + 1}
    assert overshoots == UNIFORM_DIFFERS
    assert len(timestep_schedule("uniform", 61, 1000)) == 62  # one step more than asked (see module doc)


def test_every_bundled_project_model_has_a_training_config() -> None:
    pipeline_folders = {"mnist-text", "mnist-unet-unconditional"}
    assert sorted(TRAINING_CONFIGS) == sorted(set(load_registry()) - pipeline_folders)
    assert {c["num_train_timesteps"] for c in TRAINING_CONFIGS.values()} == {1000}


def diffusers_timesteps(scheduler_class: type, train: dict, schedule: str, steps: int) -> list[float]:
    scheduler = scheduler_class.from_config(train, timestep_spacing=DIFFUSERS_SPACING[schedule])
    scheduler.set_timesteps(steps)
    return [float(t) for t in scheduler.timesteps]


def assert_relation(theirs: list[float], schedule: str, steps: int, relation: str) -> None:
    """``relation``: how a diffusers class spaces ``schedule`` compared with ``timestep_schedule``."""
    T = 1000
    ours = timestep_schedule(schedule, steps, T)  # type: ignore[arg-type]
    if schedule == "uniform":  # diffusers' "trailing", the same formula in every class
        if steps not in UNIFORM_DIFFERS:
            assert theirs == ours
        else:  # N+1 steps; diffusers ends at -1, ours clipped to 0 and kept distinct
            assert len(theirs) == len(ours) == steps + 1
            assert theirs[-1] == -1 and ours[-1] == 0 and theirs[:-2] == ours[:-2]
            assert len(set(ours)) == len(ours)
    elif relation == "same" or (relation == "fractional_linspace" and schedule == "leading"):
        assert theirs == ours
    elif relation == "fractional_linspace":  # unrounded: ties may round the other way
        assert len(theirs) == len(ours) and max(abs(a - b) for a, b in zip(theirs, ours, strict=True)) <= 0.5
    elif steps < T:  # "one_more_minus_last": N+1 points, the lowest dropped
        assert theirs == timestep_schedule(schedule, steps + 1, T)[:-1]  # type: ignore[arg-type]
    elif schedule == "leading":  # N = T: a stride of T // (N+1) = 0
        assert theirs == [0.0] * T
    else:  # linspace, N = T: 999 down to 1 with one repeat
        assert len(theirs) == T and set(theirs) == set(range(1, T))


@pytest.mark.parametrize("model", sorted(TRAINING_CONFIGS))
@pytest.mark.parametrize(
    ("scheduler_class", "relation"),
    [(DDIMScheduler, "same"), (DPMSolverMultistepScheduler, "one_more_minus_last")],
    ids=["DDIMScheduler", "DPMSolverMultistepScheduler"],
)
def test_even_spacings_against_diffusers(model: str, scheduler_class: type, relation: str) -> None:
    for schedule in EVEN:
        for steps in STEP_COUNTS:
            theirs = diffusers_timesteps(scheduler_class, TRAINING_CONFIGS[model], schedule, steps)
            assert_relation(theirs, schedule, steps, relation)


BASE_CONFIG = {
    "model": "m",
    "class_label": None,
    "prompt": None,
    "num_images": 1,
    "seed": 0,
    "deterministic": True,
    "eta": None,
    "variance_bound": None,
    "variance_scale": None,
    "variance_type": None,
    "clip_sample": False,
    "dynamic_thresholding": False,
    "dynamic_thresholding_ratio": None,
    "guidance_scale": 1.0,
    "guidance_rescale": 0.0,
    "width": 28,
    "height": 28,
}

# how each sampler's visited timesteps relate to timestep_schedule (ddim and ddpm visit it)
SAMPLER_RELATION = {
    "ddim": "same",
    "ddpm": "same",
    "dpmpp_2m": "one_more_minus_last",
    "unipc": "one_more_minus_last",
    "euler": "fractional_linspace",
    "euler_a": "fractional_linspace",
}


def test_every_sampler_has_a_spacing_relation() -> None:
    assert sorted(SAMPLER_RELATION) == sorted(SAMPLER_TABLE)
    for name, entry in SAMPLER_TABLE.items():
        assert (entry.even_spacing == "timestep_schedule") == (SAMPLER_RELATION[name] == "same"), name


@pytest.mark.parametrize("model", sorted(TRAINING_CONFIGS))
@pytest.mark.parametrize("sampler", sorted(SAMPLER_RELATION))
def test_each_sampler_visits_its_even_spacing(model: str, sampler: str) -> None:
    """The timesteps the built scheduler really visits (ddim/ddpm: ours, untouched by diffusers)."""
    entry = SAMPLER_TABLE[sampler]  # type: ignore[index]
    for schedule in EVEN:
        for steps in (*range(1, 51, 7), 61, 769, 1000):
            config = ResolvedConfig(
                **{**BASE_CONFIG, "sampler": sampler, "schedule": schedule, "steps": steps}
            )
            theirs = [float(t) for t in build_scheduler(config, TRAINING_CONFIGS[model]).timesteps]
            if entry.even_spacing == "timestep_schedule":
                assert theirs == timestep_schedule(schedule, steps, 1000)  # type: ignore[arg-type]
            else:
                assert_relation(theirs, schedule, steps, SAMPLER_RELATION[sampler])
