"""Progressive hedging (PH) for two-stage stochastic programs with a (mixed-)integer first stage.

PH (Rockafellar & Wets 1991; Watson & Woodruff 2011; METHODS §2) decomposes the problem by
scenario. Every iteration ``k`` solves, for each scenario ω independently (in parallel through an
:class:`~gridrecourse.execution.Executor`)::

    x_ω^k = argmin_x  cᵀx + Q_ω(x) + w_ωᵀx + ρ/2 ‖x − x̄‖²      s.t. first-stage rows, bounds,
                                                                       integrality

then ``x̄^k = Σ_ω π_ω x_ω^k`` and ``w_ω ← w_ω + ρ (x_ω^k − x̄^k)`` (so ``Σ_ω π_ω w_ω = 0``).
Iteration 0 solves the subproblems without PH terms (``w = 0``, no proximal term): its expected
value is the wait-and-see (perfect-information) bound, a lower bound on the optimum.

Convergence metric (our choice of normalization)::

    g^k = Σ_ω π_ω ‖x_ω^k − x̄^k‖₁ / (1 + ‖x̄^k‖₁)

PH stops when ``g^k < tolerance`` (default 1e-3), after ``max_iterations`` iterations, or when the
``on_iteration`` hook returns True. For an integer first stage PH is a heuristic (it need not
converge, and its consensus need not be optimal); Watson–Woodruff's accelerators (variable fixing,
slamming, cycle detection) are not implemented.

Subproblem model (built once per scenario per worker)
-----------------------------------------------------
The subproblem is the extensive form restricted to ONE scenario
(:func:`~gridrecourse.methods.extensive_form.build_extensive_form` with ``scenarios=[ω]``; quadratic
recourse gets the EF's tangent planes) plus the PH terms. HiGHS solves MILPs and continuous QPs but
no MIQPs, so the proximal term is written without a Hessian. Expanding
``(x_j − x̄_j)² = x_j² − 2 x̄_j x_j + x̄_j²``, only the linear cost ``−ρ x̄_j`` depends on ``x̄``;
``x_j²`` is represented by :class:`ProximalTerm`:

* **integer** ``x_j ∈ {l..u}`` with ``u − l ≥ 2``: an epigraph variable ``t_j`` with the rows
  ``t_j ≥ (2k + 1) x_j − k(k + 1)``, ``k = l..u−1`` (the chords of ``x²`` between consecutive
  integers). Their maximum is the piecewise-linear interpolation of ``x²`` through the integers,
  which EQUALS ``x²`` at every integer point — so the representation is exact on the feasible
  set, not an approximation. ``u − l`` rows per variable; they never change (only costs do).
* **integer** with ``u − l ≤ 1`` (binaries): ``x² = (2l + 1) x − l(l + 1)`` on ``{l, l+1}`` (for a
  binary ``s² = s``): a linear cost, no rows.
* **continuous**, when the whole first stage is continuous: the exact diagonal Hessian (a convex
  QP). HiGHS cannot change a Hessian in place, so each subproblem is rebuilt once, when the
  proximal term first appears (iteration 1).
* **continuous** in a mixed-integer first stage (our choice): a column ``d_j = x_j − x̄_j``
  (fixed by the row ``d_j − x_j = −x̄_j``, whose bounds change with ``x̄``) and tangents
  ``t_j ≥ 2 p d_j − p²`` at ``p = 0, ±R r^{-k}`` (``R = u_j − l_j``, finite bounds required;
  ``PHConfig.continuous_points`` points per side from ``R`` down to ``10⁻⁶ R``, ratio
  ``r ≈ 1.24`` by default). The grid is finest at the consensus, so the underestimate is
  relative: ``t ≥ (1 − 0.012) d² − max_error`` (:class:`ProximalTerm`).

Between iterations only column costs (and the ``d`` rows' bounds) change:
``c + w_ω + ρ/2 (a − 2 x̄)`` on ``x`` and ``ρ/2`` on ``t``. HiGHS re-solves the live model (for
a MILP it re-runs branch and bound, but nothing is rebuilt). All proximal rows are kept (no
window around ``x̄`` with a cut loop): on the IEEE 123 they were measured to cost little
(``benchmarks/results/DESIGN_MEASUREMENTS.md``).

Rho escalation (ours)
---------------------
With an integer first stage PH can cycle: on the 5-bus test feeder ρ = 0.003 alternates
between metrics 0.24 and 0.274 until the iteration limit. Growing ``ρ`` in both the proximal
term and the ``w`` update does NOT help there (measured: the same cycle at every ρ up to 8e5,
because the integer iteration is invariant to scaling both), so ``PHConfig.rho_growth`` grows
only the proximal weight: with ×1.5 per iteration the same run reaches consensus in 4
iterations. The price is that the consensus is pulled toward the integer nearest ``x̄`` rather
than toward a stationary point; PH's result is a heuristic first stage either way, and its
exact value is reported.

Final first stage
-----------------
``x̄`` of the last iteration is rounded (integer columns, :func:`numpy.rint`) and, if that violates
the first-stage rows (e.g. budget or site counts after rounding up, ``s_i = 1`` with ``n_i = 0``
under a minimum size), REPAIRED by the small MILP :func:`repair_first_stage`::

    min ‖x − x̄‖₁   s.t. first-stage rows, bounds and integrality

(the nearest feasible first stage in the L1 norm). :attr:`PHResult.objective` is the EXACT
expected objective of that first stage over all scenarios
(:func:`~gridrecourse.evaluation.out_of_sample.evaluate_first_stage`: one LP — or exact QP for
quadratic recourse — per scenario), the number to compare with the EF.

Measured
--------
On the 5-bus test feeder and the IEEE 123 (24 and 96 scenarios, several ρ):
``benchmarks/results/DESIGN_MEASUREMENTS.md``.

References
----------
R. T. Rockafellar and R. J.-B. Wets, "Scenarios and policy aggregation in optimization under
uncertainty", Math. Oper. Res. 16(1), 119–147, 1991.
J.-P. Watson and D. L. Woodruff, "Progressive hedging innovations for a class of stochastic
mixed-integer resource allocation problems", Comput. Manag. Sci. 8(4), 355–370, 2011.
METHODS.md §2 (PH; paper C uses ρ = 1).
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import Generic, TypeVar

import numpy as np
import scipy.sparse as sp

from gridrecourse.checkpointing import Checkpoint
from gridrecourse.errors import GridRecourseError, InfeasibleModelError, SolverTimeLimitError
from gridrecourse.evaluation.bounds import BoundMethod, BoundProvenance
from gridrecourse.evaluation.out_of_sample import OutOfSampleResult, evaluate_first_stage
from gridrecourse.evaluation.resumable import evaluate_first_stage_resumable
from gridrecourse.execution import Executor, InProcessExecutor
from gridrecourse.methods.extensive_form import DEFAULT_TANGENT_POINTS, build_extensive_form
from gridrecourse.problems.base import (
    FirstStageSpec,
    TwoStageProblem,
    scenario_selection,
    tangent_rows,
)
from gridrecourse.problems.capabilities import (
    PROGRESSIVE_HEDGING,
    MethodRequirements,
    Trait,
    check_requirements,
)
from gridrecourse.solvers.highs import ConstraintBlock, LinearModel, VariableBlock
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "CONTINUOUS_FLOOR",
    "DEFAULT_CONTINUOUS_POINTS",
    "MAX_INTEGER_RANGE",
    "PROGRESSIVE_HEDGING_MILP",
    "LagrangianBound",
    "LagrangianError",
    "PHConfig",
    "PHError",
    "PHIteration",
    "PHResult",
    "PHState",
    "PHStatus",
    "ProgressHook",
    "ProximalTerm",
    "convergence_metric",
    "lagrangian_bound",
    "repair_first_stage",
    "solve_progressive_hedging",
    "subgradient_multipliers",
]

D = TypeVar("D")

#: Tangent points per side of a continuous first-stage column in a mixed-integer first stage
#: (our choice: ratio 1.24 between points, 1.2 % relative error; see :class:`ProximalTerm`).
DEFAULT_CONTINUOUS_POINTS = 65
#: Smallest tangent point of a shifted continuous column, relative to its range (our choice).
CONTINUOUS_FLOOR = 1e-6
#: Largest ``u − l`` of an integer first-stage variable (one proximal row per unit of range).
MAX_INTEGER_RANGE = 10_000
#: Default solver options of the subproblems: a tight MIP gap, because the subproblem objective
#: is dominated by the proximal term and a loose gap would blur the recourse differences.
_DEFAULT_OPTIONS = SolverOptions(mip_gap=1e-6)
#: Integrality tolerance when reading integer columns from HiGHS.
_INTEGER_TOLERANCE = 1e-6

#: PH with MILP subproblems (``PHConfig.integer_recourse``): integer recourse is accepted when the
#: first stage is integer (its proximal term is then linear or chords: no MIQP); a purely
#: continuous first stage would need a Hessian on a MILP (an MIQP HiGHS cannot solve).
PROGRESSIVE_HEDGING_MILP = MethodRequirements(
    "progressive hedging (MILP subproblems)",
    requires=Trait.INTEGER_FIRST_STAGE,
    unsupported=Trait.MIXED_INTEGER_QUADRATIC_RECOURSE,
)

#: ``progress(iteration, metric)``: called after every PH iteration.
ProgressHook = Callable[[int, float], None]


class PHError(GridRecourseError, ValueError):
    """Invalid PH settings or a first stage PH cannot represent (message names the culprit)."""


class PHStatus(str, Enum):
    """Why PH stopped."""

    #: the convergence metric fell below ``PHConfig.tolerance``
    CONVERGED = "converged"
    #: ``PHConfig.max_iterations`` iterations without convergence
    ITERATION_LIMIT = "iteration_limit"
    #: the ``on_iteration`` hook asked to stop
    STOPPED = "stopped"


@dataclass(frozen=True)
class PHConfig:
    """Settings of progressive hedging (executor kind and workers are the caller's).

    Attributes
    ----------
    rho : float, default 1.0
        Penalty ``ρ`` of the proximal term (objective units per (unit of x)²; paper C: 1).
        For an integer first stage the outcome depends on it: a ρ near the recourse change per
        unit of x tends to give better first stages, a larger one faster consensus (measured:
        ``benchmarks/results/DESIGN_MEASUREMENTS.md``).
    max_iterations : int, default 100
        Iterations after iteration 0 (the solve without PH terms).
    tolerance : float, default 1e-3
        Stop when ``Σ_ω π_ω ‖x_ω − x̄‖₁ / (1 + ‖x̄‖₁) < tolerance`` (dimensionless).
    tangent_points : int, default 9
        Tangent points per quadratic recourse variable in the subproblems (as in the EF).
    continuous_points : int, default 65
        Tangent points per side of ``(x_j − x̄_j)²`` for continuous first-stage variables in a
        mixed-integer first stage (module docstring; ignored otherwise).
    rho_growth : float, default 1.0
        Factor by which the PROXIMAL weight grows every iteration after the first PH iteration
        (``ρ_k = min(ρ · rho_growth^(k−1), rho_max)`` in ``ρ_k/2 ‖x − x̄‖²``, dimensionless,
        ≥ 1; 1 = constant ``ρ`` as in paper C). The multiplier step stays ``ρ``
        (``w ← w + ρ (x_ω − x̄)``), so ``w`` stays on the scale of the recourse prices while
        the growing proximal term pulls every scenario to the integer nearest ``x̄``: this
        forces consensus when an integer first stage makes PH cycle (module docstring,
        "Rho escalation"). An all-continuous first stage (exact Hessian) rebuilds its
        subproblems whenever the weight changes: HiGHS cannot change a Hessian in place.
    rho_max : float, default inf
        Cap of the escalated proximal weight.
    integer_recourse : bool, default False
        Accept integer recourse: every subproblem is then a MILP (one-scenario extensive form
        plus the linear/chord proximal term), checked against
        :data:`PROGRESSIVE_HEDGING_MILP` instead of the continuous-recourse requirements.
        Opt-in because PH's consensus is then a heuristic twice over (integer first stage and
        non-convex recourse); its final first stage is still evaluated exactly.
    consensus_blocks : tuple of str, optional
        First-stage blocks that PH drives to consensus (the nonanticipative decisions, e.g.
        taps and switch states); the other blocks are auxiliaries determined by them
        (counters, connectivity flows) and get no multiplier or proximal term: each scenario
        keeps its own copy, and the repair MILP completes them at the rounded consensus
        (zero weight in its L1 distance). ``None``: every first-stage column.
    lagrangian : bool, default False
        After every iteration ``k ≥ 1`` also solve the subproblems WITHOUT the proximal term
        at the new multipliers ``w^k`` and add their MIP dual bounds: the Lagrangian bound
        (:mod:`gridrecourse.methods.lagrangian`, eq. L1), valid at every iteration. Doubles
        the subproblem solves; :attr:`PHResult.lower_bound` is then the best of these and the
        wait-and-see bound, with its provenance.
    """

    rho: float = 1.0
    max_iterations: int = 100
    tolerance: float = 1e-3
    tangent_points: int = DEFAULT_TANGENT_POINTS
    continuous_points: int = DEFAULT_CONTINUOUS_POINTS
    rho_growth: float = 1.0
    rho_max: float = float("inf")
    integer_recourse: bool = False
    consensus_blocks: tuple[str, ...] | None = None
    lagrangian: bool = False

    def __post_init__(self) -> None:
        if self.consensus_blocks is not None:
            if isinstance(self.consensus_blocks, str) or not len(self.consensus_blocks):
                raise PHError("PHConfig.consensus_blocks must be a non-empty tuple of block names")
            object.__setattr__(self, "consensus_blocks", tuple(self.consensus_blocks))
        if not np.isfinite(self.rho) or self.rho <= 0:
            raise PHError(f"PHConfig.rho must be positive and finite, got {self.rho!r}")
        minimum = {"max_iterations": 0, "tangent_points": 1, "continuous_points": 2}
        for name, low in minimum.items():
            value = getattr(self, name)
            if int(value) != value or value < low:
                raise PHError(f"PHConfig.{name} must be an integer >= {low}, got {value!r}")
        if not np.isfinite(self.tolerance) or self.tolerance < 0:
            raise PHError(f"PHConfig.tolerance must be finite and >= 0, got {self.tolerance!r}")
        if not np.isfinite(self.rho_growth) or self.rho_growth < 1:
            raise PHError(f"PHConfig.rho_growth must be finite and >= 1, got {self.rho_growth!r}")
        if not self.rho_max >= self.rho:  # also rejects NaN
            raise PHError(f"PHConfig.rho_max must be >= rho, got {self.rho_max!r}")

    def rho_at(self, iteration: int) -> float:
        """``ρ`` of PH iteration ``iteration`` (0 for iteration 0, which has no PH terms)."""
        if iteration == 0:
            return 0.0
        return float(min(self.rho * self.rho_growth ** (iteration - 1), self.rho_max))


@dataclass(frozen=True, eq=False)
class PHIteration:
    """One PH iteration (all objective values in the problem's objective units).

    Attributes
    ----------
    iteration : int
        0 for the solve without PH terms, then 1, 2, …
    metric : float
        Convergence metric ``Σ π ‖x_ω − x̄‖₁ / (1 + ‖x̄‖₁)`` (dimensionless).
    deviation : float
        ``Σ_ω π_ω ‖x_ω − x̄‖₁`` (units of x).
    expected_objective : float
        ``Σ_ω π_ω`` of the subproblem objectives as minimized, PH terms included
        (``cᵀx_ω + Q_ω + w_ωᵀx_ω + ρ/2‖x_ω − x̄‖²`` with the ``w`` and ``x̄`` of the previous
        iteration). At iteration 0 this is the wait-and-see value.
    expected_cost : float
        ``Σ_ω π_ω (cᵀx_ω + Q_ω(x_ω))`` without PH terms.
    wall_seconds : float
        Wall time of the iteration (s), subproblem solves and updates.
    x_bar : ndarray, shape (n_x,)
        Consensus ``x̄`` after the iteration.
    rho : float
        Weight ``ρ_k`` of the iteration's proximal term (0 at iteration 0; constant ``ρ``
        unless ``PHConfig.rho_growth > 1``).
    lagrangian_bound : float
        Lagrangian bound (L1) at the multipliers after this iteration (``PHConfig.lagrangian``;
        NaN when not computed); at iteration 0 the wait-and-see bound.
    """

    iteration: int
    metric: float
    deviation: float
    expected_objective: float
    expected_cost: float
    wall_seconds: float
    x_bar: np.ndarray = field(repr=False)
    rho: float
    lagrangian_bound: float = float("nan")


@dataclass(frozen=True, eq=False)
class PHResult(Generic[D]):
    """Outcome of progressive hedging.

    Attributes
    ----------
    decision : D
        ``problem.decode(x)`` (PV siting:
        :class:`~gridrecourse.problems.siting.SitingDecision`).
    x : ndarray, shape (n_x,)
        Final first stage: ``x̄`` rounded and repaired (module docstring); feasible for the
        first-stage rows.
    objective : float
        EXACT expected objective ``cᵀx + Σ π Q(x, ξ_ω)`` of ``x`` over the PH scenarios
        (``inf`` if some recourse is infeasible).
    iterations : int
        Index of the last iteration (iteration 0 has no PH terms; ``iterations + 1`` rounds of
        subproblem solves).
    converged : bool
        The metric fell below the tolerance.
    history : list of PHIteration
    wall_seconds : float
        Whole run including worker start-up, repair and the final evaluation (s).
    status : PHStatus
    x_bar : ndarray
        Consensus of the last iteration (before rounding).
    repaired : bool
        Rounding ``x̄`` violated the first-stage rows and the repair MILP was solved.
    repair_distance : float
        ``‖x − x̄‖₁`` (units of x).
    lower_bound : float
        Wait-and-see bound ``Σ π_ω min_x (cᵀx + Q̃_ω(x))`` from iteration 0 (HiGHS dual bounds;
        ``Q̃`` with tangent planes for quadratic recourse, which only lowers it): a valid lower
        bound on the optimum.
    evaluation : OutOfSampleResult
        The exact per-scenario evaluation behind ``objective``.
    n_scenarios : int
    subproblem_seconds : float
        Sum of the HiGHS times of all subproblem solves (s).
    bound_provenance : BoundProvenance, optional
        Where :attr:`lower_bound` comes from (wait-and-see or the Lagrangian bound of an
        iteration, with the subproblems' largest MIP gap).
    resumed_at : int
        The iteration the run resumed at from a checkpoint (0: not resumed).
    evaluation_reused_scenarios : int
        Scenario solves of the final evaluation taken from ``evaluation_checkpoint``.
    """

    decision: D
    x: np.ndarray
    objective: float
    iterations: int
    converged: bool
    history: list[PHIteration]
    wall_seconds: float
    status: PHStatus
    x_bar: np.ndarray
    repaired: bool
    repair_distance: float
    lower_bound: float
    evaluation: OutOfSampleResult
    n_scenarios: int
    subproblem_seconds: float
    bound_provenance: BoundProvenance | None = None
    resumed_at: int = 0
    evaluation_reused_scenarios: int = 0


@dataclass(frozen=True, eq=False)
class PHState:
    """Checkpoint of progressive hedging before iteration ``next_iteration``
    (``solve_progressive_hedging(checkpoint=...)``; :mod:`gridrecourse.checkpointing`).

    Attributes
    ----------
    config : PHConfig
        The run's settings (a resume with other settings is refused).
    scenarios : numpy.ndarray of int
        The scenario indices of the run.
    next_iteration : int
        The first iteration still to run.
    finished : bool
        The loop has ended (``status`` is final); only the repair and evaluation remain.
    status : PHStatus
    w : numpy.ndarray, shape (S, n_x)
        Multipliers.
    x_bar : numpy.ndarray, shape (n_x,)
        Consensus of the last iteration.
    history : tuple of PHIteration
    lower_bound : float
    provenance : BoundProvenance or None
    subproblem_seconds : float
    """

    config: PHConfig
    scenarios: np.ndarray
    next_iteration: int
    finished: bool
    status: PHStatus
    w: np.ndarray
    x_bar: np.ndarray
    history: tuple[PHIteration, ...]
    lower_bound: float
    provenance: BoundProvenance | None
    subproblem_seconds: float


# ------------------------------------------------------------------------------------------
# The proximal term without a Hessian
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class ProximalTerm:
    """MILP-compatible representation of ``(x_j − x̄_j)²`` per first-stage column (module doc).

    Per column exactly one of:

    * ``linear[j]`` (integers with ``u − l ≤ 1``): ``x_j² = a_j x_j + b_j`` on the integers,
      so ``(x_j − x̄_j)² = (a_j − 2 x̄_j) x_j + b_j + x̄_j²`` — exact;
    * an epigraph variable ``t_e`` (``epigraph[j] = e``) with rows
      ``t_e ≥ slope_r · arg_e + intercept_r`` for the rows ``r`` with ``owner_r = e``:

      - integers with ``u − l ≥ 2``: ``arg = x_j`` and the chords of ``x²`` between consecutive
        integers; ``(x_j − x̄_j)² = t_e − 2 x̄_j x_j + x̄_j²`` exactly at every integer point;
      - continuous columns of a mixed-integer first stage (``shifted[e]``):
        ``arg = d_j = x_j − x̄_j`` (a column fixed by the row ``d_j − x_j = −x̄_j``) and tangents
        of ``d²`` at ``0, ±R r^{-k}`` (``R = u − l``, a geometric grid that is finest at the
        consensus), so ``(x_j − x̄_j)² ≈ t_e``;
    * ``hessian[j]`` (an all-continuous first stage): the exact ``x_j²`` (a QP).

    Accuracy of the tangents: ``t ≥ (1 − relative_error) d² − max_error`` (summed over
    columns for ``max_error``); both are 0 without shifted columns.

    Attributes
    ----------
    linear : ndarray of bool, shape (n,)
    a, b : ndarray, shape (n,)
        Coefficients of the linear columns (0 elsewhere).
    epigraph : ndarray of int, shape (n,)
        Epigraph variable of each column, −1 when none.
    epigraph_columns : ndarray of int, shape (m,)
        Column of each epigraph variable.
    shifted : ndarray of bool, shape (m,)
        The epigraph's argument is ``x_j − x̄_j`` (continuous) rather than ``x_j`` (integer).
    shift_range : ndarray, shape (m,)
        ``R = u − l`` of each epigraph's column (bounds of ``d``).
    owner, slope, intercept : ndarray, shape (R,)
        Rows ``t_owner ≥ slope · arg_owner + intercept``.
    hessian : ndarray of bool, shape (n,)
    relative_error, max_error : float
        Underestimation bounds of the tangents (dimensionless; units of x squared).
    """

    linear: np.ndarray
    a: np.ndarray
    b: np.ndarray
    epigraph: np.ndarray
    epigraph_columns: np.ndarray
    shifted: np.ndarray
    shift_range: np.ndarray
    owner: np.ndarray
    slope: np.ndarray
    intercept: np.ndarray
    hessian: np.ndarray
    relative_error: float
    max_error: float
    active: np.ndarray | None = None

    @classmethod
    def from_first_stage(
        cls,
        fs: FirstStageSpec,
        continuous_points: int = DEFAULT_CONTINUOUS_POINTS,
        active: np.ndarray | None = None,
    ) -> ProximalTerm:
        """Build the representation from the first-stage bounds and integrality (vectorized).

        Raises
        ------
        PHError
            An integer column with infinite bounds or a range above :data:`MAX_INTEGER_RANGE`,
            or a continuous column with infinite bounds in a mixed-integer first stage.
        """
        return cls.from_bounds(fs.lb, fs.ub, fs.integer, continuous_points, active)

    @classmethod
    def from_bounds(
        cls,
        lb: np.ndarray,
        ub: np.ndarray,
        integer: np.ndarray,
        continuous_points: int = DEFAULT_CONTINUOUS_POINTS,
        active: np.ndarray | None = None,
    ) -> ProximalTerm:
        """As :meth:`from_first_stage`, from bound vectors and an integrality mask.

        ``active`` (bool per column, default all) marks the consensus columns; the others get
        no proximal term (``PHConfig.consensus_blocks``).

        ``continuous_points`` is the number of tangent points per side (``d > 0`` and
        ``d < 0``) of a shifted continuous column, geometric from ``R`` down to
        ``R ·`` :data:`CONTINUOUS_FLOOR`.
        """
        lb, ub = np.asarray(lb, dtype=float), np.asarray(ub, dtype=float)
        integer = np.asarray(integer, dtype=bool)
        n = len(lb)
        on = np.ones(n, dtype=bool) if active is None else np.asarray(active, dtype=bool)
        lb, ub = np.where(on, lb, 0.0), np.where(on, ub, 0.0)  # inactive: no term, no check
        lo = np.where(integer, np.ceil(lb - _INTEGER_TOLERANCE), lb)
        hi = np.where(integer, np.floor(ub + _INTEGER_TOLERANCE), ub)
        bad = integer & ~(np.isfinite(lo) & np.isfinite(hi))
        if bad.any():
            raise PHError(
                f"first-stage integer column {int(np.argmax(bad))} has an infinite bound; the "
                "exact proximal term enumerates its integer range"
            )
        width = np.where(integer, hi - lo, 0.0)
        if np.any(width > MAX_INTEGER_RANGE):
            j = int(np.argmax(width > MAX_INTEGER_RANGE))
            raise PHError(
                f"first-stage integer column {j} spans {width[j]:.0f} values (more than "
                f"{MAX_INTEGER_RANGE}); PH adds one proximal row per value"
            )
        linear = integer & (width <= 1) & on
        a = np.where(linear, 2.0 * lo + 1.0, 0.0)
        b = np.where(linear, -lo * (lo + 1.0), 0.0)
        hessian = np.zeros(n, dtype=bool)
        # chords k = l..u-1 of each wide integer column: t ≥ (2k + 1) x − k(k + 1)
        wide = np.flatnonzero(integer & (width >= 2) & on)
        n_chords = width[wide].astype(int)
        owner_int = np.repeat(np.arange(len(wide)), n_chords)
        first = np.repeat(np.cumsum(n_chords) - n_chords, n_chords)
        k = lo[wide][owner_int] + (np.arange(len(owner_int)) - first)
        slope_int, intercept_int = 2.0 * k + 1.0, -k * (k + 1.0)
        cont = np.flatnonzero(~integer & on)
        relative_error = max_error = 0.0
        if cont.size and not integer[on].any():
            hessian[cont] = True
            cont = cont[:0]
        if cont.size:
            span = (hi - lo)[cont]
            if not np.all(np.isfinite(span)):
                raise PHError(
                    "continuous first-stage columns of a mixed-integer first stage need finite "
                    "bounds for the tangent planes of the proximal term"
                )
            kc = int(continuous_points)
            ratio = CONTINUOUS_FLOOR ** (-1.0 / (kc - 1))
            side = ratio ** -np.arange(kc)  # 1 … CONTINUOUS_FLOOR
            unit = np.concatenate([[0.0], side, -side])
            points = (span[:, None] * unit[None, :]).ravel()
            owner_c = np.repeat(np.arange(len(cont)), len(unit))
            _, a_d, rhs = tangent_rows(
                np.ones(len(cont)), np.arange(len(cont)), len(cont), points, owner_c
            )
            slope_c = -np.asarray(a_d.sum(axis=1)).ravel()  # 2 p
            intercept_c = rhs  # −p²
            relative_error = float(((ratio - 1.0) / (ratio + 1.0)) ** 2)
            max_error = float(np.sum((span * CONTINUOUS_FLOOR) ** 2 / 4.0))
        else:
            owner_c = np.zeros(0, dtype=int)
            slope_c = intercept_c = np.zeros(0)
        columns = np.concatenate([wide, cont]).astype(int)
        epigraph = np.full(n, -1, dtype=int)
        epigraph[columns] = np.arange(len(columns))
        return cls(
            linear=linear,
            a=a,
            b=b,
            epigraph=epigraph,
            epigraph_columns=columns,
            shifted=np.r_[np.zeros(len(wide), dtype=bool), np.ones(len(cont), dtype=bool)],
            shift_range=(hi - lo)[columns] if columns.size else np.zeros(0),
            owner=np.concatenate([owner_int, owner_c + len(wide)]).astype(int),
            slope=np.concatenate([slope_int, slope_c]),
            intercept=np.concatenate([intercept_int, intercept_c]),
            hessian=hessian,
            relative_error=relative_error,
            max_error=max_error,
            active=None if active is None else on,
        )

    @property
    def n_rows(self) -> int:
        """Number of proximal rows."""
        return len(self.owner)

    @property
    def n_shifted(self) -> int:
        """Number of shifted (continuous) epigraph columns."""
        return int(self.shifted.sum())

    def linear_cost(self, x_bar: np.ndarray, rho: float) -> tuple[np.ndarray, float]:
        """Cost on ``x`` and constant of ``ρ/2 Σ (x − x̄)²`` outside the epigraph variables.

        The epigraph variables cost ``ρ/2`` each; the rest is ``ρ/2 (a − 2 x̄) x`` on
        linear, integer-epigraph and Hessian columns plus the constant ``ρ/2 Σ (b + x̄²)`` over
        them (shifted columns carry ``x̄`` in the bounds of the rows ``d − x = −x̄``).
        """
        x_bar = np.asarray(x_bar, dtype=float)
        plain = np.ones(len(self.linear), dtype=bool)
        if self.active is not None:
            plain &= self.active
        plain[self.epigraph_columns[self.shifted]] = False
        cost = 0.5 * rho * np.where(plain, self.a - 2.0 * x_bar, 0.0)
        constant = 0.5 * rho * float(np.sum(np.where(plain, self.b + x_bar**2, 0.0)))
        return cost, constant

    def value(self, x: np.ndarray, x_bar: np.ndarray) -> np.ndarray:
        """Represented ``(x_j − x̄_j)²`` per column at ``x`` (what the model charges / (ρ/2))."""
        x, x_bar = np.asarray(x, dtype=float), np.asarray(x_bar, dtype=float)
        out = np.where(self.linear, self.a * x + self.b, x * x) - 2.0 * x_bar * x + x_bar**2
        if self.active is not None:
            out = np.where(self.active, out, 0.0)
        if self.n_rows:
            cols = self.epigraph_columns
            arg = np.where(self.shifted, x[cols] - x_bar[cols], x[cols])
            t = np.full(len(cols), -np.inf)
            np.maximum.at(t, self.owner, self.slope * arg[self.owner] + self.intercept)
            out[cols] = np.where(
                self.shifted, t, t - 2.0 * x_bar[cols] * x[cols] + x_bar[cols] ** 2
            )
        return out


def convergence_metric(x: np.ndarray, probability: np.ndarray) -> tuple[np.ndarray, float, float]:
    """``(x̄, Σ π ‖x_ω − x̄‖₁, Σ π ‖x_ω − x̄‖₁ / (1 + ‖x̄‖₁))`` of scenario solutions ``x (S, n)``."""
    x = np.asarray(x, dtype=float)
    p = np.asarray(probability, dtype=float)
    x_bar = p @ x
    deviation = float(p @ np.abs(x - x_bar).sum(axis=1))
    return x_bar, deviation, deviation / (1.0 + float(np.abs(x_bar).sum()))


# ------------------------------------------------------------------------------------------
# Scenario subproblems (worker state)
# ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Task:
    scenario: int
    w: np.ndarray
    x_bar: np.ndarray
    rho: float  # 0 in iteration 0 (no PH terms)


@dataclass(frozen=True, eq=False)
class _TaskResult:
    scenario: int
    x: np.ndarray
    objective: float  # as minimized, PH terms and constants included
    cost: float  # cᵀx + Q̃_ω(x)
    bound: float  # HiGHS dual bound of the objective (iteration 0: of the cost)
    solve_seconds: float


class _Subproblem:
    """The one-scenario extensive form plus PH terms, built once and re-solved."""

    def __init__(
        self,
        problem: TwoStageProblem,
        scenario: int,
        prox: ProximalTerm,
        tangent_points: int,
        start: np.ndarray | None = None,
    ):
        self.problem, self.scenario, self.prox = problem, scenario, prox
        self.tangent_points = tangent_points
        self.start = start
        self.fs = problem.first_stage
        self.offset = problem.second_stage.objective_offset
        self.cost = self.fs.cost
        self._build(hessian_rho=0.0)

    def _build(self, hessian_rho: float) -> None:
        """Build the model; ``hessian_rho > 0`` adds the exact ``ρ/2 x²`` (continuous x only)."""
        ef = build_extensive_form(
            self.problem, scenarios=[self.scenario], tangent_points=self.tangent_points
        )
        model = ef.model
        self.model: LinearModel = model
        self.blocks: list[tuple[VariableBlock, slice]] = [
            (ef.first_stage[v.name], self.fs.slice(v.name)) for v in self.fs.variables
        ]
        if self.start is not None:  # a partial MIP start; HiGHS completes the recourse
            model.set_start({block: self.start[sl] for block, sl in self.blocks})
        self.epigraph: VariableBlock | None = None
        self.shift_rows: ConstraintBlock | None = None
        prox = self.prox
        if prox.n_rows:
            m, n = len(prox.epigraph_columns), self.fs.size
            self.epigraph = model.add_variables(
                "ph-proximal", m, lb=np.where(prox.shifted, 0.0, -np.inf), cost=0.0
            )
            shifted = np.flatnonzero(prox.shifted)
            position = np.full(m, -1)
            position[shifted] = np.arange(len(shifted))
            r = np.arange(prox.n_rows)
            on_d = prox.shifted[prox.owner]
            a_t = sp.csr_matrix((np.ones(prox.n_rows), (r, prox.owner)), shape=(prox.n_rows, m))
            terms: list[tuple[VariableBlock, sp.spmatrix]] = [(self.epigraph, a_t)]
            a_x = sp.csr_matrix(
                (-prox.slope[~on_d], (r[~on_d], prox.epigraph_columns[prox.owner[~on_d]])),
                shape=(prox.n_rows, n),
            )
            for block, sl in self.blocks:
                if a_x[:, sl].nnz:
                    terms.append((block, a_x[:, sl]))
            if shifted.size:  # d = x − x̄ for the continuous columns of a mixed first stage
                span = prox.shift_range[shifted]
                self.shift = model.add_variables("ph-shift", len(shifted), lb=-span, ub=span)
                a_d = sp.csr_matrix(
                    (-prox.slope[on_d], (r[on_d], position[prox.owner[on_d]])),
                    shape=(prox.n_rows, len(shifted)),
                )
                terms.append((self.shift, a_d))
                pick = sp.csr_matrix(
                    (
                        -np.ones(len(shifted)),
                        (np.arange(len(shifted)), prox.epigraph_columns[shifted]),
                    ),
                    shape=(len(shifted), n),
                )
                shift_terms = [(self.shift, sp.identity(len(shifted), format="csr"))]
                shift_terms += [(blk, pick[:, sl]) for blk, sl in self.blocks if pick[:, sl].nnz]
                self.shift_rows = model.add_constraints("ph-shift_rows", shift_terms, lb=0, ub=0)
                self.shifted_columns = prox.epigraph_columns[shifted]
            model.add_constraints("ph-proximal_rows", terms, lb=prox.intercept)
        if hessian_rho > 0:
            for block, sl in self.blocks:
                model.add_quadratic_cost(block, 0.5 * hessian_rho * prox.hessian[sl])
        self.hessian_rho = hessian_rho

    def solve(self, task: _Task, options: SolverOptions) -> _TaskResult:
        rho, prox = float(task.rho), self.prox
        wanted = rho if prox.hessian.any() else 0.0
        if wanted != self.hessian_rho:  # HiGHS cannot change a Hessian in place
            self._build(hessian_rho=wanted)
        prox_cost, constant = prox.linear_cost(task.x_bar, rho)
        x_cost = self.cost + task.w + prox_cost
        for block, sl in self.blocks:
            self.model.set_cost(block, x_cost[sl])
        if self.epigraph is not None:
            self.model.set_cost(self.epigraph, 0.5 * rho)
        if self.shift_rows is not None:
            target = -task.x_bar[self.shifted_columns]
            self.model.set_row_bounds(self.shift_rows, target, target)
        sol = self.model.solve(options)
        x = np.concatenate([sol.value(block) for block, _ in self.blocks])
        integer = self.fs.integer
        x[integer] = np.round(x[integer])
        constant += self.offset
        objective = float(sol.objective) + constant
        ph_terms = float(task.w @ x) + 0.5 * rho * float(prox.value(x, task.x_bar).sum())
        return _TaskResult(
            scenario=task.scenario,
            x=x,
            objective=objective,
            cost=objective - ph_terms,
            bound=float(sol.dual_bound) + constant,
            solve_seconds=sol.solve_seconds,
        )


class _SubproblemBank:
    """Per-worker state: the scenario subproblems this worker has seen, built on first use."""

    def __init__(
        self,
        problem: TwoStageProblem,
        tangent_points: int,
        continuous_points: int,
        active: np.ndarray | None = None,
        start: np.ndarray | None = None,
    ):
        self.problem = problem
        self.tangent_points = tangent_points
        self.prox = ProximalTerm.from_first_stage(problem.first_stage, continuous_points, active)
        self.start = start
        self.models: dict[int, _Subproblem] = {}

    def get(self, scenario: int) -> _Subproblem:
        model = self.models.get(scenario)
        if model is None:
            model = _Subproblem(self.problem, scenario, self.prox, self.tangent_points, self.start)
            self.models[scenario] = model
        return model


def _build_bank(
    problem: TwoStageProblem,
    tangent_points: int,
    continuous_points: int,
    active: np.ndarray | None = None,
    start: np.ndarray | None = None,
    generation: int = 0,
) -> _SubproblemBank:
    """Per-worker subproblem bank; a new ``generation`` (a checkpoint) gives new models."""
    return _SubproblemBank(problem, tangent_points, continuous_points, active, start)


def _consensus_mask(fs: FirstStageSpec, blocks: Sequence[str] | None) -> np.ndarray | None:
    """Columns of ``blocks`` (``PHConfig.consensus_blocks``) as a mask; ``None``: all."""
    if blocks is None:
        return None
    names = [v.name for v in fs.variables]
    unknown = [b for b in blocks if b not in names]
    if unknown:
        raise PHError(f"PHConfig.consensus_blocks: unknown first-stage block(s) {unknown}")
    mask = np.zeros(fs.size, dtype=bool)
    for b in blocks:
        mask[fs.slice(b)] = True
    return mask


def _solve_task(bank: _SubproblemBank, task: _Task, *, options: SolverOptions) -> _TaskResult:
    sub = bank.get(task.scenario)
    try:
        return sub.solve(task, options)
    except InfeasibleModelError as exc:
        raise InfeasibleModelError(
            f"PH subproblem of scenario {task.scenario} is infeasible (no first stage has a "
            f"feasible recourse in this scenario): {exc}"
        ) from exc


def _max_gap(results: Sequence[_TaskResult]) -> float:
    """Largest relative MIP gap ``|objective − bound| / |objective|`` of subproblem results."""
    obj = np.array([r.objective for r in results])
    bound = np.array([r.bound for r in results])
    return float(np.max(np.abs(obj - bound) / np.maximum(np.abs(obj), 1e-12), initial=0.0))


def _quiet(done: int, total: int) -> None:
    """Progress sink: keeps the executor's labelled errors without a stderr progress line."""


# ------------------------------------------------------------------------------------------
# Rounding and repair
# ------------------------------------------------------------------------------------------
def repair_first_stage(
    fs: FirstStageSpec,
    x_target: np.ndarray,
    options: SolverOptions | None = None,
    *,
    weights: np.ndarray | None = None,
) -> tuple[np.ndarray, bool]:
    """Nearest feasible first stage to ``x_target`` in the L1 norm.

    Rounds the integer columns (:func:`numpy.rint`, ties to even) and clips to the bounds; if
    that point violates the first-stage rows, solves the MILP
    ``min Σ_j d_j  s.t.  d ≥ x − x_target, d ≥ x_target − x, first-stage rows, bounds,
    integrality``.

    Parameters
    ----------
    fs : FirstStageSpec
    x_target : ndarray, shape (n_x,)
        Typically the PH consensus ``x̄`` (fractional).
    options : SolverOptions, optional
    weights : ndarray, shape (n_x,), optional
        Weight of each column in the L1 distance (default 1; 0 leaves a column free, e.g. the
        auxiliaries outside ``PHConfig.consensus_blocks``).

    Returns
    -------
    x : ndarray, shape (n_x,)
        Feasible first stage (integer columns exactly integral).
    repaired : bool
        True when the MILP was needed.

    Raises
    ------
    InfeasibleModelError
        The first-stage constraints admit no point.
    """
    target = np.asarray(x_target, dtype=float)
    integer = fs.integer
    x = np.clip(np.where(integer, np.rint(target), target), fs.lb, fs.ub)
    if fs.is_feasible(x):
        return x, False
    model = LinearModel("ph-repair")
    blocks = {
        v.name: model.add_variables(v.name, v.size, lb=v.lb, ub=v.ub, integer=v.integer)
        for v in fs.variables
    }
    for c in fs.constraints:
        model.add_constraints(c.name, [(blocks[n], m) for n, m in c.terms], lb=c.lb, ub=c.ub)
    n = fs.size
    d = model.add_variables(
        "repair-distance", n, lb=0.0, cost=1.0 if weights is None else np.asarray(weights, float)
    )
    eye = sp.identity(n, format="csr")
    for name, sign in (("repair-above", 1.0), ("repair-below", -1.0)):
        # d − sign·x ≥ −sign·target  ⇔  d ≥ sign (x − target)
        terms: list[tuple[VariableBlock, sp.spmatrix]] = [(d, eye)]
        terms += [(blocks[v.name], -sign * eye[:, fs.slice(v.name)]) for v in fs.variables]
        model.add_constraints(name, terms, lb=-sign * target)
    sol = model.solve(options or SolverOptions(mip_gap=1e-9))
    x = np.concatenate([sol.value(blocks[v.name]) for v in fs.variables])
    x[integer] = np.round(x[integer])
    return x, True


# ------------------------------------------------------------------------------------------
# The PH loop
# ------------------------------------------------------------------------------------------
def solve_progressive_hedging(
    problem: TwoStageProblem[D],
    config: PHConfig = PHConfig(),
    *,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    progress: ProgressHook | None = None,
    subproblem_progress: Callable[[int, int, int], None] | None = None,
    on_iteration: Callable[[PHIteration], bool | None] | None = None,
    scenarios: Sequence[int] | np.ndarray | None = None,
    start: np.ndarray | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_every: int = 10,
    evaluation_checkpoint: Checkpoint | None = None,
) -> PHResult[D]:
    """Run progressive hedging, round and repair the consensus, and evaluate it exactly.

    Parameters
    ----------
    problem : TwoStageProblem
    config : PHConfig
        ``ρ``, iteration limit, tolerance, tangent points.
    executor : Executor, optional
        Where the scenario subproblems run (default in-process). Each worker builds a scenario's
        subproblem once and re-solves it in later iterations (only costs change). The executor
        is not closed; the final evaluation runs on it too.
    options : SolverOptions, optional
        Subproblem and evaluation solver options (default ``mip_gap = 1e-6``).
    progress : callable, optional
        ``progress(iteration, metric)`` after every iteration.
    subproblem_progress : callable, optional
        ``subproblem_progress(iteration, done, total)`` as an iteration's scenario subproblems
        finish (one iteration of MILP subproblems can take an hour).
    on_iteration : callable, optional
        ``on_iteration(record)`` after every iteration; returning True stops PH
        (``status = PHStatus.STOPPED``).
    scenarios : sequence of int, optional
        Scenario indices (default all); probabilities renormalized.
    start : ndarray, shape (n_x,), optional
        A first stage given to every subproblem as a partial MIP start when it is built
        (HiGHS completes the recourse; later iterations start from HiGHS's own state). For
        MILP subproblems whose incumbent HiGHS does not find on its own.
    checkpoint : Checkpoint, optional
        Where a :class:`PHState` is saved before iterations ``k·checkpoint_every`` and when
        the loop ends; a state found there is resumed (``PHResult.resumed_at``). At every
        save the workers' subproblem models are rebuilt, so a resumed run equals an
        uninterrupted one (:mod:`gridrecourse.checkpointing`).
    checkpoint_every : int, default 10
        Iterations between checkpoints (>= 1).
    evaluation_checkpoint : Checkpoint, optional
        Where the final exact evaluation saves its finished blocks
        (:func:`~gridrecourse.evaluation.resumable.evaluate_first_stage_resumable`; on one
        worker every block starts cold, in an uninterrupted run too, so a resumed run equals
        it); a resumed run solves only the missing ones
        (``PHResult.evaluation_reused_scenarios``).

    Returns
    -------
    PHResult

    Raises
    ------
    PHError
        Invalid scenario selection or a first stage the proximal term cannot represent; a
        checkpoint of other settings; ``checkpoint_every < 1``.
    gridrecourse.problems.capabilities.UnsupportedProblemError
        Integer recourse (PH's subproblems and convergence assume continuous recourse).
    gridrecourse.execution.TaskFailedError
        A subproblem failed (e.g. infeasible in some scenario: the cause is an
        :class:`~gridrecourse.errors.InfeasibleModelError`).
    """
    t0 = time.perf_counter()
    n_all = problem.n_scenarios
    idx = np.arange(n_all) if scenarios is None else np.asarray(scenarios, dtype=int).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_all or len(set(idx)) != len(idx):
        raise PHError(f"scenarios must be distinct indices within 0..{n_all - 1}")
    idx, prob = scenario_selection(problem, idx, error=PHError)
    check_requirements(
        PROGRESSIVE_HEDGING_MILP if config.integer_recourse else PROGRESSIVE_HEDGING, problem
    )
    active = _consensus_mask(problem.first_stage, config.consensus_blocks)
    ProximalTerm.from_first_stage(problem.first_stage, config.continuous_points, active)
    options = options or _DEFAULT_OPTIONS
    n_x = problem.first_stage.size
    own = executor is None
    ex: Executor = InProcessExecutor() if own else executor
    x0 = None if start is None else np.asarray(start, dtype=float).reshape(-1)
    if x0 is not None and x0.size != problem.first_stage.size:
        raise PHError(f"start must have the first stage's {problem.first_stage.size} entries")
    factory = functools.partial(
        _build_bank,
        problem,
        int(config.tangent_points),
        int(config.continuous_points),
        active,
        x0,
    )
    solve = functools.partial(_solve_task, options=options)
    if int(checkpoint_every) != checkpoint_every or checkpoint_every < 1:
        raise PHError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every!r}")
    w = np.zeros((len(idx), n_x))
    x_bar = np.zeros(n_x)
    history: list[PHIteration] = []
    status = PHStatus.ITERATION_LIMIT
    lower_bound = float("nan")
    provenance: BoundProvenance | None = None
    subproblem_seconds = 0.0
    first_k, finished = 0, False
    saved = _resumable_state(checkpoint, config, idx, n_x)
    if saved is not None:
        w, x_bar = saved.w.copy(), saved.x_bar.copy()
        history, status = list(saved.history), saved.status
        lower_bound, provenance = saved.lower_bound, saved.provenance
        subproblem_seconds = saved.subproblem_seconds
        first_k, finished = saved.next_iteration, saved.finished
        factory = functools.partial(factory, generation=first_k)

    def save_state(next_iteration: int, done: bool) -> None:
        assert checkpoint is not None
        checkpoint.save(
            PHState(
                config=config,
                scenarios=idx,
                next_iteration=next_iteration,
                finished=done,
                status=status,
                w=w,
                x_bar=x_bar,
                history=tuple(history),
                lower_bound=lower_bound,
                provenance=provenance,
                subproblem_seconds=subproblem_seconds,
            )
        )

    try:
        for k in range(first_k, -1 if finished else int(config.max_iterations) + 1):
            if checkpoint is not None and k > first_k and k % checkpoint_every == 0:
                save_state(k, done=False)
                # new subproblem models on every worker, as a resumed run builds them
                factory = functools.partial(factory, generation=k)
            t_iter = time.perf_counter()
            rho = config.rho_at(k)
            tasks = [_Task(int(s), w[i], x_bar, rho) for i, s in enumerate(idx)]
            results: list[_TaskResult] = ex.map(
                solve, tasks, state_factory=factory, desc=f"PH iteration {k}",
                progress=_quiet if subproblem_progress is None
                else functools.partial(subproblem_progress, k),
            )  # fmt: skip
            xs = np.vstack([r.x for r in results])
            subproblem_seconds += float(sum(r.solve_seconds for r in results))
            objective = float(prob @ np.array([r.objective for r in results]))
            cost = float(prob @ np.array([r.cost for r in results]))
            lagrangian = float("nan")
            if k == 0:
                lower_bound = float(prob @ np.array([r.bound for r in results]))
                lagrangian = lower_bound
                provenance = BoundProvenance(
                    method=BoundMethod.WAIT_AND_SEE,
                    value=lower_bound,
                    n_subproblems=len(idx),
                    max_subproblem_gap=_max_gap(results),
                    seconds=time.perf_counter() - t_iter,
                )
            if active is None:
                x_bar, deviation, metric = convergence_metric(xs, prob)
                w = w + float(config.rho) * (xs - x_bar)
            else:  # consensus on the decision columns; auxiliaries averaged for the repair
                x_bar = prob @ xs
                _, deviation, metric = convergence_metric(xs[:, active], prob)
                w = w + float(config.rho) * (xs - x_bar) * active
            if config.lagrangian and k >= 1:
                lb = lagrangian_bound(
                    problem,
                    w,
                    scenarios=idx,
                    executor=ex,
                    options=options,
                    tangent_points=int(config.tangent_points),
                    continuous_points=int(config.continuous_points),
                    active=active,
                    origin="ph",
                    iteration=k,
                    generation=factory.keywords.get("generation", 0),
                )
                lagrangian = lb.value
                if not lower_bound >= lagrangian:  # NaN-safe: keep the best valid bound
                    lower_bound, provenance = lagrangian, lb.provenance
            record = PHIteration(
                iteration=k,
                metric=metric,
                deviation=deviation,
                expected_objective=objective,
                expected_cost=cost,
                wall_seconds=time.perf_counter() - t_iter,
                x_bar=x_bar.copy(),
                rho=rho,
                lagrangian_bound=lagrangian,
            )
            history.append(record)
            if progress is not None:
                progress(k, metric)
            stop = bool(on_iteration(record)) if on_iteration is not None else False
            if metric < config.tolerance:
                status = PHStatus.CONVERGED
                break
            if stop:
                status = PHStatus.STOPPED
                break
        if checkpoint is not None and not finished:
            save_state(history[-1].iteration + 1, done=True)
        x, repaired = repair_first_stage(
            problem.first_stage,
            x_bar,
            weights=None if active is None else active.astype(float),
        )
        reused_scenarios = 0
        if evaluation_checkpoint is None:
            evaluation = evaluate_first_stage(
                problem, x, scenarios=idx, executor=ex, options=options, desc=None
            )
        else:
            run = evaluate_first_stage_resumable(
                problem,
                x,
                checkpoint=evaluation_checkpoint,
                scenarios=idx,
                executor=ex,
                options=options,
            )
            evaluation, reused_scenarios = run.result, run.reused_scenarios
    finally:
        if own:
            ex.close()
    return PHResult(
        decision=problem.decode(x),
        x=x,
        objective=evaluation.expected_objective,
        iterations=history[-1].iteration,
        converged=status is PHStatus.CONVERGED,
        history=history,
        wall_seconds=time.perf_counter() - t0,
        status=status,
        x_bar=x_bar,
        repaired=repaired,
        repair_distance=float(np.abs(x - x_bar).sum()),
        lower_bound=lower_bound,
        evaluation=evaluation,
        n_scenarios=len(idx),
        subproblem_seconds=subproblem_seconds,
        bound_provenance=provenance,
        resumed_at=first_k,
        evaluation_reused_scenarios=reused_scenarios,
    )


def _resumable_state(
    checkpoint: Checkpoint | None, config: PHConfig, scenarios: np.ndarray, n_x: int
) -> PHState | None:
    """The checkpoint's :class:`PHState`, checked against this run (None: start anew)."""
    state = None if checkpoint is None else checkpoint.load()
    if state is None:
        return None
    if not isinstance(state, PHState):
        raise PHError(f"checkpoint holds a {type(state).__name__}, not a PHState")
    if state.config != config:
        raise PHError(f"checkpoint written with other settings ({state.config}); now {config}")
    if not np.array_equal(state.scenarios, scenarios) or state.x_bar.shape != (n_x,):
        raise PHError("checkpoint written for other scenarios or another first stage")
    return state


# ------------------------------------------------------------------------------------------
# Lagrangian bounds (documented in gridrecourse.methods.lagrangian, eq. L1)
# ------------------------------------------------------------------------------------------
#: Default options of the Lagrangian subproblems (the bound uses their dual bound either way).
_LAGRANGIAN_OPTIONS = SolverOptions(mip_gap=1e-6)


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
    problem: TwoStageProblem,
    scenarios: Sequence[int] | np.ndarray | None,
    scenario_weights: Sequence[float] | np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct scenarios, their summed renormalized weights, and the draw → distinct map."""
    idx, p = scenario_selection(problem, scenarios, scenario_weights, error=LagrangianError)
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
    scenario_weights: Sequence[float] | np.ndarray | None = None,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    tangent_points: int = DEFAULT_TANGENT_POINTS,
    continuous_points: int = DEFAULT_CONTINUOUS_POINTS,
    active: np.ndarray | None = None,
    origin: str = "none",
    iteration: int = 0,
    generation: int = 0,
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
    scenario_weights : sequence of float, optional
        One weight per index of ``scenarios`` instead of their probabilities (a stratified
        batch's design weights); renormalized.
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
    generation : int
        PH's model generation (its last checkpoint): a new one builds new models.

    Returns
    -------
    LagrangianBound
    """
    t0 = time.perf_counter()
    unique, weights, inverse = _unique_weights(problem, scenarios, scenario_weights)
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
    if generation:
        factory = functools.partial(factory, generation=int(generation))
    x_zero = np.zeros(n_x)
    tasks = [_Task(int(s), w[i], x_zero, 0.0) for i, s in enumerate(unique)]
    try:
        terms: list[_Term] = ex.map(
            functools.partial(_lagrangian_task, options=options or _LAGRANGIAN_OPTIONS),
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
