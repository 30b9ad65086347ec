"""The two-stage stochastic program every method shares (METHODS §2).

::

    min_x  cᵀx + Σ_ω π_ω Q(x, ξ_ω)
    s.t.   A x within [row_lb, row_ub],  lb ≤ x ≤ ub,  x_j integer for j ∈ J

    Q(x, ξ_ω) = min_y  d_ωᵀy + Σ_j h_j y_j²
                s.t.   L_ω ≤ W y + Σ_k S_kω T_k x ≤ U_ω,   l_ω ≤ y ≤ u_ω,  y_j integer, j ∈ J_y

A problem is *declared* as sparse blocks, never as per-element Python objects:

* :class:`FirstStageSpec` — the first-stage variable blocks (bounds, integrality, cost ``c``)
  and constraint blocks (sparse rows over them).
* :class:`SecondStageSpec` — one scenario's recourse: variable blocks (bounds, linear cost
  ``d``, optional diagonal quadratic cost ``h ≥ 0``, optional integrality) and constraint
  blocks ``W`` (sparse matrices per variable block). The rows that carry the first-stage
  decision are one or more named :class:`LinkingBlock` (e.g. ``"pv-linking"``), each with its
  own fixed technology matrix ``T_k`` over ``x``; each scenario scales their rows by
  ``S_kω = diag(technology_scale_ω)`` (for PV siting: the PV availability of each site). The
  spec also names the variable blocks whose costs (``scenario_costs``: prices) and column
  bounds (``scenario_bounds``) change per scenario.
* :class:`ScenarioData` — what changes between scenarios, as ``(S, ·)`` arrays: row bounds
  (right-hand sides) ``L_ω, U_ω``, the technology scale, and per-block costs ``d_ω`` and
  column bounds ``l_ω, u_ω``. Fields left out keep the nominal values and cost nothing.

From these, :class:`SecondStageModel` builds the recourse LP/QP/MILP **once** and re-solves it
for any ``(x, ω)`` by changing bounds (``L_ω − S_ω T x``, ``U_ω − S_ω T x``) and, for declared
blocks only, costs and column bounds; HiGHS keeps its basis as a warm start. The extensive form
(:mod:`gridrecourse.methods.extensive_form`) stacks ``S`` copies with
:func:`add_second_stage_blocks` (``kron(I_S, W)``). For continuous recourse both read the duals
of the linking rows: ``∂Q/∂x = −Σ_k T_kᵀ S_kω λ_kω`` with ``λ`` the linking-row duals (HiGHS
convention ``∂ objective / ∂ row bound``); an infeasible recourse LP yields a Farkas ray and a
feasibility cut ``αᵀx ≥ β`` (paper C eq. 18). Integer recourse is solved by HiGHS's branch and
bound: a result then records the MIP gap and dual bound and has no duals (feasibility cuts come
from the LP relaxation when it is infeasible too).

What a method can handle is declared in :mod:`gridrecourse.problems.capabilities`
(:class:`~gridrecourse.problems.capabilities.MethodRequirements`, checked against the problem's
traits); SPAR's view of the first stage in :mod:`gridrecourse.problems.separable`.

References
----------
J. R. Birge and F. Louveaux, *Introduction to Stochastic Programming*, 2nd ed., Springer 2011
(two-stage recourse, feasibility cuts). Paper C ("SPAR-OPF") §II, eqs. (1)–(4), (18).
"""

from __future__ import annotations

import math
import time
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import (
    GridRecourseError,
    InfeasibleModelError,
    SolverError,
    SolverTimeLimitError,
)
from gridrecourse.solvers.highs import (
    ConstraintBlock,
    LinearModel,
    SimplexPricing,
    Solution,
    VariableBlock,
)
from gridrecourse.solvers.options import SolverOptions

if TYPE_CHECKING:
    from gridrecourse.problems.separable import SeparableFirstStage

__all__ = [
    "ConstraintBlockSpec",
    "FeasibilityCut",
    "FirstStageSpec",
    "LinkingBlock",
    "ProblemSpecError",
    "ScenarioData",
    "SecondStageModel",
    "SecondStageResult",
    "SecondStageSpec",
    "SolveStatus",
    "TwoStageProblem",
    "VariableBlockSpec",
    "add_second_stage_blocks",
    "recourse_floor",
    "scenario_selection",
    "tangent_rows",
]

#: Relative size below which a Farkas-ray entry is treated as zero (numerical noise).
_RAY_TOLERANCE = 1e-9
#: Relative optimality gap at which the cutting-plane QP fallback stops: above what the LP's
#: tolerances (1e-7 per tangent row) can reach (measured on the IEEE 123 P2:
#: ``benchmarks/results/DESIGN_MEASUREMENTS.md``).
_QP_FALLBACK_TOLERANCE = 1e-6
#: Relative gap still accepted once the LP bound has stalled: the safety net for recourse QPs
#: whose tolerance floor lies above :data:`_QP_FALLBACK_TOLERANCE`.
_QP_FALLBACK_STALL_TOLERANCE = 1e-4
#: Relative bound increase below which a cutting-plane iteration counts as stalled.
_QP_FALLBACK_STALL = 1e-10
#: Consecutive stalled iterations after which the fallback stops (if within the stall tolerance).
_QP_FALLBACK_STALL_ITERATIONS = 3
#: Iteration limit of the cutting-plane QP fallback.
_QP_FALLBACK_ITERATIONS = 200
#: Matrix entries at or below this magnitude are round-off (e.g. γ products of 1e-16) and dropped.
_MATRIX_ZERO = 1e-12


class ProblemSpecError(GridRecourseError, ValueError):
    """A two-stage problem declaration is inconsistent; the message names the block."""


class SolveStatus(str, Enum):
    """Outcome of a solve."""

    #: solved to optimality (MIP: within the requested gap)
    OPTIMAL = "optimal"
    #: stopped at the time limit with a feasible incumbent (a valid, reportable outcome)
    TIME_LIMIT = "time_limit"
    #: the model is infeasible
    INFEASIBLE = "infeasible"

    @classmethod
    def from_highs(cls, status: str) -> SolveStatus:
        """Map a HiGHS model-status string (``Solution.status``)."""
        text = status.lower()
        if "optimal" in text:
            return cls.OPTIMAL
        if "infeasible" in text:
            return cls.INFEASIBLE
        return cls.TIME_LIMIT


def _vector(value: float | np.ndarray, size: int, what: str) -> np.ndarray:
    try:
        arr = np.broadcast_to(np.asarray(value, dtype=float), (size,)).copy()
    except ValueError as exc:
        raise ProblemSpecError(f"{what}: expected a scalar or {size} values ({exc})") from None
    if np.isnan(arr).any():
        raise ProblemSpecError(f"{what} contains NaN")
    arr.setflags(write=False)
    return arr


@dataclass(frozen=True, eq=False)
class VariableBlockSpec:
    """A block of ``size`` columns of one stage (one scenario's copy for the second stage).

    Attributes
    ----------
    name : str
        Block name (``"branch-p"``, ``"pv-p"`` …); unique within its stage.
    size : int
    lb, ub : ndarray, shape (size,)
        Column bounds (±inf allowed); scalars are broadcast.
    cost : ndarray, shape (size,)
        Linear objective coefficient (objective units per unit of the variable).
    quadratic : ndarray, shape (size,), optional
        Diagonal quadratic cost ``h_j`` (objective ``+= Σ h_j y_j²``, ``h ≥ 0``; second stage).
    quadratic_range : tuple of two ndarrays, optional
        ``(lo, hi)`` per column: the range the variable is expected to span over the scenarios
        and feasible first stages; the extensive form places its tangent planes on it.
    integer : bool
        Integer columns (first stage only).
    penalty : bool
        The linear cost is a soft-limit penalty (reported separately from the objective).
    """

    name: str
    size: int
    lb: np.ndarray | float = 0.0
    ub: np.ndarray | float = np.inf
    cost: np.ndarray | float = 0.0
    quadratic: np.ndarray | None = None
    quadratic_range: tuple[np.ndarray, np.ndarray] | None = None
    integer: bool = False
    penalty: bool = False

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if int(self.size) != self.size or self.size < 0:
            raise ProblemSpecError(f"variable block {self.name!r}: size must be >= 0")
        set_(self, "size", int(self.size))
        set_(self, "lb", _vector(self.lb, self.size, f"variable block {self.name!r} lb"))
        set_(self, "ub", _vector(self.ub, self.size, f"variable block {self.name!r} ub"))
        set_(self, "cost", _vector(self.cost, self.size, f"variable block {self.name!r} cost"))
        if np.any(self.lb > self.ub):
            j = int(np.argmax(self.lb > self.ub))
            raise ProblemSpecError(f"variable block {self.name!r}: lb > ub at column {j}")
        if self.quadratic is not None:
            q = _vector(self.quadratic, self.size, f"variable block {self.name!r} quadratic")
            if np.any(q < 0) or not np.all(np.isfinite(q)):
                raise ProblemSpecError(
                    f"variable block {self.name!r}: quadratic cost must be finite and >= 0"
                )
            set_(self, "quadratic", q)
        if self.quadratic_range is not None:
            lo, hi = self.quadratic_range
            set_(
                self,
                "quadratic_range",
                (
                    _vector(lo, self.size, f"{self.name!r} quadratic_range lo"),
                    _vector(hi, self.size, f"{self.name!r} quadratic_range hi"),
                ),
            )

    @property
    def has_quadratic(self) -> bool:
        """True when some column has a positive quadratic cost."""
        return self.quadratic is not None and bool(np.any(self.quadratic > 0))


@dataclass(frozen=True, eq=False)
class ConstraintBlockSpec:
    """Rows ``lb ≤ Σ_k M_k y_k ≤ ub`` over named variable blocks of the same stage.

    Attributes
    ----------
    name : str
        Block name (``"branch-voltage_drop"``, ``"pv-linking"`` …).
    terms : tuple of (str, scipy.sparse.csr_matrix)
        ``(variable block name, matrix)``; every matrix has the block's row count.
    lb, ub : ndarray, shape (n_rows,)
        Nominal bounds (scenario-independent default; :class:`ScenarioData` overrides them).
    """

    name: str
    terms: tuple[tuple[str, sp.csr_matrix], ...]
    lb: np.ndarray | float = -np.inf
    ub: np.ndarray | float = np.inf

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if not self.terms:
            raise ProblemSpecError(f"constraint block {self.name!r} has no terms")
        terms = tuple((name, _clean(m)) for name, m in self.terms)
        rows = {m.shape[0] for _, m in terms}
        if len(rows) != 1:
            raise ProblemSpecError(f"constraint block {self.name!r}: term row counts differ")
        set_(self, "terms", terms)
        n = rows.pop()
        set_(self, "lb", _vector(self.lb, n, f"constraint block {self.name!r} lb"))
        set_(self, "ub", _vector(self.ub, n, f"constraint block {self.name!r} ub"))

    @property
    def size(self) -> int:
        """Number of rows."""
        return int(self.terms[0][1].shape[0])


def _clean(matrix: sp.spmatrix | np.ndarray) -> sp.csr_matrix:
    """CSR copy without explicit entries of magnitude <= :data:`_MATRIX_ZERO` (round-off)."""
    m = sp.csr_matrix(matrix, dtype=float, copy=True)
    m.data[np.abs(m.data) <= _MATRIX_ZERO] = 0.0
    m.eliminate_zeros()
    m.sum_duplicates()
    # settle scipy's lazily cached format flags now: a problem must pickle to the same bytes
    # before and after use (executors key the per-worker model cache on that pickle)
    _ = m.has_sorted_indices, m.has_canonical_format
    return m


def _check_blocks(
    stage: str,
    variables: Sequence[VariableBlockSpec],
    constraints: Sequence[ConstraintBlockSpec],
) -> None:
    names = [v.name for v in variables]
    if len(set(names)) != len(names):
        raise ProblemSpecError(f"{stage}: duplicate variable block names {names}")
    sizes = {v.name: v.size for v in variables}
    cnames = [c.name for c in constraints]
    if len(set(cnames)) != len(cnames):
        raise ProblemSpecError(f"{stage}: duplicate constraint block names {cnames}")
    for c in constraints:
        for name, m in c.terms:
            if name not in sizes:
                raise ProblemSpecError(
                    f"{stage}: constraint block {c.name!r} refers to unknown variable block "
                    f"{name!r} (known: {names})"
                )
            if m.shape[1] != sizes[name]:
                raise ProblemSpecError(
                    f"{stage}: constraint block {c.name!r}: matrix for {name!r} has "
                    f"{m.shape[1]} columns, the block has {sizes[name]}"
                )


def _offsets(sizes: Sequence[int]) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)]).astype(int)


@dataclass(frozen=True, eq=False)
class FirstStageSpec:
    """First-stage variables ``x`` and constraints (METHODS §2; paper C D1 for PV siting).

    ``x`` is the concatenation of the variable blocks in order.
    """

    variables: tuple[VariableBlockSpec, ...]
    constraints: tuple[ConstraintBlockSpec, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "variables", tuple(self.variables))
        object.__setattr__(self, "constraints", tuple(self.constraints))
        _check_blocks("first stage", self.variables, self.constraints)

    @property
    def size(self) -> int:
        """Number of first-stage variables ``n_x``."""
        return int(sum(v.size for v in self.variables))

    def slice(self, name: str) -> slice:
        """Position of variable block ``name`` in ``x``."""
        off = _offsets([v.size for v in self.variables])
        for k, v in enumerate(self.variables):
            if v.name == name:
                return slice(int(off[k]), int(off[k + 1]))
        raise ProblemSpecError(f"first stage has no variable block {name!r}")

    @property
    def cost(self) -> np.ndarray:
        """``c``, shape (n_x,)."""
        return np.concatenate([v.cost for v in self.variables])

    @property
    def lb(self) -> np.ndarray:
        """Lower bounds of ``x``."""
        return np.concatenate([v.lb for v in self.variables])

    @property
    def ub(self) -> np.ndarray:
        """Upper bounds of ``x``."""
        return np.concatenate([v.ub for v in self.variables])

    @property
    def integer(self) -> np.ndarray:
        """Integrality mask of ``x``."""
        return np.concatenate([np.full(v.size, v.integer) for v in self.variables])

    def matrix(self) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
        """All first-stage rows as ``(A, row_lb, row_ub)`` over ``x``."""
        n = self.size
        if not self.constraints:
            return sp.csr_matrix((0, n)), np.zeros(0), np.zeros(0)
        blocks = []
        for c in self.constraints:
            row = sp.csr_matrix((c.size, n))
            for name, m in c.terms:
                s = self.slice(name)
                pad = sp.hstack(
                    [sp.csr_matrix((c.size, s.start)), m, sp.csr_matrix((c.size, n - s.stop))]
                )
                row = row + pad
            blocks.append(row)
        a = sp.vstack(blocks, format="csr")
        return (
            a,
            np.concatenate([c.lb for c in self.constraints]),
            np.concatenate([c.ub for c in self.constraints]),
        )

    def is_feasible(self, x: np.ndarray, tol: float = 1e-7) -> bool:
        """True when ``x`` satisfies the bounds, integrality and rows within ``tol``."""
        x = np.asarray(x, dtype=float)
        if x.shape != (self.size,):
            raise ProblemSpecError(f"x must have shape ({self.size},), got {x.shape}")
        if np.any(x < self.lb - tol) or np.any(x > self.ub + tol):
            return False
        integer = self.integer
        if np.any(np.abs(x[integer] - np.round(x[integer])) > tol):
            return False
        a, lo, hi = self.matrix()
        ax = a @ x
        scale = 1.0 + np.abs(ax)
        return bool(np.all(ax >= lo - tol * scale) and np.all(ax <= hi + tol * scale))


@dataclass(frozen=True, eq=False)
class LinkingBlock:
    """A second-stage constraint block that carries the first-stage decision.

    Its rows read ``L_ω ≤ W y + S_ω T x ≤ U_ω`` (METHODS §2): ``T`` is fixed, ``S_ω`` is the
    per-scenario row scale of :attr:`ScenarioData.technology_scale` (1 when not given).

    Attributes
    ----------
    name : str
        Name of the constraint block (``"pv-linking"`` …).
    technology : scipy.sparse.csr_matrix, shape (rows of the block, n_x)
        ``T``: coefficients of the first-stage vector ``x`` in these rows.
    """

    name: str
    technology: sp.csr_matrix

    def __post_init__(self) -> None:
        object.__setattr__(self, "technology", _clean(self.technology))


@dataclass(frozen=True, eq=False)
class SecondStageSpec:
    """One scenario's recourse problem ``min dᵀy + Σ h y² : L ≤ W y + S T x ≤ U, l ≤ y ≤ u``.

    Attributes
    ----------
    variables, constraints : tuple
        Blocks of ``y`` and of the rows (``W``), in model order. Integer recourse columns
        (``VariableBlockSpec.integer``) make every scenario a MILP.
    linking : str or sequence of LinkingBlock
        The constraint blocks that carry the first-stage decision: one block name (with
        ``technology``) or several :class:`LinkingBlock` (each with its own ``T``). Their duals
        are the slopes methods such as SPAR need.
    technology : scipy.sparse.csr_matrix, shape (n_linking_rows, n_x)
        ``T`` of a single named linking block; after construction, the stacked ``T`` of all
        linking blocks (in :attr:`links` order) either way.
    objective_offset : float
        Constant added to every scenario's objective.
    scenario_costs : tuple of str
        Variable blocks whose linear cost ``d`` changes per scenario (prices; given by
        :attr:`ScenarioData.cost`).
    scenario_bounds : tuple of str
        Variable blocks whose column bounds change per scenario (:attr:`ScenarioData.col_lb`,
        :attr:`ScenarioData.col_ub`).
    links : tuple of LinkingBlock
        The normalized linking blocks (set on construction).
    """

    variables: tuple[VariableBlockSpec, ...]
    constraints: tuple[ConstraintBlockSpec, ...]
    linking: str | Sequence[LinkingBlock]
    technology: sp.csr_matrix | None = None
    objective_offset: float = 0.0
    scenario_costs: tuple[str, ...] = ()
    scenario_bounds: tuple[str, ...] = ()
    links: tuple[LinkingBlock, ...] = field(init=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "variables", tuple(self.variables))
        set_(self, "constraints", tuple(self.constraints))
        set_(self, "scenario_costs", tuple(self.scenario_costs))
        set_(self, "scenario_bounds", tuple(self.scenario_bounds))
        _check_blocks("second stage", self.variables, self.constraints)
        if isinstance(self.linking, str):
            if self.technology is None:
                raise ProblemSpecError(
                    f"second stage: linking block {self.linking!r} needs a technology matrix"
                )
            links: tuple[LinkingBlock, ...] = (LinkingBlock(self.linking, self.technology),)
        else:
            links = tuple(self.linking)
            set_(self, "linking", links)
            if self.technology is not None:
                raise ProblemSpecError(
                    "second stage: give technology inside each LinkingBlock, not separately"
                )
        if not links:
            raise ProblemSpecError("second stage: at least one linking block is required")
        set_(self, "links", links)
        names = [c.name for c in self.constraints]
        sizes = {c.name: c.size for c in self.constraints}
        link_names = [k.name for k in links]
        if len(set(link_names)) != len(link_names):
            raise ProblemSpecError(f"second stage: duplicate linking blocks {link_names}")
        n_x = {k.technology.shape[1] for k in links}
        if len(n_x) != 1:
            raise ProblemSpecError(
                f"second stage: technology matrices of {link_names} have different column "
                f"counts {sorted(n_x)} (all are over the same first-stage vector x)"
            )
        for k in links:
            if k.name not in names:
                raise ProblemSpecError(
                    f"second stage: linking block {k.name!r} is not a constraint block "
                    f"(known: {names})"
                )
            if k.technology.shape[0] != sizes[k.name]:
                raise ProblemSpecError(
                    f"second stage: technology matrix has {k.technology.shape[0]} rows, linking "
                    f"block {k.name!r} has {sizes[k.name]}"
                )
        set_(self, "technology", sp.vstack([k.technology for k in links], format="csr"))
        var_names = [v.name for v in self.variables]
        for what, blocks in (
            ("scenario_costs", self.scenario_costs),
            ("scenario_bounds", self.scenario_bounds),
        ):
            unknown = [b for b in blocks if b not in var_names]
            if unknown:
                raise ProblemSpecError(
                    f"second stage: {what} names unknown variable block(s) {unknown} "
                    f"(known: {var_names})"
                )

    @property
    def has_integer(self) -> bool:
        """True when some recourse column is integer (each scenario is a MILP)."""
        return any(v.integer and v.size for v in self.variables)

    @property
    def has_quadratic(self) -> bool:
        """True when some recourse column has a positive quadratic cost."""
        return any(v.has_quadratic for v in self.variables)

    @property
    def n_linking_rows(self) -> int:
        """Rows of all linking blocks together."""
        return int(self.technology.shape[0])

    @property
    def linking_rows(self) -> np.ndarray:
        """Positions of the linking rows (in :attr:`links` order) in a scenario's rows."""
        slices = [self.row_slice(k.name) for k in self.links]
        return np.concatenate([np.arange(r.start, r.stop) for r in slices])

    def link_offsets(self) -> np.ndarray:
        """Offsets of each linking block in the stacked linking rows, shape (n_links + 1,)."""
        return _offsets([k.technology.shape[0] for k in self.links])

    @property
    def linking_block(self) -> ConstraintBlockSpec:
        """The (first) linking constraint block."""
        return next(c for c in self.constraints if c.name == self.links[0].name)

    @property
    def n_rows(self) -> int:
        """Rows of one scenario."""
        return int(sum(c.size for c in self.constraints))

    @property
    def n_cols(self) -> int:
        """Columns of one scenario."""
        return int(sum(v.size for v in self.variables))

    def row_slice(self, name: str) -> slice:
        """Position of constraint block ``name`` in a scenario's row vector."""
        off = _offsets([c.size for c in self.constraints])
        for k, c in enumerate(self.constraints):
            if c.name == name:
                return slice(int(off[k]), int(off[k + 1]))
        raise ProblemSpecError(f"second stage has no constraint block {name!r}")

    def col_slice(self, name: str) -> slice:
        """Position of variable block ``name`` in a scenario's column vector."""
        off = _offsets([v.size for v in self.variables])
        for k, v in enumerate(self.variables):
            if v.name == name:
                return slice(int(off[k]), int(off[k + 1]))
        raise ProblemSpecError(f"second stage has no variable block {name!r}")

    @property
    def row_lb(self) -> np.ndarray:
        """Nominal row lower bounds of one scenario."""
        return np.concatenate([c.lb for c in self.constraints])

    @property
    def row_ub(self) -> np.ndarray:
        """Nominal row upper bounds of one scenario."""
        return np.concatenate([c.ub for c in self.constraints])

    @property
    def col_lb(self) -> np.ndarray:
        """Column lower bounds ``l``."""
        return np.concatenate([v.lb for v in self.variables])

    @property
    def col_ub(self) -> np.ndarray:
        """Column upper bounds ``u``."""
        return np.concatenate([v.ub for v in self.variables])

    def matrix(self) -> sp.csr_matrix:
        """``W`` of one scenario (rows × columns, in block order)."""
        off = _offsets([v.size for v in self.variables])
        pos = {v.name: int(off[k]) for k, v in enumerate(self.variables)}
        rows, cols, vals = [], [], []
        roff = 0
        for c in self.constraints:
            for name, m in c.terms:
                coo = m.tocoo()
                rows.append(coo.row + roff)
                cols.append(coo.col + pos[name])
                vals.append(coo.data)
            roff += c.size
        return sp.csr_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.n_rows, self.n_cols),
        )


def _frozen_blocks(value: Mapping[str, np.ndarray] | None) -> Mapping[str, np.ndarray]:
    out = {}
    for name, arr in (value or {}).items():
        a = np.asarray(arr, dtype=float)
        out[str(name)] = a
    return out


@dataclass(frozen=True, eq=False)
class ScenarioData:
    """The scenario-dependent vectors of the second stage for ``S`` scenarios.

    Everything is array-shaped over the ``S`` scenarios (never per-scenario objects); a field
    left at its default keeps the nominal value of :class:`SecondStageSpec` and costs nothing.

    Attributes
    ----------
    indices : ndarray of int, shape (S,)
        Scenario indices in the problem's scenario set.
    row_lb, row_ub : ndarray, shape (S, n_rows), optional
        ``L_ω``, ``U_ω``, the right-hand sides of the two-sided rows (before the first-stage
        term is moved there); ``None``: the nominal bounds of every constraint block.
    technology_scale : ndarray, shape (S, n_linking_rows), optional
        ``S_ω``: scales the rows of the stacked ``T`` (all linking blocks, in
        :attr:`SecondStageSpec.links` order) in scenario ω; ``None``: 1.
    cost : mapping of str to ndarray, shape (S, block size)
        Per-scenario linear cost ``d_ω`` of the blocks declared in
        :attr:`SecondStageSpec.scenario_costs` (objective units per unit; e.g. energy prices).
    col_lb, col_ub : mapping of str to ndarray, shape (S, block size)
        Per-scenario column bounds of blocks declared in :attr:`SecondStageSpec.scenario_bounds`.
    """

    indices: np.ndarray
    row_lb: np.ndarray | None = None
    row_ub: np.ndarray | None = None
    technology_scale: np.ndarray | None = None
    cost: Mapping[str, np.ndarray] = field(default_factory=dict)
    col_lb: Mapping[str, np.ndarray] = field(default_factory=dict)
    col_ub: Mapping[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "indices", np.asarray(self.indices, dtype=int).ravel())
        s = len(self.indices)
        for name in ("row_lb", "row_ub", "technology_scale"):
            arr = getattr(self, name)
            if arr is None:
                continue
            arr = np.asarray(arr, dtype=float)
            set_(self, name, arr)
            if arr.ndim != 2 or arr.shape[0] != s:
                raise ProblemSpecError(
                    f"ScenarioData.{name} must have shape (S={s}, ·), got {arr.shape}"
                )
        for name in ("cost", "col_lb", "col_ub"):
            blocks = _frozen_blocks(getattr(self, name))
            set_(self, name, blocks)
            for block, arr in blocks.items():
                if arr.ndim != 2 or arr.shape[0] != s:
                    raise ProblemSpecError(
                        f"ScenarioData.{name}[{block!r}] must have shape (S={s}, size), "
                        f"got {arr.shape}"
                    )

    @property
    def n_scenarios(self) -> int:
        """``S``."""
        return len(self.indices)

    def validate(self, spec: SecondStageSpec) -> None:
        """Check the shapes against ``spec`` and that only declared blocks vary.

        Raises
        ------
        ProblemSpecError
            A wrong width, or per-scenario costs/bounds of a block the spec does not declare in
            ``scenario_costs`` / ``scenario_bounds`` (the message names the block).
        """
        widths = {"row_lb": spec.n_rows, "row_ub": spec.n_rows}
        widths["technology_scale"] = spec.n_linking_rows
        for name, width in widths.items():
            arr = getattr(self, name)
            if arr is not None and arr.shape[1] != width:
                raise ProblemSpecError(
                    f"ScenarioData.{name} has {arr.shape[1]} columns, the second stage needs "
                    f"{width}"
                )
        sizes = {v.name: v.size for v in spec.variables}
        for name, declared in (
            ("cost", spec.scenario_costs),
            ("col_lb", spec.scenario_bounds),
            ("col_ub", spec.scenario_bounds),
        ):
            for block, arr in getattr(self, name).items():
                if block not in declared:
                    raise ProblemSpecError(
                        f"ScenarioData.{name} gives block {block!r}, which the second stage "
                        f"does not declare (declared: {list(declared)})"
                    )
                if arr.shape[1] != sizes[block]:
                    raise ProblemSpecError(
                        f"ScenarioData.{name}[{block!r}] has {arr.shape[1]} columns, the block "
                        f"has {sizes[block]}"
                    )

    def row_bounds(self, spec: SecondStageSpec) -> tuple[np.ndarray, np.ndarray]:
        """``(L, U)``, shape (S, n_rows) each (nominal bounds where not given)."""
        s = self.n_scenarios
        lb = np.tile(spec.row_lb, (s, 1)) if self.row_lb is None else self.row_lb
        ub = np.tile(spec.row_ub, (s, 1)) if self.row_ub is None else self.row_ub
        return lb, ub

    def scale(self, spec: SecondStageSpec) -> np.ndarray:
        """``S_ω`` of the stacked linking rows, shape (S, n_linking_rows)."""
        if self.technology_scale is None:
            return np.ones((self.n_scenarios, spec.n_linking_rows))
        return self.technology_scale

    def block_cost(self, block: VariableBlockSpec) -> np.ndarray:
        """Linear cost of ``block`` per scenario, shape (S, size)."""
        given = self.cost.get(block.name)
        return np.tile(block.cost, (self.n_scenarios, 1)) if given is None else given

    def block_bounds(self, block: VariableBlockSpec) -> tuple[np.ndarray, np.ndarray]:
        """Column bounds of ``block`` per scenario, shape (S, size) each."""
        s = self.n_scenarios
        lb, ub = self.col_lb.get(block.name), self.col_ub.get(block.name)
        return (
            np.tile(block.lb, (s, 1)) if lb is None else lb,
            np.tile(block.ub, (s, 1)) if ub is None else ub,
        )


@dataclass(frozen=True)
class FeasibilityCut:
    """A feasibility cut ``coefficients · x ≥ rhs`` from a Farkas ray (paper C eq. 18).

    Every first stage whose recourse is feasible in the scenario satisfies it; the first stage
    that produced the ray violates it. Coefficients are over the full ``x`` (for PV siting,
    :meth:`gridrecourse.problems.siting.PVSitingProblem.units_cut` restricts them to ``n``).
    """

    scenario: int
    coefficients: np.ndarray
    rhs: float

    def violation(self, x: np.ndarray) -> float:
        """``rhs − coefficients · x`` (positive: ``x`` is cut off)."""
        return float(self.rhs - self.coefficients @ np.asarray(x, dtype=float))


@dataclass(frozen=True, eq=False)
class SecondStageResult:
    """The recourse value ``Q(x, ξ_ω)`` of one scenario at a fixed first stage.

    Attributes
    ----------
    scenario : int
        Scenario index.
    objective : float
        ``Q(x, ξ_ω)`` in the problem's objective units (``inf`` when infeasible); includes
        soft-limit penalties.
    feasible : bool
    penalty : float
        Part of ``objective`` paid for soft-limit violations (0 with hard limits).
    linking_duals : ndarray, shape (n_linking_rows,)
        Duals of the linking rows, ``∂Q / ∂(row bound)`` (NaN when infeasible).
    subgradient : ndarray, shape (n_x,)
        ``∂Q/∂x = −T_ωᵀ S_ω λ`` (NaN when infeasible); for PV siting the ``n_i`` entries are
        paper C's slope estimates ``ĝ_i = dual(44) × g × PV_mult``.
    farkas_ray : ndarray, shape (n_linking_rows,), optional
        Farkas-ray values on the linking rows when infeasible (orientation: proves
        infeasibility as documented in :meth:`LinearModel.dual_ray`).
    cut : FeasibilityCut, optional
        Feasibility cut from the ray (infeasible scenarios only).
    solve_seconds : float
        HiGHS time of the solve (s).
    values : ndarray, optional
        Column values ``y`` (only when requested).
    mip_gap : float
        Relative MIP gap of the scenario solve (0 for continuous recourse).
    dual_bound : float
        Lower bound on ``Q(x, ξ_ω)`` proven by the solve (objective units): HiGHS's MIP dual
        bound for integer recourse, ``objective`` for LP/QP recourse (``inf`` when
        infeasible). For integer recourse ``linking_duals`` and ``subgradient`` are NaN (a MILP
        has no duals).
    simplex_iterations : int
        Simplex iterations of the solve (HiGHS's count; a QP solve counts none). A warm
        re-solve of a similar scenario needs few, of the same scenario none.
    """

    scenario: int
    objective: float
    feasible: bool
    penalty: float
    linking_duals: np.ndarray
    subgradient: np.ndarray
    farkas_ray: np.ndarray | None = None
    cut: FeasibilityCut | None = None
    solve_seconds: float = 0.0
    values: np.ndarray | None = field(default=None, repr=False)
    mip_gap: float = 0.0
    dual_bound: float = float("nan")
    simplex_iterations: int = 0


DecisionT = TypeVar("DecisionT")


class TwoStageProblem(ABC, Generic[DecisionT]):
    """A two-stage stochastic program declared as sparse blocks (see the module docstring).

    Subclasses provide the first stage, one scenario's recourse structure, the scenario
    probabilities and the scenario vectors; EF, PH, SPAR and evaluation only use this interface.
    Instances must be picklable (they are shipped to worker processes): keep solver objects and
    factorizations out of them.
    """

    name: str = "two-stage"

    @property
    @abstractmethod
    def first_stage(self) -> FirstStageSpec:
        """First-stage variables and constraints."""

    @property
    @abstractmethod
    def second_stage(self) -> SecondStageSpec:
        """One scenario's recourse structure."""

    @property
    @abstractmethod
    def probability(self) -> np.ndarray:
        """Scenario probabilities ``π``, shape (S,)."""

    @abstractmethod
    def scenario_data(self, indices: Sequence[int] | np.ndarray) -> ScenarioData:
        """Scenario vectors for ``indices`` (vectorized over them)."""

    @abstractmethod
    def decode(self, x: np.ndarray) -> DecisionT:
        """The typed first-stage decision of a vector ``x``."""

    @property
    def n_scenarios(self) -> int:
        """Number of scenarios ``S``."""
        return len(self.probability)

    @property
    def separable_first_stage(self) -> SeparableFirstStage | None:
        """The declaration SPAR needs (a :class:`~.separable.SeparableFirstStage`).

        ``None`` (the default): the problem does not declare a first stage on which the
        expected recourse can be learned as a separable function of integer levels.
        """
        return None

    def build_second_stage(self) -> SecondStageModel:
        """Build the recourse model once (re-solve it with :meth:`SecondStageModel.solve`)."""
        return SecondStageModel(self)

    @property
    def recourse_warm_starts(self) -> bool:
        """Whether :meth:`build_second_stage`'s solves warm-start from the previous scenario's
        basis (default True); the exact evaluation orders the scenarios into a warm-start chain
        only then. Only the order of the solves depends on it, never their results."""
        return True

    @property
    def recourse_failures_reported(self) -> bool:
        """Whether a recourse LP/MILP that HiGHS fails on warm and then cold (neither optimal
        nor infeasible, e.g. status "Unknown") is returned as a result (``feasible`` False,
        ``dual_bound`` NaN, so that callers can count solver failures) instead of raising
        :class:`~gridrecourse.errors.SolverError` (default False)."""
        return False


def scenario_selection(
    problem: TwoStageProblem,
    scenarios: Sequence[int] | np.ndarray | None,
    weights: Sequence[float] | np.ndarray | None = None,
    *,
    total: float = 1.0,
    error: type[Exception] = ProblemSpecError,
) -> tuple[np.ndarray, np.ndarray]:
    """Indices and weights of a scenario selection (a batch, a subset, or all scenarios).

    Parameters
    ----------
    problem : TwoStageProblem
    scenarios : sequence of int, optional
        Indices into ``0..S-1`` (repeats allowed: a draw with replacement); default all.
    weights : sequence of float, optional
        One non-negative weight per selected index (e.g. a stratified batch's design weights,
        :mod:`gridrecourse.evaluation.batch_sampling`); default the scenario probabilities
        ``π`` of the selection. Either way renormalized to sum to ``total``.
    total : float, default 1
        What the weights sum to, in ``(0, 1]``. Below 1 the selection stands for part of the
        probability mass (the restricted master of
        :mod:`~gridrecourse.methods.scenario_addition`, where the scenarios left out
        contribute their :func:`recourse_floor`).
    error : exception class, default ProblemSpecError
        Raised (with the reason) on an empty or out-of-range selection, weights of another
        length, negative or non-finite weights, a zero total, or ``total`` outside ``(0, 1]``.

    Returns
    -------
    indices : ndarray of int, shape (n,)
    weights : ndarray of float, shape (n,)
        Summing to ``total``.
    """
    n_all = problem.n_scenarios
    idx = np.arange(n_all) if scenarios is None else np.asarray(scenarios, dtype=int).ravel()
    if idx.size == 0 or idx.min() < 0 or idx.max() >= n_all:
        raise error(
            f"scenario indices must be a non-empty selection of 0..{n_all - 1}, got {idx[:10]}"
        )
    if weights is None:
        w = np.asarray(problem.probability, dtype=float)[idx]
    else:
        w = np.asarray(weights, dtype=float).ravel()
        if w.shape != idx.shape:
            raise error(f"scenario weights: {w.size} values for {idx.size} selected scenarios")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise error("scenario weights must be finite and non-negative")
    if not 0.0 < total <= 1.0 + 1e-9:  # a sum of probabilities may land just above 1
        raise error(f"the scenario weights' total must lie in (0, 1], got {total!r}")
    mass = float(w.sum())
    if not mass > 0:
        raise error("the selected scenarios have zero total probability")
    return idx, w * (min(total, 1.0) / mass)


def is_unresolved(feasible: np.ndarray | bool, dual_bound: np.ndarray | float) -> np.ndarray:
    """Which recourse solves ended without an answer at their time limit.

    Such a scenario is not ``feasible`` and has a finite or ``-inf`` dual bound
    (:meth:`SecondStageModel.solve` with ``unresolved=True``); a proven infeasible one has
    ``dual_bound = inf``, a solver failure NaN.
    """
    return ~np.asarray(feasible, dtype=bool) & (np.asarray(dual_bound, dtype=float) < np.inf)


def recourse_floor(problem: TwoStageProblem) -> np.ndarray:
    """A lower bound on every scenario's recourse value over all first stages.

    ``L_ω = offset + Σ_j min_{l_ωj ≤ y_j ≤ u_ωj} (d_ωj y_j + h_j y_j²)``: the recourse
    objective minimized over the column box alone (rows dropped), so ``Q(x, ξ_ω) ≥ L_ω`` for
    every ``x``. Paper B's recourse (curtailment cost of non-negative curtailment) has
    ``L_ω = 0``.

    Returns
    -------
    ndarray, shape (S,)
        ``−inf`` where the box leaves the objective unbounded below.
    """
    spec = problem.second_stage
    data = problem.scenario_data(np.arange(problem.n_scenarios))
    floor = np.full(problem.n_scenarios, float(spec.objective_offset))
    for v in spec.variables:
        d = data.block_cost(v)
        lb, ub = data.block_bounds(v)
        h = np.zeros(v.size) if v.quadratic is None else v.quadratic
        with np.errstate(invalid="ignore"):  # 0·inf: a free column without cost adds 0
            y = np.where(h > 0, np.clip(-d / np.where(h > 0, 2 * h, 1.0), lb, ub),
                         np.where(d >= 0, lb, ub))  # fmt: skip
            term = np.where((d == 0) & (h == 0), 0.0, d * y + h * y**2)
        floor += np.nan_to_num(term, nan=-np.inf).sum(axis=1)
    return floor


def _solve_for_ray(model: LinearModel, options: SolverOptions | None) -> LinearModel | None:
    """Solve ``model`` (a relaxation whose infeasibility is expected) so that it holds a dual
    ray: the model, or None when HiGHS ends without an answer twice (warm, then cold; seen on
    the IEEE 123 Volt-VAR relaxation as status "Unknown"). The scenario is infeasible either
    way (its MILP said so); only its feasibility cut is lost."""
    for attempt in range(2):
        try:
            model.solve(options)
            return model
        except InfeasibleModelError:
            return model
        except SolverTimeLimitError:
            return None
        except SolverError:
            if attempt == 0:
                model.reset()
    return None


@dataclass(frozen=True, eq=False)
class StackedBlocks:
    """Blocks of ``S`` stacked second-stage copies in a :class:`LinearModel`.

    Within each block the scenario is the slow index: column ``ω · size + k``.
    """

    variables: Mapping[str, VariableBlock]
    constraints: Mapping[str, ConstraintBlock]
    n_scenarios: int


def add_second_stage_blocks(
    model: LinearModel,
    spec: SecondStageSpec,
    weights: np.ndarray,
    *,
    data: ScenarioData | None = None,
    first_stage: Mapping[str, VariableBlock] | None = None,
    first_stage_spec: FirstStageSpec | None = None,
    exact_quadratic: bool = True,
    integer: bool = True,
    prefix: str = "",
) -> StackedBlocks:
    """Add ``S = len(weights)`` copies of the recourse to ``model`` (vectorized over copies).

    Every constraint block becomes ``kron(I_S, W_block)``; costs are ``kron(weights, d)``, or
    ``weights_ω d_ω`` for blocks with per-scenario costs. With ``first_stage`` (extensive form)
    every linking block gets the terms ``diag(S_ω) kron(1_S, T_k)`` on the first-stage columns
    and ``data`` supplies the row and column bounds as they are; without it (a single recourse
    model, ``x`` fixed later) rows and columns start at the nominal bounds.

    Parameters
    ----------
    model : LinearModel
    spec : SecondStageSpec
    weights : ndarray, shape (S,)
        Cost weight of each copy (probabilities; ``[1.0]`` for a single recourse model).
    data : ScenarioData, optional
        Row/column bounds, costs and technology scale of the ``S`` copies.
    first_stage, first_stage_spec : optional
        First-stage blocks already in ``model`` and their spec (extensive form).
    exact_quadratic : bool
        Add the quadratic costs as a Hessian (a QP); ``False`` leaves them to the caller
        (the extensive form's tangent planes).
    integer : bool
        Keep the integrality of integer recourse blocks (``False``: the LP relaxation).
    prefix : str
        Prepended to the model's block and row names (to add copies in several calls); the
        returned blocks stay keyed by the spec's names.
    """
    w = np.asarray(weights, dtype=float)
    s = len(w)
    if data is not None:
        data.validate(spec)
        if data.n_scenarios != s:
            raise ProblemSpecError(f"{s} weights for {data.n_scenarios} scenarios of data")
    eye = sp.identity(s, format="csr")
    variables: dict[str, VariableBlock] = {}
    for v in spec.variables:
        if data is None:
            cost, lb, ub = np.kron(w, v.cost), np.tile(v.lb, s), np.tile(v.ub, s)
        else:
            cost = (w[:, None] * data.block_cost(v)).ravel()
            lb, ub = (b.ravel() for b in data.block_bounds(v))
        block = model.add_variables(
            prefix + v.name,
            s * v.size,
            lb=lb,
            ub=ub,
            cost=cost,
            integer=bool(v.integer and integer),
        )
        variables[v.name] = block
        if exact_quadratic and v.has_quadratic:
            model.add_quadratic_cost(block, np.kron(w, v.quadratic))
    link_t: dict[str, sp.csr_matrix] = {}
    if first_stage is not None:
        if first_stage_spec is None or data is None:
            raise ProblemSpecError("the extensive form needs first_stage_spec and data")
        scale = data.scale(spec)
        off = spec.link_offsets()
        for k, link in enumerate(spec.links):
            rows = scale[:, off[k] : off[k + 1]].ravel()
            link_t[link.name] = sp.diags(rows) @ sp.kron(
                np.ones((s, 1)), link.technology, format="csr"
            )
    row_lb, row_ub = data.row_bounds(spec) if data is not None else (None, None)
    constraints: dict[str, ConstraintBlock] = {}
    for c in spec.constraints:
        terms: list[tuple[VariableBlock, sp.spmatrix]] = [
            (variables[name], sp.kron(eye, m, format="csr")) for name, m in c.terms
        ]
        if row_lb is not None and row_ub is not None:
            rs = spec.row_slice(c.name)
            lb, ub = row_lb[:, rs].ravel(), row_ub[:, rs].ravel()
        else:
            lb, ub = np.tile(c.lb, s), np.tile(c.ub, s)
        stacked_t = link_t.get(c.name)
        if stacked_t is not None and first_stage_spec is not None and first_stage is not None:
            for fv in first_stage_spec.variables:
                cols = stacked_t[:, first_stage_spec.slice(fv.name)]
                if cols.nnz:
                    terms.append((first_stage[fv.name], cols))
        constraints[c.name] = model.add_constraints(prefix + c.name, terms, lb=lb, ub=ub)
    return StackedBlocks(variables=variables, constraints=constraints, n_scenarios=s)


def tangent_rows(
    h: np.ndarray, columns: np.ndarray, block_size: int, points: np.ndarray, owner: np.ndarray
) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray]:
    """Tangent planes ``ℓ_j ≥ h_j (2 t y_j − t²)`` of ``h_j y_j²`` (outer linearization).

    Parameters
    ----------
    h : ndarray, shape (nq,)
        Positive quadratic coefficients of the approximated columns.
    columns : ndarray of int, shape (nq,)
        Their positions in the variable block (of ``block_size`` columns).
    block_size : int
    points : ndarray, shape (R,)
        Tangent points ``t`` (one row each).
    owner : ndarray of int, shape (R,)
        Index ``j`` (0..nq−1) of the column each point belongs to (any number per column).

    Returns
    -------
    a_epigraph : csr_matrix, shape (R, nq)
        Coefficients of ``ℓ`` (ones).
    a_block : csr_matrix, shape (R, block_size)
        Coefficients ``−2 h_j t`` of ``y``.
    rhs : ndarray, shape (R,)
        Lower bounds ``−h_j t²`` (rows ``ℓ_j − 2 h_j t y_j ≥ −h_j t²``).
    """
    rows = np.arange(len(points))
    hj = h[owner]
    a_epigraph = sp.csr_matrix((np.ones(len(points)), (rows, owner)), shape=(len(points), len(h)))
    a_block = sp.csr_matrix(
        (-2.0 * hj * points, (rows, columns[owner])), shape=(len(points), block_size)
    )
    return a_epigraph, a_block, -hj * points**2


class SecondStageModel:
    """The recourse model of a :class:`TwoStageProblem`, built once and re-solved.

    :meth:`solve` moves ``S_ω T x`` to the row bounds of the linking blocks, sets every
    block's row bounds to the scenario's and, for blocks the spec declares scenario-dependent
    (``scenario_costs``, ``scenario_bounds``), the costs and column bounds; nothing else
    changes, so HiGHS warm-starts from the previous basis (dual simplex with Devex pricing,
    :class:`~gridrecourse.solvers.highs.SimplexPricing`: a quarter to a third less time than
    steepest edge on these re-solves of the ieee9500). Quadratic recourse (e.g. losses) is
    solved exactly as a QP; integer recourse as a MILP (HiGHS branch and bound; the result
    records the MIP gap and dual bound, and has no duals).

    Parameters
    ----------
    problem : TwoStageProblem

    Raises
    ------
    UnsupportedProblemError
        Integer and quadratic recourse together (an MIQP, which HiGHS cannot solve).
    """

    def __init__(self, problem: TwoStageProblem):
        from gridrecourse.problems.capabilities import EVALUATOR, check_requirements

        check_requirements(EVALUATOR, problem)
        t0 = time.perf_counter()
        self.problem = problem
        self.spec = problem.second_stage
        self.model = LinearModel(f"second-stage-{problem.name}")
        self.blocks = add_second_stage_blocks(self.model, self.spec, np.ones(1))
        self.is_mip = self.spec.has_integer
        if not self.is_mip:
            # re-solves from the previous basis: Devex, not steepest edge (SimplexPricing)
            self.model.set_simplex_pricing(SimplexPricing.DEVEX)
        self._link_rows = self.spec.linking_rows
        self._penalty_mask = np.concatenate(
            [np.full(v.size, v.penalty, dtype=bool) for v in self.spec.variables]
        )
        #: columns whose cost is a soft-limit penalty (the penalty part of the objective)
        self._penalty_cols = np.flatnonzero(self._penalty_mask)
        self._base_cost = np.concatenate([v.cost for v in self.spec.variables])
        self._cost_now = self._base_cost
        self._col_lb_now, self._col_ub_now = self.spec.col_lb, self.spec.col_ub
        self._w: sp.csc_matrix | None = None
        self._feasibility_lp: LinearModel | None = None
        # cached per-solve constants (the exact evaluation's floor is the LP solves)
        self._technology_t = sp.csr_matrix(self.spec.technology.T)
        self._row_slices = {c.name: self.spec.row_slice(c.name) for c in self.spec.constraints}
        self._col_slices = {v.name: self.spec.col_slice(v.name) for v in self.spec.variables}
        #: row bounds last written to ``self.model`` per block: unchanged blocks are skipped
        self._applied: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self.build_seconds = time.perf_counter() - t0

    def _bounds(self, x: np.ndarray, scenario: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Row bounds with ``S_ω T x`` moved over, and ``S_ω``; also sets the column state."""
        data = self.problem.scenario_data(np.array([scenario]))
        data.validate(self.spec)
        row_lb, row_ub = data.row_bounds(self.spec)
        lb, ub = row_lb[0].copy(), row_ub[0].copy()
        scale = data.scale(self.spec)[0]
        shift = scale * (self.spec.technology @ x)
        lb[self._link_rows] -= shift
        ub[self._link_rows] -= shift
        self._scenario_columns(data)
        return lb, ub, scale

    def _scenario_columns(self, data: ScenarioData) -> None:
        """Costs and column bounds of the declared scenario-dependent blocks (scenario 0)."""
        spec = self.spec
        if not (spec.scenario_costs or spec.scenario_bounds):
            return
        cost, lb, ub = self._base_cost.copy(), spec.col_lb.copy(), spec.col_ub.copy()
        for v in spec.variables:
            cs = spec.col_slice(v.name)
            if v.name in spec.scenario_costs:
                cost[cs] = data.block_cost(v)[0]
            if v.name in spec.scenario_bounds:
                blo, bhi = data.block_bounds(v)
                lb[cs], ub[cs] = blo[0], bhi[0]
        self._cost_now, self._col_lb_now, self._col_ub_now = cost, lb, ub

    def _apply(self, model: LinearModel, blocks: StackedBlocks, lb, ub) -> None:
        """Write the scenario's row bounds, costs and column bounds into ``model``.

        On the live recourse model, a constraint block whose bounds equal those last written is
        skipped (most blocks do not change between scenarios; nothing else writes them).
        """
        applied = self._applied if model is self.model else None
        for c in self.spec.constraints:
            rs = self._row_slices[c.name]
            lo, hi = lb[rs], ub[rs]
            if applied is not None:
                last = applied.get(c.name)
                if last is not None and np.array_equal(last[0], lo) and np.array_equal(last[1], hi):
                    continue
                applied[c.name] = (lo.copy(), hi.copy())
            model.set_row_bounds(blocks.constraints[c.name], lo, hi)
        for name in self.spec.scenario_costs:
            cs = self._col_slices[name]
            model.set_cost(blocks.variables[name], self._cost_now[cs])
        for name in self.spec.scenario_bounds:
            cs = self._col_slices[name]
            model.set_col_bounds(blocks.variables[name], self._col_lb_now[cs], self._col_ub_now[cs])

    def solve(
        self,
        x: np.ndarray,
        scenario: int,
        options: SolverOptions | None = None,
        *,
        keep_values: bool = False,
        farkas: bool = True,
        unresolved: bool = False,
    ) -> SecondStageResult:
        """Solve ``Q(x, ξ_scenario)``.

        Parameters
        ----------
        x : ndarray, shape (n_x,)
            First-stage decision (need not be integer: the recourse is continuous in ``x``).
        scenario : int
            Scenario index.
        options : SolverOptions, optional
            For integer recourse, ``mip_gap`` and ``time_limit`` apply to each scenario solve.
        keep_values : bool
            Return the column values ``y`` in the result.
        farkas : bool
            On infeasibility, compute the Farkas ray and feasibility cut (integer recourse: from
            the LP relaxation when it is infeasible too).
        unresolved : bool
            When the solve reaches its time limit without a feasible point, return an
            *unresolved* result (``feasible`` False, ``objective`` inf, ``dual_bound`` the
            search's bound, ``-inf`` if none, never ``inf``) instead of raising
            :class:`SolverTimeLimitError`: the scenario is neither shown feasible nor proven
            infeasible (:func:`is_unresolved`).

        Returns
        -------
        SecondStageResult
        """
        x = np.asarray(x, dtype=float)
        n_x = self.spec.technology.shape[1]
        if x.shape != (n_x,):
            raise ProblemSpecError(f"x must have shape ({n_x},), got {x.shape}")
        lb, ub, scale = self._bounds(x, int(scenario))
        self._apply(self.model, self.blocks, lb, ub)
        try:
            sol = self._solve_or_retry_cold(lb, ub, options)
        except InfeasibleModelError:
            return self._infeasible(x, int(scenario), lb, ub, scale, options, farkas)
        except SolverTimeLimitError as exc:
            if not unresolved:
                raise
            return self._unresolved(int(scenario), exc)
        except SolverError:
            if self.model.is_quadratic:
                sol = self._cold_qp_or_cutting_planes(lb, ub, options)
            elif self.problem.recourse_failures_reported:
                return self._not_served(int(scenario), math.nan)
            else:
                raise
        offset = self.spec.objective_offset
        if self.is_mip:
            duals = np.full(len(self._link_rows), np.nan)
            subgradient = np.full(n_x, np.nan)
            dual_bound = float(sol.dual_bound) + offset
        else:
            duals = sol.row_dual[self._link_rows].copy()
            subgradient = -(self._technology_t @ (scale * duals))
            dual_bound = float(sol.objective) + offset
        return SecondStageResult(
            scenario=int(scenario),
            objective=float(sol.objective) + offset,
            feasible=True,
            # elementwise, not a BLAS dot: OpenBLAS threads a dot this long and then spin,
            # ~20 ms of CPU per solve taken from the other workers (bench_evaluation)
            penalty=float(np.sum(self._cost_now[self._penalty_cols] * sol.x[self._penalty_cols])),
            linking_duals=duals,
            subgradient=np.asarray(subgradient, dtype=float),
            solve_seconds=sol.solve_seconds,
            values=sol.x.copy() if keep_values else None,
            mip_gap=float(sol.mip_gap) if self.is_mip else 0.0,
            dual_bound=dual_bound,
            simplex_iterations=sol.simplex_iterations,
        )

    def _cold_qp_or_cutting_planes(
        self, lb: np.ndarray, ub: np.ndarray, options: SolverOptions | None
    ) -> Solution:
        """HiGHS's QP solver failed from the warm start: retry it cold, then cutting planes."""
        self.model.reset()
        try:
            return self.model.solve(options)
        except SolverError:
            self.model.reset()
            return self._qp_by_cutting_planes(lb, ub, options)

    def _qp_by_cutting_planes(
        self, lb: np.ndarray, ub: np.ndarray, options: SolverOptions | None
    ) -> Solution:
        """Fallback when HiGHS's active-set QP solver fails (status "Solve error").

        Kelley's cutting-plane method on the separable quadratic: an LP with ``ℓ_j ≥ h_j y_j²``
        outer-approximated by tangents, adding the tangent at each LP solution until the exact
        objective ``dᵀy + Σ h y²`` at the LP point exceeds the LP bound by at most
        :data:`_QP_FALLBACK_TOLERANCE` (relative), or by at most
        :data:`_QP_FALLBACK_STALL_TOLERANCE` once the bound has stopped rising for
        :data:`_QP_FALLBACK_STALL_ITERATIONS` iterations (the LP's tolerance floor). The returned
        objective is exact at ``y`` and the duals are the last LP's (they converge to the QP
        duals).
        """
        quad = [
            (v, np.flatnonzero(v.quadratic > 0)) for v in self.spec.variables if v.has_quadratic
        ]
        points = []
        for v, cols in quad:  # start at the ends and middle of each range (or at 0)
            if v.quadratic_range is not None:
                lo, hi = (r[cols] for r in v.quadratic_range)
                points.append(np.c_[lo, 0.5 * (lo + hi), hi])
            else:
                points.append(np.zeros((len(cols), 1)))
        n_rows, n_cols = self.spec.n_rows, self.spec.n_cols
        t0 = time.perf_counter()
        bound, stalled = -np.inf, 0
        for _ in range(_QP_FALLBACK_ITERATIONS):
            lp = LinearModel(f"qp-fallback-{self.problem.name}")
            blocks = add_second_stage_blocks(lp, self.spec, np.ones(1), exact_quadratic=False)
            self._apply(lp, blocks, lb, ub)
            for (v, cols), pts in zip(quad, points, strict=True):
                ell = lp.add_variables(f"{v.name}-tangent", len(cols), lb=0.0, cost=1.0)
                owner = np.repeat(np.arange(len(cols)), pts.shape[1])
                a_l, a_y, rhs = tangent_rows(v.quadratic[cols], cols, v.size, pts.ravel(), owner)
                lp.add_constraints(
                    f"{v.name}-tangent_planes",
                    [(ell, a_l), (blocks.variables[v.name], a_y)],
                    lb=rhs,
                )
            sol = lp.solve(options)
            y = sol.x[:n_cols]
            exact = float(self._cost_now @ y)
            for v, cols in quad:
                yv = y[self.spec.col_slice(v.name)][cols]
                exact += float(np.sum(v.quadratic[cols] * yv**2))
            scale = max(1.0, abs(exact))
            gap = exact - sol.objective
            stalled = stalled + 1 if sol.objective - bound <= _QP_FALLBACK_STALL * scale else 0
            bound = max(bound, sol.objective)
            if gap <= _QP_FALLBACK_TOLERANCE * scale or (
                stalled >= _QP_FALLBACK_STALL_ITERATIONS
                and gap <= _QP_FALLBACK_STALL_TOLERANCE * scale
            ):
                break
            points = [
                np.c_[pts, y[self.spec.col_slice(v.name)][cols]]
                for (v, cols), pts in zip(quad, points, strict=True)
            ]
        else:
            raise SolverError(
                f"model {self.model.name!r}: the QP solver failed and the cutting-plane fallback "
                f"did not converge in {_QP_FALLBACK_ITERATIONS} iterations"
            )
        return Solution(
            objective=exact,
            x=y,
            row_dual=sol.row_dual[:n_rows],
            status=sol.status,
            solve_seconds=time.perf_counter() - t0,
        )

    def _solve_or_retry_cold(
        self, lb: np.ndarray, ub: np.ndarray, options: SolverOptions | None
    ) -> Solution:
        """Solve; after a solver failure of an LP/MILP (neither optimal nor infeasible, e.g.
        status "Unknown" from a far-away warm basis, seen on the operation LPs) retry once
        from scratch. A second failure is raised, with the model reset for the next solve."""
        try:
            return self.model.solve(options)
        except (InfeasibleModelError, SolverTimeLimitError):
            raise
        except SolverError:
            if self.model.is_quadratic:
                raise
        self.model.reset()
        self._apply(self.model, self.blocks, lb, ub)
        try:
            return self.model.solve(options)
        except SolverError:
            self.model.reset()
            raise

    def _not_served(
        self, scenario: int, dual_bound: float, mip_gap: float = 0.0
    ) -> SecondStageResult:
        """A scenario without a recourse point: unresolved (the search's ``dual_bound``) or
        failed warm and cold (``dual_bound`` NaN)."""
        return SecondStageResult(
            scenario=scenario,
            objective=float("inf"),
            feasible=False,
            penalty=float("nan"),
            linking_duals=np.full(len(self._link_rows), np.nan),
            subgradient=np.full(self.spec.technology.shape[1], np.nan),
            mip_gap=mip_gap,
            dual_bound=dual_bound,
        )

    def _infeasible(
        self,
        x: np.ndarray,
        scenario: int,
        lb: np.ndarray,
        ub: np.ndarray,
        scale: np.ndarray,
        options: SolverOptions | None,
        farkas: bool,
    ) -> SecondStageResult:
        nan_link = np.full(len(self._link_rows), np.nan)
        ray_link, cut = None, None
        t0 = time.perf_counter()
        if farkas:
            model = self.model
            if model.is_quadratic or self.is_mip:  # HiGHS gives rays for LPs: same rows, no h
                if self._feasibility_lp is None:  # and no integrality (a relaxation's cut)
                    self._feasibility_lp = LinearModel(f"feasibility-{self.problem.name}")
                    self._lp_blocks = add_second_stage_blocks(
                        self._feasibility_lp,
                        self.spec,
                        np.ones(1),
                        exact_quadratic=False,
                        integer=False,
                    )
                model = self._feasibility_lp
                self._apply(model, self._lp_blocks, lb, ub)
                model = _solve_for_ray(model, options)
            ray = None if model is None else model.dual_ray()
            if ray is not None:
                cut, oriented = self._cut_from_ray(ray, x, scenario, lb, ub, scale)
                ray_link = oriented[self._link_rows] if oriented is not None else None
        return SecondStageResult(
            scenario=scenario,
            objective=float("inf"),
            feasible=False,
            penalty=float("nan"),
            linking_duals=nan_link,
            subgradient=np.full(self.spec.technology.shape[1], np.nan),
            farkas_ray=ray_link,
            cut=cut,
            solve_seconds=time.perf_counter() - t0,
            dual_bound=float("inf"),
        )

    def _unresolved(self, scenario: int, exc: SolverTimeLimitError) -> SecondStageResult:
        bound = exc.dual_bound + self.spec.objective_offset
        return self._not_served(scenario, bound if math.isfinite(bound) else -math.inf, math.inf)

    def _cut_from_ray(
        self,
        ray: np.ndarray,
        x: np.ndarray,
        scenario: int,
        lb: np.ndarray,
        ub: np.ndarray,
        scale: np.ndarray,
    ) -> tuple[FeasibilityCut | None, np.ndarray | None]:
        """Feasibility cut ``αᵀx ≥ β`` from a row ray (see :meth:`LinearModel.dual_ray`).

        For a ray ``λ`` (oriented so that it proves infeasibility) the row side
        ``Σ_{λ>0} λ L(x) + Σ_{λ<0} λ U(x)`` may not exceed ``max_{l≤y≤u} (Wᵀλ)ᵀ y`` for any
        feasible ``x``; only the linking bounds depend on ``x`` (``−S_ω T x``), which gives
        ``α = Tᵀ S_ω λ_link`` and ``β = row side at x = 0 − column side``.
        """
        if self._w is None:
            self._w = self.spec.matrix().tocsc()
        col_lb, col_ub = self._col_lb_now, self._col_ub_now
        x_shift = np.zeros_like(lb)
        x_shift[self._link_rows] = scale * (self.spec.technology @ x)
        lb0, ub0 = lb + x_shift, ub + x_shift  # bounds at x = 0
        lam = np.where(np.abs(ray) > _RAY_TOLERANCE * max(np.abs(ray).max(), 1e-300), ray, 0.0)
        for oriented in (lam, -lam):
            pos, neg = oriented > 0, oriented < 0
            if np.any(~np.isfinite(lb0[pos])) or np.any(~np.isfinite(ub0[neg])):
                continue
            d = self._w.T @ oriented
            d = np.where(np.abs(d) > _RAY_TOLERANCE * max(np.abs(d).max(initial=0), 1.0), d, 0.0)
            dpos, dneg = d > 0, d < 0
            if np.any(~np.isfinite(col_ub[dpos])) or np.any(~np.isfinite(col_lb[dneg])):
                continue
            row_side0 = float(oriented[pos] @ lb0[pos] + oriented[neg] @ ub0[neg])
            col_side = float(d[dpos] @ col_ub[dpos] + d[dneg] @ col_lb[dneg])
            lam_link = oriented[self._link_rows]
            coefficients = np.asarray(self.spec.technology.T @ (scale * lam_link), dtype=float)
            cut = FeasibilityCut(scenario, coefficients, row_side0 - col_side)
            if cut.violation(x) > 0:
                return cut, oriented
        return None, None
