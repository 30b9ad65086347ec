"""SPAR-OPF driver: learn a separable value function, site PV, bound the optimum (paper C).

Paper C ("SPAR-OPF", seed 003; METHODS.md §3) solves the two-stage PV siting problem by
learning a separable piecewise-linear convex approximation ``V(n) ≈ c + Σ_i v_i(n_i)`` of the
expected recourse from one sampled scenario per iteration (Algorithms 1 and 3; mini-batches
of ``scenarios_per_iteration`` scenarios are solved in parallel on the executor)::

    slopes u ← 0
    for n = 1 .. n_max:
        n^n ← argmin_{n ∈ D1 ∩ cuts} Σ_i v_i(n_i)      first stage (lambda or epigraph)
              (a random feasible first stage during the first k iterations: exploration)
        ω^n ~ π                                          sample a scenario (seeded)
        solve Q(n^n, ω^n)                                second stage (built once, re-solved)
        infeasible → add the Farkas cut α n ≥ β (18) to the first stage; next iteration
        feasible   → ĝ_i = dual(44) × g × PV_mult        slope estimate at n_i^n, ALL sites
                     u_i(n_i^n) ← (1 − α) u_i(n_i^n) + α ĝ_i, then project u_i onto the
                     nondecreasing cone (§II-D, no optimizer)
        stop when the moving average of the objective settles (or n = n_max)
    n̂ ← argmin of the final approximation; V(n̂) evaluated exactly on all scenarios
    polish: exact expected slopes at n̂ → re-solve → evaluate, keep the best (ours, below)

Both models are built once: the first-stage MILP
(:class:`~gridrecourse.methods.spar_first_stage.FirstStageModel`) only gets new slopes
(``set_slopes``) and cuts (``add_cut``); the recourse
(:class:`~gridrecourse.problems.base.SecondStageModel`) only gets new row bounds.

Choices where paper C is silent (our choices, all options of :class:`SPARConfig`)
---------------------------------------------------------------------------------
* **Step counter** (:class:`StepCounter`). The paper's rules use the iteration counter ``n``
  (``GLOBAL``). With rule 2 (``1/n``) a slope that is first visited at iteration 150 then moves
  only 1/150 of the way to its observation, so rarely visited slopes barely learn. ``PER_VISIT``
  (the default) evaluates the rule at the number of updates the (site, slope) pair has had so
  far, the state-dependent step of Powell, Ruszczyński & Topaloglu (2004): every slope starts
  at its first observation and then averages its own observations. For rule 1 (``a = 100``)
  both counters give steps between 1 and 1/3 over 200 iterations.
* **Exploration.** During the first ``exploration_iterations`` iterations the first stage is
  the minimizer of a *random* separable convex function over the same feasible set (budget,
  site count, all cuts so far): every site gets slopes ``w_i (k + ½ − t_i) / L`` with a random
  target ``t_i ∈ {0..L}`` and weight ``w_i ∈ (0, 1)``, so the first stages are random, feasible
  for D1 and spread over interior points. Slopes are still updated with the observations.
* **Stopping statistic** (:class:`StopStatistic`). ``ESTIMATED`` (default) feeds
  :class:`~gridrecourse.methods.spar_value_function.MovingAverageStop` with the first-stage
  objective ``Σ_i v_i(n_i^n)`` (the learned estimate of the change of expected recourse against
  no PV); ``SAMPLE`` with the sampled recourse ``Q(n^n, ω^n)``, which varies from hour to hour
  (night versus noon) so much that its moving average settles only by chance. The test starts
  after the exploration phase. Note that an observation at ``n_i`` updates the slope to the
  RIGHT of ``n_i`` (:func:`~gridrecourse.methods.spar_value_function.slope_index`), which does
  not change ``v_i(n_i)``; while the first stage keeps choosing the same point, ``Σ_i v_i(n_i)``
  changes only through projections, so ``ESTIMATED`` in effect stops once the decision has
  been stable for about a window (IEEE 123, P1, 96 scenarios: 30–110 iterations, cf. paper
  C's average of 80).
* **Intercept** (:class:`Intercept`). The slopes fix ``V̂`` up to a constant: ``v_i(0) = 0``
  (paper C after (12)) and ``V̂(n) = c + Σ_i v_i(n_i)``. The approximation accuracy
  ``1 − |V̂(n̂) − V(n̂)| / V(n̂)`` (paper C Fig. 3, Remark 4) needs ``c``. ``SAMPLED`` (default,
  free): ``c`` is the mean of ``Q(n^j, ω^j) − Σ_i v_i(n_i^j)`` over the second half of the
  feasible post-exploration iterations ``j`` (final slopes), i.e. the function is anchored
  where SPAR sampled it. ``EXACT_ZERO``: ``c = V(0)``, the exact no-PV recourse (one more
  evaluation on all scenarios); this integrates every slope from ``n_i = 0``, including slopes
  learned when the other sites had no PV, so on a non-separable feeder it measures the
  separability error as well (IEEE 123, P1: ``Σ_i v_i(n̂_i)`` overstates the improvement
  severalfold). With hard limits ``V(0)`` may be infinite; the accuracy is then NaN.
* **Polish** (``polish_rounds``, default 20; 0 gives paper C's plain SPAR). The exact evaluation
  of ``n̂`` over all scenarios yields, for free, the exact expected subgradient of the
  scenario-average recourse at ``n̂``. A polish round writes it (step 1) into the slopes on BOTH
  sides of ``n̂_i`` (``u_i(n̂_i − 1)`` and ``u_i(n̂_i)``), re-solves the first stage and
  evaluates the new decision exactly; rounds stop at a repeated decision and the best evaluated
  decision is returned. With more than ``polish_scenarios`` (200) scenarios the rounds evaluate
  on a fixed seeded subsample and only the chosen decision on all (IEEE 123, 1200 scenarios: a
  round then costs 200 recourse solves, not 1200). Why: P1 on a real feeder is far from
  separable (PV at neighbouring buses substitutes), and the left slopes of ``n̂`` are stale
  single-scenario observations made when the other sites held different PV; they keep
  one-scenario SPAR above the EF optimum, and the rounds close most of that gap, more than
  mini-batches do (measured on the IEEE 123: ``benchmarks/results/DESIGN_MEASUREMENTS.md``).
* **Final repair.** If the exact evaluation of ``n̂`` finds infeasible scenarios (hard limits),
  their Farkas cuts are added and the first stage re-solved (at most ``max_repair_rounds``).

Statistical bounds (:func:`spar_statistical_bounds`, paper C §II-E, Mak–Morton–Wood 1999,
METHODS.md §2): ``K`` replications, each on its own batch of ``N`` scenarios drawn i.i.d.
from the scenario set. Upper bound: SPAR on batch ``k`` → ``x̂_k`` evaluated exactly on the
FULL set; lower bound: the largest valid bound of batch ``k``'s optimum (the batch extensive
form's MIP dual bound, the Lagrangian bound at ``x̂_k``'s subgradients, the integer L-shaped
master's dual bound, :mod:`~gridrecourse.methods.l_shaped`); confidence intervals and bounds
gap ``BG = UB.high − LB.low``. For one candidate ``x̂`` evaluated on the full set (the decision
the user gets), the paired estimate ``G_k = Σ_j w_j f(x̂, ω_kj) − LB_k`` of its optimality gap
(Mak, Morton & Wood's multiple replication procedure).

Units: objectives in the problem's units (P1: p.u. of v², dimensionless; P2: kW), slopes per PV
unit, times in seconds.

References
----------
W. B. Powell, A. Ruszczyński and H. Topaloglu, "Learning algorithms for separable
approximations of discrete stochastic optimization problems", Math. Oper. Res. 29(4), 2004.
W.-K. Mak, D. P. Morton and R. K. Wood, "Monte Carlo bounding techniques for determining
solution quality in stochastic programs", Oper. Res. Lett. 24, 1999.
Paper C §II-C–E (Algorithm 1, eqs. (10)–(36)), §III-D (Algorithm 3), §IV (Tables I–VI, Fig. 3).
"""

from __future__ import annotations

import copy
import functools
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

import numpy as np
from numpy.typing import NDArray

from gridrecourse.checkpointing import Checkpoint, child_checkpoint
from gridrecourse.errors import GridRecourseError, InfeasibleModelError, SolverTimeLimitError
from gridrecourse.evaluation.batch_sampling import BatchSampling, draw_batches
from gridrecourse.evaluation.bounds import (
    BoundMethod,
    BoundProvenance,
    PairedGapEstimate,
    StatisticalBounds,
    best_bound,
    paired_gap_estimate,
    statistical_bounds,
)
from gridrecourse.evaluation.out_of_sample import (
    OutOfSampleResult,
    evaluate_first_stage,
    recourse_state_factory,
)
from gridrecourse.evaluation.resumable import evaluate_first_stage_resumable
from gridrecourse.execution import Executor, InProcessExecutor, ProgressCallback
from gridrecourse.methods.extensive_form import build_extensive_form, solve_extensive_form
from gridrecourse.methods.l_shaped import LShapedConfig, SeedPoint, l_shaped_bound
from gridrecourse.methods.lagrangian import lagrangian_bound, subgradient_multipliers
from gridrecourse.methods.spar_first_stage import (
    FirstStageModel,
    FirstStageSolution,
    Formulation,
)
from gridrecourse.methods.spar_value_function import (
    DEFAULT_RULE_1_CONSTANT,
    MovingAverageStop,
    SeparablePWL,
    StepRule,
    slope_index,
    step_size,
    update,
)
from gridrecourse.problems.base import (
    FeasibilityCut,
    SecondStageModel,
    SecondStageResult,
    TwoStageProblem,
    scenario_selection,
)
from gridrecourse.problems.capabilities import SPAR as SPAR_REQUIREMENTS
from gridrecourse.problems.capabilities import check_requirements
from gridrecourse.problems.separable import SeparableFirstStage
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "Intercept",
    "LowerBoundSource",
    "SPARBounds",
    "SPARBoundsState",
    "SPARConfig",
    "SPARConfigError",
    "SPARInfeasibleError",
    "SPARIteration",
    "SPARProblem",
    "SPARResult",
    "SPARState",
    "StepCounter",
    "StopReason",
    "StopStatistic",
    "solve_spar",
    "spar_statistical_bounds",
    "step_sizes",
]

#: Relative size below which a feasibility-cut coefficient counts as zero.
_CUT_ZERO = 1e-9


class SPARConfigError(GridRecourseError, ValueError):
    """Invalid SPAR settings or inputs (the message names the field)."""


class SPARInfeasibleError(InfeasibleModelError):
    """A sampled scenario is infeasible for every first stage (a cut ``0 ≥ β > 0``)."""


class StepCounter(str, Enum):
    """Which counter the step rule is evaluated at (module docstring, "Step counter")."""

    #: ``α_n`` with ``n`` = number of slope updates so far (paper C Algorithm 1)
    GLOBAL = "global"
    #: ``α`` with ``n`` = number of updates of this (site, slope) pair, including this one
    #: (state-dependent step of Powell–Ruszczyński–Topaloglu 2004)
    PER_VISIT = "per_visit"


class StopStatistic(str, Enum):
    """Quantity whose moving average decides convergence (module docstring)."""

    #: first-stage objective ``Σ_i v_i(n_i^n)`` of the learned function
    ESTIMATED = "estimated"
    #: sampled recourse ``Q(n^n, ω^n)`` (mean over the iteration's scenarios)
    SAMPLE = "sample"


class Intercept(str, Enum):
    """How the constant of ``V̂(n) = c + Σ_i v_i(n_i)`` is set (module docstring)."""

    #: mean of ``Q(n^j, ω^j) − Σ_i v_i(n_i^j)`` over late iterations (no extra solves)
    SAMPLED = "sampled"
    #: ``c = V(0)``, the exact expected recourse without PV (one evaluation of ``n = 0``)
    EXACT_ZERO = "exact_zero"


class LowerBoundSource(str, Enum):
    """Where a lower-bound sample of :func:`spar_statistical_bounds` comes from."""

    #: MIP dual bound of the batch extensive form (paper C (32)–(36))
    EXTENSIVE_FORM = "extensive_form"
    #: MIP dual bound of the integer L-shaped master of the batch
    #: (:mod:`~gridrecourse.methods.l_shaped`), seeded with the batch's SPAR decision
    L_SHAPED = "l_shaped"
    #: Lagrangian bound of the batch (:mod:`~gridrecourse.methods.lagrangian`, eq. L1) with
    #: multipliers from the scenario subgradients at the batch's SPAR decision
    LAGRANGIAN = "lagrangian"
    #: the batch EF found no incumbent (or bound) within its time limit: the wait-and-see
    #: value ``Σ_j w_j min_x Q(x, ω_j)``, which is ≤ the batch optimum, hence also valid
    WAIT_AND_SEE = "wait_and_see"
    #: asked for with ``ef_options.relax_integrality``: the optimum of the batch EF's LP
    #: relaxation (integer siting relaxed), ≤ the batch optimum; for feeders where the batch
    #: MILP is out of reach (paper C's IEEE 9500 bounds)
    RELAXATION = "relaxation"


class SlopeInitialization(str, Enum):
    """How the slopes start (module docstring, "Initial slopes")."""

    #: ``u_i(k) = 0`` for all ``k``: no PV benefit until observed (paper C's ``v⁰ = 0``)
    ZERO = "zero"
    #: every row set to its first observed ``ĝ_i`` (a linear ``v_i``); later updates then
    #: learn the curvature. Unvisited slopes are not left at zero, which biases the first
    #: stage towards spreading one unit over as many sites as allowed.
    FIRST_OBSERVATION = "first_observation"


class UpdateSides(str, Enum):
    """Which segments around the visited point learn from ``ĝ`` (module docstring)."""

    #: the right segment ``u_i(n_i)`` only (paper C Algorithm 1, :func:`slope_index`)
    RIGHT = "right"
    #: also the left segment ``u_i(n_i − 1)`` when ``0 < n_i < L`` (the two-sided update of
    #: PRT 2004 for non-differentiable recourse, with the same subgradient on both sides)
    BOTH = "both"


class StopReason(str, Enum):
    """Why the SPAR loop ended."""

    #: the moving average settled (paper C §II-C)
    CONVERGED = "converged"
    #: ``max_iterations`` reached
    MAX_ITERATIONS = "max_iterations"
    #: the ``on_iteration`` hook returned True
    CALLBACK = "callback"


@dataclass(frozen=True)
class SPARConfig:
    """Settings of SPAR-OPF (paper C Algorithms 1 and 3; defaults: METHODS.md §3, our choices).

    Attributes
    ----------
    formulation : Formulation, default EPIGRAPH
        How the learned function enters the first stage (paper C §II-B; epigraph ≈ 4× faster,
        Table VI).
    step_rule : StepRule, default RULE_1
        ``α = a/(a + n)`` (rule 1), ``1/n`` (rule 2) or ``1/n^0.7`` (rule 3) (paper C §IV).
    step_constant : float, default 100
        ``a`` of rule 1 (our choice for the paper's lost constant).
    step_counter : StepCounter, default PER_VISIT
        Counter ``n`` of the step rule (module docstring).
    max_iterations : int, default 200
        ``n_max`` (METHODS.md §3).
    exploration_iterations : int, default 10
        Iterations with a random feasible first stage (our choice; 0 disables exploration).
    scenarios_per_iteration : int, default 1
        Scenarios sampled per iteration (1 = paper C); more average ``ĝ`` and the objective
        over a mini-batch drawn without replacement.
    window : int, default 10
        Moving-average window (METHODS.md §3).
    tolerance : float, default 1e-3
        Relative moving-average tolerance ``ε`` (METHODS.md §3).
    abs_tolerance : float, default 0
        Absolute tolerance added to ``ε |average|`` (objective units).
    stop_statistic : StopStatistic, default ESTIMATED
        What the moving average is taken of.
    seed : int or None, default 0
        Seed of the scenario sampling and the exploration (NumPy ``default_rng``).
    mip_gap : float, default 1e-4
        Relative MIP gap of the first-stage solves.
    mip_feasibility_tolerance : float or None, default None
        HiGHS's ``mip_feasibility_tolerance`` of the first-stage solves (None: its 1e-6; as
        ``SolverOptions.mip_feasibility_tolerance``).
    first_stage_time_limit : float or None
        HiGHS time limit per first-stage solve [s].
    intercept : Intercept, default SAMPLED
        Constant of ``V̂`` for the estimated objective and the accuracy (module docstring).
    evaluate : bool, default True
        Evaluate ``n̂`` exactly on all scenarios at the end (and ``n = 0`` for
        ``Intercept.EXACT_ZERO``).
    max_repair_rounds : int, default 10
        Cut-and-resolve rounds when ``n̂`` is infeasible in the exact evaluation.
    slope_initialization : SlopeInitialization, default ZERO
        Starting slopes (:class:`SlopeInitialization`).
    update_sides : UpdateSides, default RIGHT
        Segments updated per observation (:class:`UpdateSides`).
    polish_rounds : int, default 20
        Full-gradient rounds after learning that reuse the exact evaluation (module docstring,
        "Polish"; ours, 0 = paper C's plain SPAR). Needs ``evaluate``.
    polish_scenarios : int or None, default 200
        With more scenarios than this, the polish rounds evaluate on a fixed subsample of this
        size (seeded) and only the chosen decision on all; None = always all.
    """

    formulation: Formulation = Formulation.EPIGRAPH
    step_rule: StepRule = StepRule.RULE_1
    step_constant: float = DEFAULT_RULE_1_CONSTANT
    step_counter: StepCounter = StepCounter.PER_VISIT
    max_iterations: int = 200
    exploration_iterations: int = 10
    scenarios_per_iteration: int = 1
    window: int = 10
    tolerance: float = 1e-3
    abs_tolerance: float = 0.0
    stop_statistic: StopStatistic = StopStatistic.ESTIMATED
    seed: int | None = 0
    mip_gap: float = 1e-4
    mip_feasibility_tolerance: float | None = None
    first_stage_time_limit: float | None = None
    intercept: Intercept = Intercept.SAMPLED
    evaluate: bool = True
    max_repair_rounds: int = 10
    slope_initialization: SlopeInitialization = SlopeInitialization.ZERO
    update_sides: UpdateSides = UpdateSides.RIGHT
    polish_rounds: int = 20
    polish_scenarios: int | None = 200

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            set_(self, "formulation", Formulation(self.formulation))
            set_(self, "step_rule", StepRule(self.step_rule))
            set_(self, "step_counter", StepCounter(self.step_counter))
            set_(self, "stop_statistic", StopStatistic(self.stop_statistic))
            set_(self, "intercept", Intercept(self.intercept))
            set_(self, "slope_initialization", SlopeInitialization(self.slope_initialization))
            set_(self, "update_sides", UpdateSides(self.update_sides))
        except ValueError as exc:
            raise SPARConfigError(f"SPARConfig: {exc}") from None
        ints = {
            "max_iterations": 1,
            "exploration_iterations": 0,
            "scenarios_per_iteration": 1,
            "window": 1,
            "max_repair_rounds": 0,
            "polish_rounds": 0,
        }
        if self.polish_scenarios is not None:
            ints["polish_scenarios"] = 1
        for name, low in ints.items():
            value = getattr(self, name)
            if int(value) != value or value < low:
                raise SPARConfigError(f"SPARConfig.{name} must be an integer >= {low}, got {value}")
        if not self.step_constant > 0:
            raise SPARConfigError(f"SPARConfig.step_constant must be > 0, got {self.step_constant}")
        for name in ("tolerance", "abs_tolerance", "mip_gap"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise SPARConfigError(f"SPARConfig.{name} must be finite and >= 0, got {value}")
        tol = self.mip_feasibility_tolerance
        if tol is not None and not (math.isfinite(tol) and tol > 0):
            raise SPARConfigError(
                f"SPARConfig.mip_feasibility_tolerance must be > 0 or None, got {tol}"
            )
        limit = self.first_stage_time_limit
        if limit is not None and not limit > 0:
            raise SPARConfigError(f"SPARConfig.first_stage_time_limit must be > 0, got {limit}")


#: What :func:`solve_spar` needs: a :class:`~gridrecourse.problems.base.TwoStageProblem` with
#: LP/QP recourse that declares a
#: :class:`~gridrecourse.problems.separable.SeparableFirstStage` (``separable_first_stage``),
#: e.g. :class:`~gridrecourse.problems.siting.PVSitingProblem`; checked by
#: :func:`separable_declaration`.
SPARProblem = TwoStageProblem


def separable_declaration(problem: TwoStageProblem) -> SeparableFirstStage:
    """The problem's separable first stage, after checking SPAR's requirements.

    Raises
    ------
    UnsupportedProblemError
        Integer recourse (no linking duals) or no ``separable_first_stage`` declaration.
    ProblemSpecError
        The recourse depends on the indicator block (not separable in the argument).
    """
    check_requirements(SPAR_REQUIREMENTS, problem)
    declaration = problem.separable_first_stage
    assert declaration is not None  # checked above
    declaration.check(problem.second_stage)
    return declaration


@dataclass(frozen=True, eq=False)
class SPARIteration:
    """One SPAR iteration (one row of :attr:`SPARResult.history`).

    Attributes
    ----------
    iteration : int
        ``n`` (1-based).
    scenarios : tuple of int
        Sampled scenario index(es) ``ω^n``.
    units : numpy.ndarray of int, shape (n_sites,)
        First stage ``n^n`` (PV units per candidate).
    explored : bool
        ``n^n`` was a random exploration point.
    feasible : bool
        All sampled recourse problems were feasible (else cuts were added, no update).
    sample_objective : float
        Mean sampled recourse ``Q(n^n, ω^n)`` (objective units; NaN when infeasible).
    first_stage_objective : float
        ``Σ_i v_i(n_i^n)`` under the slopes that chose ``n^n`` (objective units, ``v_i(0)=0``).
    moving_average : float
        Mean of the stop statistic over the last ``window`` feasible post-exploration
        iterations (NaN until there are ``window`` of them).
    step_size : float
        Mean step ``α`` over the sites (NaN when infeasible).
    first_stage_seconds : float
        Wall time of the first stage (slope change + MILP) [s].
    second_stage_seconds : float
        Wall time of the recourse solve(s) [s].
    update_seconds : float
        Wall time of the slope update and projection [s].
    cuts_added : int
        Feasibility cuts added in this iteration.
    """

    iteration: int
    scenarios: tuple[int, ...]
    units: np.ndarray
    explored: bool
    feasible: bool
    sample_objective: float
    first_stage_objective: float
    moving_average: float
    step_size: float
    first_stage_seconds: float
    second_stage_seconds: float
    update_seconds: float
    cuts_added: int


@dataclass(frozen=True, eq=False)
class SPARResult:
    """Outcome of :func:`solve_spar`.

    Attributes
    ----------
    decision : SitingDecision
        ``n̂`` and its siting.
    x : numpy.ndarray
        First-stage vector of ``n̂`` (``[n, s]``).
    objective : float
        ``V(n̂)``, exact expected recourse over ALL scenarios of the problem (NaN when
        ``evaluate`` is False; ``inf`` if still infeasible after the repair rounds).
    estimated_objective : float
        ``V̂(n̂) = c + Σ_i v_i(n̂_i)`` plus the first-stage cost of ``n̂`` (objective units;
        NaN when ``c`` is unavailable).
    first_stage_objective : float
        ``Σ_i v_i(n̂_i)``, the learned change against no PV (objective units).
    intercept : float
        ``c`` (see :class:`Intercept`; NaN when unavailable).
    approximation_accuracy : float
        ``1 − |V̂(n̂) − V(n̂)| / |V(n̂)|`` (paper C Fig. 3; NaN when unavailable).
    iterations : int
        Iterations run.
    stop_reason : StopReason
    history : list of SPARIteration
    slopes : numpy.ndarray, shape (n_sites, L)
        Learned slopes ``u_i(k)`` (objective units per PV unit), nondecreasing rows.
    visits : numpy.ndarray of int, shape (n_sites, L)
        Number of updates each slope received directly.
    cuts : tuple of FeasibilityCut
        Feasibility cuts on ``n`` added to the first stage (paper C (18)).
    evaluation : OutOfSampleResult or None
        The exact evaluation of ``n̂``.
    wall_seconds : float
        Everything, including model builds and evaluations [s].
    learn_seconds : float
        The SPAR iterations and the final first-stage solve [s].
    evaluation_seconds : float
        Exact evaluations of ``n̂`` and ``n = 0`` [s] (without polish rounds, which count in
        ``learn_seconds``).
    polish_objectives : tuple of float
        Exact objectives of the decisions visited by the polish rounds, the learned one first
        (empty without polishing); over the ``scenarios`` batch when one was given.
    resumed_at : int
        Iterations taken from a checkpoint (0: none; see :class:`SPARState`).
    evaluation_reused_scenarios : int
        Scenario solves of the exact evaluations taken from ``evaluation_checkpoint`` (0: none).
    """

    decision: Any
    x: np.ndarray
    objective: float
    estimated_objective: float
    first_stage_objective: float
    intercept: float
    approximation_accuracy: float
    iterations: int
    stop_reason: StopReason
    history: list[SPARIteration]
    slopes: np.ndarray
    visits: np.ndarray
    cuts: tuple[FeasibilityCut, ...]
    evaluation: OutOfSampleResult | None
    wall_seconds: float
    learn_seconds: float
    evaluation_seconds: float
    polish_objectives: tuple[float, ...] = ()
    resumed_at: int = 0
    evaluation_reused_scenarios: int = 0

    @property
    def converged(self) -> bool:
        """True when the moving-average rule stopped the loop."""
        return self.stop_reason is StopReason.CONVERGED

    @property
    def n_cuts(self) -> int:
        """Number of feasibility cuts added."""
        return len(self.cuts)

    @property
    def value_function(self) -> SeparablePWL:
        """The learned ``Σ_i v_i`` (``v_i(0) = 0``)."""
        return SeparablePWL(self.slopes)

    @property
    def seconds_per_iteration(self) -> float:
        """Mean wall time of one iteration (first + second stage + update) [s]."""
        if not self.history:
            return math.nan
        return float(
            np.mean(
                [
                    h.first_stage_seconds + h.second_stage_seconds + h.update_seconds
                    for h in self.history
                ]
            )
        )

    @property
    def first_stage_seconds_per_iteration(self) -> float:
        """Mean first-stage wall time per iteration [s] (paper C Table VI)."""
        if not self.history:
            return math.nan
        return float(np.mean([h.first_stage_seconds for h in self.history]))


@dataclass(frozen=True, eq=False)
class SPARState:
    """Checkpoint of the SPAR loop after ``iteration`` iterations (``solve_spar(checkpoint=)``).

    Everything the rest of the run depends on, so that a run resumed from it continues with
    exactly the trajectory of an uninterrupted run (:mod:`gridrecourse.checkpointing`).

    Attributes
    ----------
    config : SPARConfig
        The run's settings (a resume with other settings is refused).
    pool : numpy.ndarray of int
        The scenario indices sampled from.
    iteration : int
        Iterations done.
    finished : bool
        The loop has ended (``stop_reason`` is final); only the final solve, the exact
        evaluation and the polish remain.
    stop_reason : StopReason
    slopes : numpy.ndarray, shape (n_sites, L)
    visits : numpy.ndarray of int, shape (n_sites, L)
    n_updates : int
        Slope updates so far (``GLOBAL`` step counter).
    rng_state : dict
        ``bit_generator.state`` of the sampling/exploration generator.
    stop : MovingAverageStop
        The stopping rule with its window.
    statistics : tuple of float
        The stop statistic of every feasible post-exploration iteration.
    history : tuple of SPARIteration
    cuts : tuple of FeasibilityCut
        Feasibility cuts so far (restricted to the units).
    learn_seconds : float
        Wall time of the iterations so far [s].
    """

    config: SPARConfig
    pool: np.ndarray
    iteration: int
    finished: bool
    stop_reason: StopReason
    slopes: np.ndarray
    visits: np.ndarray
    n_updates: int
    rng_state: dict
    stop: MovingAverageStop
    statistics: tuple[float, ...]
    history: tuple[SPARIteration, ...]
    cuts: tuple[FeasibilityCut, ...]
    learn_seconds: float


# ------------------------------------------------------------------------------ helpers


def step_sizes(
    rule: StepRule, counts: np.ndarray | int, a: float = DEFAULT_RULE_1_CONSTANT
) -> NDArray[np.float64]:
    """Vectorized :func:`~gridrecourse.methods.spar_value_function.step_size`.

    Parameters
    ----------
    rule : StepRule
    counts : array_like of int
        Counters ``n ≥ 1``.
    a : float
        Constant of rule 1.

    Returns
    -------
    numpy.ndarray
        ``α`` per counter (dimensionless).
    """
    n = np.asarray(counts)
    if n.size and (np.any(n < 1) or np.any(n != np.round(n))):
        raise SPARConfigError("step counters must be integers >= 1")
    # the rule is evaluated once per distinct counter (few), with the scalar definition
    uniq, inverse = np.unique(n.astype(np.int64), return_inverse=True)
    alpha = np.array([step_size(rule, int(c), a) for c in uniq], dtype=float)
    return alpha[inverse].reshape(n.shape)


def _exploration_slopes(rng: np.random.Generator, n_sites: int, max_units: int) -> np.ndarray:
    """Random convex slopes ``w_i (k + ½ − t_i) / L`` (module docstring, "Exploration")."""
    target = rng.integers(0, max_units + 1, size=n_sites)
    weight = rng.uniform(0.05, 1.0, size=n_sites)
    k = np.arange(max_units)
    return weight[:, None] * (k[None, :] + 0.5 - target[:, None]) / max_units


def _set_slopes(model: FirstStageModel, slopes: np.ndarray) -> None:
    """``model.set_slopes(slopes)``, working around a LAMBDA-formulation defect.

    ``FirstStageModel.set_slopes`` with :attr:`Formulation.LAMBDA` fails when the slopes of
    some but not all sites change (it evaluates the breakpoint values of the changed rows into
    an array sized for all sites). Passing through an intermediate point that differs from both
    the current and the new slopes in every row makes both calls change all rows; the λ costs
    are rewritten twice (cheap). Remove once ``set_slopes`` handles row subsets.
    """
    if model.formulation is Formulation.LAMBDA:
        changed_rows = np.any(model.slopes != slopes, axis=1)
        if changed_rows.any() and not changed_rows.all():
            shift = 0.7318 * (1.0 + float(np.abs(slopes).max(initial=0.0)))
            model.set_slopes(slopes + shift)
    model.set_slopes(slopes)


class _Stages:
    """The two models of one SPAR run, built once, and the cut bookkeeping.

    ``cuts`` (feasibility cuts of an earlier part of the run, already restricted to the units)
    are added to the new first-stage models in one call: this is how a checkpoint rebuilds the
    models (module :mod:`gridrecourse.checkpointing`, "Exactness").
    """

    def __init__(
        self,
        problem: SPARProblem,
        config: SPARConfig,
        rng: np.random.Generator,
        cuts: Sequence[FeasibilityCut] = (),
    ):
        self.decl = separable_declaration(problem)
        self.problem = problem
        self.config = config
        self.n_sites = self.decl.n_elements
        self.max_units = self.decl.levels
        zeros = np.zeros((self.n_sites, self.max_units))
        self.first = FirstStageModel(self.decl, config.formulation, zeros)
        self.explore = (
            FirstStageModel(self.decl, Formulation.EPIGRAPH, zeros, first_stage_cost=False)
            if config.exploration_iterations > 0
            else None
        )
        self.second = problem.build_second_stage()
        self.rng = rng
        self.cuts: list[FeasibilityCut] = list(cuts)
        if self.cuts:
            a = np.vstack([np.asarray(c.coefficients, dtype=float) for c in self.cuts])
            b = np.array([c.rhs for c in self.cuts], dtype=float)
            self.first.add_cut(a, b)
            if self.explore is not None:
                self.explore.add_cut(a, b)

    def solve_first(self, slopes: np.ndarray, explore: bool) -> FirstStageSolution:
        cfg = self.config
        if explore:
            assert self.explore is not None
            self.explore.set_slopes(_exploration_slopes(self.rng, self.n_sites, self.max_units))
            sol = self.explore.solve(
                cfg.first_stage_time_limit, cfg.mip_gap, cfg.mip_feasibility_tolerance
            )
            # report the point's value under the learned slopes, not the random ones
            value = SeparablePWL(slopes).total(sol.units)
            return replace(sol, objective=value)
        _set_slopes(self.first, slopes)
        return self.first.solve(
            cfg.first_stage_time_limit, cfg.mip_gap, cfg.mip_feasibility_tolerance
        )

    def add_cut(self, cut: FeasibilityCut | None, scenario: int) -> int:
        """Add the units part of a scenario's Farkas cut to both first-stage models."""
        if cut is None:
            raise SPARInfeasibleError(
                f"scenario {scenario}: the recourse is infeasible and HiGHS gave no Farkas ray "
                "to build a feasibility cut from"
            )
        cut = self.decl.restrict_cut(cut)
        coeffs = np.asarray(cut.coefficients, dtype=float)
        scale = max(float(np.abs(coeffs).max(initial=0.0)), abs(cut.rhs), 1e-300)
        if np.all(np.abs(coeffs) <= _CUT_ZERO * scale) and cut.rhs > 0:
            raise SPARInfeasibleError(
                f"scenario {scenario} is infeasible for every first stage (Farkas cut "
                f"0 >= {cut.rhs:.3g}); soften the limits or drop the scenario"
            )
        self.first.add_cut(coeffs, cut.rhs)
        if self.explore is not None:
            self.explore.add_cut(coeffs, cut.rhs)
        self.cuts.append(cut)
        return 1


def _visit(
    config: SPARConfig,
    visits: np.ndarray,
    sites: np.ndarray,
    slopes: np.ndarray,
    n_updates: int,
) -> float | np.ndarray:
    """Count a visit of the (site, slope) pairs and return their step sizes.

    ``PER_VISIT``: the rule at each pair's visit count (after this visit); ``GLOBAL``: the
    rule at update ``n_updates + 1`` for all pairs. ``visits`` is updated in place.
    """
    visits[sites, slopes] += 1
    if config.step_counter is StepCounter.PER_VISIT:
        return step_sizes(config.step_rule, visits[sites, slopes], config.step_constant)
    return step_size(config.step_rule, n_updates + 1, config.step_constant)


def _left_segments(units: np.ndarray, max_units: int) -> tuple[np.ndarray, np.ndarray]:
    """Sites with ``0 < n_i < L`` and the index ``n_i − 1`` of their left segment.

    Read by :func:`update` as points whose right segment is ``u_i(n_i − 1)`` (at ``n_i = L``
    the right-segment update already falls back to the left one).
    """
    n = np.asarray(units, dtype=np.intp)
    sites = np.flatnonzero((n > 0) & (n < max_units))
    return sites, n[sites] - 1


def _polish_scenarios(
    problem: SPARProblem, config: SPARConfig, scenarios: Sequence[int] | np.ndarray | None
) -> np.ndarray | None:
    """Scenarios the polish rounds evaluate on; None means all (module docstring, "Polish").

    A SAA batch polishes on the batch. Otherwise all scenarios, unless there are more than
    ``polish_scenarios``: then a fixed subsample of that size, drawn with probabilities
    ``p_ω`` without replacement from ``SeedSequence((seed, 1))`` (the learning stream is not
    touched).
    """
    if scenarios is not None:
        return np.asarray(scenarios, dtype=int)
    cap = config.polish_scenarios
    if cap is None or problem.n_scenarios <= cap:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([config.seed or 0, 1]))
    p = np.asarray(problem.probability, dtype=float)
    return np.sort(rng.choice(problem.n_scenarios, size=cap, replace=False, p=p / p.sum()))


def _evaluate_with_repair(
    problem: SPARProblem,
    stages: _Stages,
    slopes: np.ndarray,
    final: FirstStageSolution,
    executor: Executor,
    options: SolverOptions | None,
    scenarios: np.ndarray | None = None,
    store: _EvaluationStore | None = None,
    weights: np.ndarray | None = None,
) -> tuple[FirstStageSolution, OutOfSampleResult]:
    """Exact evaluation of ``final`` (on ``scenarios``, default all, weighed by ``weights``,
    default their probabilities); infeasible scenarios add cuts and the first stage is re-solved
    (at most ``max_repair_rounds`` times)."""
    evaluation = None
    for _ in range(stages.config.max_repair_rounds + 1):
        x_hat = stages.decl.embed(final.units, final.sited)
        evaluation = _evaluate(problem, x_hat, executor, options, scenarios, store)
        if weights is not None:
            evaluation = evaluation.reweighted(weights)
        if evaluation.n_infeasible == 0 or not evaluation.cuts:
            break
        for c in evaluation.cuts:
            stages.add_cut(c, c.scenario)
        final = stages.solve_first(slopes, explore=False)
    assert evaluation is not None
    return final, evaluation


def _evaluate_and_polish(
    problem: SPARProblem,
    stages: _Stages,
    slopes: np.ndarray,
    final: FirstStageSolution,
    executor: Executor,
    options: SolverOptions | None,
    scenarios: np.ndarray | None = None,
    store: _EvaluationStore | None = None,
    weights: np.ndarray | None = None,
) -> tuple[FirstStageSolution, OutOfSampleResult, list[float]]:
    """Exact evaluation of the learned decision, then ``polish_rounds`` full-gradient rounds.

    A polish round (ours, module docstring "Polish") reuses the exact evaluation of the current
    decision ``n̂``: its expected subgradient ``Σ_ω p_ω ĝ_ω`` is the exact slope of the
    scenario-average recourse at ``n̂``, written into the slopes at ``n̂`` with step 1 (and
    projected), and the first stage is re-solved. Rounds stop at a repeated decision; the best
    exactly evaluated decision is returned, so polishing never makes the result worse.

    Returns
    -------
    (decision, its evaluation, exact objectives of the evaluated decisions, learned one first)
    """
    final, evaluation = _evaluate_with_repair(
        problem, stages, slopes, final, executor, options, scenarios, store, weights
    )
    rounds = stages.config.polish_rounds
    if rounds == 0:
        return final, evaluation, []
    best = (final, evaluation)
    seen = {tuple(int(u) for u in final.units)}
    objectives = [float(evaluation.expected_objective)]
    current, current_eval = final, evaluation
    for _ in range(rounds):
        if current_eval.n_infeasible:
            break
        ghat = stages.decl.argument_slopes(current_eval.expected_subgradient)
        slopes = update(slopes, None, current.units, ghat, 1.0)
        left, kl = _left_segments(current.units, stages.max_units)
        slopes = update(slopes, left, kl, ghat[left], 1.0)
        proposal = stages.solve_first(slopes, explore=False)
        key = tuple(int(u) for u in proposal.units)
        if key in seen:
            break
        seen.add(key)
        current, current_eval = _evaluate_with_repair(
            problem, stages, slopes, proposal, executor, options, scenarios, store, weights
        )
        objectives.append(float(current_eval.expected_objective))
        if current_eval.expected_objective < best[1].expected_objective:
            best = (current, current_eval)
    return best[0], best[1], objectives


def _solve_recourse(
    model: SecondStageModel, scenario: int, *, x: np.ndarray, options: SolverOptions | None
) -> SecondStageResult:
    """One recourse solve with a Farkas ray when infeasible (executor task)."""
    return model.solve(x, scenario, options, farkas=True)


def _sampled_intercept(history: Sequence[SPARIteration], slopes: np.ndarray) -> float:
    """``Intercept.SAMPLED``: mean of ``Q(n^j, ω^j) − Σ_i v_i(n_i^j)`` over late iterations.

    Uses the second half (rounded up) of the feasible iterations after exploration (all
    feasible iterations when there are none after it), with the final slopes.
    """
    feasible = [h for h in history if h.feasible]
    late = [h for h in feasible if not h.explored] or feasible
    if not late:
        return math.nan
    late = late[len(late) // 2 :]
    values = SeparablePWL(slopes).breakpoint_values()
    units = np.vstack([h.units for h in late])
    learned = values[np.arange(values.shape[0])[None, :], units].sum(axis=1)
    samples = np.array([h.sample_objective for h in late])
    return float(np.mean(samples - learned))


class _EvaluationStore:
    """Where :func:`solve_spar`'s exact evaluations keep their finished blocks.

    Attributes
    ----------
    checkpoint : Checkpoint
        A :class:`~gridrecourse.evaluation.resumable.StoredEvaluations` checkpoint.
    reused_scenarios : int
        Scenario solves taken from it so far, over all evaluations.
    """

    def __init__(self, checkpoint: Checkpoint):
        self.checkpoint = checkpoint
        self.reused_scenarios = 0


def _evaluate(
    problem: SPARProblem,
    x: np.ndarray,
    executor: Executor | None,
    options: SolverOptions | None,
    scenarios: np.ndarray | None = None,
    store: _EvaluationStore | None = None,
) -> OutOfSampleResult:
    """Exact evaluation of ``x``; in checkpointed blocks when ``store`` is given (then on one
    worker every block starts cold, :mod:`gridrecourse.evaluation.resumable`)."""
    if store is not None:
        run = evaluate_first_stage_resumable(
            problem,  # type: ignore[arg-type]
            x,
            checkpoint=store.checkpoint,
            scenarios=scenarios,
            executor=executor,
            options=options,
        )
        store.reused_scenarios += run.reused_scenarios
        return run.result
    return evaluate_first_stage(
        problem,  # type: ignore[arg-type]
        x,
        scenarios=scenarios,
        executor=executor,
        options=options,
        desc=None,
    )


# ------------------------------------------------------------------------------ driver


def solve_spar(
    problem: SPARProblem,
    config: SPARConfig | None = None,
    *,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    progress: ProgressCallback | None = None,
    on_iteration: Callable[[SPARIteration], bool | None] | None = None,
    scenarios: Sequence[int] | np.ndarray | None = None,
    scenario_weights: Sequence[float] | np.ndarray | None = None,
    baseline_objective: float | None = None,
    checkpoint: Checkpoint | None = None,
    checkpoint_every: int = 10,
    evaluation_checkpoint: Checkpoint | None = None,
) -> SPARResult:
    """Solve the PV siting problem with SPAR-OPF (paper C Algorithms 1 and 3).

    Parameters
    ----------
    problem : SPARProblem
        Usually a :class:`~gridrecourse.problems.siting.PVSitingProblem` (P1 or P2).
    config : SPARConfig, optional
        Settings (default :class:`SPARConfig()`).
    executor : Executor, optional
        Runs the exact evaluations (final and polish) and the scenarios of a mini-batch
        (``scenarios_per_iteration > 1``) in parallel (default in-process). The iterations
        themselves are sequential.
    options : SolverOptions, optional
        Options of the recourse solves (LP/QP); ``mip_gap`` is ignored there.
    progress : callable, optional
        ``progress(iteration, max_iterations)`` after every iteration.
    on_iteration : callable, optional
        ``on_iteration(record)`` after every iteration; returning True stops the loop.
    scenarios : sequence of int, optional
        Scenario indices to sample from (a SAA batch; repeats allowed), sampled with
        probability proportional to ``problem.probability``; default all. The exact evaluation
        always uses ALL scenarios.
    scenario_weights : sequence of float, optional
        Sampling weights of ``scenarios`` instead of their probabilities (a stratified batch's
        design weights; renormalized). Not with ``checkpoint``.
    baseline_objective : float, optional
        ``V(0)`` if already known (``Intercept.EXACT_ZERO`` then skips its evaluation).
    checkpoint : Checkpoint, optional
        Where a :class:`SPARState` is saved before iterations ``k·checkpoint_every + 1`` and
        when the loop ends; a state found there is resumed (``SPARResult.resumed_at``). At
        every save the models are rebuilt from the state, so a resumed run equals an
        uninterrupted one (:mod:`gridrecourse.checkpointing`).
    checkpoint_every : int, default 10
        Iterations between checkpoints (>= 1).
    evaluation_checkpoint : Checkpoint, optional
        Where the exact evaluations after the loop (repair, polish, the final one on all
        scenarios, ``n = 0``) save their finished blocks
        (:func:`~gridrecourse.evaluation.resumable.evaluate_first_stage_resumable`); a resumed
        run solves only the missing blocks (``SPARResult.evaluation_reused_scenarios``). With
        it every evaluation runs in blocks that start cold on one worker, in an uninterrupted
        run too, so a resumed run equals an uninterrupted one with the same checkpoints (on
        several workers the warm starts depend on timing: objectives agree to the solver's
        tolerance, degenerate duals and so the polish steps may not).

    Returns
    -------
    SPARResult

    Raises
    ------
    SPARConfigError
        A checkpoint of other settings or scenarios, or ``checkpoint_every < 1``.
    SPARInfeasibleError
        A sampled scenario is infeasible for every first stage.
    FirstStageInfeasibleError
        The first stage with its feasibility cuts has no solution.
    UnsupportedProblemError
        The problem has integer recourse or declares no ``separable_first_stage``
        (:data:`gridrecourse.problems.capabilities.SPAR`).
    """
    t_start = time.perf_counter()
    cfg = config or SPARConfig()
    if int(checkpoint_every) != checkpoint_every or checkpoint_every < 1:
        raise SPARConfigError(f"checkpoint_every must be an integer >= 1, got {checkpoint_every}")
    if checkpoint is not None and scenario_weights is not None:
        raise SPARConfigError("scenario_weights with a checkpoint: not supported (no resume key)")
    # the scenarios SPAR samples from and their sampling probabilities
    pool, weight = scenario_selection(problem, scenarios, scenario_weights, error=SPARConfigError)
    rng = np.random.default_rng(cfg.seed)
    saved = _resumable_state(checkpoint, cfg, pool)
    stages = _Stages(problem, cfg, rng, () if saved is None else saved.cuts)
    n_sites, big_l = stages.n_sites, stages.max_units
    slopes = np.zeros((n_sites, big_l))
    visits = np.zeros((n_sites, big_l), dtype=np.int64)
    sites = np.arange(n_sites)
    n_updates = 0
    batch = min(cfg.scenarios_per_iteration, pool.size)
    stop = MovingAverageStop(cfg.window, cfg.tolerance, cfg.abs_tolerance)
    history: list[SPARIteration] = []
    statistics: list[float] = []
    reason = StopReason.MAX_ITERATIONS
    first_it, finished, learned_before = 1, False, 0.0
    if saved is not None:
        if saved.slopes.shape != slopes.shape:
            raise SPARConfigError(
                f"checkpoint: slopes of shape {saved.slopes.shape}, the problem has "
                f"{slopes.shape} (another problem wrote it)"
            )
        slopes, visits = saved.slopes.copy(), saved.visits.copy()
        n_updates, stop = saved.n_updates, copy.deepcopy(saved.stop)
        history, statistics = list(saved.history), list(saved.statistics)
        rng.bit_generator.state = saved.rng_state
        reason, finished = saved.stop_reason, saved.finished
        first_it, learned_before = saved.iteration + 1, saved.learn_seconds

    def save_state(iteration: int, done: bool) -> None:
        assert checkpoint is not None
        checkpoint.save(
            SPARState(
                config=cfg,
                pool=pool,
                iteration=iteration,
                finished=done,
                stop_reason=reason,
                slopes=slopes,
                visits=visits,
                n_updates=n_updates,
                rng_state=rng.bit_generator.state,
                stop=stop,
                statistics=tuple(statistics),
                history=tuple(history),
                cuts=tuple(stages.cuts),
                learn_seconds=learned_before + time.perf_counter() - t_start,
            )
        )

    for it in range(first_it, 0 if finished else cfg.max_iterations + 1):
        if checkpoint is not None and it > first_it and (it - 1) % checkpoint_every == 0:
            save_state(it - 1, done=False)
            stages = _Stages(problem, cfg, rng, stages.cuts)  # as a resumed run builds them
        explore = it <= cfg.exploration_iterations
        t0 = time.perf_counter()
        sol = stages.solve_first(slopes, explore)
        t1 = time.perf_counter()
        drawn = rng.choice(pool.size, size=batch, replace=False, p=weight)
        omegas = tuple(int(w) for w in pool[drawn])
        x = stages.decl.embed(sol.units, sol.sited)
        if executor is not None and len(omegas) > 1:
            results = executor.map(
                functools.partial(_solve_recourse, x=x, options=options),
                list(omegas),
                state_factory=recourse_state_factory(problem),
                desc=None,
            )
        else:
            results = [stages.second.solve(x, w, options, farkas=True) for w in omegas]
        t2 = time.perf_counter()
        feasible = all(r.feasible for r in results)
        cuts_added = 0
        sample = math.nan
        alpha_mean = math.nan
        if feasible:
            ghat = np.mean([stages.decl.argument_slopes(r.subgradient) for r in results], axis=0)
            sample = float(np.mean([r.objective for r in results]))
            k = slope_index(sol.units, big_l)
            alpha = _visit(cfg, visits, sites, k, n_updates)
            if n_updates == 0 and (
                cfg.slope_initialization is SlopeInitialization.FIRST_OBSERVATION
            ):
                slopes = np.repeat(ghat[:, None], big_l, axis=1)
            else:
                slopes = update(slopes, None, sol.units, ghat, alpha)
            if cfg.update_sides is UpdateSides.BOTH:
                left, kl = _left_segments(sol.units, big_l)
                alpha_left = _visit(cfg, visits, left, kl, n_updates)
                # the point n_i − 1 reads its right segment, i.e. u_i(n_i − 1)
                slopes = update(slopes, left, kl, ghat[left], alpha_left)
            n_updates += 1
            alpha_mean = float(np.mean(alpha))
        else:
            cuts_added = sum(stages.add_cut(r.cut, r.scenario) for r in results if not r.feasible)
        t3 = time.perf_counter()

        converged = False
        if feasible and not explore:
            statistic = sol.objective if cfg.stop_statistic is StopStatistic.ESTIMATED else sample
            statistics.append(float(statistic))
            converged = stop.update(statistic)
        average = (
            float(np.mean(statistics[-cfg.window :])) if len(statistics) >= cfg.window else None
        )
        record = SPARIteration(
            iteration=it,
            scenarios=omegas,
            units=np.asarray(sol.units).copy(),
            explored=explore,
            feasible=feasible,
            sample_objective=sample,
            first_stage_objective=float(sol.objective),
            moving_average=math.nan if average is None else float(average),
            step_size=alpha_mean,
            first_stage_seconds=t1 - t0,
            second_stage_seconds=t2 - t1,
            update_seconds=t3 - t2,
            cuts_added=cuts_added,
        )
        history.append(record)
        if progress is not None:
            progress(it, cfg.max_iterations)
        if on_iteration is not None and on_iteration(record):
            reason = StopReason.CALLBACK
            break
        if converged:
            reason = StopReason.CONVERGED
            break

    if checkpoint is not None and not finished:
        save_state(len(history), done=True)
        stages = _Stages(problem, cfg, rng, stages.cuts)  # as a resumed run builds them
    final = stages.solve_first(slopes, explore=False)
    learn_seconds = learned_before + time.perf_counter() - t_start

    t_eval = time.perf_counter()
    evaluation: OutOfSampleResult | None = None
    polish: list[float] = []
    objective = math.nan
    reused_scenarios = 0
    exact_zero = cfg.intercept is Intercept.EXACT_ZERO
    baseline = math.nan if baseline_objective is None else float(baseline_objective)
    if cfg.evaluate:
        own = executor is None
        ex = InProcessExecutor() if own else executor
        store = None if evaluation_checkpoint is None else _EvaluationStore(evaluation_checkpoint)
        try:
            # the polish works on a copy: ``slopes`` stay the learned function (Fig. 2, accuracy)
            polish_set = _polish_scenarios(problem, cfg, scenarios)
            if polish_set is None:
                # polish on all scenarios: its evaluations are the exact evaluation
                final, evaluation, polish = _evaluate_and_polish(
                    problem, stages, slopes, final, ex, options, None, store
                )
            elif cfg.polish_rounds > 0:
                # a SAA batch or a large set: polish on the batch (with its weights) / a
                # fixed subsample
                final, _, polish = _evaluate_and_polish(
                    problem,
                    stages,
                    slopes,
                    final,
                    ex,
                    options,
                    polish_set,
                    store,
                    None if scenario_weights is None else weight,
                )
            if polish:
                # the polish rounds are part of the method: their evaluations chose n̂
                learn_seconds = learned_before + time.perf_counter() - t_start
                t_eval = time.perf_counter()
            if polish_set is not None:
                # the chosen decision, evaluated on ALL scenarios
                final, evaluation = _evaluate_with_repair(
                    problem, stages, slopes, final, ex, options, None, store
                )
            if exact_zero and baseline_objective is None:
                zero = stages.decl.embed(np.zeros(n_sites, dtype=int))
                baseline = _evaluate(problem, zero, ex, options, None, store).expected_objective
        finally:
            if own:
                ex.close()
        objective = float(evaluation.expected_objective)
        reused_scenarios = 0 if store is None else store.reused_scenarios
    evaluation_seconds = time.perf_counter() - t_eval

    change = float(SeparablePWL(slopes).total(final.units))
    intercept = baseline if exact_zero else _sampled_intercept(history, slopes)
    x_hat = stages.decl.embed(final.units, final.sited)
    estimated = change + intercept + float(problem.first_stage.cost @ x_hat)  # + cᵀx̂
    accuracy = math.nan
    if math.isfinite(objective) and math.isfinite(estimated) and objective != 0:
        accuracy = 1.0 - abs(estimated - objective) / abs(objective)
    return SPARResult(
        decision=problem.decode(x_hat),
        x=x_hat,
        objective=objective,
        estimated_objective=float(estimated),
        first_stage_objective=change,
        intercept=float(intercept),
        approximation_accuracy=float(accuracy),
        iterations=len(history),
        stop_reason=reason,
        history=history,
        slopes=slopes,
        visits=visits,
        cuts=tuple(stages.cuts),
        evaluation=evaluation,
        polish_objectives=tuple(polish),
        wall_seconds=learned_before + time.perf_counter() - t_start,
        learn_seconds=learn_seconds,
        evaluation_seconds=evaluation_seconds,
        resumed_at=0 if saved is None else saved.iteration,
        evaluation_reused_scenarios=reused_scenarios,
    )


def _resumable_state(
    checkpoint: Checkpoint | None, config: SPARConfig, pool: np.ndarray
) -> SPARState | None:
    """The checkpoint's :class:`SPARState`, checked against this run (None: start anew)."""
    state = None if checkpoint is None else checkpoint.load()
    if state is None:
        return None
    if not isinstance(state, SPARState):
        raise SPARConfigError(f"checkpoint holds a {type(state).__name__}, not a SPARState")
    if state.config != config:
        raise SPARConfigError(
            f"checkpoint written with other settings ({state.config}); this run has {config}"
        )
    if not np.array_equal(state.pool, pool):
        raise SPARConfigError("checkpoint written for another scenario selection")
    return state


# ------------------------------------------------------------------------------ bounds


@dataclass(frozen=True)
class SPARBounds(StatisticalBounds):
    """:class:`StatisticalBounds` of SPAR with the replications behind them (paper C II–V).

    Attributes
    ----------
    batch_size : int
        ``N`` scenarios per batch.
    n_replications : int
        ``K``.
    upper_samples : numpy.ndarray, shape (K,)
        Exact full-set objectives ``V(x̂_k)`` of the SPAR solutions (objective units).
    lower_samples : numpy.ndarray, shape (K,)
        EF dual bounds on the batches (objective units).
    lower_incumbents : numpy.ndarray, shape (K,)
        Best batch incumbent objectives: the batch EF's or the best point the L-shaped method
        evaluated (objective units; NaN without incumbent).
    lower_sources : tuple of LowerBoundSource
        Where each lower-bound sample comes from (EF dual bound or the wait-and-see fallback).
    estimated_objectives : numpy.ndarray, shape (K,)
        SPAR's own estimates ``V̂(x̂_k)`` (paper C Table II "Obj" is of this kind).
    units : numpy.ndarray of int, shape (K, n_sites)
        The SPAR decisions ``x̂_k``.
    spar_seconds, ef_seconds : numpy.ndarray, shape (K,)
        Wall time of each SPAR run (learning only) and each lower-bound replication (batch EF
        and Lagrangian bound) [s].
    wall_seconds : float
        The whole procedure [s].
    lower_provenance : tuple of tuple of BoundProvenance
        Per replication, every lower bound computed on the batch (EF dual bound, Lagrangian,
        wait-and-see), the chosen (largest) one first: method, value, subproblem gaps, time.
    draws : numpy.ndarray of int, shape (K, N)
        The scenario indices of every batch (to re-derive each batch optimum).
    weights : numpy.ndarray, shape (K, N)
        Their weights in the batch objectives (rows sum to 1).
    sampling : BatchSampling
        How the batches were drawn.
    take_all : numpy.ndarray of int
        The take-all stratum of stratified batches (in every batch; empty for i.i.d.).
    reused_replications : int
        Replication tasks (of ``2K``) taken from a checkpoint.
    paired : PairedGapEstimate or None
        Mak–Morton–Wood paired gap estimate of the candidate (``candidate`` of
        :func:`spar_statistical_bounds`; None without one):
        ``G_k = Σ_j w_j f(x̂, ω_kj) − LB_k``.
    gap_estimate : float
        ``paired.upper``: one-sided ``confidence`` bound on the optimality gap of the
        candidate (objective units; NaN without candidate).
    gap_estimate_pct : float
        ``paired.upper_pct`` [%] of the candidate's full objective (NaN without candidate).
    """

    batch_size: int = 0
    n_replications: int = 0
    upper_samples: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lower_samples: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lower_incumbents: np.ndarray = field(default_factory=lambda: np.zeros(0))
    lower_sources: tuple[LowerBoundSource, ...] = ()
    estimated_objectives: np.ndarray = field(default_factory=lambda: np.zeros(0))
    units: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=int))
    spar_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    ef_seconds: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wall_seconds: float = 0.0
    lower_provenance: tuple[tuple[BoundProvenance, ...], ...] = ()
    draws: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=int))
    weights: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    sampling: BatchSampling = BatchSampling.IID
    take_all: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=int))
    reused_replications: int = 0
    paired: PairedGapEstimate | None = None
    gap_estimate: float = math.nan
    gap_estimate_pct: float = math.nan


@dataclass(frozen=True)
class _SparReplication:
    units: np.ndarray
    objective: float
    estimated_objective: float
    learn_seconds: float
    x: np.ndarray
    batch_subgradients: np.ndarray  # (N, n_x): ∂Q_ω/∂x at x̂ for the batch's draws
    batch_objectives: np.ndarray | None = None  # (N,): Q_ω(x̂) for the batch's draws


@dataclass(frozen=True)
class _EfReplication:
    objective: float
    bound: float
    wall_seconds: float
    source: LowerBoundSource
    provenance: tuple[BoundProvenance, ...] = ()


@dataclass(frozen=True, eq=False)
class SPARBoundsState:
    """Checkpoint of :func:`spar_statistical_bounds`: the replications finished so far.

    Attributes
    ----------
    config : SPARConfig
    draws : numpy.ndarray of int, shape (K, N)
        The batches (a resume with other batches is refused).
    spar : dict of int to _SparReplication
        Finished SPAR (upper-bound) replications by index.
    lower : dict of int to _EfReplication
        Finished lower-bound replications by index.
    """

    config: SPARConfig
    draws: np.ndarray
    spar: dict[int, _SparReplication]
    lower: dict[int, _EfReplication]
    #: Weights of the draws, shape (K, N) (a resume with other weights is refused).
    weights: np.ndarray | None = None

    @property
    def n_finished(self) -> int:
        """Replication tasks finished (of ``2K``)."""
        return len(self.spar) + len(self.lower)


def _map_with_checkpoints(
    ex: Executor,
    fn: Callable[..., Any],
    items: list[Any],
    done: dict[int, Any],
    save: Callable[[], None] | None,
    state: Callable[[], Any],
    progress: Callable[[int, int], None],
) -> list[Any]:
    """``ex.map(fn, items)`` skipping the indices in ``done``; with ``save``, in waves of
    ``ex.n_workers`` tasks, each wave's results added to ``done`` and saved."""
    todo = [i for i in range(len(items)) if i not in done]
    wave = len(todo) if save is None else max(1, int(getattr(ex, "n_workers", 1)))
    for start in range(0, len(todo), wave):
        chunk = todo[start : start + wave]
        offset = len(done)
        results = ex.map(
            fn,
            [items[i] for i in chunk],
            state_factory=state,
            desc=None,
            progress=lambda n, _total, offset=offset: progress(offset + n, len(items)),
        )
        done.update(zip(chunk, results, strict=True))
        if save is not None:
            save()
    return [done[i] for i in range(len(items))]


def _problem_state(problem: SPARProblem) -> SPARProblem:
    """Per-worker state of the replications: the problem itself (shipped once)."""
    return problem


def _spar_replication(
    problem: SPARProblem,
    item: tuple[np.ndarray, np.ndarray, int],
    *,
    config: SPARConfig,
    baseline: float | None,
    options: SolverOptions | None,
) -> _SparReplication:
    indices, weights, seed = item
    res = solve_spar(
        problem,
        replace(config, seed=int(seed), evaluate=True),
        options=options,
        scenarios=indices,
        scenario_weights=weights,
        baseline_objective=baseline,
    )
    ev = res.evaluation
    assert ev is not None  # evaluate=True
    row = {int(s): k for k, s in enumerate(ev.scenario_indices)}
    return _SparReplication(
        units=np.asarray(res.decision.units),
        objective=res.objective,
        estimated_objective=res.estimated_objective,
        learn_seconds=res.learn_seconds,
        x=np.asarray(ev.x, dtype=float),
        batch_subgradients=ev.subgradients[[row[int(s)] for s in indices]],
        batch_objectives=ev.objectives[[row[int(s)] for s in indices]],
    )


def _wait_and_see_bound(
    problem: SPARProblem, indices: np.ndarray, weights: np.ndarray, options: SolverOptions
) -> float:
    """``Σ_j w_j min_x Q(x, ω_j)`` over a batch (``LowerBoundSource.WAIT_AND_SEE``).

    Each term is a one-scenario extensive form (small; solved without the time limit); its MIP
    dual bound is used. ``w_j`` are the batch's weights (summing to 1).
    """
    unique, inverse = np.unique(np.asarray(indices, dtype=int), return_inverse=True)
    single = SolverOptions(mip_gap=options.mip_gap, threads=options.threads)
    bounds = np.array(
        [
            solve_extensive_form(problem, single, scenarios=[int(w)]).bound  # type: ignore[arg-type]
            for w in unique
        ]
    )
    return float(np.asarray(weights, dtype=float) @ bounds[inverse])


def _ef_replication(
    problem: SPARProblem,
    item: tuple[
        np.ndarray, np.ndarray, np.ndarray | None, np.ndarray, SeedPoint | None, Checkpoint | None
    ],
    *,
    options: SolverOptions,
    lagrangian: bool = False,
    batch_ef: bool = True,
    l_shaped: LShapedConfig | None = None,
    recourse_options: SolverOptions | None = None,
) -> _EfReplication:
    # batch draws and weights, EF start, subgradients, L-shaped seed, its loop's checkpoint
    indices, weights, start, subgradients, seed, l_shaped_checkpoint = item
    if options.relax_integrality:
        return _relaxation_replication(problem, indices, weights, options)
    t0 = time.perf_counter()
    candidates: list[BoundProvenance] = []
    objective = math.nan
    if batch_ef:
        t_ef = time.perf_counter()
        bound, gap = math.nan, math.inf
        try:
            res = solve_extensive_form(  # type: ignore[arg-type]
                problem, options, scenarios=indices, scenario_weights=weights, start=start
            )
            objective, bound, gap = float(res.objective), float(res.bound), float(res.gap)
        except SolverTimeLimitError as exc:  # no incumbent: HiGHS's dual bound stays valid
            bound = float(getattr(exc, "dual_bound", math.nan))
        if math.isfinite(bound):
            candidates.append(
                BoundProvenance(
                    method=BoundMethod.EXTENSIVE_FORM,
                    value=bound,
                    multipliers="spar_start" if start is not None else "none",
                    n_subproblems=1,
                    max_subproblem_gap=gap,
                    incumbent=objective,
                    seconds=time.perf_counter() - t_ef,
                )
            )
    if lagrangian and subgradients is not None:
        w = subgradient_multipliers(subgradients, weights)
        single = SolverOptions(mip_gap=min(options.mip_gap, 1e-6), threads=options.threads)
        lb = lagrangian_bound(
            problem,
            w,
            scenarios=indices,
            scenario_weights=weights,
            options=single,
            origin="subgradients",
        )
        candidates.append(lb.provenance)
    if l_shaped is not None and seed is not None:
        ls = l_shaped_bound(
            problem,
            indices,
            scenario_weights=weights,
            seeds=[seed],
            config=l_shaped,
            options=recourse_options,
            checkpoint=l_shaped_checkpoint,
        )
        if math.isfinite(ls.lower_bound):
            candidates.append(ls.provenance)
        if math.isfinite(ls.upper_bound) and not objective <= ls.upper_bound:
            objective = ls.upper_bound  # the best batch incumbent (EF or L-shaped)
    if not candidates:
        t_ws = time.perf_counter()
        value = _wait_and_see_bound(problem, indices, weights, options)
        candidates.append(
            BoundProvenance(
                method=BoundMethod.WAIT_AND_SEE,
                value=value,
                n_subproblems=len(np.unique(indices)),
                seconds=time.perf_counter() - t_ws,
            )
        )
    chosen = best_bound(candidates)
    source = {
        BoundMethod.EXTENSIVE_FORM: LowerBoundSource.EXTENSIVE_FORM,
        BoundMethod.LAGRANGIAN: LowerBoundSource.LAGRANGIAN,
        BoundMethod.L_SHAPED: LowerBoundSource.L_SHAPED,
        BoundMethod.WAIT_AND_SEE: LowerBoundSource.WAIT_AND_SEE,
    }[chosen.method]
    others = tuple(c for c in candidates if c is not chosen)
    return _EfReplication(
        objective=objective,
        bound=chosen.value,
        wall_seconds=time.perf_counter() - t0,
        source=source,
        provenance=(chosen, *others),
    )


def _relaxation_replication(
    problem: SPARProblem, indices: np.ndarray, weights: np.ndarray, options: SolverOptions
) -> _EfReplication:
    """The optimum of the batch EF's LP relaxation (``LowerBoundSource.RELAXATION``)."""
    t0 = time.perf_counter()
    ef = build_extensive_form(  # type: ignore[arg-type]
        problem, scenarios=indices, scenario_weights=weights
    )
    relaxed = ef.model.solve(options)
    if not math.isfinite(relaxed.dual_bound):  # stopped early: no valid bound
        raise SolverTimeLimitError(
            f"LP relaxation of the batch extensive form ({len(indices)} scenarios) "
            f"ended with status {relaxed.status!r} within {options.time_limit} s: no "
            "valid lower bound; raise the batch EF time limit"
        )
    bound = float(relaxed.dual_bound) + problem.second_stage.objective_offset
    seconds = time.perf_counter() - t0
    return _EfReplication(
        objective=math.nan,
        bound=bound,
        wall_seconds=seconds,
        source=LowerBoundSource.RELAXATION,
        provenance=(BoundProvenance(BoundMethod.RELAXATION, bound, seconds=seconds),),
    )


def spar_statistical_bounds(
    problem: SPARProblem,
    config: SPARConfig | None = None,
    *,
    batch_size: int,
    n_replications: int,
    confidence: float = 0.95,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    ef_options: SolverOptions | None = None,
    progress: ProgressCallback | None = None,
    lagrangian: bool = True,
    ef_start: bool = True,
    batch_ef: bool = True,
    checkpoint: Checkpoint | None = None,
    l_shaped: bool = True,
    l_shaped_config: LShapedConfig | None = None,
    candidate: OutOfSampleResult | None = None,
    sampling: BatchSampling = BatchSampling.IID,
) -> SPARBounds:
    """Mak–Morton–Wood upper and lower bounds of the optimum around SPAR (paper C §II-E).

    ``K = n_replications`` batches of ``N = batch_size`` scenarios are drawn (seeded by
    ``config.seed``; :func:`~gridrecourse.evaluation.batch_sampling.draw_batches`):

    * ``sampling = IID`` (paper C): indices uniform with replacement, each draw weighed by its
      probability renormalized (exactly ``1/N`` for an equal-probability set; for unequal
      probabilities a self-normalized estimate, consistent with O(1/N) bias);
    * ``sampling = STRATIFIED``: a take-all stratum of the far-out scenarios plus one draw per
      equal-probability stratum of the rest, ranked by the ``candidate``'s per-scenario
      recourse values (fixed before the draws); unbiased for every ``x``, so every bound
      below stays valid, with far less variance when a few scenarios dominate the cost.

    For every batch ``k``:

    * **UB** (paper C (27)–(31)): SPAR with seed ``seed_k`` sampling from batch ``k`` gives
      ``x̂_k``; its exact expected recourse over ALL scenarios is the sample ``U_k ≥ z*``.
    * **LB** (paper C (32)–(36)): the largest of these valid lower bounds of the batch
      optimum (each recorded with its provenance in :attr:`SPARBounds.lower_provenance`):

      - the batch extensive form (to ``ef_options``), started from the batch's SPAR decision
        ``x̂_k`` (``ef_start``; so HiGHS has an incumbent from the start): its MIP dual bound,
        also when it stops at the time limit;
      - the Lagrangian bound (``lagrangian``; :mod:`~gridrecourse.methods.lagrangian`, eq. L1)
        with multipliers ``w_ω = ḡ − g_ω`` from the scenario subgradients at ``x̂_k`` (one
        MILP per distinct scenario of the batch, each term its MIP dual bound);
      - the integer L-shaped bound (``l_shaped``; :mod:`~gridrecourse.methods.l_shaped`): a
        multi-cut Benders master over the batch seeded with the cuts at ``x̂_k`` (its exact
        values and subgradients, no new solve), then Kelley iterations, each one exact
        evaluation of the batch at the master's point; the master's MIP dual bound. The
        bound of choice where the batch MILP is out of reach (``batch_ef = False``).

      Every candidate is ≤ the batch optimum (the EF's dual bound also for the P2 losses,
      whose tangent planes only lower it), hence so is their maximum. With neither (no
      incumbent and no Lagrangian), the sample is the batch's wait-and-see value
      ``Σ_j w_j min_x Q(x, ω_j)``. With ``ef_options.relax_integrality`` the sample is the
      optimum of the batch EF's LP relaxation instead (valid and cheaper, weaker).

    Intervals: :func:`~gridrecourse.evaluation.bounds.statistical_bounds` (t-quantile for
    ``K < 30``); ``gap = UB.high − LB.low``, ``gap_pct`` relative to the mean UB sample.

    Paired gap estimate (with ``candidate`` ``x̂``; Mak, Morton & Wood 1999): on each batch
    ``G_k = Σ_j w_j (cᵀx̂ + Q(x̂, ω_kj)) − LB_k`` with the LB sample above, and the one-sided
    bound ``Ḡ + t_{K−1, conf} s_G/√K`` on ``f(x̂) − z*`` (:attr:`SPARBounds.gap_estimate`,
    ``gap_estimate_pct`` of ``f(x̂)``).

    Parameters
    ----------
    problem : SPARProblem
    config : SPARConfig, optional
        SPAR settings of every replication (its ``seed`` seeds the batches and the runs).
    batch_size : int
        ``N`` (>= 1).
    n_replications : int
        ``K`` (>= 2).
    confidence : float, default 0.95
        Level of both intervals.
    executor : Executor, optional
        Runs the replications (whole SPAR runs, then whole EF solves) in parallel; default
        in-process.
    options : SolverOptions, optional
        Recourse solver options (SPAR and evaluations).
    ef_options : SolverOptions, optional
        Extensive-form options (default ``mip_gap = 1e-4``).
    progress : callable, optional
        ``progress(done, total)`` over the ``2K`` replication tasks.
    lagrangian : bool, default True
        Add the Lagrangian bound at the SPAR decision's subgradients (LP/QP recourse).
    ef_start : bool, default True
        Start each batch EF from the batch's SPAR decision.
    batch_ef : bool, default True
        Solve the batch EFs at all (False: Lagrangian bound only, for feeders where the batch
        MILP is out of reach).
    checkpoint : Checkpoint, optional
        Every finished replication is saved there (a :class:`SPARBoundsState`; the tasks then
        run in waves of ``executor.n_workers``); the replications found there are reused
        (:attr:`SPARBounds.reused_replications`). Each replication is a function of its batch
        and seed only, so the result equals an uninterrupted run's. Inside a replication the
        L-shaped loop is checkpointed too (every ``LShapedConfig.checkpoint_every``
        iterations), in the part ``l-shaped-<k>`` of the checkpoint
        (:func:`~gridrecourse.checkpointing.child_checkpoint`): an interrupted replication
        solves its batch EF and Lagrangian bound again and resumes its L-shaped loop.
    l_shaped : bool, default True
        Add the integer L-shaped bound (every problem SPAR accepts qualifies: LP/QP recourse
        and a separable first stage).
    l_shaped_config : LShapedConfig, optional
        Its settings (default :class:`~gridrecourse.methods.l_shaped.LShapedConfig` with the
        batch EF's time limit).
    candidate : OutOfSampleResult, optional
        The exact evaluation on ALL scenarios of the decision being certified (e.g. SPAR's on
        the full set, :attr:`SPARResult.evaluation`): gives the paired gap estimate
        (:attr:`SPARBounds.paired`, :func:`~gridrecourse.evaluation.bounds.paired_gap_estimate`)
        from its per-scenario values, no new solve. Its decision must not depend on the batches.
        Required for ``STRATIFIED`` sampling (its values are the stratification key).
    sampling : BatchSampling, default IID
        How the batches are drawn (above).

    Returns
    -------
    SPARBounds
        A :class:`~gridrecourse.evaluation.bounds.StatisticalBounds` with the samples.
    """
    t0 = time.perf_counter()
    cfg = config or SPARConfig()
    if int(batch_size) != batch_size or batch_size < 1:
        raise SPARConfigError(f"batch_size must be a positive integer, got {batch_size!r}")
    if int(n_replications) != n_replications or n_replications < 2:
        raise SPARConfigError(f"n_replications must be an integer >= 2, got {n_replications!r}")
    k_reps, n_batch = int(n_replications), int(batch_size)
    decl = separable_declaration(problem)  # before any worker starts
    ef_opts = ef_options or SolverOptions(mip_gap=1e-4)
    ls_config = None
    if l_shaped:
        ls_config = l_shaped_config or LShapedConfig(time_limit=ef_opts.time_limit)
    sampling = BatchSampling(sampling)
    key = None
    if sampling is BatchSampling.STRATIFIED:
        if candidate is None:
            raise SPARConfigError(
                "stratified batches need the candidate's evaluation on all scenarios (its "
                "per-scenario recourse values rank the scenarios)"
            )
        key = _candidate_scenario_values(problem, candidate, np.arange(problem.n_scenarios))
    seq = np.random.SeedSequence(cfg.seed)
    draw_seq, *run_seqs = seq.spawn(k_reps + 1)
    batches = draw_batches(
        problem.probability, k_reps, n_batch, np.random.default_rng(draw_seq), sampling, key
    )
    draws, weights = batches.indices, batches.weights
    run_seeds = [int(s.generate_state(1)[0]) for s in run_seqs]
    saved = SPARBoundsState(cfg, draws, {}, {}, weights)
    found = None if checkpoint is None else checkpoint.load()
    if found is not None:
        if not isinstance(found, SPARBoundsState):
            raise SPARConfigError(f"checkpoint holds a {type(found).__name__}, not bounds")
        same_weights = found.weights is None or np.array_equal(found.weights, weights)
        if found.config != cfg or not np.array_equal(found.draws, draws) or not same_weights:
            raise SPARConfigError(
                "bounds checkpoint written with other settings, batches or seed; start anew"
            )
        saved = found
    reused = saved.n_finished
    save = None if checkpoint is None else (lambda: checkpoint.save(saved))
    own = executor is None
    ex = InProcessExecutor() if own else executor
    done = [0]

    def step(n_done: int, total: int) -> None:
        if progress is not None:
            progress(done[0] + n_done, 2 * k_reps)

    try:
        baseline = None
        if cfg.intercept is Intercept.EXACT_ZERO and len(saved.spar) < k_reps:
            zero = decl.embed(np.zeros(decl.n_elements, dtype=int))
            baseline = _evaluate(problem, zero, ex, options).expected_objective
        state = functools.partial(_problem_state, problem)
        spar_runs: list[_SparReplication] = _map_with_checkpoints(
            ex,
            functools.partial(_spar_replication, config=cfg, baseline=baseline, options=options),
            list(zip(draws, weights, run_seeds, strict=True)),
            saved.spar,
            save,
            state,
            step,
        )
        done[0] = k_reps
        ef_runs: list[_EfReplication] = _map_with_checkpoints(
            ex,
            functools.partial(
                _ef_replication,
                options=ef_opts,
                lagrangian=lagrangian,
                batch_ef=batch_ef,
                l_shaped=ls_config,
                recourse_options=options,
            ),
            [
                (
                    d,
                    w,
                    r.x if ef_start else None,
                    r.batch_subgradients,
                    None
                    if r.batch_objectives is None
                    else SeedPoint(r.x, r.batch_objectives, r.batch_subgradients),
                    child_checkpoint(checkpoint, f"l-shaped-{k}"),
                )
                for k, (d, w, r) in enumerate(zip(draws, weights, spar_runs, strict=True))
            ],
            saved.lower,
            save,
            state,
            step,
        )
    finally:
        if own:
            ex.close()
    upper = np.array([r.objective for r in spar_runs])
    lower = np.array([r.bound for r in ef_runs])
    base = statistical_bounds(upper, lower, confidence)
    paired = None
    if candidate is not None:
        paired = paired_gap_estimate(
            _candidate_batch_values(problem, candidate, draws, weights),
            lower,
            candidate.expected_objective,
            confidence,
        )
    return SPARBounds(
        upper=base.upper,
        lower=base.lower,
        gap=base.gap,
        gap_pct=base.gap_pct,
        batch_size=n_batch,
        n_replications=k_reps,
        upper_samples=upper,
        lower_samples=lower,
        lower_incumbents=np.array([r.objective for r in ef_runs]),
        lower_sources=tuple(r.source for r in ef_runs),
        estimated_objectives=np.array([r.estimated_objective for r in spar_runs]),
        units=np.vstack([r.units for r in spar_runs]),
        spar_seconds=np.array([r.learn_seconds for r in spar_runs]),
        ef_seconds=np.array([r.wall_seconds for r in ef_runs]),
        wall_seconds=time.perf_counter() - t0,
        lower_provenance=tuple(r.provenance for r in ef_runs),
        draws=draws,
        weights=weights,
        sampling=sampling,
        take_all=batches.take_all,
        reused_replications=reused,
        paired=paired,
        gap_estimate=math.nan if paired is None else paired.upper,
        gap_estimate_pct=math.nan if paired is None else paired.upper_pct,
    )


def _candidate_batch_values(
    problem: SPARProblem, candidate: OutOfSampleResult, draws: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """``Σ_j w_kj (cᵀx̂ + Q(x̂, ω_kj))`` per batch ``k`` from the candidate's exact evaluation."""
    q = _candidate_scenario_values(problem, candidate, draws)
    first_cost = float(problem.first_stage.cost @ np.asarray(candidate.x, dtype=float))
    return (np.asarray(weights, dtype=float) * q).sum(axis=1) + first_cost


def _candidate_scenario_values(
    problem: SPARProblem, candidate: OutOfSampleResult, draws: np.ndarray
) -> np.ndarray:
    """``Q(x̂, ω)`` for every index in ``draws`` (same shape) from the candidate's evaluation.

    Raises
    ------
    SPARConfigError
        The evaluation misses a drawn scenario or is infeasible in one.
    """
    where = np.full(problem.n_scenarios, -1, dtype=int)
    where[np.asarray(candidate.scenario_indices, dtype=int)] = np.arange(
        len(candidate.scenario_indices)
    )
    rows = where[draws]
    if np.any(rows < 0):
        missing = np.unique(draws[rows < 0]).tolist()
        raise SPARConfigError(
            f"candidate evaluation lacks the drawn scenarios {missing[:10]}: evaluate the "
            "candidate on all scenarios"
        )
    q = np.asarray(candidate.objectives, dtype=float)[rows]
    if not np.all(np.isfinite(q)):
        raise SPARConfigError(
            "the candidate is infeasible in a drawn scenario: no gap estimate or stratification"
        )
    return q
