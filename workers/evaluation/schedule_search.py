"""Searches over the visited timesteps: integer pattern search on a measured error, and GITS-style
dynamic programming over a teacher trajectory.

1. ``pattern_search`` (Hooke & Jeeves 1961, on integers): each timestep in turn moves by ±δ while
   the list stays distinct and descending within [0, T); a move is kept when the objective falls.
   δ starts large and halves when a whole pass improves nothing, down to 1. Used with the exact
   model's closed-form FD* (``workers.evaluation.exact_error``), which is noise-free and costs a
   few milliseconds, so the search can take thousands of evaluations.
2. ``dynamic_programming`` (Chen et al. 2024, "On the Trajectory Regularity of ODE-based Diffusion
   Sampling", GITS): given a fine teacher trajectory x(g_0), ..., x(g_M) of the probability-flow
   ODE on a grid g_0 > ... > g_M (g_M: the clean end) and ``cost[i, j]``, the error of one solver
   step from the teacher's x(g_i) to g_j against the teacher's x(g_j), the N-step path from g_0 to
   g_M with the least total cost is found exactly in O(N M²). Each visited grid point costs one
   model evaluation, so N steps are N NFE.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

Objective = Callable[[list[int]], float]


@dataclass(frozen=True)
class SearchResult:
    timesteps: list[int]
    value: float
    start_value: float
    evaluations: int


def _valid(timesteps: Sequence[int], upper: int) -> bool:
    return all(0 <= t <= upper for t in timesteps) and all(a > b for a, b in itertools.pairwise(timesteps))


def pattern_search(
    objective: Objective,
    start: Sequence[int],
    upper: int,
    first_step: int = 64,
    max_evaluations: int = 4000,
) -> SearchResult:
    """Minimises ``objective`` over distinct descending integer timesteps in [0, ``upper``].

    Args:
        objective: the error of a timestep list (descending).
        start: where the search starts (a valid list).
        upper: the largest timestep (T − 1).
        first_step: the first δ; it halves down to 1.
        max_evaluations: stop after this many objective evaluations.
    """
    best = [int(t) for t in start]
    if not _valid(best, upper):
        raise ValueError(f"start must be distinct descending timesteps in [0, {upper}]; got {best}")
    cache: dict[tuple[int, ...], float] = {}

    def value(candidate: list[int]) -> float:
        key = tuple(candidate)
        if key not in cache:
            cache[key] = objective(candidate)
        return cache[key]

    best_value = start_value = value(best)
    step = first_step
    while step >= 1 and len(cache) < max_evaluations:
        improved = False
        for i in range(len(best)):
            for direction in (1, -1):
                candidate = list(best)
                candidate[i] += direction * step
                if not _valid(candidate, upper):
                    continue
                candidate_value = value(candidate)
                if candidate_value < best_value:
                    best, best_value, improved = candidate, candidate_value, True
                    break
            if len(cache) >= max_evaluations:
                break
        if not improved:
            step //= 2
    return SearchResult(best, best_value, start_value, len(cache))


def dynamic_programming(cost: np.ndarray, steps: int) -> tuple[list[int], float]:
    """The path 0 = i_0 < i_1 < ... < i_steps = M through the grid with the least Σ cost[i_k, i_k+1].

    Args:
        cost: [M + 1, M + 1]; cost[i, j] for i < j is the error of one step from grid point i to j
            (entries with i ≥ j are ignored).
        steps: N, the number of steps (model evaluations): the path visits N grid points before M.

    Returns:
        (the N visited grid indices i_0..i_{N−1}, the path's total cost).
    """
    last = cost.shape[0] - 1
    if not 1 <= steps <= last:
        raise ValueError(f"steps must be between 1 and {last}; got {steps}")
    upper = np.triu(cost, k=1) + np.tril(np.full(cost.shape, np.inf))
    # best[k, j]: least cost of reaching grid point j from 0 in k steps; parent for the path
    best = np.full((steps + 1, last + 1), np.inf)
    parent = np.zeros((steps + 1, last + 1), dtype=np.int64)
    best[0, 0] = 0.0
    for k in range(1, steps + 1):
        totals = best[k - 1][:, None] + upper  # [from, to]
        parent[k] = np.argmin(totals, axis=0)
        best[k] = totals[parent[k], np.arange(last + 1)]
    path = [last]
    for k in range(steps, 0, -1):
        path.append(int(parent[k, path[-1]]))
    visited = path[::-1][:-1]  # drop the clean end M
    return visited, float(best[steps, last])
