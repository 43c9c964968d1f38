"""Timestep schedules: golden values, distinctness and ordering for every spacing."""

from __future__ import annotations

import itertools

import pytest
from diffusers import DDPMScheduler

from workers.sampling.schedules import timestep_schedule

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


def test_too_many_steps_is_an_error() -> None:
    with pytest.raises(ValueError, match="between 1 and 1000"):
        timestep_schedule("uniform", 1001, 1000)
