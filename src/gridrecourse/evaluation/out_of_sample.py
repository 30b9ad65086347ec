"""Exact evaluation of a fixed first stage over every scenario (METHODS §2, "Evaluation").

For a fixed ``x̂`` each scenario's recourse ``Q(x̂, ξ_ω)`` is an independent LP (QP for
quadratic recourse such as paper C's P2 losses, solved exactly — no tangent planes). The
scenarios run through :mod:`gridrecourse.execution`: the executor's ``state_factory`` builds the
:class:`~gridrecourse.problems.base.SecondStageModel` **once per worker** and every task only
changes vectors (row bounds) and re-solves from the previous basis (dual simplex, Devex
pricing). The scenarios are solved along a warm-start chain of similar scenarios
(:mod:`~gridrecourse.evaluation.scenario_order`), one contiguous lane of it per worker
(:func:`chain_lanes`; a worker that is done steals the back half of the fullest lane). This is
the "true" objective behind every gap in every table; ``simplex_iterations`` in the result
shows how warm each solve was (``benchmarks/bench_evaluation.py`` measures it). A problem may
build a cheaper exact model: PV siting's P1 recourse is solved through
:mod:`~gridrecourse.problems.reduced_recourse` (a small LP in the sited PV, solved cold; the
same objectives and duals; ieee9500: 0.04 instead of about 1 CPU s per scenario).

The result also carries the linking duals and subgradients ``∂Q/∂x``: for PV siting the
``n_i`` entries are paper C's slope estimates ``ĝ_i = dual(44) × g × PV_mult`` that SPAR learns
from, and infeasible scenarios (hard limits) carry Farkas feasibility cuts.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from gridrecourse.errors import GridRecourseError
from gridrecourse.evaluation.scenario_order import warm_start_order
from gridrecourse.execution import Executor, InProcessExecutor, ProgressCallback
from gridrecourse.problems.base import (
    FeasibilityCut,
    SecondStageModel,
    SecondStageResult,
    TwoStageProblem,
    is_unresolved,
)
from gridrecourse.problems.capabilities import EVALUATOR, check_requirements
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "PIECES_PER_LANE",
    "OutOfSampleError",
    "OutOfSampleResult",
    "chain_lanes",
    "evaluate_first_stage",
]

#: Pieces each worker's lane of the warm-start chain is cut into (our choice): the granularity
#: at which a worker that is done takes over work of a slower one (1200 scenarios on 2
#: workers: 37-38 scenarios per piece).
PIECES_PER_LANE = 16

#: Default solver options of a recourse solve. ``threads`` stays unset: HiGHS fixes its global
#: thread pool at the first run in a process, and a later model asking for another count fails.
_DEFAULT_OPTIONS = SolverOptions()


class OutOfSampleError(GridRecourseError, ValueError):
    """Invalid evaluation input (first-stage vector shape, scenario indices)."""


@dataclass(frozen=True, eq=False)
class OutOfSampleResult:
    """Recourse of a fixed first stage over a set of scenarios.

    Attributes
    ----------
    x : ndarray, shape (n_x,)
        The evaluated first stage.
    scenario_indices : ndarray of int, shape (S,)
    probability : ndarray, shape (S,)
        Probabilities of the evaluated scenarios (renormalized to sum to 1).
    objectives : ndarray, shape (S,)
        ``Q(x, ξ_ω)`` (objective units; ``inf`` when infeasible).
    penalties : ndarray, shape (S,)
        Soft-limit penalty part of each objective (NaN when infeasible).
    expected_objective : float
        ``cᵀx + Σ π_ω Q(x, ξ_ω)``; ``inf`` when any scenario is infeasible.
    expected_penalty : float
        ``Σ π_ω penalty_ω`` over feasible scenarios.
    n_infeasible : int
        Scenarios where the decision is not shown feasible: proven infeasible, or unresolved
        (a recourse MILP that reached its time limit without a feasible point,
        :attr:`n_unresolved`).
    feasible : ndarray of bool, shape (S,)
    linking_duals : ndarray, shape (S, n_linking_rows)
        Linking-row duals (NaN rows for infeasible scenarios, and for integer recourse).
    subgradients : ndarray, shape (S, n_x)
        ``∂Q/∂x`` per scenario (NaN rows for infeasible scenarios, and for integer recourse).
    cuts : tuple of FeasibilityCut
        Feasibility cuts of the infeasible scenarios that produced one.
    solve_seconds : ndarray, shape (S,)
        HiGHS time per scenario (s).
    wall_seconds : float
        Whole evaluation, including worker start-up and model builds (s).
    mip_gaps : ndarray, shape (S,)
        Relative MIP gap of each scenario solve (0 for LP/QP recourse).
    dual_bounds : ndarray, shape (S,)
        Proven lower bound on each ``Q(x, ξ_ω)`` (= ``objectives`` for LP/QP recourse; the MIP
        dual bound for integer recourse; ``inf`` when infeasible; the search's bound or
        ``-inf`` when unresolved).
    simplex_iterations : ndarray of int, shape (S,)
        Simplex iterations of each scenario solve (warm re-solves of similar scenarios need
        few; the first solve of a worker is cold).
    first_stage_cost : float
        ``cᵀx``.
    values : tuple of ndarray, optional
        Recourse column values ``y`` per scenario (None where not feasible); only when
        evaluated with ``keep_values``.
    """

    x: np.ndarray
    scenario_indices: np.ndarray
    probability: np.ndarray
    objectives: np.ndarray
    penalties: np.ndarray
    expected_objective: float
    expected_penalty: float
    n_infeasible: int
    feasible: np.ndarray
    linking_duals: np.ndarray
    subgradients: np.ndarray
    cuts: tuple[FeasibilityCut, ...]
    solve_seconds: np.ndarray
    wall_seconds: float
    mip_gaps: np.ndarray = field(default_factory=lambda: np.zeros(0))
    dual_bounds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    simplex_iterations: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    first_stage_cost: float = math.nan
    values: tuple[np.ndarray | None, ...] | None = field(default=None, repr=False)

    @classmethod
    def of_scenarios(
        cls,
        problem: TwoStageProblem,
        x: np.ndarray,
        scenario_indices: np.ndarray,
        *,
        objectives: np.ndarray,
        feasible: np.ndarray,
        penalties: np.ndarray,
        **per_scenario: Any,
    ) -> OutOfSampleResult:
        """The result of per-scenario recourse values (in the order of ``scenario_indices``).

        Renormalizes the scenarios' probabilities and computes ``expected_objective`` (with
        the first-stage cost ``cᵀx``; ``inf`` if any scenario is infeasible),
        ``expected_penalty`` and ``n_infeasible`` (:func:`_expectations`, the one place these
        are derived: for a plain evaluation, for one merged from blocks
        (:mod:`gridrecourse.evaluation.resumable`) and for :meth:`reweighted`).
        ``per_scenario`` holds the other fields.
        """
        prob = np.asarray(problem.probability, dtype=float)[scenario_indices]
        first_cost = float(problem.first_stage.cost @ x)
        return cls(
            x=x,
            scenario_indices=scenario_indices,
            objectives=objectives,
            penalties=penalties,
            feasible=feasible,
            **_expectations(prob, objectives, feasible, penalties, first_cost),
            first_stage_cost=first_cost,
            **per_scenario,
        )

    def reweighted(self, weights: np.ndarray) -> OutOfSampleResult:
        """The same solves under other scenario weights (e.g. a stratified SAA batch's).

        Parameters
        ----------
        weights : ndarray, shape (S,)
            Non-negative, one per evaluated scenario; renormalized.

        Returns
        -------
        OutOfSampleResult
            With ``probability``, ``expected_objective`` and ``expected_penalty`` under them.
        """
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape != self.probability.shape or np.any(w < 0) or not w.sum() > 0:
            raise OutOfSampleError(
                f"weights: {self.probability.size} non-negative values with a positive sum "
                f"expected, got {w.size}"
            )
        return replace(
            self, **_expectations(w, self.objectives, self.feasible, self.penalties, self._cost)
        )

    @property
    def _cost(self) -> float:
        """``cᵀx``, also for a result pickled before ``first_stage_cost`` was stored (a
        checkpoint: then derived from the expectation, or any value when that is inf)."""
        if math.isfinite(self.first_stage_cost):
            return self.first_stage_cost
        if math.isfinite(self.expected_objective):
            return self.expected_objective - float(self.probability @ self.objectives)
        return 0.0

    @property
    def n_unresolved(self) -> int:
        """Scenarios whose recourse MILP reached its time limit without a feasible point
        (counted in ``n_infeasible`` too: the decision is not shown feasible there)."""
        return int(np.sum(is_unresolved(self.feasible, self.dual_bounds)))

    @property
    def expected_dual_bound(self) -> float:
        """``cᵀx + Σ π_ω bound_ω``: a lower bound on :attr:`expected_objective`."""
        if np.any(self.dual_bounds == np.inf):  # proven infeasible somewhere
            return float("inf")
        return self._cost + float(self.probability @ self.dual_bounds)

    @property
    def expected_subgradient(self) -> np.ndarray:
        """``Σ π_ω ∂Q/∂x`` over the scenarios (NaN if any is infeasible)."""
        return self.probability @ self.subgradients


def _expectations(
    weights: np.ndarray,
    objectives: np.ndarray,
    feasible: np.ndarray,
    penalties: np.ndarray,
    first_cost: float,
) -> dict[str, Any]:
    """The fields of :class:`OutOfSampleResult` derived from per-scenario values under
    ``weights`` (renormalized here): ``probability``, ``expected_objective`` (``cᵀx`` =
    ``first_cost`` included; ``inf`` if any scenario is infeasible), ``expected_penalty`` and
    ``n_infeasible``."""
    prob = np.asarray(weights, dtype=float) / float(np.sum(weights))
    n_inf = int((~feasible).sum())
    return {
        "probability": prob,
        "expected_objective": float(prob @ objectives) + first_cost if n_inf == 0 else math.inf,
        "expected_penalty": float(prob[feasible] @ penalties[feasible]),
        "n_infeasible": n_inf,
    }


def _build_state(problem: TwoStageProblem) -> SecondStageModel:
    """Per-worker state: the recourse model, built once."""
    return problem.build_second_stage()


def recourse_state_factory(problem: TwoStageProblem) -> functools.partial[SecondStageModel]:
    """The executor ``state_factory`` of the recourse model of ``problem``.

    Every caller that maps scenario solves over an executor with this factory shares the
    models the workers already built (the executor caches state by the factory's pickle).
    """
    return functools.partial(_build_state, problem)


def chain_lanes(
    n: int, n_workers: int, pieces_per_lane: int = PIECES_PER_LANE
) -> list[list[tuple[int, int]]]:
    """Executor lanes of a warm-start chain of ``n`` scenarios for ``n_workers`` workers.

    The chain is cut into ``n_workers`` contiguous *lanes*, one per worker, and each lane into
    ``pieces_per_lane`` contiguous pieces (the executor's chunks). A worker runs the pieces of
    its lane in order, each starting where the previous one ended, so the chain breaks once
    per worker; a worker whose lane is done takes over the back half of the fullest lane
    (:meth:`~gridrecourse.execution.Executor.map`, ``lanes``), one more break per steal. With
    contiguous chunks in chain order instead, consecutive chunks go to different workers and
    the chain breaks at every chunk.

    Parameters
    ----------
    n : int
        Scenarios (positions ``0..n-1`` of the chain).
    n_workers : int
    pieces_per_lane : int

    Returns
    -------
    list of list of (int, int)
        Per lane, non-empty ``[start, stop)`` ranges in chain order; together a partition of
        ``range(n)``.
    """
    if n <= 0:
        return []
    lanes = np.array_split(np.arange(n), max(1, min(n_workers, n)))
    return [
        [(int(p[0]), int(p[-1]) + 1) for p in np.array_split(lane, min(pieces_per_lane, len(lane)))]
        for lane in lanes
    ]


def _solve_scenario(
    model: SecondStageModel,
    scenario: int,
    *,
    x: np.ndarray,
    options: SolverOptions,
    keep_values: bool = False,
    farkas: bool = True,
) -> SecondStageResult:
    return model.solve(
        x, scenario, options, keep_values=keep_values, farkas=farkas, unresolved=True
    )


def evaluate_first_stage(
    problem: TwoStageProblem,
    x: np.ndarray | object,
    *,
    scenarios: Sequence[int] | np.ndarray | None = None,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    desc: str | None = "out-of-sample",
    progress: ProgressCallback | None = None,
    reorder: bool = True,
    keep_values: bool = False,
    farkas: bool = True,
) -> OutOfSampleResult:
    """Solve the recourse of every scenario at a fixed first stage.

    Parameters
    ----------
    problem : TwoStageProblem
    x : ndarray or decision
        First-stage vector, or a decision the problem can encode (a
        :class:`~gridrecourse.problems.siting.SitingDecision` via ``first_stage_vector``).
    scenarios : sequence of int, optional
        Scenario indices (default all); probabilities renormalized.
    executor : Executor, optional
        Where the scenarios run (default: in-process). The executor is not closed; reuse one
        across calls to keep the per-worker models.
    options : SolverOptions, optional
        Recourse solver options (default one thread).
    desc : str, optional
        Progress label (a progress line on stderr unless ``progress`` is given; ``None`` for
        silence).
    progress : callable, optional
        ``progress(done, total)``.
    reorder : bool, default True
        Solve the scenarios in a similarity order
        (:func:`~gridrecourse.evaluation.scenario_order.warm_start_order`) so that each warm
        start comes from a similar scenario; the results are returned in the order of
        ``scenarios`` either way. The chain is handed to the workers in lanes
        (:func:`chain_lanes`), so that each worker follows one part of it. Skipped when the
        problem says its recourse solves do not warm-start (``recourse_warm_starts`` False,
        e.g. PV siting's reduced P1 LP: the order of the 1200 ieee9500 scenarios took 2.7 s).
    keep_values : bool, default False
        Return every scenario's recourse column values (``values``), e.g. for schedules,
        voltage envelopes and an AC check of the recourse.
    farkas : bool, default True
        Derive a feasibility cut (``cuts``; one more LP) for every scenario whose recourse is
        infeasible at ``x``; ``False`` when the caller only needs to know which ones are.

    Returns
    -------
    OutOfSampleResult

    Raises
    ------
    UnsupportedProblemError
        The exact evaluator cannot solve the recourse (integer and quadratic together).
    """
    t0 = time.perf_counter()
    n_x = problem.first_stage.size
    if not isinstance(x, np.ndarray):
        encode = getattr(problem, "first_stage_vector", None)
        x = encode(x) if encode is not None else np.asarray(x, dtype=float)
    x = np.asarray(x, dtype=float)
    if x.shape != (n_x,):
        raise OutOfSampleError(f"first-stage vector must have shape ({n_x},), got {x.shape}")
    check_requirements(EVALUATOR, problem)  # before any worker builds a model
    n_all = problem.n_scenarios
    idx = np.arange(n_all) if scenarios is None else np.asarray(scenarios, dtype=int).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_all:
        raise OutOfSampleError(f"scenario indices must be within 0..{n_all - 1}")
    options = options or _DEFAULT_OPTIONS
    own = executor is None
    ex = InProcessExecutor() if own else executor
    warm = reorder and problem.recourse_warm_starts
    order = warm_start_order(problem, idx) if warm else np.arange(len(idx))
    try:
        solved: list[SecondStageResult] = ex.map(
            functools.partial(
                _solve_scenario, x=x, options=options, keep_values=keep_values, farkas=farkas
            ),
            [int(i) for i in idx[order]],
            state_factory=recourse_state_factory(problem),
            desc=desc,
            progress=progress,
            lanes=chain_lanes(len(idx), ex.n_workers),
        )
    finally:
        if own:
            ex.close()
    results: list[SecondStageResult] = [solved[k] for k in np.argsort(order)]
    return OutOfSampleResult.of_scenarios(
        problem,
        x,
        idx,
        objectives=np.array([r.objective for r in results]),
        feasible=np.array([r.feasible for r in results], dtype=bool),
        penalties=np.array([r.penalty for r in results]),
        linking_duals=np.vstack([r.linking_duals for r in results]),
        subgradients=np.vstack([r.subgradient for r in results]),
        cuts=tuple(r.cut for r in results if r.cut is not None),
        solve_seconds=np.array([r.solve_seconds for r in results]),
        wall_seconds=time.perf_counter() - t0,
        mip_gaps=np.array([r.mip_gap for r in results]),
        dual_bounds=np.array([r.dual_bound for r in results]),
        simplex_iterations=np.array([r.simplex_iterations for r in results], dtype=int),
        values=tuple(r.values for r in results) if keep_values else None,
    )
