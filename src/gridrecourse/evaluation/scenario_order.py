"""Order scenarios so that consecutive recourse solves warm-start from a similar scenario.

Every worker of an evaluation re-solves ONE recourse model per scenario from the previous
scenario's basis (:class:`~gridrecourse.problems.base.SecondStageModel`), and the executors hand
out contiguous chunks of the task list (:mod:`gridrecourse.execution`). Solving the scenarios in
an order where neighbours are alike (night after night, noon after noon) shortens every dual
simplex warm start.

The order is problem-agnostic: each scenario is described by the vectors that define it in the
second stage (row bounds ``L_ω``, ``U_ω`` and technology scale ``S_ω`` of
:meth:`~gridrecourse.problems.base.TwoStageProblem.scenario_data`), reduced by a fixed Gaussian
random projection to :data:`PROJECTION_DIMENSIONS` coordinates (distances are kept up to a
small distortion, Johnson–Lindenstrauss), and chained greedily: start at the scenario with the
smallest first coordinate, always go to the nearest unvisited one.

Measured effect on the ieee9500 (iterations and cost of the order):
``benchmarks/results/DESIGN_MEASUREMENTS.md``.
"""

from __future__ import annotations

import numpy as np

from gridrecourse.problems.base import TwoStageProblem

__all__ = [
    "PROJECTION_DIMENSIONS",
    "nearest_neighbour_chain",
    "scenario_coordinates",
    "warm_start_order",
]

#: Coordinates of the random projection of the scenario vectors (our choice).
PROJECTION_DIMENSIONS = 8
#: Scenarios whose vectors are materialized at once (bounds the memory on large feeders).
_CHUNK = 100
#: Seed of the projection matrix: the order is a deterministic function of the scenarios.
_PROJECTION_SEED = 0


def scenario_coordinates(
    problem: TwoStageProblem, indices: np.ndarray, dimensions: int = PROJECTION_DIMENSIONS
) -> np.ndarray:
    """Random projection of each scenario's second-stage vectors.

    Parameters
    ----------
    problem : TwoStageProblem
    indices : ndarray of int, shape (S,)
    dimensions : int

    Returns
    -------
    ndarray, shape (S, dimensions)
        ``[L_ω, U_ω, S_ω, d_ω] R`` (``d_ω``: declared scenario costs) with infinite bounds
        replaced by 0 and ``R`` a fixed standard Gaussian matrix (units of the problem's rows).
    """
    indices = np.asarray(indices, dtype=int)
    rng = np.random.default_rng(_PROJECTION_SEED)
    projection: np.ndarray | None = None
    blocks = []
    for start in range(0, len(indices), _CHUNK):
        data = problem.scenario_data(indices[start : start + _CHUNK])
        row_lb, row_ub = data.row_bounds(problem.second_stage)  # nominal where not given
        costs = [data.cost[name] for name in sorted(data.cost)]  # scenario prices, if any
        vectors = np.hstack([row_lb, row_ub, data.scale(problem.second_stage), *costs])
        vectors = np.where(np.isfinite(vectors), vectors, 0.0)
        if projection is None:
            projection = rng.standard_normal((vectors.shape[1], dimensions))
        blocks.append(vectors @ projection)
    return np.vstack(blocks) if blocks else np.zeros((0, dimensions))


def nearest_neighbour_chain(points: np.ndarray) -> np.ndarray:
    """Greedy path through ``points``: start at the smallest first coordinate, then nearest.

    ``O(S²)`` distance evaluations, vectorized over the unvisited points (one step per
    scenario; ~20 ms for 1,200 scenarios).

    Parameters
    ----------
    points : ndarray, shape (S, d)

    Returns
    -------
    ndarray of int, shape (S,)
        A permutation of ``range(S)``.
    """
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=int)
    visited = np.zeros(n, dtype=bool)
    order = np.empty(n, dtype=int)
    current = int(np.argmin(points[:, 0]))
    for step in range(n):
        order[step] = current
        visited[current] = True
        if step == n - 1:
            break
        distance = np.sum((points - points[current]) ** 2, axis=1)
        distance[visited] = np.inf
        current = int(np.argmin(distance))
    return order


def warm_start_order(problem: TwoStageProblem, indices: np.ndarray) -> np.ndarray:
    """Permutation of ``indices`` that chains similar scenarios (module docstring).

    Parameters
    ----------
    problem : TwoStageProblem
    indices : ndarray of int, shape (S,)
        Scenario indices to evaluate.

    Returns
    -------
    ndarray of int, shape (S,)
        Positions into ``indices``: solve ``indices[order]``.
    """
    indices = np.asarray(indices, dtype=int)
    if len(indices) <= 2:
        return np.arange(len(indices))
    return nearest_neighbour_chain(scenario_coordinates(problem, indices))
