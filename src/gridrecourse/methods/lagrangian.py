"""Lagrangian (scenario-decomposition) lower bounds of a two-stage program (METHODS §2).

Relaxing nonanticipativity ``x_ω = x`` with multipliers ``w_ω`` that satisfy
``Σ_ω π_ω w_ω = 0`` gives, for ANY such ``w`` (Carøe & Schultz 1999; mpi-sppy's Lagrangian
spoke)::

    L(w) = Σ_ω π_ω min_x { cᵀx + Q_ω(x) + w_ωᵀx : first-stage rows, bounds, integrality }
         ≤ min_x { cᵀx + Σ_ω π_ω Q_ω(x) } = z*                                         (L1)

because at a common ``x`` the terms ``Σ_ω π_ω w_ωᵀx = 0`` vanish. Each term is the one-scenario
extensive form (PH's subproblem without the proximal term); we add **HiGHS's MIP dual bound** of
every term, never its incumbent, so ``L(w)`` is a valid bound also when a subproblem stops at its
gap or time limit. Quadratic recourse uses the EF's tangent planes, which only lower ``L``.
``w = 0`` is the wait-and-see bound.

Multipliers (our choices):

* from **progressive hedging** (``PHConfig.lagrangian``): the ``w`` of each PH iteration;
* from **subgradients at a first stage** ``x̂`` (e.g. a SPAR decision), one round of solves:
  ``w_ω = ḡ − g_ω`` with ``g_ω = ∂Q_ω(x̂)`` (the linking duals of the exact evaluation) and
  ``ḡ = Σ π_ω g_ω``. Then every scenario sees ``Q_ω(x) + w_ωᵀx ≈ Q_ω(x̂) + ḡᵀ(x − x̂)``
  near ``x̂``: the slope of the expected recourse, as in the full problem, so the scenario
  optima stay near ``x̂`` instead of each scenario's perfect-information siting.

The multipliers are re-centred (``w ← w − Σ π w``) before use, so (L1) holds to round-off.

References
----------
C. C. Carøe and R. Schultz, "Dual decomposition in stochastic integer programming", Oper. Res.
Lett. 24, 37–45, 1999. Gade et al., "Obtaining lower bounds from the progressive hedging
algorithm for stochastic mixed-integer programs", Math. Program. 157, 47–67, 2016.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from gridrecourse.errors import GridRecourseError, SolverTimeLimitError
from gridrecourse.evaluation.bounds import BoundMethod, BoundProvenance
from gridrecourse.execution import Executor, InProcessExecutor
from gridrecourse.methods.extensive_form import DEFAULT_TANGENT_POINTS
from gridrecourse.methods.progressive_hedging import (
    DEFAULT_CONTINUOUS_POINTS,
    _build_bank,
    _SubproblemBank,
    _Task,
)
from gridrecourse.problems.base import TwoStageProblem
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "LagrangianBound",
    "LagrangianError",
    "lagrangian_bound",
    "subgradient_multipliers",
]

#: Default options of the Lagrangian subproblems (the bound uses their dual bound either way).
_DEFAULT_OPTIONS = SolverOptions(mip_gap=1e-6)


class LagrangianError(GridRecourseError, ValueError):
    """Invalid multipliers, weights or scenario selection."""


@dataclass(frozen=True, eq=False)
class LagrangianBound:
    """``L(w)`` of (L1) with its per-scenario terms.

    Attributes
    ----------
    value : float
        ``Σ π_ω bound_ω`` (objective units; ``-inf`` when a subproblem proved no bound).
    scenario_indices : ndarray of int, shape (S,)
    weights : ndarray, shape (S,)
        ``π_ω`` (renormalized).
    scenario_bounds : ndarray, shape (S,)
        MIP dual bound of each term ``min_x cᵀx + Q_ω(x) + w_ωᵀx``.
    scenario_gaps : ndarray, shape (S,)
        Relative MIP gap of each term (``inf`` without incumbent).
    x : ndarray, shape (S, n_x)
        The scenario solutions (NaN rows without incumbent).
    provenance : BoundProvenance
    """

    value: float
    scenario_indices: np.ndarray
    weights: np.ndarray
    scenario_bounds: np.ndarray
    scenario_gaps: np.ndarray
    x: np.ndarray
    provenance: BoundProvenance


@dataclass(frozen=True)
class _Term:
    bound: float
    objective: float
    x: np.ndarray


def _lagrangian_task(bank: _SubproblemBank, task: _Task, *, options: SolverOptions) -> _Term:
    sub = bank.get(task.scenario)
    try:
        res = sub.solve(task, options)
    except SolverTimeLimitError as exc:  # no incumbent: the dual bound is still valid
        bound = float(getattr(exc, "dual_bound", math.nan)) + sub.offset
        return _Term(
            bound if math.isfinite(bound) else -math.inf, math.nan, np.full(sub.fs.size, np.nan)
        )
    return _Term(res.bound if math.isfinite(res.bound) else -math.inf, res.objective, res.x)


def _unique_weights(
    problem: TwoStageProblem, scenarios: Sequence[int] | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scenarios, their summed renormalized weights, and the draw → distinct map."""
    n_all = problem.n_scenarios
    idx = np.arange(n_all) if scenarios is None else np.asarray(scenarios, dtype=int).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_all:
        raise LagrangianError(f"scenario indices must be within 0..{n_all - 1}")
    p = np.asarray(problem.probability, dtype=float)[idx]
    if p.sum() <= 0:
        raise LagrangianError("the selected scenarios have zero total probability")
    p = p / p.sum()
    unique, inverse = np.unique(idx, return_inverse=True)
    return unique, np.bincount(inverse, weights=p, minlength=len(unique)), inverse


def subgradient_multipliers(subgradients: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """``w_ω = ḡ − g_ω`` with ``ḡ = Σ π_ω g_ω`` (module docstring); NaN rows give ``w_ω = 0``.

    Parameters
    ----------
    subgradients : ndarray, shape (S, n_x)
        ``∂Q_ω/∂x`` at the first stage (``OutOfSampleResult.subgradients``).
    weights : ndarray, shape (S,)
        ``π_ω`` of the same rows (renormalized here).

    Returns
    -------
    ndarray, shape (S, n_x)
        Multipliers with ``Σ π_ω w_ω = 0``.
    """
    g = np.asarray(subgradients, dtype=float)
    p = np.asarray(weights, dtype=float)
    p = p / p.sum()
    g = np.where(np.isfinite(g).all(axis=1, keepdims=True), g, np.nan)
    g_bar = np.nansum(p[:, None] * g, axis=0) / max(
        float(p[np.isfinite(g).all(axis=1)].sum()), 1e-300
    )
    w = np.where(np.isfinite(g), g_bar[None, :] - g, 0.0)
    return w - p @ w


def lagrangian_bound(
    problem: TwoStageProblem,
    multipliers: np.ndarray | None = None,
    *,
    scenarios: Sequence[int] | np.ndarray | None = None,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    tangent_points: int = DEFAULT_TANGENT_POINTS,
    continuous_points: int = DEFAULT_CONTINUOUS_POINTS,
    active: np.ndarray | None = None,
    origin: str = "none",
    iteration: int = 0,
) -> LagrangianBound:
    """Solve the scenario subproblems of (L1) and add their dual bounds.

    Parameters
    ----------
    problem : TwoStageProblem
    multipliers : ndarray, shape (S, n_x), optional
        ``w_ω`` per DRAW of ``scenarios`` (rows of repeated draws must agree; their weights
        are summed); re-centred to ``Σ π w = 0``. ``None``: 0 (the wait-and-see bound).
    scenarios : sequence of int, optional
        Scenario indices (default all; repetitions allowed, as in SAA batches); probabilities
        renormalized.
    executor : Executor, optional
        Where the subproblems run (default in-process); PH's subproblem models are reused.
    options : SolverOptions, optional
        Subproblem options (default ``mip_gap = 1e-6``); the dual bound is used either way.
    tangent_points : int
        Tangent points of quadratic recourse (as in the EF).
    continuous_points, active
        As PH's (``PHConfig.continuous_points``, consensus mask): with the same values the
        workers reuse PH's subproblem models (nothing is rebuilt).
    origin : str
        Recorded in the provenance (``"ph"``, ``"subgradients"``, ``"none"``).
    iteration : int
        Recorded in the provenance (PH iteration of the multipliers).

    Returns
    -------
    LagrangianBound
    """
    t0 = time.perf_counter()
    unique, weights, inverse = _unique_weights(problem, scenarios)
    n_x = problem.first_stage.size
    if multipliers is None:
        w = np.zeros((len(unique), n_x))
    else:
        w_draws = np.asarray(multipliers, dtype=float)
        if w_draws.shape != (len(inverse), n_x) or not np.all(np.isfinite(w_draws)):
            raise LagrangianError(
                f"multipliers must be finite with shape ({len(inverse)}, {n_x}), "
                f"got {w_draws.shape}"
            )
        w = np.zeros((len(unique), n_x))
        w[inverse] = w_draws
        if not np.allclose(w[inverse], w_draws, rtol=0, atol=1e-12 * (1 + np.abs(w_draws).max())):
            raise LagrangianError("repeated draws of a scenario carry different multipliers")
    w = w - weights @ w  # Σ π w = 0 exactly (to round-off): (L1) needs it
    own = executor is None
    ex: Executor = InProcessExecutor() if own else executor
    factory = functools.partial(
        _build_bank, problem, int(tangent_points), int(continuous_points), active
    )
    x_zero = np.zeros(n_x)
    tasks = [_Task(int(s), w[i], x_zero, 0.0) for i, s in enumerate(unique)]
    try:
        terms: list[_Term] = ex.map(
            functools.partial(_lagrangian_task, options=options or _DEFAULT_OPTIONS),
            tasks,
            state_factory=factory,
            desc=None,
            progress=lambda done, total: None,
        )
    finally:
        if own:
            ex.close()
    bounds = np.array([t.bound for t in terms])
    objectives = np.array([t.objective for t in terms])
    gaps = np.where(
        np.isfinite(objectives),
        np.abs(objectives - bounds) / np.maximum(np.abs(objectives), 1e-12),
        np.inf,
    )
    value = float(weights @ bounds) if np.all(np.isfinite(bounds)) else -math.inf
    method = BoundMethod.WAIT_AND_SEE if not np.any(w) else BoundMethod.LAGRANGIAN
    provenance = BoundProvenance(
        method=method,
        value=value,
        multipliers=origin if method is BoundMethod.LAGRANGIAN else "none",
        iterations=int(iteration),
        n_subproblems=len(unique),
        max_subproblem_gap=float(gaps.max()) if gaps.size else 0.0,
        seconds=time.perf_counter() - t0,
    )
    return LagrangianBound(
        value=value,
        scenario_indices=unique,
        weights=weights,
        scenario_bounds=bounds,
        scenario_gaps=gaps,
        x=np.vstack([t.x for t in terms]),
        provenance=provenance,
    )
