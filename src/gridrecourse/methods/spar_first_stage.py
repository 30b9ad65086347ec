"""First-stage MILP of SPAR (paper C, problem D1, §II-B and §III-A), for any problem that
declares a :class:`~gridrecourse.problems.separable.SeparableFirstStage`.

Given the learned separable value function ``V(n) ≈ Σ_i v_i(n_i)`` (slopes ``u_i(k)``, see
:mod:`gridrecourse.methods.spar_value_function`), solve::

    min   Σ_i v_i(n_i)  (+ c_nᵀn + c_sᵀs)                (37) with (10)
    s.t.  lb ≤ A_n n + A_s s ≤ ub                        declared rows (PV siting: (38)–(40))
          A n ≥ b                                        (18)   Farkas feasibility cuts
          n_i ∈ {0..L_i} integer, s_i ∈ {0, 1}

with the value function modelled by one of two formulations (METHODS.md §3):

- :attr:`Formulation.LAMBDA` (paper C (13)–(15)): binaries ``λ_{i,k}``, ``k = 0..L``,
  ``Σ_k λ_{i,k} = 1``, ``n_i = Σ_k k λ_{i,k}``, objective ``Σ_i Σ_k v_i(k) λ_{i,k}``. Works for any
  slopes (convex or not).
- :attr:`Formulation.EPIGRAPH` (paper C (16)–(17)): continuous free ``θ_i`` with
  ``θ_i ≥ v_i(k) + u_i(k)(n_i − k)`` for ``k = 0..L−1``, objective ``Σ_i θ_i``. Exact because the
  slopes are nondecreasing (the maximum of the affine pieces is ``v_i``); the slopes are checked.

The model is built once (:meth:`FirstStageModel.__init__`); :meth:`FirstStageModel.set_slopes`
changes only what depends on the slopes (λ costs, or the ``n_i`` coefficients and right-hand
sides of the epigraph rows), and :meth:`FirstStageModel.add_cut` appends rows.

The rows, bounds and the block names come from the declaration; nothing here is specific to
PV siting.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from enum import Enum

import highspy
import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import sparse

from gridrecourse.errors import (
    GridRecourseError,
    InfeasibleModelError,
    SolverError,
    SolverTimeLimitError,
)
from gridrecourse.problems.separable import SeparableFirstStage
from gridrecourse.solvers.highs import set_mip_feasibility_tolerance

__all__ = [
    "FirstStageConfigError",
    "FirstStageInfeasibleError",
    "FirstStageModel",
    "FirstStageSolution",
    "Formulation",
]

_INF = highspy.kHighsInf
_CONVEXITY_RTOL = 1e-9
#: Changed epigraph coefficients above which :meth:`FirstStageModel.set_slopes` rebuilds the
#: HiGHS model instead of changing them one by one. ``changeCoeff`` costs ~9 µs per entry and
#: ~250 µs when it inserts one (a slope leaving 0); ieee9500 (1229 sites × 100 slopes): SPAR's
#: first exploration slopes took 30.9 s that way, the rebuild 0.1 s.
_REBUILD_CHANGES = 5000


class FirstStageConfigError(GridRecourseError, ValueError):
    """Invalid first-stage settings, slopes or cuts (shape, sign, NaN, nonconvex slopes)."""


class FirstStageInfeasibleError(InfeasibleModelError):
    """The first-stage siting problem (with its cuts) has no feasible solution."""


class Formulation(Enum):
    """How the learned value function enters the first-stage MILP (paper C §II-B)."""

    LAMBDA = "lambda"
    """Binary λ per breakpoint (paper C (13)–(15)); any slopes."""
    EPIGRAPH = "epigraph"
    """Epigraph variable per site (paper C (16)–(17)); nondecreasing slopes only."""


@dataclass(frozen=True)
class FirstStageSolution:
    """Solution of the first-stage MILP.

    Attributes
    ----------
    units : numpy.ndarray of int, shape (n_sites,)
        ``n_i``, PV units per site.
    sited : numpy.ndarray of bool, shape (n_sites,)
        ``s_i``.
    objective : float
        ``Σ_i v_i(n_i)`` of the learned function at ``units`` (objective units), evaluated
        exactly from the slopes (identical for both formulations).
    solve_seconds : float
        Wall-clock time of the HiGHS run [s].
    optimal : bool
        False when HiGHS stopped at its time limit with a feasible, not proven optimal point.
    dual_bound : float
        HiGHS's MIP dual bound (objective units).
    mip_gap : float
        HiGHS's final relative MIP gap.
    """

    units: np.ndarray
    sited: np.ndarray
    objective: float
    solve_seconds: float
    optimal: bool = True
    dual_bound: float = -math.inf
    mip_gap: float = 0.0


@dataclass
class _Layout:
    n: NDArray[np.int32]
    s: NDArray[np.int32]
    extra: NDArray[np.int32]  # λ (n_sites, L+1) or θ (n_sites,)
    epi_rows: NDArray[np.int32] | None = None  # (n_sites, L)
    n_base_rows: int = 0
    cut_rows: list[int] = field(default_factory=list)


class FirstStageModel:
    """Paper C's first-stage MILP D1 with the learned value function, built once in HiGHS.

    Parameters
    ----------
    declaration : SeparableFirstStage
        The problem's separable first stage: argument block ``n`` (``n_sites`` elements, levels
        ``0..L_i``), optional indicator block ``s`` and the rows over them.
    formulation : Formulation
        :attr:`Formulation.LAMBDA` or :attr:`Formulation.EPIGRAPH`.
    slopes : array_like, shape (n_sites, L)
        Initial slopes ``u_i(k)`` (objective units per unit of ``n_i``), ``L = max_i L_i``.
        Must be nondecreasing per row for the epigraph formulation.
    first_stage_cost : bool, default True
        Add the declaration's first-stage costs ``c`` on ``n`` and ``s`` (e.g. installation
        cost per battery unit) to the objective; the slopes learn the expected recourse only.
        ``False``: the learned function alone (SPAR's random exploration points). PV siting's
        first stage costs nothing, so the flag does not change it.

    Raises
    ------
    FirstStageConfigError
        Bad shapes or values, or nonconvex slopes with the epigraph formulation.
    """

    def __init__(
        self,
        declaration: SeparableFirstStage,
        formulation: Formulation,
        slopes: ArrayLike,
        *,
        first_stage_cost: bool = True,
    ) -> None:
        if not isinstance(formulation, Formulation):
            raise FirstStageConfigError(f"formulation must be a Formulation, got {formulation!r}")
        if not isinstance(declaration, SeparableFirstStage):
            raise FirstStageConfigError(
                f"declaration must be a SeparableFirstStage, got {type(declaration).__name__}"
            )
        self.declaration = declaration
        self.n_sites = declaration.n_elements
        self.formulation = formulation
        self._first_stage_cost = bool(first_stage_cost)
        self.max_units = declaration.levels
        self._upper = declaration.upper
        self._slopes = self._validated_slopes(slopes)
        self._highs = highspy.Highs()
        self._highs.setOptionValue("output_flag", False)
        self._layout = self._build()
        self._cuts_a: list[np.ndarray] = []
        self._cuts_b: list[float] = []

    # ------------------------------------------------------------------ checks

    def _validated_slopes(self, slopes: ArrayLike) -> NDArray[np.float64]:
        u = np.array(slopes, dtype=float)
        if u.shape != (self.n_sites, self.max_units):
            raise FirstStageConfigError(
                f"slopes must have shape (n_sites, L) = ({self.n_sites}, {self.max_units}), "
                f"got {u.shape}"
            )
        if not np.all(np.isfinite(u)):
            raise FirstStageConfigError("slopes contain NaN or infinite values")
        if self.formulation is Formulation.EPIGRAPH:
            tol = _CONVEXITY_RTOL * (1.0 + float(np.abs(u).max(initial=0.0)))
            bad = np.diff(u, axis=1) < -tol
            if bad.any():
                site = int(np.argwhere(bad)[0, 0])
                raise FirstStageConfigError(
                    f"the epigraph formulation needs nondecreasing slopes; site {site} is not "
                    "convex (project the slopes first or use Formulation.LAMBDA)"
                )
        return u

    # ------------------------------------------------------------------ build

    def _values(self, u: NDArray[np.float64]) -> NDArray[np.float64]:
        v = np.zeros((self.n_sites, self.max_units + 1))
        np.cumsum(u, axis=1, out=v[:, 1:])
        return v

    def _epigraph_rhs(self, u: NDArray[np.float64]) -> NDArray[np.float64]:
        """``v_i(k) − k u_i(k)`` for ``k = 0..L−1``, shape (n_sites, L)."""
        v = self._values(u)[:, :-1]
        return v - np.arange(self.max_units)[None, :] * u

    def _build(self) -> _Layout:
        m, big_l = self.n_sites, self.max_units
        n_s = m if self.declaration.indicator is not None else 0
        site = np.arange(m)
        n_col = site
        s_col = m + np.arange(n_s)
        rows: list[np.ndarray] = []
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        lower: list[np.ndarray] = []
        upper: list[np.ndarray] = []

        def add(r: ArrayLike, c: ArrayLike, v: ArrayLike) -> None:
            r_flat = np.asarray(r).ravel()
            rows.append(r_flat)
            cols.append(np.asarray(c).ravel())
            vals.append(np.broadcast_to(np.asarray(v, dtype=float).ravel(), r_flat.shape))

        # declared rows over n and s (PV siting: (38) sizes, (39) budget, (40) site count)
        a_n, a_s, row_lb, row_ub = self.declaration.row_matrices()
        for block, col in ((a_n, n_col), (a_s, s_col)):
            coo = block.tocoo()
            add(coo.row, col[coo.col], coo.data)
        lower.append(np.where(np.isneginf(row_lb), -_INF, row_lb))
        upper.append(np.where(np.isposinf(row_ub), _INF, row_ub))
        next_row = a_n.shape[0]

        fs = self.declaration.first_stage
        c_ns = np.zeros(m + n_s)  # first-stage cost of n (and s), objective units per unit
        if self._first_stage_cost:
            c_ns[:m] = fs.cost[fs.slice(self.declaration.argument)]
            if self.declaration.indicator is not None:
                c_ns[m:] = fs.cost[fs.slice(self.declaration.indicator)]
        col_lower = [np.zeros(m), np.zeros(n_s)]
        col_upper = [self._upper.astype(float), np.ones(n_s)]
        integer = [np.ones(m, dtype=bool), np.ones(n_s, dtype=bool)]
        epi_rows = None
        if self.formulation is Formulation.LAMBDA:
            extra = (m + n_s + np.arange(m * (big_l + 1))).reshape(m, big_l + 1)
            r_conv = next_row + site
            r_link = next_row + m + site
            add(np.repeat(r_conv, big_l + 1), extra, 1.0)  # Σ_k λ_ik = 1
            add(r_link, n_col, 1.0)  # n_i − Σ_k k λ_ik = 0
            add(
                np.repeat(r_link, big_l + 1),
                extra,
                -np.tile(np.arange(big_l + 1, dtype=float), m),
            )
            lower += [np.ones(m), np.zeros(m)]
            upper += [np.ones(m), np.zeros(m)]
            next_row += 2 * m
            col_lower.append(np.zeros(extra.size))
            col_upper.append(np.ones(extra.size))
            integer.append(np.ones(extra.size, dtype=bool))
            cost = np.concatenate([c_ns, self._values(self._slopes).ravel()])
        else:
            extra = m + n_s + site
            epi_rows = (next_row + np.arange(m * big_l)).reshape(m, big_l)
            # θ_i − u_i(k) n_i ≥ v_i(k) − k u_i(k)
            add(epi_rows, np.repeat(extra, big_l), 1.0)
            add(epi_rows, np.repeat(n_col, big_l), -self._slopes.ravel())
            lower.append(self._epigraph_rhs(self._slopes).ravel())
            upper.append(np.full(m * big_l, _INF))
            next_row += m * big_l
            col_lower.append(np.full(m, -_INF))
            col_upper.append(np.full(m, _INF))
            integer.append(np.zeros(m, dtype=bool))
            cost = np.concatenate([c_ns, np.ones(m)])

        num_col = cost.size
        matrix = sparse.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(next_row, num_col),
        )
        matrix.sort_indices()
        lp = highspy.HighsLp()
        lp.num_col_ = num_col
        lp.num_row_ = next_row
        lp.col_cost_ = cost
        lp.col_lower_ = np.concatenate(col_lower)
        lp.col_upper_ = np.concatenate(col_upper)
        lp.row_lower_ = np.concatenate(lower)
        lp.row_upper_ = np.concatenate(upper)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.num_col_ = num_col
        lp.a_matrix_.num_row_ = next_row
        lp.a_matrix_.start_ = matrix.indptr.astype(np.int32)
        lp.a_matrix_.index_ = matrix.indices.astype(np.int32)
        lp.a_matrix_.value_ = matrix.data
        self._check(self._highs.passModel(lp), "passModel")
        is_int = np.concatenate(integer)
        int_cols = np.flatnonzero(is_int).astype(np.int32)
        self._check(
            self._highs.changeColsIntegrality(
                int_cols.size,
                int_cols,
                np.full(int_cols.size, int(highspy.HighsVarType.kInteger.value), dtype=np.uint8),
            ),
            "changeColsIntegrality",
        )
        return _Layout(
            n=n_col.astype(np.int32),
            s=s_col.astype(np.int32),
            extra=np.asarray(extra, dtype=np.int32),
            epi_rows=None if epi_rows is None else epi_rows.astype(np.int32),
            n_base_rows=next_row,
        )

    @staticmethod
    def _check(status: highspy.HighsStatus, what: str) -> None:
        if status == highspy.HighsStatus.kError:
            raise SolverError(f"HiGHS {what} failed")

    # ------------------------------------------------------------------ updates

    @property
    def slopes(self) -> NDArray[np.float64]:
        """Current slopes (a copy), shape (n_sites, L)."""
        return self._slopes.copy()

    @property
    def n_cuts(self) -> int:
        """Number of feasibility cuts added so far."""
        return len(self._cuts_b)

    def set_slopes(self, slopes: ArrayLike) -> None:
        """Replace the learned slopes, changing only the model entries that depend on them.

        LAMBDA: the costs ``v_i(k)`` of the λ columns of the sites whose slopes changed
        (``changeColsCost``). EPIGRAPH: the ``n_i`` coefficients ``−u_i(k)`` that changed
        (``changeCoeff``) and the right-hand sides ``v_i(k) − k u_i(k)`` that changed
        (``changeRowsBounds``); when more than ``_REBUILD_CHANGES`` coefficients change (e.g.
        SPAR's random exploration slopes), the same model is built anew at the new slopes,
        with its cuts.

        Parameters
        ----------
        slopes : array_like, shape (n_sites, L)
            New slopes (objective units per PV unit).
        """
        new = self._validated_slopes(slopes)
        changed = new != self._slopes
        if not changed.any():
            return
        lay, h = self._layout, self._highs
        if self.formulation is Formulation.LAMBDA:
            sites = np.flatnonzero(changed.any(axis=1))
            cols = lay.extra[sites].ravel()
            costs = self._values(new[sites]).ravel()
            self._check(h.changeColsCost(cols.size, cols, costs), "changeColsCost")
        elif changed.sum() > _REBUILD_CHANGES:  # the same model, built at the new slopes
            self._slopes = new
            self._highs = highspy.Highs()
            self._highs.setOptionValue("output_flag", False)
            cut_rows = self._layout.cut_rows
            self._layout = self._build()
            if self._cuts_b:
                self._add_cut_rows(np.array(self._cuts_a), np.array(self._cuts_b))
                self._layout.cut_rows.extend(cut_rows)
            return
        else:
            assert lay.epi_rows is not None
            for i, k in np.argwhere(changed):
                self._check(
                    h.changeCoeff(int(lay.epi_rows[i, k]), int(lay.n[i]), float(-new[i, k])),
                    "changeCoeff",
                )
            old_rhs = self._epigraph_rhs(self._slopes)
            new_rhs = self._epigraph_rhs(new)
            moved = new_rhs != old_rhs
            rows = lay.epi_rows[moved]
            self._check(
                h.changeRowsBounds(
                    rows.size, rows, new_rhs[moved], np.full(rows.size, _INF, dtype=float)
                ),
                "changeRowsBounds",
            )
        self._slopes = new

    def add_cut(self, coeffs: ArrayLike, rhs: float | ArrayLike) -> None:
        """Append feasibility cut(s) ``coeffs · n ≥ rhs`` on the units (paper C (18)).

        Parameters
        ----------
        coeffs : array_like, shape (n_sites,) or (n_cuts, n_sites)
            Coefficients on ``n_i`` (cut units per PV unit).
        rhs : float or array_like, shape (n_cuts,)
            Right-hand side(s).
        """
        a = np.atleast_2d(np.asarray(coeffs, dtype=float))
        b = np.atleast_1d(np.asarray(rhs, dtype=float)).ravel()
        if a.ndim != 2 or a.shape[1] != self.n_sites or b.shape != (a.shape[0],):
            raise FirstStageConfigError(
                f"cut coefficients must have shape (n_cuts, {self.n_sites}) with one rhs per cut, "
                f"got {a.shape} and {b.shape}"
            )
        if not (np.all(np.isfinite(a)) and np.all(np.isfinite(b))):
            raise FirstStageConfigError("cut coefficients or rhs contain NaN or infinite values")
        first = self._layout.n_base_rows + self.n_cuts
        self._add_cut_rows(a, b)
        self._layout.cut_rows.extend(range(first, first + a.shape[0]))
        self._cuts_a.extend(a)
        self._cuts_b.extend(b.tolist())

    def _add_cut_rows(self, a: NDArray[np.float64], b: NDArray[np.float64]) -> None:
        """Append the rows ``a n ≥ b`` to the HiGHS model (no bookkeeping)."""
        csr = sparse.csr_matrix(a)
        csr.eliminate_zeros()
        self._check(
            self._highs.addRows(
                a.shape[0],
                b,
                np.full(b.size, _INF),
                csr.nnz,
                csr.indptr[:-1].astype(np.int32),
                self._layout.n[csr.indices].astype(np.int32),
                csr.data,
            ),
            "addRows",
        )

    @property
    def cuts(self) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
        """All cuts so far as ``(A, b)`` with ``A n ≥ b``; shapes (n_cuts, n_sites), (n_cuts,)."""
        if not self._cuts_b:
            return np.zeros((0, self.n_sites)), np.zeros(0)
        return np.array(self._cuts_a), np.array(self._cuts_b)

    # ------------------------------------------------------------------ solve

    def solve(
        self,
        time_limit: float | None = None,
        mip_gap: float = 1e-4,
        feasibility_tolerance: float | None = None,
    ) -> FirstStageSolution:
        """Solve the MILP with HiGHS.

        Parameters
        ----------
        time_limit : float or None
            Wall-clock limit [s]; None for no limit.
        mip_gap : float, default 1e-4
            Relative MIP gap at which HiGHS stops.
        feasibility_tolerance : float or None
            HiGHS's ``mip_feasibility_tolerance`` (None: its default 1e-6).

        Returns
        -------
        FirstStageSolution

        Raises
        ------
        FirstStageInfeasibleError
            No first stage satisfies the declared rows and the cuts.
        SolverTimeLimitError
            The time limit passed before any feasible point was found.
        SolverError
            Any other HiGHS failure.
        """
        h = self._highs
        h.setOptionValue("time_limit", float(_INF if time_limit is None else time_limit))
        h.setOptionValue("mip_rel_gap", float(mip_gap))
        set_mip_feasibility_tolerance(h, feasibility_tolerance)
        start = time.perf_counter()
        h.run()
        seconds = time.perf_counter() - start
        status = h.getModelStatus()
        info = h.getInfo()
        ms = highspy.HighsModelStatus
        if status in (ms.kInfeasible, ms.kUnboundedOrInfeasible):
            raise FirstStageInfeasibleError(
                f"first stage infeasible: {self.declaration.describe()}, "
                f"{self.n_cuts} feasibility cut(s)"
            )
        has_point = info.primal_solution_status == 2  # kSolutionStatusFeasible
        optimal = status == ms.kOptimal
        if not optimal:
            limits = (ms.kTimeLimit, ms.kIterationLimit, ms.kSolutionLimit, ms.kInterrupt)
            if status in limits and has_point:
                pass
            elif status in limits:
                raise SolverTimeLimitError(
                    f"first stage: HiGHS stopped ({h.modelStatusToString(status)}) after "
                    f"{seconds:.1f} s without a feasible point"
                )
            else:
                raise SolverError(f"first stage: HiGHS returned {h.modelStatusToString(status)}")
        x = np.asarray(h.getSolution().col_value)
        units = np.clip(np.rint(x[self._layout.n]), 0, self._upper).astype(np.int64)
        sited = x[self._layout.s] > 0.5
        values = self._values(self._slopes)
        objective = float(values[np.arange(self.n_sites), units].sum())
        return FirstStageSolution(
            units=units,
            sited=sited,
            objective=objective,
            solve_seconds=seconds,
            optimal=optimal,
            dual_bound=float(info.mip_dual_bound),
            mip_gap=float(info.mip_gap),
        )
