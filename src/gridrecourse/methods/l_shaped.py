"""Integer L-shaped (multi-cut Benders) lower bound of a batch optimum (METHODS §2).

For a two-stage program whose recourse is an LP or a convex QP and whose first stage ``x``
enters the recourse only through right-hand sides (the linking rows; PV siting P1/P2:
``0 ≤ p_ω ≤ g · n · PV_mult_ω``), each scenario's value function ``Q_ω(x)`` is convex in ``x``
(the value function of a convex program in its right-hand side). So an exact recourse solve at
ANY first stage ``x^j`` gives a valid optimality cut (Laporte & Louveaux 1993; Birge &
Louveaux 2011, ch. 5)::

    θ_ω ≥ Q_ω(x^j) − m_ω + g_ωᵀ (x − x^j),      g_ω = ∂Q_ω(x^j) = −T_ωᵀ λ_ω (linking duals)

with the safety margin ``m_ω = margin · (1 + |Q_ω(x^j)|)`` (default ``margin = 1e-7``, the
simplex's dual-feasibility tolerance: the duals ``λ_ω`` are optimal only to that tolerance, so
the intercept, taken from the PRIMAL objective, is lowered by it). An infeasible scenario
(hard limits) gives its Farkas feasibility cut ``αᵀx ≥ β`` instead (the same cut SPAR adds,
:attr:`~gridrecourse.problems.base.SecondStageResult.cut`). The multi-cut master over the
batch's distinct scenarios ``ω`` with renormalized weights ``π_ω``::

    min  cᵀx + Σ_ω π_ω θ_ω
    s.t. first-stage rows of the SeparableFirstStage (siting: budget, site count, sizes),
         every optimality cut and feasibility cut so far,
         n integer in 0..L, s binary, θ free

is a relaxation of the batch problem ``min_x cᵀx + Σ_ω π_ω Q_ω(x)`` (every cut is valid), so
**HiGHS's MIP dual bound of the master (never its incumbent) is a lower bound of the batch
optimum at every iteration and at any time limit**. The master is small (``2 · sites``
integers and one ``θ`` per distinct scenario), unlike the batch extensive form, whose LP
relaxation is weak (fractional site binaries spread PV everywhere).

Loop (Kelley's cutting planes on the integer first stage)::

    cuts at the seed points (e.g. SPAR's decision x̂ with its exact values and subgradients)
    repeat:  master → x^j and its dual bound LB_j (the lower bound: max_j LB_j)
             exact evaluation of the batch's scenarios at x^j (executor, warm starts)
             UB ← min(UB, cᵀx^j + Σ π_ω Q_ω(x^j));  add one cut per scenario
    until (UB − LB) ≤ tol · |UB|, x^j repeats, the iteration or the time limit

A repeated ``x^j`` ends the loop: the master's value at ``x^j`` is then exact up to the margin,
so LB equals UB up to it. The first stage is integer and finite, so the loop ends after finitely
many iterations.

Checkpoints (``checkpoint=``, :mod:`gridrecourse.checkpointing`): every
``LShapedConfig.checkpoint_every`` iterations the loop stores :class:`LShapedState` (every
evaluated point with its cuts, the history, the bounds so far) and continues from a master
rebuilt from those cuts and, on its own in-process executor, from cold recourse models: exactly
what a resumed run starts from, so a resumed loop equals an uninterrupted one with the same
checkpoints. (With a caller's executor the recourse warm starts are the caller's; a resumed
bound is then still valid, its path may differ in degenerate duals.) Inside
:func:`~gridrecourse.methods.spar.spar_statistical_bounds` each replication's loop is
checkpointed this way.

Requirements: continuous (LP/QP) recourse with linking duals and a
:class:`~gridrecourse.problems.separable.SeparableFirstStage` (:data:`L_SHAPED`); integer
recourse has no convex value function and is refused (:class:`UnsupportedProblemError`).

Units: objective units of the problem (P1: p.u.; P2: kW), seconds for times.

References
----------
G. Laporte and F. V. Louveaux, "The integer L-shaped method for stochastic integer programs
with complete recourse", Oper. Res. Lett. 13, 133–142, 1993.
J. R. Birge and F. Louveaux, Introduction to Stochastic Programming, 2nd ed., Springer 2011,
ch. 5 (the L-shaped method, multi-cut version §5.3).
J. E. Kelley, "The cutting-plane method for solving convex programs", J. SIAM 8, 1960.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import highspy
import numpy as np
from scipy import sparse

from gridrecourse.checkpointing import Checkpoint
from gridrecourse.errors import GridRecourseError, SolverError
from gridrecourse.evaluation.bounds import BoundMethod, BoundProvenance
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.execution import Executor, InProcessExecutor
from gridrecourse.problems.base import TwoStageProblem, scenario_selection
from gridrecourse.problems.capabilities import (
    MethodRequirements,
    Trait,
    check_requirements,
)
from gridrecourse.problems.separable import SeparableFirstStage
from gridrecourse.solvers.highs import set_mip_feasibility_tolerance
from gridrecourse.solvers.options import SolverOptions, stopping_tolerance

__all__ = [
    "L_SHAPED",
    "LShapedConfig",
    "LShapedError",
    "LShapedIteration",
    "LShapedResult",
    "LShapedState",
    "LShapedStop",
    "SeedPoint",
    "l_shaped_bound",
]

_INF = highspy.kHighsInf

#: What the L-shaped bound needs: convex recourse value functions (continuous recourse with
#: linking duals) over a declared separable integer first stage (the master's rows).
L_SHAPED = MethodRequirements(
    "integer L-shaped",
    requires=Trait.LINKING_DUALS | Trait.SEPARABLE_FIRST_STAGE,
    unsupported=Trait.INTEGER_RECOURSE,
)


class LShapedError(GridRecourseError, ValueError):
    """Invalid L-shaped input (settings, seed points) or a master without a bound."""


class LShapedStop(str, Enum):
    """Why the L-shaped loop ended."""

    #: ``UB − LB ≤ rel_gap · |UB|`` (converged)
    GAP = "gap"
    #: the (tightly solved) master returned an evaluated point: LB = UB up to the cut margin
    REPEATED_POINT = "repeated point"
    #: ``max_iterations`` master solves
    ITERATIONS = "iterations"
    #: the time limit (the bound is the last master's dual bound, valid)
    TIME = "time"


@dataclass(frozen=True)
class LShapedConfig:
    """Settings of :func:`l_shaped_bound`.

    Attributes
    ----------
    max_iterations : int, default 50
        Master solves (each followed by one exact evaluation of the batch).
    rel_gap : float, default 1e-6
        Stop when ``UB − LB ≤ rel_gap · max(|UB|, 1e-12)``.
    time_limit : float or None, default None
        Wall-clock limit of the whole loop [s]; the master gets the time left (its dual bound
        is used at the limit too).
    master_mip_gap : float, default 1e-9
        Relative MIP gap of the master solves at the end (the bound is its dual bound either
        way).
    master_mip_feasibility_tolerance : float or None, default None
        HiGHS's ``mip_feasibility_tolerance`` of the master solves (``None``: HiGHS's 1e-6;
        as ``SolverOptions.mip_feasibility_tolerance``).
    adaptive_gap : float, default 0.1
        Each master stops at the relative gap ``max(master_mip_gap, adaptive_gap · (UB −
        LB)/|UB|)`` of the loop so far: early masters need not be proven to 1e-9 (ieee123,
        N = 200 with a fixed 1e-9: one master of 3000 cuts took 835 s), the last ones are. 0
        gives the fixed ``master_mip_gap``. Changes the points and speed, never validity.
    margin : float, default 1e-7
        Relative safety margin of each cut's intercept, ``m_ω = margin · (1 + |Q_ω|)``
        (objective units); the simplex's dual-feasibility tolerance.
    checkpoint_every : int, default 5
        Iterations between checkpoints when :func:`l_shaped_bound` has a ``checkpoint``.
    """

    max_iterations: int = 50
    rel_gap: float = 1e-6
    time_limit: float | None = None
    master_mip_gap: float = 1e-9
    master_mip_feasibility_tolerance: float | None = None
    margin: float = 1e-7
    adaptive_gap: float = 0.1
    checkpoint_every: int = 5

    def __post_init__(self) -> None:
        if int(self.max_iterations) != self.max_iterations or self.max_iterations < 1:
            raise LShapedError(f"max_iterations must be an integer >= 1, got {self.max_iterations}")
        every = self.checkpoint_every
        if int(every) != every or every < 1:
            raise LShapedError(f"checkpoint_every must be an integer >= 1, got {every}")
        if not (
            self.rel_gap >= 0.0
            and self.master_mip_gap >= 0.0
            and self.margin >= 0.0
            and 0.0 <= self.adaptive_gap < 1.0
        ):
            raise LShapedError(
                "rel_gap, master_mip_gap, margin must be >= 0 and adaptive_gap in [0, 1), got "
                f"{self.rel_gap}, {self.master_mip_gap}, {self.margin}, {self.adaptive_gap}"
            )
        tol = self.master_mip_feasibility_tolerance
        if tol is not None and not (math.isfinite(tol) and tol > 0.0):
            raise LShapedError(f"master_mip_feasibility_tolerance must be > 0 or None, got {tol}")
        if self.time_limit is not None and not self.time_limit > 0.0:
            raise LShapedError(f"time_limit must be positive or None, got {self.time_limit}")


@dataclass(frozen=True)
class SeedPoint:
    """A first stage already evaluated on the batch: its cuts cost no solve.

    Attributes
    ----------
    x : ndarray, shape (n_x,)
        The first stage.
    objectives : ndarray, shape (N,)
        ``Q_ω(x)`` per DRAW of the batch (the order of ``scenarios`` in
        :func:`l_shaped_bound`; objective units).
    subgradients : ndarray, shape (N, n_x)
        ``∂Q_ω/∂x`` per draw (``OutOfSampleResult.subgradients``).
    """

    x: np.ndarray
    objectives: np.ndarray
    subgradients: np.ndarray


@dataclass(frozen=True)
class LShapedIteration:
    """One master solve and the evaluation of its point.

    Attributes
    ----------
    iteration : int
        1-based.
    lower_bound : float
        Master's MIP dual bound (objective units).
    master_objective : float
        Master's incumbent value at ``x`` (objective units; not a bound).
    value : float
        Exact batch value ``cᵀx + Σ π_ω Q_ω(x)`` (``inf`` if a scenario is infeasible).
    upper_bound : float
        Best value so far.
    n_cuts : int
        Optimality and feasibility cuts in the master after this iteration.
    master_seconds, evaluation_seconds : float
        Wall time of the master solve and of the evaluation [s].
    """

    iteration: int
    lower_bound: float
    master_objective: float
    value: float
    upper_bound: float
    n_cuts: int
    master_seconds: float
    evaluation_seconds: float


@dataclass(frozen=True)
class LShapedResult:
    """Lower and upper bound of a batch optimum from the integer L-shaped method.

    Attributes
    ----------
    lower_bound : float
        Largest master dual bound (objective units): ``≤`` the batch optimum.
    upper_bound : float
        Best exact batch value of an evaluated point (objective units): ``≥`` the batch optimum.
    x : ndarray, shape (n_x,)
        The point of ``upper_bound``.
    converged : bool
        ``UB − LB`` within ``rel_gap`` (or a repeated master point).
    stop : LShapedStop
        Why the loop ended.
    history : tuple of LShapedIteration
    n_optimality_cuts, n_feasibility_cuts : int
    seconds : float
        Wall time [s].
    provenance : BoundProvenance
        :attr:`BoundMethod.L_SHAPED`, the value, iterations, master gap, incumbent = UB.
    """

    lower_bound: float
    upper_bound: float
    x: np.ndarray
    converged: bool
    stop: LShapedStop
    history: tuple[LShapedIteration, ...]
    n_optimality_cuts: int
    n_feasibility_cuts: int
    seconds: float
    provenance: BoundProvenance

    @property
    def gap(self) -> float:
        """Relative gap ``(UB − LB) / |UB|`` (``inf`` without a finite UB)."""
        if not math.isfinite(self.upper_bound) or self.upper_bound == 0.0:
            return math.inf
        return (self.upper_bound - self.lower_bound) / abs(self.upper_bound)


@dataclass(frozen=True, eq=False)
class EvaluatedPoint:
    """A first stage evaluated on the batch's distinct scenarios: the source of its cuts.

    Attributes
    ----------
    x : ndarray, shape (n_x,)
    objectives : ndarray, shape (n_distinct,)
        ``Q_ω(x)`` (``inf`` where infeasible; objective units).
    subgradients : ndarray, shape (n_distinct, n_x)
    feasibility : tuple of (ndarray, float)
        Farkas cuts ``αᵀx ≥ β`` of the infeasible scenarios.
    """

    x: np.ndarray
    objectives: np.ndarray
    subgradients: np.ndarray
    feasibility: tuple[tuple[np.ndarray, float], ...] = ()


@dataclass(frozen=True, eq=False)
class LShapedState:
    """Checkpoint of :func:`l_shaped_bound` before iteration ``len(history) + 1``.

    Attributes
    ----------
    key : str
        Hash of the batch, its weights, the settings and the seed points (a resume with other
        ones is refused).
    points : tuple of EvaluatedPoint
        Every point whose cuts are in the master, in the order they were added.
    history : tuple of LShapedIteration
    lower, best : float
        Lower bound and best exact batch value so far (objective units).
    best_x : ndarray
    master_gap : float
        Relative gap of the last master solve.
    n_solves : int
        Recourse solves so far (the cut counts follow from ``points``).
    seconds : float
        Wall time before the checkpoint [s] (the time limit counts it).
    """

    key: str
    points: tuple[EvaluatedPoint, ...]
    history: tuple[LShapedIteration, ...]
    lower: float
    best: float
    best_x: np.ndarray
    master_gap: float
    n_solves: int = 0
    seconds: float = 0.0


class _Master:
    """The multi-cut master in HiGHS: columns ``[n, s, θ]``; cuts appended as rows."""

    def __init__(self, decl: SeparableFirstStage, weights: np.ndarray) -> None:
        self.decl = decl
        fs = decl.first_stage
        m = decl.n_elements
        self.n_s = m if decl.indicator is not None else 0
        self.n_theta = len(weights)
        self.n_cols = m + self.n_s + self.n_theta
        # first-stage column of x → master column (n, then s)
        self.x_cols = np.full(fs.size, -1, dtype=np.int64)
        self.x_cols[fs.slice(decl.argument)] = np.arange(m)
        if decl.indicator is not None:
            self.x_cols[fs.slice(decl.indicator)] = m + np.arange(self.n_s)
        cost = np.zeros(self.n_cols)
        mapped = self.x_cols >= 0
        cost[self.x_cols[mapped]] = fs.cost[mapped]
        cost[m + self.n_s :] = weights
        a_n, a_s, row_lb, row_ub = decl.row_matrices()
        a = sparse.hstack([a_n, a_s, sparse.csr_matrix((a_n.shape[0], self.n_theta))], format="csc")
        a.sort_indices()
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_cols
        lp.num_row_ = a.shape[0]
        lp.col_cost_ = cost
        lp.col_lower_ = np.concatenate([np.zeros(m + self.n_s), np.full(self.n_theta, -_INF)])
        lp.col_upper_ = np.concatenate(
            [decl.upper.astype(float), np.ones(self.n_s), np.full(self.n_theta, _INF)]
        )
        lp.row_lower_ = np.where(np.isneginf(row_lb), -_INF, row_lb)
        lp.row_upper_ = np.where(np.isposinf(row_ub), _INF, row_ub)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_ = self.n_cols
        lp.a_matrix_.num_row_ = a.shape[0]
        lp.a_matrix_.start_ = a.indptr.astype(np.int32)
        lp.a_matrix_.index_ = a.indices.astype(np.int32)
        lp.a_matrix_.value_ = a.data.astype(float)
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        # only the relative gap (config.master_mip_gap) may stop the master, not HiGHS's
        # default absolute gap of 1e-6. No MIP start at the incumbent: measured on the tiny
        # instance, HiGHS then returned the start as optimal with its value as the dual bound,
        # 1.3e-7 above the master's optimum.
        h.setOptionValue("mip_abs_gap", 0.0)
        self._check(h.passModel(lp), "passModel")
        ints = np.arange(m + self.n_s, dtype=np.int32)
        self._check(
            h.changeColsIntegrality(
                ints.size,
                ints,
                np.full(ints.size, int(highspy.HighsVarType.kInteger.value), dtype=np.uint8),
            ),
            "changeColsIntegrality",
        )
        self.h = h
        self.n_cuts = 0

    @staticmethod
    def _check(status: highspy.HighsStatus, what: str) -> None:
        if status == highspy.HighsStatus.kError:
            raise SolverError(f"L-shaped master: HiGHS {what} failed")

    def add_rows(self, coeffs: np.ndarray, lower: np.ndarray) -> None:
        """Rows ``coeffs · [n, s, θ] ≥ lower`` (coeffs dense, shape (k, n_cols))."""
        csr = sparse.csr_matrix(coeffs)
        csr.eliminate_zeros()
        self._check(
            self.h.addRows(
                csr.shape[0],
                lower.astype(float),
                np.full(csr.shape[0], _INF),
                csr.nnz,
                csr.indptr[:-1].astype(np.int32),
                csr.indices.astype(np.int32),
                csr.data.astype(float),
            ),
            "addRows",
        )
        self.n_cuts += csr.shape[0]

    def x_part(self, g: np.ndarray) -> np.ndarray:
        """Coefficients of ``gᵀx`` on the master's ``[n, s]`` columns, shape (k, m + n_s)."""
        g = np.atleast_2d(g)
        out = np.zeros((g.shape[0], self.n_cols - self.n_theta))
        mapped = self.x_cols >= 0
        np.add.at(out, (slice(None), self.x_cols[mapped]), g[:, mapped])
        return out

    def solve(
        self, time_limit: float | None, mip_gap: float, feasibility_tolerance: float | None = None
    ) -> tuple[np.ndarray, float, float]:
        """``(x, incumbent value, dual bound)``; x is NaN without an incumbent."""
        h = self.h
        set_mip_feasibility_tolerance(h, feasibility_tolerance)
        h.setOptionValue("time_limit", float(_INF if time_limit is None else max(time_limit, 0.0)))
        h.setOptionValue("mip_rel_gap", float(mip_gap))
        h.run()
        status = h.getModelStatus()
        ms = highspy.HighsModelStatus
        info = h.getInfo()
        if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible, ms.kUnbounded):
            raise LShapedError(
                f"L-shaped master {h.modelStatusToString(status)}: "
                f"{self.decl.describe()}, {self.n_cuts} cut(s)"
            )
        bound = float(info.mip_dual_bound)
        if status != ms.kOptimal and status not in (
            ms.kTimeLimit,
            ms.kIterationLimit,
            ms.kSolutionLimit,
            ms.kInterrupt,
        ):
            raise SolverError(f"L-shaped master: HiGHS returned {h.modelStatusToString(status)}")
        fs = self.decl.first_stage
        if info.primal_solution_status != 2:  # no incumbent (time limit)
            return np.full(fs.size, np.nan), math.inf, bound
        col = np.asarray(h.getSolution().col_value)
        units = np.clip(np.rint(col[: self.decl.n_elements]), 0, self.decl.upper)
        sited = (
            None
            if self.decl.indicator is None
            else col[self.decl.n_elements : self.decl.n_elements + self.n_s] > 0.5
        )
        value = float(info.objective_function_value)
        # proven only up to the stopping tolerance (as Solution.dual_bound; no absolute gap)
        exact = SolverOptions(mip_gap=mip_gap, mip_abs_gap=0.0)
        bound = min(bound, value - stopping_tolerance(value, exact))
        return self.decl.embed(units, sited), value, bound


def l_shaped_bound(
    problem: TwoStageProblem,
    scenarios: Sequence[int] | np.ndarray,
    *,
    scenario_weights: Sequence[float] | np.ndarray | None = None,
    seeds: Sequence[SeedPoint | np.ndarray] = (),
    config: LShapedConfig | None = None,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    checkpoint: Checkpoint | None = None,
) -> LShapedResult:
    """Integer L-shaped lower (and upper) bound of ``min_x cᵀx + Σ_j w_j Q(x, ω_j)`` on a batch.

    Parameters
    ----------
    problem : TwoStageProblem
        LP/QP recourse and a ``separable_first_stage`` declaration (:data:`L_SHAPED`).
    scenarios : sequence of int
        The batch's draws (repetitions allowed, weights ``w_j`` = probabilities renormalized,
        as in the SAA batches of :func:`~gridrecourse.methods.spar.spar_statistical_bounds`).
    scenario_weights : sequence of float, optional
        One weight per draw instead of its probability (a stratified batch's design weights);
        renormalized.
    seeds : sequence of SeedPoint or ndarray
        Points whose cuts start the master: a :class:`SeedPoint` (already evaluated on the
        batch: no solve) or a first-stage vector (evaluated first). At least one; every
        scenario must be feasible at some seed (else its ``θ_ω`` has no cut and the master no
        bound).
    config : LShapedConfig, optional
    executor : Executor, optional
        Runs the exact evaluations (default in-process); cached recourse models and warm
        starts are reused across iterations.
    options : SolverOptions, optional
        Recourse solver options.
    checkpoint : Checkpoint, optional
        Where an :class:`LShapedState` is saved before iterations
        ``k·config.checkpoint_every + 1`` and found again when resumed (module docstring,
        "Checkpoints").

    Returns
    -------
    LShapedResult

    Raises
    ------
    UnsupportedProblemError
        Integer recourse or no separable first stage.
    LShapedError
        No seed, seeds of the wrong shape, a scenario infeasible at every seed, or a
        checkpoint of another batch, settings or seeds.
    """
    t0 = time.perf_counter()
    cfg = config or LShapedConfig()
    check_requirements(L_SHAPED, problem)
    decl = problem.separable_first_stage
    assert decl is not None  # checked above
    decl.check(problem.second_stage)
    idx, p = scenario_selection(problem, scenarios, scenario_weights, error=LShapedError)
    if not seeds:
        raise LShapedError("l_shaped_bound needs at least one seed point (e.g. SPAR's decision)")
    runner = _Run(problem, decl, cfg, idx, p, executor, options, t0)
    try:
        return runner.run(seeds, checkpoint)
    finally:
        runner.close()


def _key(
    idx: np.ndarray, p: np.ndarray, cfg: LShapedConfig, seeds: Sequence[SeedPoint | np.ndarray]
) -> str:
    """Resume key of a loop: batch draws, weights, settings, seed points."""
    h = hashlib.sha256(np.ascontiguousarray(idx, dtype=np.int64).tobytes())
    h.update(np.ascontiguousarray(p, dtype=np.float64).tobytes())
    h.update(repr(cfg).encode())
    for seed in seeds:
        x = seed.x if isinstance(seed, SeedPoint) else seed
        h.update(np.ascontiguousarray(x, dtype=np.float64).tobytes())
    return h.hexdigest()


class _Run:
    """The loop of :func:`l_shaped_bound` (arguments checked; ``p`` the renormalized weights
    of the draws ``idx``): master, cuts, evaluations, checkpoints."""

    def __init__(
        self,
        problem: TwoStageProblem,
        decl: SeparableFirstStage,
        cfg: LShapedConfig,
        idx: np.ndarray,
        p: np.ndarray,
        executor: Executor | None,
        options: SolverOptions | None,
        t0: float,
    ) -> None:
        self.problem, self.decl, self.cfg, self.idx, self.p = problem, decl, cfg, idx, p
        self.options, self.t0 = options, t0
        self.own = executor is None
        self.executor = InProcessExecutor() if executor is None else executor
        self.unique, self.first, inverse = np.unique(idx, return_index=True, return_inverse=True)
        self.weights = np.bincount(inverse, weights=p, minlength=len(self.unique))
        self.n_x = problem.first_stage.size
        self.counts = {"opt": 0, "feas": 0, "solves": 0}
        self.points: list[EvaluatedPoint] = []
        self.master = _Master(decl, self.weights)
        self.has_cut = np.zeros(len(self.unique), dtype=bool)

    def close(self) -> None:
        if self.own:
            self.executor.close()

    def add_cuts(self, point: EvaluatedPoint) -> float:
        """Cuts of one evaluated point (per distinct scenario); returns its batch value."""
        master, x = self.master, point.x
        q = np.asarray(point.objectives, dtype=float)
        g = np.asarray(point.subgradients, dtype=float)
        ok = np.isfinite(q) & np.isfinite(g).all(axis=1)
        rows = np.flatnonzero(ok)
        if rows.size:
            coeffs = np.zeros((rows.size, master.n_cols))
            coeffs[:, : master.n_cols - master.n_theta] = -master.x_part(g[rows])
            coeffs[np.arange(rows.size), master.n_cols - master.n_theta + rows] = 1.0
            margin = self.cfg.margin * (1.0 + np.abs(q[rows]))
            master.add_rows(coeffs, q[rows] - margin - g[rows] @ x)
            self.has_cut[rows] = True
            self.counts["opt"] += rows.size
        for alpha, beta in point.feasibility:
            coeffs = np.zeros((1, master.n_cols))
            coeffs[:, : master.n_cols - master.n_theta] = master.x_part(alpha)
            master.add_rows(coeffs, np.array([beta]))
            self.counts["feas"] += 1
        self.points.append(point)
        if not ok.all():
            return math.inf
        return float(self.problem.first_stage.cost @ x + self.weights @ q)

    def evaluate(self, x: np.ndarray) -> tuple[float, float]:
        t_ev = time.perf_counter()
        ev = evaluate_first_stage(
            self.problem,
            x,
            scenarios=self.unique,
            executor=self.executor,
            options=self.options,
            desc=None,
        )
        self.counts["solves"] += len(self.unique)
        cuts = tuple((c.coefficients, c.rhs) for c in ev.cuts)
        value = self.add_cuts(EvaluatedPoint(x, ev.objectives, ev.subgradients, cuts))
        return value, time.perf_counter() - t_ev

    def seed(self, seeds: Sequence[SeedPoint | np.ndarray]) -> tuple[float, np.ndarray]:
        """Cuts of the seed points; the best seed value and point."""
        best, best_x = math.inf, np.full(self.n_x, np.nan)
        n_x, idx = self.n_x, self.idx
        for seed in seeds:
            if isinstance(seed, SeedPoint):
                x = np.asarray(seed.x, dtype=float)
                q = np.asarray(seed.objectives, dtype=float)
                g = np.asarray(seed.subgradients, dtype=float)
                if x.shape != (n_x,) or q.shape != idx.shape or g.shape != (idx.size, n_x):
                    raise LShapedError(
                        f"seed point: x {x.shape}, objectives {q.shape}, subgradients "
                        f"{g.shape}; expected ({n_x},), ({idx.size},), ({idx.size}, {n_x}) "
                        "(one row per draw)"
                    )
                value = self.add_cuts(EvaluatedPoint(x, q[self.first], g[self.first]))
            else:
                x = np.asarray(seed, dtype=float)
                if x.shape != (n_x,):
                    raise LShapedError(f"seed point must have shape ({n_x},), got {x.shape}")
                value, _ = self.evaluate(x)
            if value < best:
                best, best_x = value, x.copy()
        if not self.has_cut.all():
            missing = self.unique[~self.has_cut].tolist()
            raise LShapedError(
                f"scenarios {missing} are infeasible at every seed point: their recourse has no "
                "optimality cut, so the master has no bound; seed with a first stage feasible "
                "for every scenario of the batch"
            )
        return best, best_x

    def rebuild(self, points: Sequence[EvaluatedPoint]) -> None:
        """A new master with the cuts of ``points`` and, on the own executor, cold recourse
        models (what a resumed loop starts from)."""
        self.master = _Master(self.decl, self.weights)
        self.points, self.counts["opt"], self.counts["feas"] = [], 0, 0
        for point in points:
            self.add_cuts(point)
        if self.own:
            self.executor.close()
            self.executor = InProcessExecutor()

    def run(
        self,
        seeds: Sequence[SeedPoint | np.ndarray],
        checkpoint: Checkpoint | None,
    ) -> LShapedResult:
        cfg = self.cfg
        every = int(cfg.checkpoint_every)
        key = _key(self.idx, self.p, cfg, seeds)
        state = None if checkpoint is None else checkpoint.load()
        history: list[LShapedIteration] = []
        lower, stop, master_gap = -math.inf, LShapedStop.ITERATIONS, math.inf
        if state is not None:
            if not isinstance(state, LShapedState) or state.key != key:
                raise LShapedError(
                    "L-shaped checkpoint written for another batch, settings or seeds; start anew"
                )
            self.rebuild(state.points)
            self.counts["solves"] = state.n_solves
            history, lower, master_gap = list(state.history), state.lower, state.master_gap
            best, best_x = state.best, np.asarray(state.best_x, dtype=float).copy()
            self.t0 -= state.seconds
        else:
            best, best_x = self.seed(seeds)
        seen = {np.rint(pt.x).astype(np.int64).tobytes() for pt in self.points}
        for it in range(len(history) + 1, cfg.max_iterations + 1):
            if checkpoint is not None and it > 1 and (it - 1) % every == 0:
                if state is None or it > len(state.history) + 1:  # not the resumed point
                    checkpoint.save(
                        LShapedState(
                            key, tuple(self.points), tuple(history), lower, best, best_x,
                            master_gap, self.counts["solves"], time.perf_counter() - self.t0,
                        )
                    )  # fmt: skip
                    self.rebuild(list(self.points))
            left = None if cfg.time_limit is None else cfg.time_limit - self.elapsed()
            if left is not None and left <= 0.0:
                stop = LShapedStop.TIME
                break
            t_m = time.perf_counter()
            loop_gap = (best - lower) / max(abs(best), 1e-12) if math.isfinite(lower) else 1.0
            master_gap_option = max(cfg.master_mip_gap, cfg.adaptive_gap * loop_gap)
            x, incumbent, bound = self.master.solve(
                left, master_gap_option, cfg.master_mip_feasibility_tolerance
            )
            if (
                master_gap_option > cfg.master_mip_gap
                and np.all(np.isfinite(x))
                and np.rint(x).astype(np.int64).tobytes() in seen
            ):  # a loose master returned an evaluated point: prove this master tightly instead
                left = None if cfg.time_limit is None else cfg.time_limit - self.elapsed()
                if math.isfinite(bound):
                    lower = max(lower, bound)
                x, incumbent, bound = self.master.solve(
                    left, cfg.master_mip_gap, cfg.master_mip_feasibility_tolerance
                )
            master_seconds = time.perf_counter() - t_m
            if math.isfinite(bound):
                lower = max(lower, bound)
            master_gap = (
                (incumbent - bound) / max(abs(incumbent), 1e-12)
                if math.isfinite(incumbent)
                else 1.0
            )
            n_cuts = self.master.n_cuts
            if not np.all(np.isfinite(x)):
                stop = LShapedStop.TIME
            elif best - lower <= cfg.rel_gap * max(abs(best), 1e-12):
                stop = LShapedStop.GAP
            elif np.rint(x).astype(np.int64).tobytes() in seen:
                stop = LShapedStop.REPEATED_POINT
            else:
                seen.add(np.rint(x).astype(np.int64).tobytes())
                value, ev_seconds = self.evaluate(x)
                if value < best:
                    best, best_x = value, x.copy()
                history.append(
                    LShapedIteration(
                        it, bound, incumbent, value, best, self.master.n_cuts, master_seconds,
                        ev_seconds,
                    )
                )  # fmt: skip
                if left is not None and self.elapsed() >= cfg.time_limit:  # type: ignore[operator]
                    stop = LShapedStop.TIME
                    break
                continue
            history.append(
                LShapedIteration(it, bound, incumbent, math.nan, best, n_cuts, master_seconds, 0.0)
            )
            break
        converged = stop in (LShapedStop.GAP, LShapedStop.REPEATED_POINT)
        # the batch optimum is at most the best exactly evaluated point: a master bound above it
        # (by the MIP's feasibility tolerance, seen at 4e-8 relative) is clipped to it
        lower = min(lower, best)
        seconds = self.elapsed()
        provenance = BoundProvenance(
            method=BoundMethod.L_SHAPED,
            value=lower,
            multipliers="cuts",
            iterations=len(history),
            n_subproblems=self.counts["solves"],
            max_subproblem_gap=float(master_gap),
            incumbent=best,
            seconds=seconds,
        )
        return LShapedResult(
            lower_bound=lower,
            upper_bound=best,
            x=best_x,
            converged=converged,
            stop=stop,
            history=tuple(history),
            n_optimality_cuts=self.counts["opt"],
            n_feasibility_cuts=self.counts["feas"],
            seconds=seconds,
            provenance=provenance,
        )

    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
