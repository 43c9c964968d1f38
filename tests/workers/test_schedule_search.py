"""The schedule searches: dynamic programming finds the cheapest path, pattern search the minimum."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from workers.evaluation.schedule_search import dynamic_programming, pattern_search


@pytest.mark.parametrize("steps", [1, 2, 3, 5])
def test_dynamic_programming_finds_the_cheapest_path(steps: int) -> None:
    rng = np.random.default_rng(steps)
    cost = rng.uniform(0, 1, (8, 8))  # grid points 0..7, 7 the clean end
    best, best_total = None, np.inf
    for middle in itertools.combinations(range(1, 7), steps - 1):
        path = (0, *middle, 7)
        total = sum(cost[a, b] for a, b in itertools.pairwise(path))
        if total < best_total:
            best, best_total = list(path[:-1]), total
    visited, total = dynamic_programming(cost, steps)
    assert visited == best and total == pytest.approx(best_total)


def test_pattern_search_reaches_the_integer_minimum_and_keeps_the_order() -> None:
    target = [900, 600, 250, 30]

    def objective(timesteps: list[int]) -> float:
        assert all(a > b for a, b in itertools.pairwise(timesteps)) and timesteps[-1] >= 0
        return float(sum(abs(t - g) ** 1.5 for t, g in zip(timesteps, target, strict=True)))

    result = pattern_search(objective, [999, 700, 400, 100], 999)
    assert result.timesteps == target and result.value == 0
    assert result.start_value > 0 and result.evaluations < 500
    with pytest.raises(ValueError, match="distinct descending"):
        pattern_search(objective, [10, 20], 999)
