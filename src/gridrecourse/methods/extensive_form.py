"""Extensive form (EF) of a two-stage stochastic program (METHODS §2), solved with HiGHS.

One model holds the first stage ``x`` and a copy ``y_ω`` of the recourse for every scenario::

    min  cᵀx + Σ_ω π_ω (dᵀy_ω + Σ_j ℓ_jω)
    s.t. first-stage rows and bounds, x_J integer
         L_ω ≤ W y_ω + S_ω T x ≤ U_ω                     ∀ω
         ℓ_jω ≥ h_j (2 ŷ_jk y_jω − ŷ_jk²)                ∀ω, j with h_j > 0, k = 1..K

assembled as block-diagonal sparse stacks: every recourse block is ``kron(I_S, W_block)``, every
linking block k gets ``diag(S_kω) kron(1_S, T_k)``, blocks with scenario costs get
``π_ω d_ω`` (:func:`gridrecourse.problems.base.add_second_stage_blocks`).
Nothing loops over scenarios, buses or phases. Integer recourse columns stay integer (the EF is
one MILP); the EF handles every problem structure
(:data:`gridrecourse.problems.capabilities.EXTENSIVE_FORM`).

Quadratic recourse (paper C's P2 losses ``Σ s_base r (P² + Q²)``) would make the EF an MIQP,
which HiGHS cannot solve. The quadratic terms are replaced by their **outer tangent-plane
approximation** ``ℓ_j ≥ h_j (2 ŷ y_j − ŷ²)`` (plus ``ℓ ≥ 0``) at tangent points spaced evenly
over each variable's expected range (``VariableBlockSpec.quadratic_range``; for PV siting the
:class:`~gridrecourse.problems.siting.FlowRange` of each branch-phase over all scenarios and
budget-feasible sitings). Because the losses are separable in ``P`` and ``Q``, ``K_P`` and
``K_Q`` tangents per axis are the ``K_P K_Q`` tangent planes
``ℓ ≥ r(2P̂P − P̂² + 2Q̂Q − Q̂²)`` of the 2-D paraboloid at the grid ``(P̂_k, Q̂_l)`` for
``K_P + K_Q`` rows.

Choice of points (our choice): ``tangent_points`` = K̄ (default 9) is the **average** number per
variable; :func:`allocate_tangent_points` gives variable j ``K_j − 1 ∝ (h_j w_j²)^{1/3}``
intervals (``w_j`` its range width, at least 2 points), which minimizes the a-priori error bound
for that number of rows — heavily loaded, resistive branch-phases get more points, reactive
flows and short branches fewer.

Accuracy (stated, and measured in :class:`TangentReport`): the approximation never
overestimates, so the EF optimum is a lower bound on the exact MIQP optimum. Inside the range
the error of variable j is at most ``h_j (Δ_j / 2)²``, ``Δ_j = w_j / (K_j − 1)`` (midway between
two points); :attr:`TangentReport.max_error_bound` sums this per scenario, and the report gives
the exact ``Σ h y²`` at the EF solution against the approximated ``Σ ℓ``. The EF's first stage
is then evaluated exactly (one QP per scenario,
:func:`gridrecourse.evaluation.out_of_sample.evaluate_first_stage`). Measured errors on the
IEEE 123 and the 5-bus test feeder: ``benchmarks/results/DESIGN_MEASUREMENTS.md``.

References
----------
J. R. Birge and F. Louveaux, *Introduction to Stochastic Programming*, Springer 2011, §3.1.
Paper C ("SPAR-OPF") §IV (EF baseline). J. E. Kelley, "The cutting-plane method for solving
convex programs", SIAM J. 1960 (outer linearization).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import GridRecourseError, SolverTimeLimitError
from gridrecourse.problems.base import (
    ScenarioData,
    SolveStatus,
    StackedBlocks,
    TwoStageProblem,
    VariableBlockSpec,
    add_second_stage_blocks,
    scenario_selection,
    tangent_rows,
)
from gridrecourse.problems.capabilities import EXTENSIVE_FORM, check_requirements
from gridrecourse.solvers.highs import LinearModel, VariableBlock
from gridrecourse.solvers.options import SolverOptions, relative_gap

__all__ = [
    "DEFAULT_TANGENT_POINTS",
    "ExtensiveForm",
    "ExtensiveFormError",
    "ExtensiveFormResult",
    "TangentReport",
    "allocate_tangent_points",
    "build_extensive_form",
    "solve_extensive_form",
]

#: Tangent points per quadratic variable (our choice; see the module docstring for accuracy).
DEFAULT_TANGENT_POINTS = 9

D = TypeVar("D")


class ExtensiveFormError(GridRecourseError, ValueError):
    """Invalid extensive-form settings (scenario selection, tangent points)."""


@dataclass(frozen=True)
class TangentReport:
    """Accuracy of the tangent-plane approximation of quadratic recourse at the EF solution.

    All values are expected values over the EF's scenarios, in objective units (kW for losses).

    Attributes
    ----------
    mean_points : float
        Average tangent points per quadratic variable (``tangent_points``).
    max_points : int
        Most tangent points of one variable.
    n_variables : int
        Quadratic variables per scenario.
    approx_expected : float
        ``Σ_ω π_ω Σ_j ℓ_jω`` (what the EF optimized).
    exact_expected : float
        ``Σ_ω π_ω Σ_j h_j y_jω²`` at the same solution.
    max_error_bound : float
        A-priori bound ``Σ_j h_j (Δ_j/2)²`` on the error per scenario for flows inside the
        ranges.
    outside_range : int
        (scenario, variable) pairs of the solution outside the tangent range (the bound does
        not apply to them).
    """

    mean_points: float
    max_points: int
    n_variables: int
    approx_expected: float
    exact_expected: float
    max_error_bound: float
    outside_range: int

    @property
    def abs_error(self) -> float:
        """``exact − approx`` (≥ 0 up to solver tolerance)."""
        return self.exact_expected - self.approx_expected

    @property
    def rel_error(self) -> float:
        """``(exact − approx) / exact``."""
        return self.abs_error / self.exact_expected if self.exact_expected else 0.0


@dataclass(frozen=True, eq=False)
class _TangentBlock:
    source: str
    epigraph: VariableBlock
    columns: np.ndarray  # positions j within the source block with h_j > 0
    h: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    points: np.ndarray  # tangent points per column

    @property
    def error_bound(self) -> float:
        """``Σ_j h_j (Δ_j / 2)²`` with ``Δ_j`` the spacing of column j's points."""
        k = self.points
        spacing = np.where(k > 1, (self.hi - self.lo) / np.maximum(k - 1, 1), self.hi - self.lo)
        return float(np.sum(self.h * (spacing / 2.0) ** 2))


@dataclass(frozen=True, eq=False)
class ExtensiveForm:
    """A built extensive form (model and blocks), ready to solve.

    Attributes
    ----------
    model : LinearModel
    first_stage : mapping of str to VariableBlock
    second_stage : StackedBlocks
    scenario_indices : ndarray of int
    data : ScenarioData
        The scenario vectors of the EF's scenarios.
    weights : ndarray
        Probabilities of the EF's scenarios (renormalized for a subset).
    tangent_points : int
    build_seconds : float
    """

    model: LinearModel
    first_stage: Mapping[str, VariableBlock]
    second_stage: StackedBlocks
    scenario_indices: np.ndarray
    data: ScenarioData
    weights: np.ndarray
    tangent_points: int
    tangents: tuple[_TangentBlock, ...]
    build_seconds: float


@dataclass(frozen=True, eq=False)
class ExtensiveFormResult(Generic[D]):
    """Solution of the extensive form.

    Attributes
    ----------
    decision : D
        Typed first-stage decision (:class:`~gridrecourse.problems.siting.SitingDecision`:
        units per bus name, sited).
    x : ndarray
        First-stage vector.
    objective : float
        Incumbent EF objective (``cᵀx + Σ π Q``, with tangent planes for quadratic recourse).
    bound : float
        HiGHS's best (dual) bound.
    gap : float
        Relative MIP gap ``|objective − bound| / |objective|``.
    status : SolveStatus
        ``OPTIMAL`` (within the requested gap) or ``TIME_LIMIT`` (incumbent returned).
    recourse : ndarray, shape (S,)
        Per-scenario recourse value of the solution (as modelled).
    expected_penalty : float
        Expected soft-limit penalty included in ``objective``.
    tangents : TangentReport or None
        Accuracy of the quadratic approximation (quadratic recourse only).
    wall_seconds, build_seconds, solve_seconds : float
    n_scenarios, n_rows, n_cols, n_integer : int
    """

    decision: D
    x: np.ndarray
    objective: float
    bound: float
    gap: float
    status: SolveStatus
    recourse: np.ndarray
    expected_penalty: float
    tangents: TangentReport | None
    wall_seconds: float
    build_seconds: float
    solve_seconds: float
    n_scenarios: int
    n_rows: int
    n_cols: int
    n_integer: int


def _quadratic_columns(
    spec_variables: Sequence[VariableBlockSpec],
) -> list[tuple[VariableBlockSpec, np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """``(block, columns, h, lo, hi)`` of every block with quadratic cost."""
    out = []
    for v in spec_variables:
        if not v.has_quadratic:
            continue
        assert v.quadratic is not None
        if v.quadratic_range is None:
            raise ExtensiveFormError(
                f"variable block {v.name!r} has a quadratic cost but no quadratic_range for the "
                "tangent planes"
            )
        cols = np.flatnonzero(v.quadratic > 0)
        lo, hi = (r[cols] for r in v.quadratic_range)
        if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi))):
            raise ExtensiveFormError(f"variable block {v.name!r}: quadratic_range must be finite")
        out.append((v, cols, v.quadratic[cols], np.minimum(lo, hi), np.maximum(lo, hi)))
    return out


def allocate_tangent_points(h: np.ndarray, width: np.ndarray, mean_points: int) -> np.ndarray:
    """Tangent points per variable, ``mean_points`` on average, minimizing the error bound.

    The bound ``Σ_j h_j w_j² / (4 (K_j − 1)²)`` for a fixed total ``Σ (K_j − 1)`` is minimal for
    ``K_j − 1 ∝ (h_j w_j²)^{1/3}`` (Lagrange); every variable with a non-empty range keeps at
    least 2 points (the ends), a zero-width range gets 1.
    """
    n = len(h)
    if mean_points <= 1 or n == 0:
        return np.ones(n, dtype=int)
    a = h * width**2
    weight = np.cbrt(a)
    intervals = (mean_points - 1) * n
    share = weight / weight.sum() if weight.sum() > 0 else np.full(n, 1.0 / n)
    k = 1 + np.maximum(1, np.round(intervals * share)).astype(int)
    k[width <= 0] = 1
    return k


def _even_points(lo: np.ndarray, hi: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``k_j`` evenly spaced points on ``[lo_j, hi_j]`` (the middle when ``k_j = 1``)."""
    owner = np.repeat(np.arange(len(k)), k)
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(k) - k, k)
    denom = np.maximum(k[owner] - 1, 1)
    frac = np.where(k[owner] > 1, pos / denom, 0.5)
    return lo[owner] + (hi - lo)[owner] * frac, owner


def build_extensive_form(
    problem: TwoStageProblem,
    *,
    scenarios: Sequence[int] | np.ndarray | None = None,
    scenario_weights: Sequence[float] | np.ndarray | None = None,
    weight_total: float = 1.0,
    tangent_points: int = DEFAULT_TANGENT_POINTS,
) -> ExtensiveForm:
    """Assemble the extensive form (vectorized block-diagonal stacks).

    Parameters
    ----------
    problem : TwoStageProblem
    scenarios : sequence of int, optional
        Scenario indices to include (default all); probabilities are renormalized.
    scenario_weights : sequence of float, optional
        One weight per index of ``scenarios`` instead of their probabilities (a stratified
        batch's design weights); renormalized.
    weight_total : float, default 1
        What the scenario weights sum to (:func:`~gridrecourse.problems.base.scenario_selection`;
        below 1 for a restricted master that stands for part of the probability mass).
    tangent_points : int
        ``K`` tangent points per quadratic variable (>= 1).
    """
    t0 = time.perf_counter()
    if int(tangent_points) != tangent_points or tangent_points < 1:
        raise ExtensiveFormError(f"tangent_points must be an integer >= 1, got {tangent_points!r}")
    idx, weights = scenario_selection(
        problem, scenarios, scenario_weights, total=weight_total, error=ExtensiveFormError
    )
    s = len(idx)
    check_requirements(EXTENSIVE_FORM, problem)

    model = LinearModel(f"ef-{problem.name}")
    fs = problem.first_stage
    first: dict[str, VariableBlock] = {
        v.name: model.add_variables(
            v.name, v.size, lb=v.lb, ub=v.ub, cost=v.cost, integer=v.integer
        )
        for v in fs.variables
    }
    for c in fs.constraints:
        model.add_constraints(c.name, [(first[n], m) for n, m in c.terms], lb=c.lb, ub=c.ub)
    spec = problem.second_stage
    data = problem.scenario_data(idx)
    stacked = add_second_stage_blocks(
        model,
        spec,
        weights,
        data=data,
        first_stage=first,
        first_stage_spec=fs,
        exact_quadratic=False,
    )
    eye = sp.identity(s, format="csr")
    tangents = []
    quad = _quadratic_columns(spec.variables)
    if quad:
        k_all = allocate_tangent_points(
            np.concatenate([q[2] for q in quad]),
            np.concatenate([q[4] - q[3] for q in quad]),
            int(tangent_points),
        )
        splits = np.cumsum([len(q[1]) for q in quad])[:-1]
        for (v, cols, h, lo, hi), k in zip(quad, np.split(k_all, splits), strict=True):
            points, owner = _even_points(lo, hi, k)
            a_l, a_y, rhs = tangent_rows(h, cols, v.size, points, owner)
            ell = model.add_variables(
                f"{v.name}-tangent",
                s * len(cols),
                lb=0.0,
                cost=np.kron(weights, np.ones(len(cols))),
            )
            model.add_constraints(
                f"{v.name}-tangent_planes",
                [
                    (ell, sp.kron(eye, a_l, format="csr")),
                    (stacked.variables[v.name], sp.kron(eye, a_y, format="csr")),
                ],
                lb=np.tile(rhs, s),
            )
            tangents.append(_TangentBlock(v.name, ell, cols, h, lo, hi, k))
    return ExtensiveForm(
        model=model,
        first_stage=first,
        second_stage=stacked,
        scenario_indices=idx,
        data=data,
        weights=weights,
        tangent_points=int(tangent_points),
        tangents=tuple(tangents),
        build_seconds=time.perf_counter() - t0,
    )


def solve_extensive_form(
    problem: TwoStageProblem[D],
    options: SolverOptions | None = None,
    *,
    scenarios: Sequence[int] | np.ndarray | None = None,
    scenario_weights: Sequence[float] | np.ndarray | None = None,
    weight_total: float = 1.0,
    tangent_points: int = DEFAULT_TANGENT_POINTS,
    start: np.ndarray | None = None,
) -> ExtensiveFormResult[D]:
    """Build and solve the extensive form with HiGHS to ``options.mip_gap`` / ``time_limit``.

    Parameters
    ----------
    problem : TwoStageProblem
    options : SolverOptions, optional
        MIP gap, time limit (s) and threads. Reaching the time limit with an incumbent is a
        valid outcome (``status = SolveStatus.TIME_LIMIT``).
    scenarios : sequence of int, optional
        Subset of scenarios (SAA batches); probabilities renormalized.
    scenario_weights : sequence of float, optional
        Weights of ``scenarios`` instead of their probabilities (:func:`build_extensive_form`).
    weight_total : float, default 1
        What the weights sum to (:func:`build_extensive_form`). ``objective`` and ``bound``
        then include ``weight_total · objective_offset`` only.
    tangent_points : int
        ``K`` for quadratic recourse (module docstring).
    start : ndarray, shape (n_x,), optional
        A first-stage vector given to HiGHS as a partial MIP start (HiGHS completes the
        recourse by an LP and, if feasible, starts from that incumbent). For large instances
        where HiGHS finds no incumbent on its own within the time limit.

    Returns
    -------
    ExtensiveFormResult

    Raises
    ------
    InfeasibleModelError
        No first stage is feasible for all scenarios (e.g. hard limits violated by the base
        case).
    SolverTimeLimitError
        The time limit passed before HiGHS found an incumbent.
    """
    t0 = time.perf_counter()
    ef = build_extensive_form(
        problem,
        scenarios=scenarios,
        scenario_weights=scenario_weights,
        weight_total=weight_total,
        tangent_points=tangent_points,
    )
    fs, spec = problem.first_stage, problem.second_stage
    if start is not None:
        x0 = np.asarray(start, dtype=float).reshape(-1)
        if x0.size != fs.size:
            raise ValueError(f"EF start must have the first stage's {fs.size} entries")
        bounds = np.cumsum([0] + [v.size for v in fs.variables])
        ef.model.set_start(
            {
                ef.first_stage[v.name]: x0[bounds[k] : bounds[k + 1]]
                for k, v in enumerate(fs.variables)
            }
        )
    try:
        sol = ef.model.solve(options)
    except SolverTimeLimitError as exc:  # keep the bound, in the problem's objective units
        raise SolverTimeLimitError(
            str(exc), dual_bound=exc.dual_bound + weight_total * spec.objective_offset
        ) from exc
    x = np.concatenate([sol.value(ef.first_stage[v.name]) for v in fs.variables])
    integer = fs.integer
    x[integer] = np.round(x[integer])
    s = len(ef.scenario_indices)
    recourse = np.zeros(s)
    penalty = np.zeros(s)
    for v in spec.variables:
        y = sol.value(ef.second_stage.variables[v.name]).reshape(s, v.size)
        if v.name in spec.scenario_costs:
            term = np.einsum("sk,sk->s", y, ef.data.block_cost(v))
        else:
            term = y @ v.cost
        recourse += term
        if v.penalty:
            penalty += term
    report = None
    if ef.tangents:
        approx = np.zeros(s)
        exact = np.zeros(s)
        bound = 0.0
        outside = 0
        for tb in ef.tangents:
            v = next(b for b in spec.variables if b.name == tb.source)
            ell = sol.value(tb.epigraph).reshape(s, len(tb.columns))
            y = sol.value(ef.second_stage.variables[v.name]).reshape(s, v.size)[:, tb.columns]
            approx += ell.sum(axis=1)
            exact += (tb.h * y**2).sum(axis=1)
            bound += tb.error_bound
            tol = 1e-9 * (1.0 + np.abs(tb.hi - tb.lo))
            outside += int(np.sum((y < tb.lo - tol) | (y > tb.hi + tol)))
        recourse += approx
        report = TangentReport(
            mean_points=float(np.mean(np.concatenate([tb.points for tb in ef.tangents]))),
            max_points=int(max(tb.points.max() for tb in ef.tangents)),
            n_variables=int(sum(len(tb.columns) for tb in ef.tangents)),
            approx_expected=float(ef.weights @ approx),
            exact_expected=float(ef.weights @ exact),
            max_error_bound=bound,
            outside_range=outside,
        )
    recourse += spec.objective_offset
    n_int = int(fs.integer.sum())
    objective = float(sol.objective) + weight_total * spec.objective_offset
    bound = float(sol.dual_bound) + weight_total * spec.objective_offset
    return ExtensiveFormResult(
        decision=problem.decode(x),
        x=x,
        objective=objective,
        bound=bound,
        gap=relative_gap(objective, bound),
        status=SolveStatus.from_highs(sol.status),
        recourse=recourse,
        expected_penalty=float(ef.weights @ penalty),
        tangents=report,
        wall_seconds=time.perf_counter() - t0,
        build_seconds=ef.build_seconds,
        solve_seconds=sol.solve_seconds,
        n_scenarios=s,
        n_rows=ef.model.n_rows,
        n_cols=ef.model.n_cols,
        n_integer=n_int,
    )
