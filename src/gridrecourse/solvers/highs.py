"""A small, vectorized LP/MILP builder on top of HiGHS (highspy).

Variables and constraints are declared in named *blocks* (``branch-p``, ``bus-v``,
``branch-voltage_drop`` …) whose coefficients are scipy sparse matrices, so model building is
a handful of sparse operations regardless of feeder size. The model is built once; re-solving
with new right-hand sides, bounds or costs changes vectors in the live HiGHS instance, which
keeps its basis as a warm start.

Convex quadratic objectives (a diagonal Hessian, :meth:`LinearModel.add_quadratic_cost`) are
passed to HiGHS's QP solver; HiGHS solves continuous convex QPs but not MIQPs. For an infeasible
LP, :meth:`LinearModel.dual_ray` returns HiGHS's Farkas certificate (a dual ray on the rows).

Solver output never reaches stdout unless asked for (``SolverOptions.verbose``): HiGHS's
banner and log are off by default, and :func:`solver_log_file` sends every model's log
(banner included) to one file instead (the CLI points it at ``solver.log`` in the run folder),
so a ``--json`` summary on stdout stays one parsable object.

Ctrl-C inside a long MIP: MIPs run in a worker thread (:func:`run_interruptible`), so
``KeyboardInterrupt`` (and the CLI's SIGTERM exception) reaches Python at once; the solve is
stopped through HiGHS's interrupt callbacks or, if it does not stop within
:data:`INTERRUPT_GRACE` seconds, left behind (the CLI then ends the process).
"""

from __future__ import annotations

import enum
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import highspy
import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import InfeasibleModelError, SolverError, SolverTimeLimitError
from gridrecourse.solvers.options import SolverOptions, stopping_tolerance

INF = highspy.kHighsInf

#: File every new HiGHS model appends its log to (``[None]``: no log unless verbose).
_LOG_FILE: list[str | None] = [None]


#: HiGHS's default ``mip_feasibility_tolerance`` (``SolverOptions.mip_feasibility_tolerance``
#: None).
HIGHS_MIP_FEASIBILITY_TOLERANCE = 1e-6


def set_mip_feasibility_tolerance(h: highspy.Highs, tolerance: float | None) -> None:
    """Set HiGHS's ``mip_feasibility_tolerance`` (``None``: HiGHS's default).

    Called before every MIP solve, by :class:`HighsModel` and by the methods that drive highspy
    directly, so that a model re-solved with other options does not keep an earlier value.
    """
    value = HIGHS_MIP_FEASIBILITY_TOLERANCE if tolerance is None else tolerance
    h.setOptionValue("mip_feasibility_tolerance", float(value))


def set_solver_log_file(path: Path | str | None) -> None:
    """Send the log of every HiGHS model built from now on to ``path`` (None: no log file).

    HiGHS appends to the file; nothing is printed on the console.
    """
    _LOG_FILE[0] = None if path is None else str(path)


@contextmanager
def solver_log_file(path: Path | str | None) -> Iterator[None]:
    """Context manager: :func:`set_solver_log_file` inside, the previous setting restored after."""
    previous = _LOG_FILE[0]
    set_solver_log_file(path)
    try:
        yield
    finally:
        _LOG_FILE[0] = previous


# ------------------------------------------------------------------ interrupts (Ctrl-C)
#: Set when the solve running in :func:`run_interruptible` must stop (read by HiGHS callbacks).
_CANCEL: list[bool] = [False]
#: Solves still running in their thread after an interrupt (kept alive until the process ends).
_ABANDONED: list[tuple[highspy.Highs, threading.Thread]] = []
#: Seconds an interrupted solve gets to stop at HiGHS's next interrupt check before it is
#: left running in its thread (HiGHS checks at points of its own choosing; measured: the P1
#: EF of 240 scenarios on case33bw, interrupted 2 s into the solve, stopped within 1 s).
INTERRUPT_GRACE = 2.0


def _on_interrupt_check(event) -> None:
    """HiGHS interrupt callback (runs in the solve's thread): stop when asked to."""
    if _CANCEL[0]:
        event.interrupt()


def watch_interrupts(h: highspy.Highs) -> None:
    """Let an interrupt stop ``h``'s solves at HiGHS's next check (MIP, simplex, IPM)."""
    h.cbMipInterrupt.subscribe(_on_interrupt_check)
    h.cbSimplexInterrupt.subscribe(_on_interrupt_check)
    h.cbIpmInterrupt.subscribe(_on_interrupt_check)


def run_interruptible(h: highspy.Highs) -> None:
    """``h.run()`` in a worker thread, so that Ctrl-C does not wait for a long solve.

    HiGHS releases the GIL while it solves; the calling thread waits in ``join``, where
    ``KeyboardInterrupt`` (SIGINT) or the CLI's SIGTERM exception arrives at once. The solve
    is then asked to stop through HiGHS's interrupt callbacks (:func:`watch_interrupts`) and
    gets :data:`INTERRUPT_GRACE` seconds to do so; if it is still running it is left to its
    thread (:func:`abandoned_solves`) and the exception propagates without waiting for it.

    Raises
    ------
    BaseException
        Whatever interrupted the wait, or what ``h.run()`` raised.
    """
    _CANCEL[0] = False
    failure: list[BaseException] = []

    def solve() -> None:
        try:
            h.run()
        except BaseException as exc:  # re-raised in the calling thread
            failure.append(exc)

    thread = threading.Thread(target=solve, name="highs-solve", daemon=True)
    thread.start()
    try:
        thread.join()
    except BaseException:
        _CANCEL[0] = True
        thread.join(INTERRUPT_GRACE)
        if thread.is_alive():
            _ABANDONED.append((h, thread))
        raise
    if failure:
        raise failure[0]


def abandoned_solves() -> int:
    """Interrupted solves still running in their threads (the CLI then exits hard)."""
    _ABANDONED[:] = [(h, t) for h, t in _ABANDONED if t.is_alive()]
    return len(_ABANDONED)


def configure_output(h: highspy.Highs, verbose: bool = False, log: bool = True) -> None:
    """Route ``h``'s output: to the log file when one is set, else to the console only if verbose.

    Every place that creates a ``highspy.Highs`` calls this right after creating it, so the one
    rule holds for every command: HiGHS never writes to stdout unless ``verbose`` and no log
    file is set. ``log=False`` keeps a model out of the log file (the thousands of small
    re-solved recourse LPs: their log would dwarf the MIPs' and slow them down) unless
    ``verbose``.
    """
    path = _LOG_FILE[0]
    if path is None or not (log or verbose):
        h.setOptionValue("output_flag", bool(verbose))
        return
    h.setOptionValue("log_to_console", False)
    h.setOptionValue("log_file", path)
    h.setOptionValue("output_flag", True)


@dataclass(frozen=True)
class VariableBlock:
    """A contiguous range of model columns."""

    name: str
    start: int
    size: int

    @property
    def slice(self) -> slice:
        """Column slice of this block."""
        return slice(self.start, self.start + self.size)

    @property
    def indices(self) -> np.ndarray:
        """Column indices of this block."""
        return np.arange(self.start, self.start + self.size)


@dataclass(frozen=True)
class ConstraintBlock:
    """A contiguous range of model rows."""

    name: str
    start: int
    size: int

    @property
    def slice(self) -> slice:
        """Row slice of this block."""
        return slice(self.start, self.start + self.size)

    @property
    def indices(self) -> np.ndarray:
        """Row indices of this block."""
        return np.arange(self.start, self.start + self.size)


@dataclass(frozen=True, eq=False)
class Solution:
    """Primal and dual solution of a solved model.

    Attributes
    ----------
    objective : float
    x : ndarray
        Column values.
    row_dual : ndarray
        Row duals (HiGHS sign convention: d objective / d row bound).
    status : str
    solve_seconds : float
    mip_gap : float
        Relative gap reported by HiGHS (0 for LPs).
    dual_bound : float
        For a MIP, HiGHS's dual (lower) bound, capped at ``objective −``
        :func:`~gridrecourse.solvers.options.stopping_tolerance` when there is an
        incumbent: once the gap closes HiGHS reports (nearly) the incumbent as its bound,
        which its search proved only up to that stopping tolerance. It is valid only up to
        HiGHS's feasibility tolerances as well: at its default ``mip_feasibility_tolerance``
        it has reported bounds above a feasible point of the same model
        (``SolverOptions.mip_feasibility_tolerance``; ``benchmarks/voltvar_bound_audit.py``).
        ``objective`` for an LP/QP solved to optimality; NaN when HiGHS reports none.
    simplex_iterations : int
        Simplex iterations of this solve (HiGHS ``simplex_iteration_count``).
    """

    objective: float
    x: np.ndarray
    row_dual: np.ndarray
    status: str
    solve_seconds: float
    mip_gap: float = 0.0
    dual_bound: float = float("nan")
    simplex_iterations: int = 0

    def value(self, block: VariableBlock) -> np.ndarray:
        """Values of one variable block."""
        return self.x[block.slice]

    def dual(self, block: ConstraintBlock) -> np.ndarray:
        """Duals of one constraint block."""
        return self.row_dual[block.slice]


@dataclass(frozen=True, eq=False)
class ColumnData:
    """Read-only view of columns of a :class:`LinearModel` (:meth:`LinearModel.columns`).

    Attributes
    ----------
    lb, ub, cost : ndarray, shape (n,)
        Bounds (±inf for none) and linear objective coefficients.
    integer : ndarray of bool, shape (n,)
    quadratic : ndarray, shape (n,)
        Diagonal ``h`` of the quadratic cost ``Σ h x²`` (zeros when none).
    """

    lb: np.ndarray
    ub: np.ndarray
    cost: np.ndarray
    integer: np.ndarray
    quadratic: np.ndarray


@dataclass(frozen=True, eq=False)
class RowData:
    """Read-only view of a constraint block of a :class:`LinearModel` (:meth:`LinearModel.rows`).

    Attributes
    ----------
    terms : tuple of (VariableBlock, scipy.sparse.csr_matrix)
        The block's coefficient matrix per variable block, as added.
    lb, ub : ndarray, shape (n_rows,)
    """

    terms: tuple[tuple[VariableBlock, sp.csr_matrix], ...]
    lb: np.ndarray
    ub: np.ndarray


class SimplexPricing(enum.Enum):
    """Edge weights of HiGHS's dual simplex (option ``simplex_dual_edge_weight_strategy``).

    ``STEEPEST_EDGE`` (what HiGHS's default ``CHOOSE`` picks) needs fewer iterations but one
    more linear solve per iteration, and its weights are recomputed from scratch (one solve per
    row) whenever HiGHS has none, e.g. on the first warm start after a presolved cold solve.
    ``DEVEX`` approximates them for free. Measured on the ieee9500 P1 recourse LP:
    ``benchmarks/results/DESIGN_MEASUREMENTS.md``.
    """

    CHOOSE = -1
    DANTZIG = 0
    DEVEX = 1
    STEEPEST_EDGE = 2


#: Thread count HiGHS's process-wide scheduler was last set up for (0: HiGHS's default).
_SCHEDULER_THREADS = [0]


def _use_threads(h: highspy.Highs, threads: int | None) -> None:
    """Set ``threads`` on ``h``, resetting HiGHS's global scheduler when the count changes.

    HiGHS creates one thread pool per process at the first run; a later run asking for another
    count fails with model status "Not Set". Resetting the (idle) pool avoids that.
    """
    wanted = 0 if threads is None else int(threads)
    if wanted != _SCHEDULER_THREADS[0]:
        highspy.Highs.resetGlobalScheduler(True)
        _SCHEDULER_THREADS[0] = wanted
    h.setOptionValue("threads", wanted)


def _bound(value, size: int) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value, dtype=float), (size,)).copy()
    arr[np.isposinf(arr)] = INF
    arr[np.isneginf(arr)] = -INF
    return arr


class LinearModel:
    """Declare variable and constraint blocks, then solve (and re-solve) with HiGHS."""

    def __init__(self, name: str = "model"):
        self.name = name
        self.variables: dict[str, VariableBlock] = {}
        self.constraints: dict[str, ConstraintBlock] = {}
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._cost: list[np.ndarray] = []
        self._integer: list[np.ndarray] = []
        self._rows: list[tuple[ConstraintBlock, list[tuple[VariableBlock, sp.spmatrix]]]] = []
        self._row_lb: list[np.ndarray] = []
        self._row_ub: list[np.ndarray] = []
        self.n_cols = 0
        self.n_rows = 0
        self._highs: highspy.Highs | None = None
        self.offset = 0.0
        self._quadratic: dict[str, np.ndarray] = {}
        self._start: tuple[np.ndarray, np.ndarray] | None = None
        self._pricing = SimplexPricing.CHOOSE

    def add_variables(
        self, name: str, size: int, lb=0.0, ub=np.inf, cost=0.0, integer: bool = False
    ) -> VariableBlock:
        """Add ``size`` columns named ``name`` with bounds and linear cost."""
        if name in self.variables:
            raise ValueError(f"variable block {name!r} already exists")
        block = VariableBlock(name, self.n_cols, int(size))
        self.variables[name] = block
        self._lb.append(_bound(lb, size))
        self._ub.append(_bound(ub, size))
        self._cost.append(np.broadcast_to(np.asarray(cost, dtype=float), (size,)).copy())
        self._integer.append(np.full(size, integer))
        self.n_cols += size
        self._highs = None
        return block

    def add_constraints(
        self,
        name: str,
        terms: list[tuple[VariableBlock, sp.spmatrix | np.ndarray]],
        lb=-np.inf,
        ub=np.inf,
    ) -> ConstraintBlock:
        """Add rows ``lb <= Σ A_k x_k <= ub`` (one sparse matrix per variable block)."""
        if name in self.constraints:
            raise ValueError(f"constraint block {name!r} already exists")
        size = None
        checked = []
        for block, matrix in terms:
            m = sp.csr_matrix(matrix)
            if m.shape[1] != block.size:
                raise ValueError(
                    f"constraint {name!r}: matrix for {block.name!r} has {m.shape[1]} columns, "
                    f"block has {block.size}"
                )
            if size is not None and m.shape[0] != size:
                raise ValueError(f"constraint {name!r}: term row counts differ")
            size = m.shape[0]
            checked.append((block, m))
        if size is None:
            raise ValueError(f"constraint {name!r} has no terms")
        block = ConstraintBlock(name, self.n_rows, size)
        self.constraints[name] = block
        self._rows.append((block, checked))
        self._row_lb.append(_bound(lb, size))
        self._row_ub.append(_bound(ub, size))
        self.n_rows += size
        self._highs = None
        return block

    def matrix(self) -> sp.csc_matrix:
        """The full constraint matrix (rows × columns)."""
        rows, cols, vals = [], [], []
        for block, terms in self._rows:
            for var, m in terms:
                coo = m.tocoo()
                rows.append(coo.row + block.start)
                cols.append(coo.col + var.start)
                vals.append(coo.data)
        if not rows:
            return sp.csc_matrix((self.n_rows, self.n_cols))
        return sp.csc_matrix(
            (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
            shape=(self.n_rows, self.n_cols),
        )

    def _build(self, options: SolverOptions) -> highspy.Highs:
        a = self.matrix()
        a.sum_duplicates()
        lp = highspy.HighsLp()
        lp.num_col_ = self.n_cols
        lp.num_row_ = self.n_rows
        lp.col_cost_ = np.concatenate(self._cost) if self._cost else np.zeros(0)
        lp.col_lower_ = np.concatenate(self._lb) if self._lb else np.zeros(0)
        lp.col_upper_ = np.concatenate(self._ub) if self._ub else np.zeros(0)
        lp.row_lower_ = np.concatenate(self._row_lb) if self._row_lb else np.zeros(0)
        lp.row_upper_ = np.concatenate(self._row_ub) if self._row_ub else np.zeros(0)
        lp.offset_ = self.offset
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = a.indptr
        lp.a_matrix_.index_ = a.indices
        lp.a_matrix_.value_ = a.data
        integer = np.concatenate(self._integer) if self._integer else np.zeros(0, dtype=bool)
        if integer.any():
            lp.integrality_ = [
                highspy.HighsVarType.kInteger if i else highspy.HighsVarType.kContinuous
                for i in integer
            ]
        h = highspy.Highs()
        # MIPs (EF, batch EFs, OPF with switches/taps) log to the run folder's solver.log
        configure_output(h, options.verbose, log=bool(integer.any()))
        h.setOptionValue("simplex_dual_edge_weight_strategy", self._pricing.value)
        if integer.any():  # MIPs run in a thread Ctrl-C can leave (run_interruptible)
            watch_interrupts(h)
        h.passModel(lp)
        if self._quadratic:
            if integer.any():
                raise SolverError(
                    f"model {self.name!r} has integer variables and a quadratic objective; "
                    "HiGHS solves continuous QPs only (no MIQP)"
                )
            diag = np.zeros(self.n_cols)
            for name, values in self._quadratic.items():
                diag[self.variables[name].slice] += values
            hessian = highspy.HighsHessian()
            hessian.dim_ = self.n_cols
            hessian.format_ = highspy.HessianFormat.kTriangular
            hessian.start_ = np.arange(self.n_cols + 1, dtype=np.int32)
            hessian.index_ = np.arange(self.n_cols, dtype=np.int32)
            hessian.value_ = 2.0 * diag  # HiGHS minimizes c'x + 1/2 x'Hx
            if h.passHessian(hessian) == highspy.HighsStatus.kError:
                raise SolverError(f"model {self.name!r}: HiGHS rejected the Hessian")
        return h

    def solve(self, options: SolverOptions | None = None) -> Solution:
        """Solve (building the HiGHS model on first use) and return the solution.

        Raises
        ------
        InfeasibleModelError
            The model is infeasible (message names the model).
        SolverTimeLimitError
            Time limit reached with no feasible solution.
        SolverError
            Any other non-optimal status.
        """
        options = options or SolverOptions()
        if self._highs is None:
            self._highs = self._build(options)
        h = self._highs
        mip = bool(self._integer and np.concatenate(self._integer).any())
        # every solve sets the limit: None must not keep an earlier solve's limit. HiGHS (1.x)
        # checks an LP's limit against the instance's run time summed over all its solves (the
        # MIP solver times each solve on its own), so a re-solved LP gets that sum added
        limit = math.inf if options.time_limit is None else float(options.time_limit)
        if math.isfinite(limit) and (not mip or options.relax_integrality):
            limit += h.getRunTime()
        h.setOptionValue("time_limit", limit)
        h.setOptionValue("mip_rel_gap", float(options.mip_gap))
        h.setOptionValue("mip_abs_gap", float(options.mip_abs_gap))
        set_mip_feasibility_tolerance(h, options.mip_feasibility_tolerance)
        h.setOptionValue("solve_relaxation", bool(options.relax_integrality))
        _use_threads(h, options.threads)
        if self._start is not None:
            index, value = self._start
            h.setSolution(int(index.size), index.astype(np.int32), value.astype(np.float64))
        t0 = time.perf_counter()
        if mip:
            try:
                run_interruptible(h)
            except BaseException:
                self._highs = None  # it may still be running: never reuse it
                raise
        else:
            h.run()  # LPs: short; Ctrl-C is raised when HiGHS returns
        seconds = time.perf_counter() - t0
        status = h.getModelStatus()
        info = h.getInfo()
        has_solution = info.primal_solution_status == 2  # kSolutionStatusFeasible
        if status in (highspy.HighsModelStatus.kInfeasible,):
            raise InfeasibleModelError(f"model {self.name!r} is infeasible")
        if status == highspy.HighsModelStatus.kUnboundedOrInfeasible:
            raise InfeasibleModelError(f"model {self.name!r} is infeasible or unbounded")
        if status == highspy.HighsModelStatus.kTimeLimit and not has_solution:
            bound = self._dual_bound(h, info, status, options)
            raise SolverTimeLimitError(
                f"model {self.name!r}: time limit {options.time_limit} s reached without a "
                f"feasible solution (dual bound {bound:.6g})",
                dual_bound=bound,
            )
        if status not in (highspy.HighsModelStatus.kOptimal, highspy.HighsModelStatus.kTimeLimit):
            raise SolverError(f"model {self.name!r}: HiGHS status {h.modelStatusToString(status)}")
        sol = h.getSolution()
        return Solution(
            objective=float(info.objective_function_value),
            x=np.asarray(sol.col_value),
            row_dual=np.asarray(sol.row_dual),
            status=h.modelStatusToString(status),
            solve_seconds=seconds,
            mip_gap=float(info.mip_gap) if np.isfinite(info.mip_gap) else 0.0,
            dual_bound=self._dual_bound(h, info, status, options),
            simplex_iterations=max(0, int(info.simplex_iteration_count)),
        )

    def _dual_bound(self, h: highspy.Highs, info, status, options: SolverOptions) -> float:
        if self._integer and np.concatenate(self._integer).any() and not options.relax_integrality:
            bound = float(info.mip_dual_bound)
            if not np.isfinite(bound):
                return float("nan")
            if info.primal_solution_status == 2:  # an incumbent: see the class docstring
                incumbent = float(info.objective_function_value)
                bound = min(bound, incumbent - stopping_tolerance(incumbent, options))
            return bound
        if status == highspy.HighsModelStatus.kOptimal:
            return float(info.objective_function_value)
        return float("nan")

    @property
    def simplex_pricing(self) -> SimplexPricing:
        """Edge weights of the dual simplex (:meth:`set_simplex_pricing`)."""
        return self._pricing

    def set_simplex_pricing(self, pricing: SimplexPricing) -> None:
        """Edge weights of the dual simplex for every later solve (default ``CHOOSE``).

        Kept across :meth:`reset`; the optimum does not depend on it, only the pivot path (and
        so, for a degenerate LP, which optimal basis and duals are returned).
        """
        self._pricing = SimplexPricing(pricing)
        if self._highs is not None:
            self._highs.setOptionValue("simplex_dual_edge_weight_strategy", self._pricing.value)

    def relaxed_copy(self, name: str | None = None) -> LinearModel:
        """The LP relaxation of the feasible set: the same blocks, bounds and rows, every column
        continuous, no objective (zero costs and offset, no quadratic term), no start.

        Blocks of this model are blocks of the copy (same names and positions), so terms built
        for one can be added to the other. Later changes to either model do not reach the other.
        """
        other = LinearModel(name or f"{self.name}-relaxation")
        other.variables = dict(self.variables)
        other.constraints = dict(self.constraints)
        other._lb = [a.copy() for a in self._lb]
        other._ub = [a.copy() for a in self._ub]
        other._cost = [np.zeros_like(a) for a in self._cost]
        other._integer = [np.zeros_like(a) for a in self._integer]
        other._rows = list(self._rows)
        other._row_lb = [a.copy() for a in self._row_lb]
        other._row_ub = [a.copy() for a in self._row_ub]
        other.n_cols, other.n_rows = self.n_cols, self.n_rows
        other._pricing = self._pricing
        return other

    def reset(self) -> None:
        """Drop the live HiGHS instance: the next :meth:`solve` starts cold from the model."""
        self._highs = None

    @property
    def is_built(self) -> bool:
        """Whether a live HiGHS instance exists (the next :meth:`solve` starts warm from it)."""
        return self._highs is not None

    def set_start(self, values: dict[VariableBlock, np.ndarray] | None) -> None:
        """A (partial) MIP start: values of some blocks, given to HiGHS before each solve.

        HiGHS completes a partial start by solving the LP with those columns fixed and uses
        it as the first incumbent when it is feasible (HiGHS ``setSolution`` with indices).
        ``None`` removes the start.

        Raises
        ------
        ValueError
            A block of another model, a wrong length or non-finite values.
        """
        if values is None:
            self._start = None
            return
        index, value = [], []
        for block, v in values.items():
            if self.variables.get(block.name) != block:
                raise ValueError(f"variable block {block.name!r} does not belong to {self.name!r}")
            arr = np.asarray(v, dtype=float).reshape(-1)
            if arr.size != block.size or not np.all(np.isfinite(arr)):
                raise ValueError(
                    f"start of {block.name!r} needs {block.size} finite values, got {arr.size}"
                )
            index.append(block.indices)
            value.append(arr)
        self._start = (np.concatenate(index), np.concatenate(value))

    def add_quadratic_cost(self, block: VariableBlock, diagonal) -> None:
        """Add ``Σ_k diagonal_k · x_k²`` over the columns of ``block`` to the objective.

        The Hessian is diagonal and must be positive semidefinite (``diagonal ≥ 0``): the
        model becomes a convex QP, which HiGHS solves with its QP solver (continuous models
        only; :meth:`solve` raises :class:`SolverError` if the model also has integer
        columns). Calling it again for the same block adds to the diagonal. Row duals of a QP
        keep the LP convention (d objective / d row bound).

        Parameters
        ----------
        block : VariableBlock
        diagonal : float or array_like, shape (block.size,)
            Coefficient of each column's square (objective units per unit²).

        Raises
        ------
        ValueError
            Negative or non-finite coefficients, or a block of another model.
        """
        if self.variables.get(block.name) != block:
            raise ValueError(f"variable block {block.name!r} does not belong to {self.name!r}")
        values = np.broadcast_to(np.asarray(diagonal, dtype=float), (block.size,)).copy()
        if not np.all(np.isfinite(values)) or np.any(values < 0):
            raise ValueError(
                f"quadratic cost of {block.name!r} must be finite and >= 0 (convex QP only)"
            )
        previous = self._quadratic.get(block.name)
        self._quadratic[block.name] = values if previous is None else previous + values
        self._highs = None

    @property
    def is_quadratic(self) -> bool:
        """True when a quadratic objective term was added."""
        return bool(self._quadratic)

    def columns(self, block: VariableBlock | None = None) -> ColumnData:
        """Bounds, linear cost, integrality and quadratic diagonal of one block (or all columns).

        Returns copies in model units (the values the next :meth:`solve` uses, after any
        :meth:`set_col_bounds`/:meth:`set_cost`).
        """
        quad = np.zeros(self.n_cols)
        for name, values in self._quadratic.items():
            quad[self.variables[name].slice] += values
        if block is None:

            def cat(parts: list[np.ndarray], dtype=float) -> np.ndarray:
                return np.concatenate(parts) if parts else np.zeros(0, dtype=dtype)

            return ColumnData(
                cat(self._lb), cat(self._ub), cat(self._cost), cat(self._integer, bool), quad
            )
        if self.variables.get(block.name) != block:
            raise ValueError(f"variable block {block.name!r} does not belong to {self.name!r}")
        i = list(self.variables).index(block.name)
        return ColumnData(
            self._lb[i].copy(),
            self._ub[i].copy(),
            self._cost[i].copy(),
            self._integer[i].copy(),
            quad[block.slice],
        )

    def rows(self, block: ConstraintBlock | None = None) -> RowData:
        """Terms and bounds of one constraint block (or the bounds of all rows, no terms)."""
        if block is None:
            lb = np.concatenate(self._row_lb) if self._row_lb else np.zeros(0)
            ub = np.concatenate(self._row_ub) if self._row_ub else np.zeros(0)
            return RowData((), lb, ub)
        if self.constraints.get(block.name) != block:
            raise ValueError(f"constraint block {block.name!r} does not belong to {self.name!r}")
        i = self._row_index(block)
        terms = tuple((var, m.copy()) for var, m in self._rows[i][1])
        return RowData(terms, self._row_lb[i].copy(), self._row_ub[i].copy())

    def dual_ray(self) -> np.ndarray | None:
        """Farkas certificate of the last :meth:`solve` when it found the LP infeasible.

        Returns HiGHS's dual ray ``λ`` (one value per row). For rows ``L ≤ A x ≤ U`` and
        columns ``l ≤ x ≤ u`` it proves infeasibility as::

            Σ_{λ_r>0} λ_r L_r + Σ_{λ_r<0} λ_r U_r  >  max_{l ≤ x ≤ u} (Aᵀλ)ᵀ x

        (the row-bound side of ``λᵀ A x`` exceeds what the column bounds allow). When HiGHS
        has no ray after the solve (e.g. presolve detected the infeasibility), the model is
        re-solved once with presolve off to obtain it.

        Returns
        -------
        ndarray, shape (n_rows,), or None
            The ray, or ``None`` if the model was not solved, is not infeasible, or HiGHS
            cannot provide one (e.g. a MIP).
        """
        h = self._highs
        if h is None:
            return None
        infeasible = (
            highspy.HighsModelStatus.kInfeasible,
            highspy.HighsModelStatus.kUnboundedOrInfeasible,
        )
        if h.getModelStatus() not in infeasible:
            return None
        _, has_ray, ray = h.getDualRay()
        if not has_ray:
            h.setOptionValue("presolve", "off")
            try:
                h.run()
                _, has_ray, ray = h.getDualRay()
            finally:
                h.setOptionValue("presolve", "choose")
        return np.asarray(ray, dtype=float).copy() if has_ray else None

    def set_row_bounds(self, block: ConstraintBlock, lb, ub) -> None:
        """Change the bounds of a constraint block in place (keeps the warm start)."""
        lo, hi = _bound(lb, block.size), _bound(ub, block.size)
        k = block.indices
        self._row_lb[self._row_index(block)] = lo
        self._row_ub[self._row_index(block)] = hi
        if self._highs is not None:
            self._highs.changeRowsBounds(len(k), k.astype(np.int32), lo, hi)

    def set_col_bounds(self, block: VariableBlock, lb, ub) -> None:
        """Change the bounds of a variable block in place."""
        lo, hi = _bound(lb, block.size), _bound(ub, block.size)
        i = list(self.variables).index(block.name)
        self._lb[i], self._ub[i] = lo, hi
        if self._highs is not None:
            k = block.indices
            self._highs.changeColsBounds(len(k), k.astype(np.int32), lo, hi)

    def set_cost(self, block: VariableBlock, cost) -> None:
        """Change the linear cost of a variable block in place."""
        c = np.broadcast_to(np.asarray(cost, dtype=float), (block.size,)).copy()
        i = list(self.variables).index(block.name)
        self._cost[i] = c
        if self._highs is not None:
            k = block.indices
            self._highs.changeColsCost(len(k), k.astype(np.int32), c)

    def _row_index(self, block: ConstraintBlock) -> int:
        return list(self.constraints).index(block.name)


def solve_retrying(
    model: LinearModel, options: SolverOptions | None = None, *, warm_limit: float | None = None
) -> Solution:
    """Solve; when HiGHS ends with a status other than optimal or infeasible (e.g. "Unknown"
    after a warm start from a far-away basis, or ``warm_limit`` seconds reached), solve once
    more from scratch (cold, presolved, without ``warm_limit``).

    ``warm_limit`` bounds the first attempt: a warm start from a nearby LP's basis is usually
    far faster than a cold solve but was also seen to take minutes where a cold solve takes a
    second (CL-DIGDT's grid points, the neuron-bound LPs of :mod:`~gridrecourse.formulation.relu`).
    Only the path depends on time: feasibility and the optimal value do not (an alternative
    optimal solution may be returned).

    Raises
    ------
    InfeasibleModelError
        Proved infeasible (on either attempt).
    SolverError
        The second attempt ended in another non-optimal status.
    """
    first = options if warm_limit is None else replace(options or SolverOptions(),
                                                        time_limit=warm_limit)  # fmt: skip
    try:
        sol = model.solve(first)
        if warm_limit is None or sol.status == "Optimal":
            return sol
    except InfeasibleModelError:
        raise
    except SolverError:
        pass
    model.reset()
    return model.solve(options)


@dataclass
class WarmStartBudget:
    """Re-solves of one model, each warm attempt bounded by the model's cold solves.

    A solve on a live HiGHS instance (:attr:`LinearModel.is_built`) is tried warm for at most
    ``max(floor, factor × longest cold solve so far)`` seconds (never more than the options'
    own limit), then solved cold (:func:`solve_retrying`); a solve without a live instance is
    cold and its time raises the budget of the next warm attempts.

    Attributes
    ----------
    factor : float
        Warm attempt / longest cold solve.
    floor : float
        Smallest warm attempt (s).
    longest_cold : float
        Longest cold solve so far (s).
    """

    factor: float = 3.0
    floor: float = 1.0
    longest_cold: float = 0.0

    def solve(self, model: LinearModel, options: SolverOptions | None = None) -> Solution:
        """Solve ``model`` under this budget (raises as :func:`solve_retrying`)."""
        options = options or SolverOptions()
        warm = model.is_built
        t0 = time.perf_counter()
        try:
            if not warm:
                return model.solve(options)
            limit = max(self.floor, self.factor * self.longest_cold)
            if options.time_limit is not None:
                limit = min(limit, float(options.time_limit))
            return solve_retrying(model, options, warm_limit=limit)
        finally:
            if not warm:
                self.longest_cold = max(self.longest_cold, time.perf_counter() - t0)
