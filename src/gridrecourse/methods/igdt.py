"""DT, IGDT and confidence-level IGDT (CL-DIGDT) for day-ahead operation (paper D, METHODS §6).

* **DT** (deterministic): the plan at the forecast, ``Λ0 = min cᵀx`` (eq 10 at ``ξ̃``; the
  recourse at the forecast is zero).
* **IGDT** (eq 12): ``max δ`` such that the worst case over
  ``ξ_load ∈ [(1−δ) ξ̃, (1+δ) ξ̃]``, ``ξ_pv ∈ [(1−δ) ξ̃, (1+δ) ξ̃]`` costs at most
  ``(1+σ) Λ0``. Solved single-level: the worst case is taken at the corners of the box
  (below), each a recourse copy whose ``xi`` columns are tied to the ``δ`` column, so one MILP
  gives ``δ*`` (:func:`igdt_feasible` fixes ``δ`` for a bisection cross-check).
* **CL-DIGDT** (eq 14): ``max α`` such that the worst case over the confidence-level sets
  ``U(α)`` (:mod:`gridrecourse.uncertainty.ambiguity`, eq 26) stays within the budget. The
  paper's iterative scheme (§IV-B, eqs 29–32): 10 sub-intervals of the current range of α, a
  binary ``u_m`` per grid point ``α_m`` (11 points with both ends), the precomputed sets
  switched in by big-M rows (eq 31)::

      ξ_c − v_m ≤ M (1 − u_m),   ξ_c − v_m ≥ −M (1 − u_m),   Σ_m u_m = 1,   max Σ_m α_m u_m

  with ``v_m`` the end of ``U(α_m)`` at corner ``c`` and ``M`` per entry the range of the
  samples (the tightest valid constant for every α; derived from data, not a fixed 1e5). The
  chosen ``α_m*`` is the lower bound LB, the next grid point the upper bound UB; the range is
  refined until ``UB − LB ≤ ε`` (Table III stops at a width of 1e-4 for ε = 1e-4). The model is
  built once; each refinement changes only row bounds, the binaries' bounds and their costs.
  ``U(0)`` is the forecast point (the analogue of IGDT's ``δ = 0``).

* **Stochastic program** (a baseline the paper does not run): the extensive form of the
  two-stage operation problem (:class:`~gridrecourse.problems.operation_two_stage.OperationProblem`)
  over training days as equally likely scenarios (:func:`solve_stochastic_plan`); the same
  problem, with the held-out days as scenarios, is where every schedule is post-evaluated
  (:func:`operation_problem`, :func:`gridrecourse.evaluation.operation.evaluate_schedule`).

**Where the worst case lies.** For a fixed first stage the recourse cost ``Q(x, ξ)`` is the
optimal value of an LP whose right-hand side is affine in ``ξ``, hence convex in ``ξ`` (and its
feasible region convex): its maximum over a box lies at a vertex, and the box is served iff all
its vertices are. Paper D argues the vertex is the highest net load (loads up, PV down); that
holds when ``Q`` is nondecreasing in net load, i.e. while no upper voltage limit or reverse flow
binds. High PV with low load can bind on a feeder with strong PV, so the robust models carry
both corners (:class:`~gridrecourse.problems.operation.NetLoadCorner` ``HIGH`` and ``LOW``) by
default, and :func:`worst_case_scan` checks a schedule against random vertices and interior
points of its set (tests: ``tests/methods/test_igdt.py``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import GridRecourseError, InfeasibleModelError, SolverError
from gridrecourse.evaluation.operation import ScheduleEvaluation, evaluate_schedule
from gridrecourse.physics.lindistflow import LinDist3Flow, LossTerms
from gridrecourse.problems.operation import (
    FirstStageSchedule,
    NetLoadCorner,
    OperationCase,
    OperationData,
    OperationModel,
    build_operation_model,
)
from gridrecourse.problems.operation_two_stage import OperationProblem
from gridrecourse.solvers.highs import Solution, WarmStartBudget, solve_retrying
from gridrecourse.solvers.options import SolverOptions
from gridrecourse.uncertainty.ambiguity import ConfidenceSet, IDMBand, idm_band

__all__ = [
    "BudgetInfeasibleError",
    "CLDIGDTResult",
    "CLIteration",
    "DTResult",
    "IGDTResult",
    "OperationInstance",
    "OperationMethod",
    "StochasticPlanResult",
    "WorstCaseScan",
    "igdt_feasible",
    "operation_problem",
    "solve_cl_digdt",
    "solve_dt",
    "solve_igdt",
    "solve_stochastic_plan",
    "worst_case_scan",
]

#: MIP gap of the robust MILPs: α and δ are the objective, so the gap must sit far below the
#: 1e-4 refinement step of CL-DIGDT.
ROBUST_MIP_GAP = 1e-9
#: Cost of storage throughput ($ per p.u. per period): a tie-breaker far below every real cost.
THROUGHPUT_COST = 1e-8


class OperationMethod(str, Enum):
    """Methods of ``gridrecourse operate``."""

    DT = "dt"
    IGDT = "igdt"
    CL_DIGDT = "cl-digdt"


class Selection(str, Enum):
    """How CL-DIGDT's binary selection of α_m (eqs 29–31) is solved."""

    #: branch on the one-hot binaries from the largest α_m down: each candidate fixes its
    #: u_m = 1 (the big-M rows then pin the corners to U(α_m)) and is one LP; the first feasible
    #: candidate is the MILP's optimum (complete enumeration of an 11-way one-hot choice)
    ENUMERATE = "enumerate"
    #: the MILP with the big-M switching rows, solved by HiGHS's branch and bound
    MILP = "milp"


class BudgetInfeasibleError(GridRecourseError):
    """The budget is below what even the forecast (δ = 0, α = 0) needs."""


@dataclass(frozen=True, eq=False)
class OperationInstance:
    """A feeder, its devices, the data and the corners carried by the robust models.

    Attributes
    ----------
    math : MathFeeder
    case : OperationCase
    data : OperationData
    corners : tuple of NetLoadCorner
        Worst-case candidates (default both; see module docstring).
    physics : LinDist3Flow
    """

    math: object
    case: OperationCase
    data: OperationData
    corners: tuple[NetLoadCorner, ...] = (NetLoadCorner.HIGH, NetLoadCorner.LOW)
    physics: LinDist3Flow | None = None

    def __post_init__(self) -> None:
        if self.physics is None:
            object.__setattr__(self, "physics", LinDist3Flow(self.math))
        if not self.corners:
            raise ValueError("at least one worst-case corner is needed")

    @property
    def n_load(self) -> int:
        """K_L."""
        return self.data.load.shape[2]

    @property
    def n_pv(self) -> int:
        """K_PV."""
        return self.data.pv.shape[2]

    def options(self, options: SolverOptions | None) -> SolverOptions:
        """Options of the robust MILPs (tight gap)."""
        return replace(options or SolverOptions(), mip_gap=ROBUST_MIP_GAP)


@dataclass(frozen=True, eq=False)
class DTResult:
    """The deterministic plan.

    Attributes
    ----------
    schedule : FirstStageSchedule
    cost : float
        Λ0 ($).
    losses : LossTerms
        Loss terms (E, T) at the forecast with this dispatch (reference of the robust models).
    plan_v_pu : ndarray, shape (N, T)
    plan_substation_kw : ndarray, shape (T,)
    seconds : float
    """

    schedule: FirstStageSchedule
    cost: float
    losses: LossTerms
    plan_v_pu: np.ndarray
    plan_substation_kw: np.ndarray
    seconds: float


@dataclass(frozen=True, eq=False)
class IGDTResult:
    """IGDT: the largest δ and its schedule (cost at each corner in ``corner_cost``)."""

    delta: float
    schedule: FirstStageSchedule
    corner_cost: dict[str, float]
    seconds: float


@dataclass(frozen=True, eq=False)
class CLIteration:
    """One refinement of CL-DIGDT (a row of Table III).

    Attributes
    ----------
    alpha : float
        Incumbent α (= LB).
    lb, ub : float
        Bounds of α* after this refinement.
    schedule : FirstStageSchedule
    corner_cost : dict
        ``cᵀx + dᵀy_c`` of the model's recourse at each corner ($; within the budget; the
        recourse there is feasible, not minimized).
    seconds : float
        Solve time of this refinement.
    unresolved : tuple of float
        Grid points where HiGHS ended with neither optimal nor infeasible (warm and cold):
        treated as not guaranteed (enumeration only).
    """

    alpha: float
    lb: float
    ub: float
    schedule: FirstStageSchedule
    corner_cost: dict[str, float]
    seconds: float
    unresolved: tuple[float, ...] = ()


@dataclass(frozen=True, eq=False)
class CLDIGDTResult:
    """CL-DIGDT: the refinements and the final schedule and sets.

    Attributes
    ----------
    alpha : float
    iterations : tuple of CLIteration
    load_set, pv_set : ConfidenceSet or None
        ``U(α)`` of every (hour, source) series at the final α (None at α = 0).
    max_alpha : float
        Largest α every series' band supports.
    seconds : float
        All refinements, set computations included.
    """

    alpha: float
    iterations: tuple[CLIteration, ...]
    load_set: ConfidenceSet | None
    pv_set: ConfidenceSet | None
    max_alpha: float
    seconds: float

    @property
    def schedule(self) -> FirstStageSchedule:
        """The schedule of the last refinement."""
        return self.iterations[-1].schedule


def _plan_readout(om: OperationModel, sol) -> tuple[np.ndarray, np.ndarray]:
    math, ph = om.math, om.physics
    T = om.n_periods
    vsq = om.net.values(sol, om.net.v)[:, :T]
    v = np.empty((math.n_nodes, T))
    v[ph.root] = math.root_v_pu[ph.root][:, None]
    v[ph.nonroot] = np.sqrt(np.maximum(vsq, 0.0))
    sub = sol.value(om.net.substation[0])[:T] * math.s_base_kva
    return v, sub


def _regularize(om: OperationModel) -> None:
    """A negligible cost on storage throughput: among optimal plans prefer no simultaneous
    charging and discharging (so the relaxation of the mode binaries is exact more often)."""
    if om.battery is not None:
        om.model.set_cost(om.battery.charge, THROUGHPUT_COST)
        om.model.set_cost(om.battery.discharge, THROUGHPUT_COST)


def _exact_modes(build: Callable[[bool], tuple], solve: Callable[[tuple], Solution]):
    """Solve with the storage mode binaries relaxed; if some storage then charges and
    discharges in the same hour, rebuild with the binaries and solve the MILP.

    The relaxation bounds the MILP, so a relaxed optimum that never charges and discharges at
    once is feasible for the MILP and optimal for it.
    """
    built = build(False)
    sol = solve(built)
    if built[0].simultaneous_storage(sol):
        built = build(True)
        sol = solve(built)
    return built, sol


def solve_dt(inst: OperationInstance, options: SolverOptions | None = None) -> DTResult:
    """The deterministic plan at the forecast (Λ0), losses at its own dispatch (two passes).

    Pass 1 takes the loss terms at the forecast net load without devices; pass 2 at the
    forecast net load with pass 1's dispatch (the fixed point of eq 8f's reference).

    Raises
    ------
    InfeasibleModelError
        The forecast cannot be served within the limits (message names the feeder).
    """
    t0 = time.perf_counter()
    d = inst.data

    def build(binaries: bool) -> tuple:
        om = build_operation_model(
            inst.math,
            inst.case,
            d.price_per_mwh,
            n_load_sources=inst.n_load,
            n_pv_sources=inst.n_pv,
            n_copies=0,
            physics=inst.physics,
            mode_binaries=binaries,
        )
        om.set_uncertain(d.forecast_load[None], d.forecast_pv[None])
        om.model.set_cost(om.first_cost, 1.0)
        _regularize(om)
        return (om, {})

    def solve(built: tuple) -> Solution:
        om, state = built
        p_ref, q_ref = om.reference_net_load(d.forecast_load[None], d.forecast_pv[None])
        losses = om.losses_at(p_ref, q_ref)
        for _ in range(2):
            om.set_losses(losses)
            try:
                sol = solve_retrying(om.model, options)
            except InfeasibleModelError as exc:
                raise InfeasibleModelError(
                    f"{exc}: the forecast day cannot be served on {inst.math.name!r} within "
                    f"[{inst.case.v_min}, {inst.case.v_max}] p.u. and the thermal limits"
                ) from exc
            sched = om.schedule(sol)
            p_ref, q_ref = om.reference_net_load(
                d.forecast_load[None],
                d.forecast_pv[None],
                sched.dg_kw,
                sched.dg_kvar,
                sched.discharge_kw - sched.charge_kw,
            )
            state["losses"] = losses
            losses = om.losses_at(p_ref, q_ref)
        return sol

    (om, state), sol = _exact_modes(build, solve)
    v, sub = _plan_readout(om, sol)
    schedule = om.schedule(sol)
    return DTResult(
        schedule=schedule,
        cost=schedule.cost,
        losses=state["losses"],
        plan_v_pu=v,
        plan_substation_kw=sub,
        seconds=time.perf_counter() - t0,
    )


def operation_problem(
    inst: OperationInstance,
    dt: DTResult,
    *,
    days: np.ndarray | None = None,
    load: np.ndarray | None = None,
    pv: np.ndarray | None = None,
    loss_reference: FirstStageSchedule | None = None,
) -> OperationProblem:
    """The two-stage operation problem of an instance (equal-probability days).

    The plan is made at the instance's forecast with the DT plan's loss terms (as in the
    robust models); the scenarios' loss terms are at ``loss_reference`` (default the DT
    schedule).

    Parameters
    ----------
    days : ndarray of int, optional
        Days of the data as scenarios (default the held-out days); ignored when ``load`` and
        ``pv`` are given.
    load, pv : ndarray, shape (S, T, K), optional
        Scenario multipliers given directly (e.g. points of a box).
    """
    d = inst.data
    if load is None or pv is None:
        days = d.test_days if days is None else np.asarray(days, dtype=int)
        load, pv = d.load[days], d.pv[days]
    return OperationProblem(
        inst.math,
        inst.case,
        d.price_per_mwh,
        load,
        pv,
        forecast_load=d.forecast_load,
        forecast_pv=d.forecast_pv,
        plan_losses=dt.losses,
        loss_reference=dt.schedule if loss_reference is None else loss_reference,
        physics=inst.physics,
    )


@dataclass(frozen=True, eq=False)
class StochasticPlanResult:
    """The extensive form of the two-stage operation problem over sampled days.

    Attributes
    ----------
    schedule : FirstStageSchedule
    objective : float
        ``Λ1 + mean Λ2`` over the sampled days (the EF's objective, $).
    days : ndarray of int
        The data's days used as equally likely scenarios.
    gap : float
        Relative MIP gap reached.
    seconds : float
    """

    schedule: FirstStageSchedule
    objective: float
    days: np.ndarray
    gap: float
    seconds: float


def solve_stochastic_plan(
    inst: OperationInstance,
    dt: DTResult,
    n_days: int,
    options: SolverOptions | None = None,
) -> StochasticPlanResult:
    """The stochastic program (extensive form) over ``n_days`` training days spread evenly
    over the year, the paper's alternative to the robust methods (same two-stage problem as
    the post-evaluation; storage modes as binaries; loss terms at the DT plan).

    Raises
    ------
    ValueError
        ``n_days`` outside 1..(training days).
    """
    from gridrecourse.methods.extensive_form import solve_extensive_form

    t0 = time.perf_counter()
    train = inst.data.train_days
    if not 1 <= int(n_days) <= len(train):
        raise ValueError(f"n_days must be in 1..{len(train)} (training days), got {n_days}")
    days = train[np.unique(np.rint(np.linspace(0, len(train) - 1, int(n_days))).astype(int))]
    problem = operation_problem(inst, dt, days=days)
    ef = solve_extensive_form(problem, replace(options or SolverOptions(), mip_gap=1e-6))
    return StochasticPlanResult(
        schedule=problem.decode(ef.x),
        objective=float(ef.objective),
        days=days,
        gap=float(ef.gap),
        seconds=time.perf_counter() - t0,
    )


def _robust_model(
    inst: OperationInstance, dt: DTResult, budget: float, binaries: bool = True
) -> OperationModel:
    """Plan + one recourse copy per corner, budget rows ``cᵀx + dᵀy_c ≤ budget``."""
    d = inst.data
    C = len(inst.corners)
    peak = float(max(d.load[d.train_days].max(), 1.0))
    om = build_operation_model(
        inst.math,
        inst.case,
        d.price_per_mwh,
        n_load_sources=inst.n_load,
        n_pv_sources=inst.n_pv,
        n_copies=C,
        physics=inst.physics,
        peak_multiplier=peak,
        mode_binaries=binaries,
    )
    om.set_uncertain(d.forecast_load[None], d.forecast_pv[None], slots=np.array([0]))
    S = om.n_slots
    om.set_losses(LossTerms(np.tile(dt.losses.flow, (1, S)), np.tile(dt.losses.drop, (1, S))))
    om.model.add_constraints(
        "budget",
        [
            (om.first_cost, sp.csr_matrix(np.ones((C, 1)))),
            (om.recourse_cost, sp.identity(C, format="csr")),
        ],
        ub=float(budget),
    )
    return om


def _copy_selector(om: OperationModel, k: int) -> sp.csr_matrix:
    """(C·T·k, S·T·k): picks the recourse slots' entries of a per-slot block with k per period."""
    n = om.n_periods * k
    pick = np.zeros((om.n_copies, om.n_slots))
    pick[:, int(om.with_plan) :] = np.eye(om.n_copies)
    return sp.kron(pick, sp.identity(n), format="csr")


def _cheapest_plan_model(
    inst: OperationInstance, dt: DTResult, budget: float, binaries: bool
) -> tuple:
    """The robust model with corners fixed by bounds and the first-stage cost as objective
    (a plan that guarantees a given set, the cheapest such plan)."""
    om = _robust_model(inst, dt, budget, binaries)
    om.model.set_cost(om.first_cost, 1.0)
    _regularize(om)
    return om, None, None


def _corner_signs(inst: OperationInstance) -> np.ndarray:
    """+1 for HIGH (loads up, PV down), −1 for LOW, per corner."""
    return np.array([1.0 if c is NetLoadCorner.HIGH else -1.0 for c in inst.corners])


def _corner_costs(inst: OperationInstance, om: OperationModel, sol) -> dict[str, float]:
    first = float(sol.x[om.first_cost.slice][0])
    rec = sol.x[om.recourse_cost.slice]
    return {c.value: first + float(r) for c, r in zip(inst.corners, rec, strict=True)}


def _check_budget(dt: DTResult, budget: float) -> None:
    if budget < dt.cost * (1 - 1e-9):
        raise BudgetInfeasibleError(
            f"budget {budget:.2f} $ is below the deterministic cost Λ0 = {dt.cost:.2f} $: even "
            "the forecast alone (δ = 0, α = 0) exceeds it, so no deviation can be guaranteed; "
            "raise sigma or the budget"
        )


def _igdt_model(inst: OperationInstance, dt: DTResult, budget: float, binaries: bool = True):
    om = _robust_model(inst, dt, budget, binaries)
    m = om.model
    d = inst.data
    delta = m.add_variables("igdt-delta", 1, lb=0.0, ub=1.0)
    sign = _corner_signs(inst)
    for block, fc, s in (
        (om.xi_load, d.forecast_load, sign),
        (om.xi_pv, d.forecast_pv, -sign),
    ):
        k = fc.shape[1]
        sel = _copy_selector(om, k)
        coef = -np.kron(s, fc.ravel())[:, None]  # xi − s f δ = f
        m.add_constraints(
            f"igdt-{block.name}",
            [(block, sel), (delta, sp.csr_matrix(coef))],
            lb=np.tile(fc.ravel(), len(s)),
            ub=np.tile(fc.ravel(), len(s)),
        )
    return om, delta


def solve_igdt(
    inst: OperationInstance,
    dt: DTResult,
    budget: float,
    options: SolverOptions | None = None,
) -> IGDTResult:
    """Largest δ whose worst case stays within ``budget`` (eq 12), single level.

    Then, with δ held at δ*, the cheapest first stage that guarantees it (lexicographic;
    the paper's objective is δ alone and leaves the plan open among the maximizers).

    Raises
    ------
    BudgetInfeasibleError
        ``budget < Λ0``: even δ = 0 fails.
    """
    _check_budget(dt, budget)
    t0 = time.perf_counter()

    found: dict[str, float] = {}

    def build(binaries: bool) -> tuple:
        om, delta = _igdt_model(inst, dt, budget, binaries)
        _regularize(om)
        return om, delta

    def solve(built: tuple) -> Solution:
        om, delta = built
        m = om.model
        m.set_col_bounds(delta, 0.0, 1.0)
        m.set_cost(om.first_cost, 0.0)
        m.set_cost(delta, -1.0)
        best = float(solve_retrying(m, inst.options(options)).x[delta.slice][0])
        found["delta"] = best
        # lexicographic: among plans that guarantee δ*, the cheapest first stage
        hold = best * (1 - 1e-7)
        m.set_col_bounds(delta, hold, hold)
        m.set_cost(delta, 0.0)
        m.set_cost(om.first_cost, 1.0)
        return solve_retrying(m, options)

    (om, _), sol = _exact_modes(build, solve)
    return IGDTResult(
        delta=found["delta"],
        schedule=om.schedule(sol),
        corner_cost=_corner_costs(inst, om, sol),
        seconds=time.perf_counter() - t0,
    )


def igdt_feasible(
    inst: OperationInstance,
    dt: DTResult,
    budget: float,
    deltas: np.ndarray,
    options: SolverOptions | None = None,
) -> np.ndarray:
    """Whether some first stage serves the δ-box within ``budget``, for each δ (bisection aid).

    Each δ fixes the ``δ`` column of the IGDT model (storage modes exact, as in
    :func:`solve_igdt`) and asks for a feasible plan.
    """
    out = []
    for value in np.asarray(deltas, dtype=float):

        def build(binaries: bool, value: float = value) -> tuple:
            om, delta = _igdt_model(inst, dt, budget, binaries)
            om.model.set_col_bounds(delta, value, value)
            om.model.set_cost(om.first_cost, 1.0)
            _regularize(om)
            return om, delta

        try:
            _exact_modes(build, lambda b: solve_retrying(b[0].model, options))
            out.append(True)
        except InfeasibleModelError:
            out.append(False)
    return np.array(out)


def _sets_at(band: IDMBand, alpha: float, forecast: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper ends of U(α) per (hour, source), shape (T, K); U(0) = forecast."""
    if alpha <= 0:
        return forecast.copy(), forecast.copy()
    cs = band.interval(alpha)
    return cs.lower.reshape(forecast.shape), cs.upper.reshape(forecast.shape)


def solve_cl_digdt(
    inst: OperationInstance,
    dt: DTResult,
    budget: float,
    *,
    gamma: float = 0.95,
    prior_strength: float = 1.0,
    epsilon: float = 1e-4,
    n_subintervals: int = 10,
    max_refinements: int = 8,
    selection: Selection = Selection.ENUMERATE,
    options: SolverOptions | None = None,
    progress=None,
) -> CLDIGDTResult:
    """Largest α whose confidence-level sets stay within ``budget`` (eq 14), iteratively.

    Parameters
    ----------
    gamma, prior_strength : float
        IDM credibility γ and prior strength s of the bands (eq 20).
    epsilon : float
        Stop when ``UB − LB ≤ epsilon``.
    n_subintervals : int
        Sub-intervals per refinement (paper: 10).
    selection : Selection
        How the binary selection is solved (:class:`Selection`; both give the MILP's α).
        ENUMERATE returns, among the plans that guarantee ``U(α*)``, the cheapest first stage;
        MILP returns HiGHS's plan (the objective is α alone).
    progress : callable, optional
        Called with a message after each refinement.

    Raises
    ------
    BudgetInfeasibleError
        ``budget < Λ0``.
    AmbiguityInputError
        γ or s out of range, or too few training days for a band.
    """
    _check_budget(dt, budget)
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must lie in (0, 1), got {epsilon}")
    t0 = time.perf_counter()
    d = inst.data
    band_l = idm_band(d.load_samples(), gamma, prior_strength)
    band_p = idm_band(d.pv_samples(), gamma, prior_strength)
    max_alpha = float(min(band_l.max_alpha.min(), band_p.max_alpha.min()))
    fl, fp = d.forecast_load, d.forecast_pv
    n_pts = int(n_subintervals) + 1
    sign = _corner_signs(inst)

    def build(binaries: bool) -> tuple:
        om = _robust_model(inst, dt, budget, binaries)
        _regularize(om)
        m = om.model
        C = om.n_copies
        u = m.add_variables("cl-select", n_pts, ub=1.0, integer=True)
        m.add_constraints(
            "cl-select_one", [(u, sp.csr_matrix(np.ones((1, n_pts))))], lb=1.0, ub=1.0
        )
        switch_rows = []
        for block, samples, fc in (
            (om.xi_load, d.load_samples(), fl),
            (om.xi_pv, d.pv_samples(), fp),
        ):
            k = fc.shape[1]
            big_m = (
                np.maximum(samples.max(axis=1), fc.ravel())
                - np.minimum(samples.min(axis=1), fc.ravel())
            ) + 1e-6  # (T·k,): range of every series, valid for every α
            big = np.tile(big_m, C)  # per copy entry
            sel = _copy_selector(om, k)
            stack = sp.kron(np.ones((n_pts, 1)), sel, format="csr")
            u_col = sp.kron(sp.identity(n_pts), big[:, None], format="csr")
            up = m.add_constraints(f"cl-{block.name}-upper", [(block, stack), (u, u_col)])
            lo = m.add_constraints(f"cl-{block.name}-lower", [(block, stack), (u, -u_col)])
            switch_rows.append((up, lo, big))
        return om, u, switch_rows

    def corner_values(alpha: float) -> tuple[np.ndarray, np.ndarray]:
        """Values of xi-load, xi-pv at every corner copy for U(α), flat (C·T·k,)."""
        lo_l, hi_l = _sets_at(band_l, alpha, fl)
        lo_p, hi_p = _sets_at(band_p, alpha, fp)
        load = np.concatenate([(hi_l if s > 0 else lo_l).ravel() for s in sign])
        pv = np.concatenate([(lo_p if s > 0 else hi_p).ravel() for s in sign])
        return load, pv

    lb, ub = 0.0, 1.0
    iterations: list[CLIteration] = []
    opts = inst.options(options)
    milp = Selection(selection) is Selection.MILP
    built = build(False) if milp else _cheapest_plan_model(inst, dt, budget, False)
    infeasible: set[float] = set()
    unresolved: list[float] = []
    warm_budget = WarmStartBudget()  # grid points warm from another α's basis, bounded

    def solve_at(built: tuple, alphas: np.ndarray, valid: np.ndarray, values: list) -> Solution:
        om, u, switch_rows = built
        m = om.model
        for which, (up, lo, big) in enumerate(switch_rows):
            v = np.concatenate([vals[which] for vals in values])  # (n_pts·C·T·k,)
            m_rep = np.tile(big, n_pts)
            m.set_row_bounds(up, -np.inf, v + m_rep)  # ξ + M u_m ≤ v_m + M
            m.set_row_bounds(lo, v - m_rep, np.inf)  # ξ − M u_m ≥ v_m − M
        m.set_col_bounds(u, 0.0, valid.astype(float))
        m.set_cost(u, -alphas)
        return solve_retrying(m, opts)

    def fix_corners(om: OperationModel, load: np.ndarray, pv: np.ndarray) -> None:
        c = om.n_copies
        om.set_uncertain(
            load.reshape(c, om.n_periods, -1),
            pv.reshape(c, om.n_periods, -1),
            slots=np.arange(int(om.with_plan), om.n_slots),
        )

    def enumerate_at(built: tuple, alphas: np.ndarray, valid: np.ndarray, values: list):
        """Branch on the one-hot ``u`` from the top: the first feasible α_m is the MILP's."""
        for index in np.flatnonzero(valid)[::-1]:
            a = float(alphas[index])
            if a in infeasible:
                continue
            load, pv = values[index]
            om = built[0]
            fix_corners(om, load, pv)
            try:
                return built, int(index), warm_budget.solve(om.model, options)
            except InfeasibleModelError:
                infeasible.add(a)
                continue
            except SolverError:
                om.model.reset()
            if om.battery is not None and om.battery.mode is None:
                # the relaxation ended "Unknown" (seen at α = 0.7, σ = 0.5 on case33bw, warm
                # and cold): the exact model with the mode binaries decides the point
                exact = _cheapest_plan_model(inst, dt, budget, True)
                fix_corners(exact[0], load, pv)
                try:
                    return exact, int(index), solve_retrying(exact[0].model, options)
                except InfeasibleModelError:
                    infeasible.add(a)
                    continue
                except SolverError:
                    pass
            # HiGHS neither solved nor proved infeasibility: the point is not proven robust,
            # so it is not claimed (conservative); counted per refinement
            infeasible.add(a)
            unresolved.append(a)
        raise InfeasibleModelError("no grid point of α is feasible (not even the lower bound)")

    while True:
        t_it = time.perf_counter()
        alphas = np.round(lb + (ub - lb) * np.arange(n_pts) / (n_pts - 1), 12)
        valid = (alphas <= max_alpha + 1e-12) & (alphas < 1.0)
        values = [corner_values(a if ok else 0.0) for a, ok in zip(alphas, valid, strict=True)]
        if milp:
            sol = solve_at(built, alphas, valid, values)
            if built[0].simultaneous_storage(sol) and built[0].battery.mode is None:
                built = build(True)  # the relaxation charged and discharged at once: exact MILP
                sol = solve_at(built, alphas, valid, values)
            om, u, _ = built
            pick = int(np.argmax(sol.x[u.slice]))
        else:
            built, pick, sol = enumerate_at(built, alphas, valid, values)
            if built[0].simultaneous_storage(sol) and built[0].battery.mode is None:
                built = _cheapest_plan_model(inst, dt, budget, True)
                built, pick, sol = enumerate_at(built, alphas, valid, values)
            om = built[0]
        inc = float(alphas[pick])
        if pick + 1 < n_pts:
            nxt = (
                float(alphas[pick + 1])
                if valid[pick + 1]
                else min(float(alphas[pick + 1]), max_alpha)
            )
        else:
            nxt = inc
        iterations.append(
            CLIteration(
                alpha=inc,
                lb=inc,
                ub=nxt,
                schedule=om.schedule(sol),
                corner_cost=_corner_costs(inst, om, sol),
                seconds=time.perf_counter() - t_it,
                unresolved=tuple(unresolved),
            )
        )
        unresolved.clear()
        if progress is not None:
            progress(
                f"CL-DIGDT refinement {len(iterations)}: α = {inc:.6g} in [{inc:.6g}, {nxt:.6g}]"
            )
        lb, ub = inc, nxt
        if ub - lb <= epsilon * (1 + 1e-9) or len(iterations) >= max_refinements:
            break
    alpha = iterations[-1].alpha
    load_set = band_l.interval(alpha) if alpha > 0 else None
    pv_set = band_p.interval(alpha) if alpha > 0 else None
    return CLDIGDTResult(
        alpha=alpha,
        iterations=tuple(iterations),
        load_set=load_set,
        pv_set=pv_set,
        max_alpha=max_alpha,
        seconds=time.perf_counter() - t0,
    )


@dataclass(frozen=True, eq=False)
class WorstCaseScan:
    """Recourse cost of a schedule at corners, random vertices and interior points of a box.

    Attributes
    ----------
    corner_cost : dict
        ``{"high": …, "low": …}`` total cost ``cᵀx + dᵀy`` ($; inf when infeasible).
    vertex_cost, interior_cost : ndarray
        Total cost at random vertices / uniform interior points (inf when infeasible).
    """

    corner_cost: dict[str, float]
    vertex_cost: np.ndarray
    interior_cost: np.ndarray
    evaluation: ScheduleEvaluation = field(repr=False)

    @property
    def worst_sampled(self) -> float:
        """Highest cost over the random vertices and interior points."""
        return float(np.max(np.r_[self.vertex_cost, self.interior_cost]))


def worst_case_scan(
    inst: OperationInstance,
    schedule: FirstStageSchedule,
    load_box: tuple[np.ndarray, np.ndarray],
    pv_box: tuple[np.ndarray, np.ndarray],
    *,
    n_vertices: int = 20,
    n_interior: int = 10,
    seed: int = 0,
    options: SolverOptions | None = None,
    dt: DTResult | None = None,
) -> WorstCaseScan:
    """Evaluate a schedule at the two corners and at random points of a load × PV box.

    Parameters
    ----------
    load_box, pv_box : (ndarray, ndarray), each shape (T, K)
        Lower and upper ends per (hour, source).
    dt : DTResult, optional
        The DT plan whose loss terms the schedule was planned with (default: solved here).
    """
    rng = np.random.default_rng(seed)
    (l_lo, l_hi), (p_lo, p_hi) = load_box, pv_box
    high = (l_hi, p_lo)
    low = (l_lo, p_hi)
    pick_l = rng.integers(0, 2, size=(n_vertices, *l_lo.shape)).astype(bool)
    pick_p = rng.integers(0, 2, size=(n_vertices, *p_lo.shape)).astype(bool)
    vert_l = np.where(pick_l, l_hi, l_lo)
    vert_p = np.where(pick_p, p_hi, p_lo)
    w_l = rng.random((n_interior, *l_lo.shape))
    w_p = rng.random((n_interior, *p_lo.shape))
    int_l = l_lo + w_l * (l_hi - l_lo)
    int_p = p_lo + w_p * (p_hi - p_lo)
    load = np.concatenate([high[0][None], low[0][None], vert_l, int_l])
    pv = np.concatenate([high[1][None], low[1][None], vert_p, int_p])
    problem = operation_problem(inst, dt or solve_dt(inst), load=load, pv=pv)
    ev = evaluate_schedule(problem, schedule, options=options)
    total = np.where(ev.feasible, ev.first_stage_cost + ev.recourse_cost, np.inf)
    return WorstCaseScan(
        corner_cost={"high": float(total[0]), "low": float(total[1])},
        vertex_cost=total[2 : 2 + n_vertices],
        interior_cost=total[2 + n_vertices :],
        evaluation=ev,
    )
