"""Exact reduced recourse LP: network state substituted out, penalty epigraphs folded.

The P1 siting recourse (and any LP of the same shape) is, per scenario ω::

    min  c_dᵀ d + c_eᵀ e
    s.t. S z + B d = b_ω                  equality rows (LinDist3Flow: balances, drops)
         row r:  a_r e_j(r) + G_r z ⋚ u_r  inequality rows, each with ONE epigraph column e_j
         s_i d_i ≤ U_iω                   linking rows (PV availability × installed units)
         d ≥ 0,  e ≥ l_e,  z free within its bounds

with ``S`` square (the state ``z = (P, Q, v)`` is a function of the injections) and every
epigraph column ``e_j`` (deviation, band violation, thermal overload) of cost ``c_j ≥ 0``. So
``z = S⁻¹(b_ω − B d)`` and at the optimum ``e_j = max(l_j, max_{r ∋ j} g_r(d))`` with ``g_r``
affine in ``d``: the LP is a convex piecewise-linear program in the few *active* decisions
(``U_iω > 0``: the sited PV, ≤ 20 on the ieee9500). Over the box ``0 ≤ d ≤ U/s`` each ``g_r``
has an exact range; an epigraph column whose largest lower end (``l_j`` or some row's) is at
least every other row's upper end equals that one affine function on the whole box and is
folded into the cost (its other rows can never bind and are dropped). The remaining LP has the
active decisions and the few epigraph columns that may switch (hundreds of rows instead of the
full model's ~64,000 on the ieee9500) and is solved cold by HiGHS's dual simplex.

Nothing is approximated: the reduced LP has the full LP's optimal value, the full primal is
rebuilt from ``d`` (``z``, then ``e`` by the max formula; :attr:`ReducedRecourse.solve` checks
the rebuilt objective against the LP's and ``z`` against its bounds), and the full LP's duals
are rebuilt too: epigraph rows from the reduced rows (a folded column's one binding row carries
``c_j / a_r``), the equality rows from ``Sᵀλ = c_z − Gᵀy``, and each linking row from the
reduced cost ``r_i = c_i − B_iᵀλ`` of its decision: ``min(0, r_i)/s_i`` where the decision is
at its availability (or has none), else 0 — the basic dual the full LP's simplex reports. A
scenario the reduction cannot certify (negative availability, a rebuilt value off the LP's or
out of bounds, an unexpected status) is solved by the full model instead
(:class:`ReducedSecondStageModel`).

Measured (ieee9500 P1, SPAR seed 0's 20 sites, 96 evenly spaced scenarios):
``benchmarks/bench_reduced_recourse.py``, results in ``benchmarks/results/README.md``.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from gridrecourse.errors import GridRecourseError, InfeasibleModelError, SolverError
from gridrecourse.problems.base import SecondStageModel, SecondStageSpec, TwoStageProblem
from gridrecourse.solvers.highs import LinearModel, Solution
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "ReducedRecourse",
    "ReducedSecondStageModel",
    "ReducedSolution",
    "ReductionNotApplicable",
]

#: Relative tolerance of the rebuilt objective against the reduced LP's (else the full model).
_CHECK_RTOL = 1e-9
#: Absolute tolerance of the rebuilt state against its column bounds (model units).
_BOUND_TOL = 1e-7
#: Cached columns of ``S⁻¹B`` (one per decision seen; ~107 kB each on the ieee9500).
_CACHE_COLUMNS = 256


class ReductionNotApplicable(GridRecourseError, ValueError):
    """The recourse does not have the structure :class:`ReducedRecourse` needs (message says
    which block or row breaks it)."""


@dataclass(frozen=True, eq=False)
class ReducedSolution:
    """One scenario's recourse solved through the reduction.

    Attributes
    ----------
    objective : float
        Optimal value of the full recourse LP (objective units).
    values : ndarray, shape (n_cols,)
        The full LP's primal solution, rebuilt (spec column order).
    row_dual : ndarray, shape (n_rows,)
        The full LP's row duals, rebuilt (HiGHS convention ``∂ objective / ∂ row bound``).
    simplex_iterations : int
        Iterations of the reduced LP.
    reduced_rows, reduced_cols : int
        Size of the reduced LP.
    solve_seconds : float
    """

    objective: float
    values: np.ndarray
    row_dual: np.ndarray
    simplex_iterations: int
    reduced_rows: int
    reduced_cols: int
    solve_seconds: float


class ReducedRecourse:
    """The reduction of one recourse LP (module docstring), set up once, solved per scenario.

    Parameters
    ----------
    spec : SecondStageSpec
        The recourse (continuous, linear cost, no scenario costs or column bounds).
    matrix : scipy.sparse matrix, shape (n_rows, n_cols)
        Its constraint matrix ``W`` (spec order; :meth:`LinearModel.matrix`).
    state : sequence of str
        Variable blocks of the state ``z`` (e.g. branch P, Q and bus v).
    decisions : str
        Variable block of the decisions ``d`` (one per linking row, ``d ≥ 0``).
    equalities : sequence of str
        Constraint blocks ``S z + B d = b`` (as many rows as state columns).

    Raises
    ------
    ReductionNotApplicable
        The recourse does not have this structure (the message names the block or row).
    """

    def __init__(
        self,
        spec: SecondStageSpec,
        matrix: sp.spmatrix,
        *,
        state: Sequence[str],
        decisions: str,
        equalities: Sequence[str],
    ):
        a = sp.csr_matrix(matrix, dtype=float)
        if spec.has_integer or any(v.has_quadratic for v in spec.variables):
            raise ReductionNotApplicable("recourse has integer or quadratic columns")
        if spec.scenario_costs or spec.scenario_bounds:
            raise ReductionNotApplicable("recourse has scenario-dependent costs or bounds")
        cols = {v.name: np.arange(spec.n_cols)[spec.col_slice(v.name)] for v in spec.variables}
        rows = {c.name: np.arange(spec.n_rows)[spec.row_slice(c.name)] for c in spec.constraints}
        missing = [n for n in (*state, decisions) if n not in cols]
        missing += [n for n in equalities if n not in rows]
        if missing:
            raise ReductionNotApplicable(f"recourse has no block(s) {missing}")
        self.n_rows, self.n_cols = a.shape
        self.z = np.concatenate([cols[n] for n in state])
        self.d = cols[decisions]
        self.eq = np.concatenate([rows[n] for n in equalities])
        self.link = np.asarray(spec.linking_rows, dtype=int)
        self.epi = np.setdiff1d(np.arange(self.n_cols), np.concatenate([self.z, self.d]))
        self.ineq = np.setdiff1d(np.arange(self.n_rows), np.concatenate([self.eq, self.link]))
        cost, col_lb, col_ub = (
            np.concatenate([v.cost for v in spec.variables]),
            spec.col_lb,
            spec.col_ub,
        )
        if len(self.eq) != len(self.z):
            raise ReductionNotApplicable(
                f"equality blocks {list(equalities)} have {len(self.eq)} rows for "
                f"{len(self.z)} state columns"
            )
        if np.any(spec.row_lb[self.eq] != spec.row_ub[self.eq]):
            raise ReductionNotApplicable(f"blocks {list(equalities)} are not all equalities")
        try:
            self._lu = splu(sp.csc_matrix(a[self.eq][:, self.z]))
        except RuntimeError as exc:  # singular
            raise ReductionNotApplicable(f"state block is singular: {exc}") from None
        self._b = sp.csc_matrix(a[self.eq][:, self.d])
        self._bt = sp.csr_matrix(self._b.T)
        ai = a[self.ineq]
        if ai[:, self.d].nnz or a[self.link][:, np.concatenate([self.z, self.epi])].nnz:
            raise ReductionNotApplicable(
                "decisions appear in inequality rows, or linking rows hold other columns"
            )
        link_d = sp.csr_matrix(a[self.link][:, self.d])
        link_d.eliminate_zeros()
        if np.any(np.diff(link_d.indptr) != 1) or len(np.unique(link_d.indices)) != len(self.d):
            raise ReductionNotApplicable("each decision needs exactly one linking row")
        self._link_d, self._link_s = link_d.indices, link_d.data
        if np.any(self._link_s <= 0) or np.any(np.isfinite(spec.row_lb[self.link])):
            raise ReductionNotApplicable("linking rows must read s·d ≤ U with s > 0")
        if np.any(col_lb[self.d] != 0) or np.any(np.isfinite(col_ub[self.d])):
            raise ReductionNotApplicable("decisions must have bounds [0, inf)")
        e = sp.csr_matrix(ai[:, self.epi])
        e.eliminate_zeros()
        if np.any(np.diff(e.indptr) != 1):
            bad = int(self.ineq[np.flatnonzero(np.diff(e.indptr) != 1)[0]])
            raise ReductionNotApplicable(
                f"inequality row {bad} has not exactly one epigraph column"
            )
        self._row_epi, self._a = e.indices, e.data
        lo, up = spec.row_lb[self.ineq], spec.row_ub[self.ineq]
        # e ≥ (G z − u)/|a| for a < 0 with an upper bound; e ≥ (l − G z)/a for a > 0, lower
        self._upper = self._a < 0
        if np.any(self._upper & (np.isfinite(lo) | ~np.isfinite(up))) or np.any(
            ~self._upper & (~np.isfinite(lo) | np.isfinite(up))
        ):
            raise ReductionNotApplicable("an epigraph row is not a one-sided lower bound on it")
        self._sigma = np.where(self._upper, 1.0 / -self._a, -1.0 / self._a)
        self._g = sp.csr_matrix(ai[:, self.z])
        self._gt = sp.csr_matrix(self._g.T)
        self._c_d, self._c_e, self._c_z = cost[self.d], cost[self.epi], cost[self.z]
        self._lb_e = col_lb[self.epi]
        if np.any(self._c_e < 0) or np.any(~np.isfinite(self._lb_e)):
            raise ReductionNotApplicable("epigraph columns need cost ≥ 0 and a finite lower bound")
        if np.any(np.isfinite(col_ub[self.epi])):
            raise ReductionNotApplicable("epigraph columns must be unbounded above")
        self._z_lb, self._z_ub = col_lb[self.z], col_ub[self.z]
        self._k: dict[int, np.ndarray] = {}

    def _k_columns(self, cols: np.ndarray) -> np.ndarray:
        """``S⁻¹ B[:, cols]`` (cached per column)."""
        missing = [int(c) for c in cols if int(c) not in self._k]
        if missing:
            if len(self._k) + len(missing) > _CACHE_COLUMNS:
                self._k.clear()
            sol = self._lu.solve(self._b[:, missing].toarray())
            for k, c in enumerate(missing):
                self._k[c] = sol[:, k]
        if not len(cols):
            return np.zeros((len(self.z), 0))
        return np.column_stack([self._k[int(c)] for c in cols])

    def solve(
        self, row_lb: np.ndarray, row_ub: np.ndarray, options: SolverOptions | None = None
    ) -> ReducedSolution | None:
        """Solve the recourse with row bounds ``row_lb``, ``row_ub`` (linking shift applied).

        Returns
        -------
        ReducedSolution or None
            ``None`` when the reduction cannot certify this scenario (the caller solves the
            full model).
        """
        t0 = time.perf_counter()
        cap = np.zeros(len(self.d))
        cap[self._link_d] = row_ub[self.link] / self._link_s
        if np.any(cap < 0) or not np.all(np.isfinite(cap)):
            return None
        z0 = self._lu.solve(row_lb[self.eq])
        act = np.flatnonzero(cap > 0)
        k = self._k_columns(act)
        lo_b, up_b = row_lb[self.ineq], row_ub[self.ineq]
        tau = np.where(self._upper, up_b / self._a, lo_b / self._a)
        alpha = self._sigma * (self._g @ z0) + tau
        beta = self._g @ k
        beta *= -self._sigma[:, None]  # e_j ≥ alpha + beta d_act
        w = cap[act]
        # einsum, not BLAS: OpenBLAS threads these products and its threads then spin, taking
        # the CPU of the other workers (0.079 → 0.030 s per ieee9500 solve without them)
        reach = np.einsum("ij,j->i", beta, w)
        hi = np.einsum("ij,j->i", np.maximum(beta, 0.0), w)  # the largest increase over the box
        lo = alpha + (reach - hi)
        hi += alpha
        n_e = len(self.epi)
        best_lo = np.full(n_e, -np.inf)
        np.maximum.at(best_lo, self._row_epi, lo)
        best = np.full(n_e, -1)
        top = np.flatnonzero(lo >= best_lo[self._row_epi])
        best[self._row_epi[top]] = top  # a row reaching the largest lower end, per column
        by_row = best_lo >= self._lb_e  # that row dominates the column's own lower bound
        floor = np.where(by_row, best_lo, self._lb_e)
        tol = 1e-12 * np.maximum(1.0, np.abs(floor))
        other = np.ones(len(alpha), dtype=bool)
        other[best[by_row]] = False
        keep = other & (hi > (floor + tol)[self._row_epi])
        kept_col = np.zeros(n_e, dtype=bool)
        kept_col[self._row_epi[keep]] = True
        keep[best[kept_col & by_row]] = True
        fold_row = ~kept_col & by_row
        fold_lb = ~kept_col & ~by_row
        fr = best[fold_row]
        const = float(
            np.sum(self._c_e[fold_lb] * self._lb_e[fold_lb])
            + np.sum(self._c_e[fold_row] * alpha[fr])
        )
        weight = np.zeros(len(alpha))
        weight[fr] = self._c_e[fold_row]
        c_act = self._c_d[act] + np.einsum("i,ij->j", weight, beta)
        rows = np.flatnonzero(keep)
        kcols = np.flatnonzero(kept_col)
        d_act, y_rows, its = np.zeros(len(act)), np.zeros(0), 0
        objective = const
        if len(rows):
            pos = np.full(n_e, -1)
            pos[kcols] = np.arange(len(kcols))
            lp = LinearModel("reduced-recourse")
            dv = lp.add_variables("decisions", len(act), lb=0.0, ub=w, cost=c_act)
            ev = lp.add_variables(
                "epigraph", len(kcols), lb=self._lb_e[kcols], cost=self._c_e[kcols]
            )
            sel = sp.csr_matrix(
                (np.ones(len(rows)), (np.arange(len(rows)), pos[self._row_epi[rows]])),
                shape=(len(rows), len(kcols)),
            )
            lp.add_constraints(
                "epigraph_rows", [(dv, sp.csr_matrix(-beta[rows])), (ev, sel)], lb=alpha[rows]
            )
            try:
                sol = lp.solve(options)
            except (InfeasibleModelError, SolverError):
                return None
            if sol.status != "Optimal":
                return None
            d_act = sol.x[: len(act)]
            y_rows, its = sol.row_dual, sol.simplex_iterations
            objective = float(sol.objective) + const
        elif len(act):  # no row left: a linear cost over the box
            d_act = np.where(c_act < 0, w, 0.0)
            objective = const + float(np.sum(c_act * d_act))
        d = np.zeros(len(self.d))
        d[act] = d_act
        # the full primal: state from the equalities, epigraph columns at their floors
        z = z0 - np.einsum("ij,j->i", k, d_act)
        if np.any(z < self._z_lb - _BOUND_TOL) or np.any(z > self._z_ub + _BOUND_TOL):
            return None
        g = self._sigma * (self._g @ z) + tau
        e_val = self._lb_e.copy()
        np.maximum.at(e_val, self._row_epi, g)
        rebuilt = float(np.sum(self._c_e * e_val) + np.sum(self._c_d * d))
        if abs(rebuilt - objective) > _CHECK_RTOL * max(1.0, abs(objective)):
            return None
        # the full duals (HiGHS convention: reduced cost c − Aᵀy)
        y = np.zeros(len(alpha))
        y[fr] = self._c_e[fold_row] / self._a[fr]
        y[rows] = y_rows / self._a[rows]
        lam = self._lu.solve(self._c_z - self._gt @ y, trans="T")
        reduced = self._c_d - self._bt @ lam
        at_cap = d >= cap - 1e-9 * np.maximum(1.0, cap)
        y_link = np.where(
            at_cap[self._link_d], np.minimum(0.0, reduced[self._link_d]) / self._link_s, 0.0
        )
        values = np.empty(self.n_cols)
        values[self.z], values[self.d], values[self.epi] = z, d, e_val
        row_dual = np.empty(self.n_rows)
        row_dual[self.eq], row_dual[self.ineq], row_dual[self.link] = lam, y, y_link
        return ReducedSolution(
            objective=objective,
            values=values,
            row_dual=row_dual,
            simplex_iterations=int(its),
            reduced_rows=len(rows),
            reduced_cols=len(act) + len(kcols),
            solve_seconds=time.perf_counter() - t0,
        )


class _ReducedLinearModel:
    """The recourse :class:`LinearModel` seen through the reduction: :meth:`solve` answers
    from :class:`ReducedRecourse` at the bounds of the scenario being solved, or from the full
    model when the reduction declines; everything else goes to the full model."""

    def __init__(self, model: LinearModel, owner: ReducedSecondStageModel):
        self._model = model
        self._owner = owner

    def solve(self, options: SolverOptions | None = None) -> Solution:
        owner = self._owner
        lb, ub = owner._scenario_bounds
        sol = owner.reduction.solve(lb, ub, options)
        if sol is None:
            owner.fallbacks += 1
            owner._apply_to_full_model()
            return self._model.solve(options)
        return Solution(
            objective=sol.objective,
            x=sol.values,
            row_dual=sol.row_dual,
            status="Optimal",
            solve_seconds=sol.solve_seconds,
            dual_bound=sol.objective,
            simplex_iterations=sol.simplex_iterations,
        )

    def __getattr__(self, name: str):
        return getattr(self._model, name)


class ReducedSecondStageModel(SecondStageModel):
    """:class:`SecondStageModel` whose LP solves go through a :class:`ReducedRecourse`.

    Same results as the full model (objective, penalty, linking duals, subgradient, values);
    a scenario the reduction cannot certify is solved by the full model (:attr:`fallbacks`
    counts them), and so are its Farkas rays when infeasible.

    Parameters
    ----------
    problem : TwoStageProblem
    state, decisions, equalities
        As in :class:`ReducedRecourse`.

    Raises
    ------
    ReductionNotApplicable
        The recourse does not have the structure (build a plain :class:`SecondStageModel`).
    """

    def __init__(
        self,
        problem: TwoStageProblem,
        *,
        state: Sequence[str],
        decisions: str,
        equalities: Sequence[str],
    ):
        super().__init__(problem)
        self.reduction = ReducedRecourse(
            self.spec,
            self.model.matrix(),
            state=state,
            decisions=decisions,
            equalities=equalities,
        )
        #: scenarios solved by the full model because the reduction could not certify them
        self.fallbacks = 0
        self._scenario_bounds: tuple[np.ndarray, np.ndarray] = (
            self.spec.row_lb,
            self.spec.row_ub,
        )
        self.model = _ReducedLinearModel(self.model, self)  # type: ignore[assignment]

    def _bounds(self, x: np.ndarray, scenario: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        lb, ub, scale = super()._bounds(x, scenario)
        self._scenario_bounds = (lb, ub)
        return lb, ub, scale

    def _apply(self, model, blocks, lb, ub) -> None:
        """The full model gets the scenario's bounds only when it solves (a fallback)."""
        if model is not self.model:
            super()._apply(model, blocks, lb, ub)

    def _apply_to_full_model(self) -> None:
        lb, ub = self._scenario_bounds
        super()._apply(self.model._model, self.blocks, lb, ub)  # type: ignore[attr-defined]
