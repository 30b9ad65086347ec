"""OLTC and voltage-regulator taps as decisions (METHODS §1.2; paper B eqs 5–8).

A regulator-controlled branch-phase n (parent node i, child j) gets a dummy sending bus i'
whose squared voltage is the tap-dependent image of its parent's (paper B eq 5)::

    v_send,n,t = Σ_k ρ_k² w_{n,k,t},   w_{n,k,t} = u_{r,k,t} · v_i,t          (eq 5–6)
    Σ_k u_{r,k,t} = 1,   u ∈ {0, 1}                                           (eq 6, SOS1)

with ``ρ_k = base_ratio · τ_k ** tap_exponent`` the node ratio at tap ``τ_k`` (p.u.,
:class:`~gridrecourse.network.math_model.RegulatorData`) and ``r`` the regulator of n: the
phases of a ganged regulator share ``u``; each single-phase regulator of a bank has its own.
``v_send`` is the ``branch-v_send`` column that the drop row of n carries instead of
``ρ² v_parent`` (``add_lindist3flow(..., regulated=...)``).

The product ``w = u v_i`` is linearized *exactly* by big-M from finite bounds
``L ≤ v_i ≤ U`` of the parent's squared voltage (eq 7, METHODS §1.2)::

    L u_k ≤ w_k ≤ U u_k                                                       (eq 7a)
    v_i − U (1 − u_k) ≤ w_k ≤ v_i − L (1 − u_k)                               (eq 7b)

For binary u this forces ``w_k = v_i`` at the selected position and 0 elsewhere (and
``L ≤ v_i ≤ U``). With ``hull=True`` (default) eq 7b is replaced by the equality
``Σ_k w_k = v_i``, which together with eq 7a and ``Σ_k u_k = 1`` implies eq 7b and is the
convex hull of the disjunction (a tighter LP relaxation, fewer rows). When the parent is a root
node its voltage is a constant and ``w_k = v_root² u_k`` exactly: no w columns. For a
line-to-line regulator (a winding between parent phases x, y) ``v_i`` is the pair's
``(v_x + v_y)/2`` of its drop row (``LinDist3Flow.parent_weight``).

Tap changes (paper B eq 8): with the OpenDSS tap number ``n_{r,t} = Σ_k N_k u_{r,k,t}``
(``τ = 1 + N · step``)::

    δ_{r,t} ≥ ±(n_{r,t} − n_{r,t−1}),   Σ_t δ_{r,t} ≤ N_max                   (eq 8)

counted in regulator steps, from ``initial`` at t = 0 when given (otherwise the first period
is free). Fixed taps are the special case of u fixed by its bounds.

Positions (:class:`TapPositions`): the regulator's own range and step from the model, a window
of steps around neutral (or around the tap in use), or an explicit set of taps such as
paper B's five ``{0.95, 0.975, 1.0, 1.025, 1.05}`` (METHODS §1.2, our choice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import FeederInputError
from gridrecourse.formulation.network import NetworkBlocks
from gridrecourse.formulation.periods import over_periods, tile_periods
from gridrecourse.network.math_model import MathFeeder, RegulatorData
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.solvers.highs import ConstraintBlock, LinearModel, Solution, VariableBlock

#: Paper B's tap set (METHODS §1.2, our choice): five taps around neutral, p.u.
PAPER_B_TAPS = (0.95, 0.975, 1.0, 1.025, 1.05)

#: Default envelope of a regulator's *input* voltage magnitude (p.u.) for the big-M of eq 7
#: when the voltage band is soft (``bus-v`` unbounded): ``0.8 ≤ |V_i| ≤ 1.2``. It becomes a hard
#: limit on the regulators' parent nodes only (implied by eq 7); our choice, well outside any
#: operating band (ANSI C84.1 range B is 0.917–1.058).
DEFAULT_V_ENVELOPE_PU = (0.8, 1.2)

_ON_GRID_TOL = 1e-6


class TapCenter(str, Enum):
    """Center of a window of tap positions."""

    #: tap 1.0 (OpenDSS tap number 0)
    NEUTRAL = "neutral"
    #: the tap in use in the model (``RegulatorData.tap``)
    CURRENT = "current"


@dataclass(frozen=True)
class TapPositions:
    """Which tap positions a regulator may take.

    Exactly one of three forms:

    * ``TapPositions()`` (:meth:`full`): every position of the regulator's own range and step
      (``tap_min … tap_max`` in ``n_steps`` steps, 33 for the IEEE regulators);
    * ``TapPositions(half_width=h, center=...)`` (:meth:`window`): the ``2h + 1`` steps
      ``center ± h`` of the regulator's own step, clipped to its range;
    * ``TapPositions(taps_pu=(...))`` (:meth:`explicit`, :meth:`paper_b`): the same taps (p.u.)
      for every regulator; each must lie on the regulator's grid (``tap_min + k · step``) and
      in its range.

    Attributes
    ----------
    half_width : int or None
        Steps either side of ``center`` (window form).
    center : TapCenter
        Center of the window.
    taps_pu : tuple of float or None
        Explicit taps (explicit form).
    """

    half_width: int | None = None
    center: TapCenter = TapCenter.NEUTRAL
    taps_pu: tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        if self.half_width is not None and self.taps_pu is not None:
            raise ValueError("TapPositions: give either half_width or taps_pu, not both")
        if self.half_width is not None and int(self.half_width) < 0:
            raise ValueError(f"TapPositions.half_width must be >= 0, got {self.half_width}")
        if self.taps_pu is not None and len(self.taps_pu) == 0:
            raise ValueError("TapPositions.taps_pu is empty")
        object.__setattr__(self, "center", TapCenter(self.center))

    @classmethod
    def full(cls) -> TapPositions:
        """The regulator's own range and step."""
        return cls()

    @classmethod
    def window(cls, half_width: int, center: TapCenter | str = TapCenter.NEUTRAL) -> TapPositions:
        """``2 half_width + 1`` positions around ``center`` (clipped to the range)."""
        return cls(half_width=int(half_width), center=TapCenter(center))

    @classmethod
    def explicit(cls, taps_pu: Sequence[float]) -> TapPositions:
        """The same taps (p.u.) for every regulator."""
        return cls(taps_pu=tuple(float(t) for t in taps_pu))

    @classmethod
    def paper_b(cls) -> TapPositions:
        """Paper B's five taps ``{0.95, 0.975, 1.0, 1.025, 1.05}`` (METHODS §1.2)."""
        return cls(taps_pu=PAPER_B_TAPS)

    @classmethod
    def parse(cls, text: str) -> TapPositions:
        """From a command-line value: ``full``, ``paper-b``, ``H`` (±H steps around neutral),
        ``H@current`` (around the tap in use) or a comma list of taps ``0.95,1.0,1.05``."""
        s = str(text).strip().lower()
        if s == "full":
            return cls.full()
        if s in ("paper-b", "paper_b", "paperb"):
            return cls.paper_b()
        if "," in s:
            return cls.explicit([float(x) for x in s.split(",") if x])
        width, _, center = s.partition("@")
        try:
            return cls.window(int(width), center or TapCenter.NEUTRAL)
        except ValueError as exc:
            raise ValueError(
                f"tap positions {text!r}: expected 'full', 'paper-b', H, H@current or a comma "
                "list of taps (p.u.)"
            ) from exc

    def describe(self) -> str:
        """Short text (the :meth:`parse` syntax): ``full``, ``H@neutral``, ``0.95,1.0,1.05``."""
        if self.taps_pu is not None:
            return ",".join(f"{t:g}" for t in self.taps_pu)
        if self.half_width is None:
            return "full"
        return f"{self.half_width}@{self.center.value}"

    def grid(self, regulators: RegulatorData) -> TapGrid:
        """The allowed positions of every regulator as one flat :class:`TapGrid`.

        Raises
        ------
        FeederInputError
            Explicit taps off a regulator's grid or outside its range (names the regulators).
        """
        reg = regulators
        step = reg.tap_step
        if self.taps_pu is not None:
            taps = np.asarray(self.taps_pu, dtype=float)
            k = (taps[None, :] - reg.tap_min[:, None]) / step[:, None]  # (R, K)
            bad = (np.abs(k - np.rint(k)) > _ON_GRID_TOL) | (k < -_ON_GRID_TOL)
            bad |= k > reg.n_steps[:, None] + _ON_GRID_TOL
            if bad.any():
                names = [reg.names[i] for i in np.flatnonzero(bad.any(axis=1))]
                raise FeederInputError(
                    f"tap positions {self.taps_pu}: not on the tap grid (tap_min + k·step, in "
                    f"[tap_min, tap_max]) of regulator(s) {', '.join(names)}"
                )
            if len(np.unique(np.rint(k[0]))) != len(taps):
                raise ValueError(f"tap positions {self.taps_pu} repeat a tap")
            counts = np.full(reg.n_regulators, len(taps))
            position = np.rint(k).astype(int).ravel()
            return TapGrid.build(reg, position, counts)
        low = np.zeros(reg.n_regulators, dtype=int)
        high = reg.n_steps.astype(int)
        if self.half_width is not None:
            if self.center is TapCenter.CURRENT:
                center = reg.tap_position
            else:
                center = np.rint((1.0 - reg.tap_min) / step).astype(int)
            low = np.maximum(low, center - int(self.half_width))
            high = np.minimum(high, center + int(self.half_width))
            if np.any(high < low):
                names = [reg.names[i] for i in np.flatnonzero(high < low)]
                raise FeederInputError(
                    f"tap window {self.half_width} around {self.center.value} leaves no position "
                    f"of regulator(s) {', '.join(names)}"
                )
        counts = high - low + 1
        offset = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        position = np.repeat(low, counts) + offset
        return TapGrid.build(reg, position, counts)


@dataclass(frozen=True, eq=False)
class TapGrid:
    """The allowed positions of all regulators, flat: column ``c`` belongs to ``regulator[c]``.

    Columns are grouped by regulator (``start[r] … start[r] + count[r] − 1``) in increasing tap.

    Attributes
    ----------
    regulator : ndarray of int, (K,)
    position : ndarray of int, (K,)
        Position ``k`` of :class:`RegulatorData` (``tap = tap_min + k · step``).
    number : ndarray of int, (K,)
        OpenDSS-style tap number (``tap = 1 + number · step``; 0 is neutral; exact when 1.0 is
        a grid point, as for every symmetric OpenDSS range).
    tap_pu, ratio : ndarray, (K,)
        Tap (p.u.) and node ratio ``base_ratio · tap ** tap_exponent``.
    start, count : ndarray of int, (R,)
    """

    regulator: np.ndarray
    position: np.ndarray
    number: np.ndarray
    tap_pu: np.ndarray
    ratio: np.ndarray
    start: np.ndarray
    count: np.ndarray

    @classmethod
    def build(cls, reg: RegulatorData, position: np.ndarray, counts: np.ndarray) -> TapGrid:
        """From positions listed regulator by regulator with ``counts`` per regulator."""
        regulator = np.repeat(np.arange(reg.n_regulators), counts)
        step = reg.tap_step[regulator]
        tap = reg.tap_min[regulator] + position * step
        ratio = reg.base_ratio[regulator] * tap ** reg.tap_exponent[regulator]
        return cls(
            regulator=regulator,
            position=np.asarray(position, dtype=int),
            number=np.rint((tap - 1.0) / step).astype(int),
            tap_pu=tap,
            ratio=ratio,
            start=np.cumsum(counts) - counts,
            count=np.asarray(counts, dtype=int),
        )

    @property
    def size(self) -> int:
        """Number of (regulator, position) columns K per period."""
        return len(self.regulator)

    def selector(self) -> sp.csr_matrix:
        """``(R, K)``: 1 where column c belongs to regulator r."""
        k = self.size
        return sp.csr_matrix(
            (np.ones(k), (self.regulator, np.arange(k))), shape=(len(self.count), k)
        )

    def column_of(self, numbers: np.ndarray, names: Sequence[str]) -> np.ndarray:
        """Grid column of tap number ``numbers[r, ...]`` of each regulator (same shape).

        Raises
        ------
        FeederInputError
            A number is not an allowed position of its regulator (names the regulators).
        """
        numbers = np.asarray(numbers)
        r = np.arange(len(self.count)).reshape((-1,) + (1,) * (numbers.ndim - 1))
        r = np.broadcast_to(r, numbers.shape)
        offset = numbers - self.number[self.start][r]
        # positions of a regulator are consecutive tap numbers except for explicit sets
        col = self.start[r] + np.clip(offset, 0, None)
        col = np.minimum(col, self.start[r] + self.count[r] - 1)
        ok = self.number[col] == numbers
        if not ok.all():
            # explicit sets are not consecutive: search the regulator's columns
            match = (self.regulator[None, :] == r.reshape(-1, 1)) & (
                self.number[None, :] == numbers.reshape(-1, 1)
            )
            found = match.any(axis=1)
            col = np.where(found, match.argmax(axis=1), -1).reshape(numbers.shape)
            ok = found.reshape(numbers.shape)
        if not ok.all():
            bad = np.unique(r[~ok])
            raise FeederInputError(
                "tap number(s) outside the allowed positions of regulator(s) "
                + ", ".join(
                    f"{names[i]} (got {sorted(set(np.asarray(numbers)[r == i].ravel().tolist()))},"
                    f" allowed {self.number[self.regulator == i].tolist()})"
                    for i in bad
                )
            )
        return col


@dataclass(frozen=True, eq=False)
class TapBlocks:
    """Handle of the tap blocks added by :func:`add_tap_selection`.

    Attributes
    ----------
    regulators : RegulatorData
    grid : TapGrid
    n_periods : int
    u : VariableBlock
        ``tap-u``: binaries, ``grid.size`` per period (eq 6).
    w : VariableBlock or None
        ``tap-w``: ``u · v_parent`` per (regulated branch-phase with a non-root parent,
        position), p.u.² (eq 7).
    delta : VariableBlock or None
        ``tap-changes``: tap steps moved per regulator and period (eq 8).
    select, send : ConstraintBlock
        ``Σ_k u = 1`` and the definition of ``branch-v_send``.
    limit : ConstraintBlock or None
        ``Σ_t δ ≤ N`` per regulator.
    v_bounds : ndarray, shape (2, W·T)
        The bounds ``L, U`` of eq 7 per w column (p.u.²).
    """

    regulators: RegulatorData
    grid: TapGrid
    n_periods: int
    u: VariableBlock
    w: VariableBlock | None
    delta: VariableBlock | None
    select: ConstraintBlock
    send: ConstraintBlock
    limit: ConstraintBlock | None
    v_bounds: np.ndarray

    def _u(self, solution: Solution) -> np.ndarray:
        return solution.value(self.u).reshape(self.n_periods, self.grid.size)

    def numbers(self, solution: Solution) -> np.ndarray:
        """OpenDSS tap numbers per regulator and period, shape (R, T) (int)."""
        chosen = self._u(solution).T  # (K, T)
        value = self.grid.selector() @ (self.grid.number[:, None] * chosen)
        return np.rint(value).astype(int)

    def taps_pu(self, solution: Solution) -> np.ndarray:
        """Taps (p.u.) per regulator and period, shape (R, T)."""
        return self.grid.selector() @ (self.grid.tap_pu[:, None] * self._u(solution).T)

    def as_dict(self, solution: Solution) -> dict[str, list[int]]:
        """``{regulator name: [tap number per period]}``."""
        numbers = self.numbers(solution)
        return {n: numbers[i].tolist() for i, n in enumerate(self.regulators.names)}


@dataclass(frozen=True, eq=False)
class TapOptions:
    """Taps as decisions in a problem (``build_opf(..., taps=TapOptions(...))``).

    Attributes
    ----------
    positions : TapPositions
        Allowed positions (default: each regulator's own range and step).
    max_changes : int or None
        Tap steps each regulator may move over the horizon (paper B eq 8; paper B: 4).
    initial : tuple of int, "current" or None
        Tap numbers before the first period (``"current"``: the model's taps); ``None``: the
        first period is free.
    change_cost : float
        Cost per tap step moved (currency; paper B's C_OLTC).
    envelope_pu : (float, float)
        Regulator input voltage envelope (p.u. magnitude) for the big-M when the voltage band
        is soft (:data:`DEFAULT_V_ENVELOPE_PU`); with a hard band the band is used.
    hull : bool
        Convex-hull form of the linearization (see :func:`add_tap_selection`).
    fixed : array-like of int, (R,) or (R, T), optional
        Tap numbers fixing every u by its bounds (e.g. to evaluate given taps in the same
        model); they must be allowed positions.
    """

    positions: TapPositions = TapPositions()
    max_changes: int | None = None
    initial: tuple[int, ...] | str | None = None
    change_cost: float = 0.0
    envelope_pu: tuple[float, float] = DEFAULT_V_ENVELOPE_PU
    hull: bool = True
    fixed: tuple | np.ndarray | None = None

    def initial_numbers(self, regulators: RegulatorData) -> np.ndarray | None:
        """Initial tap numbers per regulator (or None)."""
        if self.initial is None:
            return None
        if isinstance(self.initial, str):
            if self.initial != "current":
                raise ValueError(
                    f"TapOptions.initial: expected tap numbers or 'current', got {self.initial!r}"
                )
            return np.rint((regulators.tap - 1.0) / regulators.tap_step).astype(int)
        return np.asarray(self.initial, dtype=int)


def regulated_positions(physics: LinDist3Flow, regulators: RegulatorData) -> np.ndarray:
    """Branch-phase positions (0..E−1, order of ``physics.nonroot``) of the regulated nodes.

    Pass them as ``add_lindist3flow(..., regulated=...)``; the order is ``regulators.node``.
    """
    pos = np.full(physics.math.n_nodes, -1)
    pos[physics.nonroot] = np.arange(physics.n_branch_phases)
    return pos[regulators.node]


def _per_regulator(value, n_reg: int, name: str) -> np.ndarray:
    arr = np.broadcast_to(np.asarray(value), (n_reg,)).astype(float)
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite and >= 0, got {value}")
    return arr


def add_tap_selection(
    model: LinearModel,
    net: NetworkBlocks,
    regulators: RegulatorData,
    positions: TapPositions | TapGrid,
    *,
    v_bounds: tuple[float, float] | None = None,
    max_changes: int | np.ndarray | None = None,
    initial: np.ndarray | None = None,
    fixed: np.ndarray | None = None,
    change_cost: float | np.ndarray = 0.0,
    hull: bool = True,
) -> TapBlocks:
    """Taps of every regulator as decisions over the periods of ``net`` (paper B eqs 5–8).

    Parameters
    ----------
    model : LinearModel
    net : NetworkBlocks
        Built with ``regulated=regulated_positions(physics, regulators)`` (same order).
    regulators : RegulatorData
        ``math.regulators`` of the feeder ``net`` was built on.
    positions : TapPositions or TapGrid
        Allowed positions of each regulator.
    v_bounds : (float, float), optional
        Bounds ``L, U`` of the regulators' parent squared voltages (p.u.²) for the big-M of
        eq 7; they become limits on those voltages (implied by eq 7). Default: the
        ``bus-v`` column bounds in the model (a hard band); they must be finite.
    max_changes : int or ndarray (R,), optional
        Tap steps each regulator may move over the horizon (eq 8); ``None``: no limit.
    initial : ndarray of int (R,), optional
        Tap numbers before the first period (the first move counts against the limit).
    fixed : ndarray of int (R,) or (R, T), optional
        Tap numbers fixing u by its bounds (the taps are then not decisions).
    change_cost : float or ndarray (R,)
        Cost per tap step moved (paper B's C_OLTC; needs counting rows, added when > 0).
    hull : bool
        ``Σ_k w_k = v_parent`` instead of eq 7b (convex hull form, see module docstring).

    Returns
    -------
    TapBlocks

    Raises
    ------
    ValueError
        ``net`` was not built with the regulated positions of ``regulators``, or the parent
        voltage bounds are not finite (no envelope given on a soft band).
    """
    reg = regulators
    physics = net.physics
    T, e = net.n_periods, net.n_branch_phases
    n_reg = reg.n_regulators
    grid = positions if isinstance(positions, TapGrid) else positions.grid(reg)
    expected = regulated_positions(physics, reg)
    if not np.array_equal(np.asarray(net.regulated), expected):
        raise ValueError(
            "add_tap_selection: the network block must be built with "
            "regulated=regulated_positions(physics, regulators) (got "
            f"{np.asarray(net.regulated).tolist()}, expected {expected.tolist()})"
        )
    math = physics.math
    k_cols = grid.size

    # -- binaries and Σ_k u = 1 (eq 6)
    sel = grid.selector()
    u = model.add_variables("tap-u", k_cols * T, lb=0.0, ub=1.0, integer=True)
    select = model.add_constraints(
        "tap-select", [(u, over_periods(sel, T))], lb=np.ones(n_reg * T), ub=np.ones(n_reg * T)
    )
    if fixed is not None:
        target = np.broadcast_to(np.asarray(fixed, dtype=int).reshape(n_reg, -1), (n_reg, T))
        col = grid.column_of(target, reg.names)  # (R, T)
        on = np.zeros((T, k_cols))
        on[np.broadcast_to(np.arange(T), (n_reg, T)), col] = 1.0
        model.set_col_bounds(u, on.ravel(), on.ravel())

    # -- (regulated node j, position c) pairs of the same regulator
    n_j = len(reg.node)
    r_j = reg.regulator_of
    pair_j = np.repeat(np.arange(n_j), grid.count[r_j])
    pair_c = np.arange(len(pair_j)) - np.repeat(
        np.cumsum(grid.count[r_j]) - grid.count[r_j], grid.count[r_j]
    )
    pair_c = grid.start[r_j[pair_j]] + pair_c
    parent = math.parent[reg.node]
    root_parent = math.is_root[parent]
    var_pair = ~root_parent[pair_j]
    pos = np.full(math.n_nodes, -1)
    pos[physics.nonroot] = np.arange(e)
    rho2 = grid.ratio**2
    # sending voltage before ρ² of each regulated node: v_parent, or (v_x + v_y)/2 for a
    # line-to-line winding (LinDist3Flow.parent_weight)
    weight = physics.parent_weight[pos[reg.node]]
    weight_nonroot = sp.csr_matrix(weight[:, physics.nonroot])
    root_v2 = weight[:, physics.root] @ math.root_v_pu[physics.root] ** 2

    # -- v_send = Σ ρ² w (+ Σ ρ² v_root² u for root parents)  (eq 5)
    send_terms = [(net.sending_voltage, sp.identity(n_j * T, format="csr"))]
    const = ~var_pair
    if const.any():
        v_root2 = root_v2[pair_j[const]]
        m_u = sp.csr_matrix(
            (-rho2[pair_c[const]] * v_root2, (pair_j[const], pair_c[const])), shape=(n_j, k_cols)
        )
        send_terms.append((u, over_periods(m_u, T)))
    w = None
    n_w = int(var_pair.sum())
    bounds = np.zeros((2, n_w * T))
    zeros = np.zeros(n_j * T)
    if n_w:
        pj, pc = pair_j[var_pair], pair_c[var_pair]
        parent_pos = pos[parent[pj]]  # (W,) branch-phase of each pair's parent
        if v_bounds is None:
            cols = model.columns(net.v)
            idx = (np.arange(T)[:, None] * e + parent_pos[None, :]).ravel()
            low, high = cols.lb[idx], cols.ub[idx]
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                names = sorted({reg.names[i] for i in r_j[pj]})
                raise ValueError(
                    "add_tap_selection: the big-M of the tap linearization (METHODS §1.2, paper "
                    "B eq 7) needs finite bounds of the parent voltage of regulator(s) "
                    f"{', '.join(names)}, but bus-v is unbounded there (soft or no voltage "
                    "band): pass v_bounds=(L, U) in p.u.² (e.g. DEFAULT_V_ENVELOPE_PU squared)"
                )
        else:
            lo, hi = float(v_bounds[0]), float(v_bounds[1])
            if not (np.isfinite(lo) and np.isfinite(hi) and 0.0 <= lo < hi):
                raise ValueError(f"v_bounds must be finite with 0 <= L < U, got {v_bounds}")
            low, high = np.full(n_w * T, lo), np.full(n_w * T, hi)
        bounds = np.vstack([low, high])
        w = model.add_variables("tap-w", n_w * T, lb=0.0, ub=high)
        eye_w = sp.identity(n_w * T, format="csr")
        u_sel = over_periods(
            sp.csr_matrix((np.ones(n_w), (np.arange(n_w), pc)), shape=(n_w, k_cols)), T
        )
        # eq 7a: L u ≤ w ≤ U u
        model.add_constraints("tap-w_lower", [(w, eye_w), (u, -sp.diags(low) @ u_sel)], lb=0.0)
        model.add_constraints("tap-w_upper", [(w, eye_w), (u, -sp.diags(high) @ u_sel)], ub=0.0)
        par_sel = over_periods(weight_nonroot[pj], T)
        if hull:
            j_var = np.flatnonzero(~root_parent)
            row = np.full(n_j, -1)
            row[j_var] = np.arange(len(j_var))
            agg = sp.csr_matrix((np.ones(n_w), (row[pj], np.arange(n_w))), shape=(len(j_var), n_w))
            v_par = weight_nonroot[j_var]
            z = np.zeros(len(j_var) * T)
            model.add_constraints(
                "tap-w_sum", [(w, over_periods(agg, T)), (net.v, -over_periods(v_par, T))], z, z
            )
        else:
            # eq 7b: v − U(1 − u) ≤ w ≤ v − L(1 − u)
            model.add_constraints(
                "tap-w_link_lower",
                [(w, eye_w), (net.v, -par_sel), (u, -sp.diags(high) @ u_sel)],
                lb=-high,
            )
            model.add_constraints(
                "tap-w_link_upper",
                [(w, eye_w), (net.v, -par_sel), (u, -sp.diags(low) @ u_sel)],
                ub=-low,
            )
        m_w = sp.csr_matrix((-rho2[pc], (pj, np.arange(n_w))), shape=(n_j, n_w))
        send_terms.append((w, over_periods(m_w, T)))
    send = model.add_constraints("tap-send", send_terms, lb=zeros, ub=zeros)

    # -- tap-change counting (eq 8)
    cost = _per_regulator(change_cost, n_reg, "change_cost")
    delta = limit = None
    if max_changes is not None or np.any(cost > 0):
        delta = model.add_variables("tap-changes", n_reg * T, lb=0.0, cost=tile_periods(cost, T))
        number = sp.csr_matrix(
            (grid.number.astype(float), (grid.regulator, np.arange(k_cols))), shape=(n_reg, k_cols)
        )
        diff = sp.identity(T, format="csr") - sp.eye(T, k=-1, format="csr")
        init = np.zeros(n_reg)
        first = 0
        if initial is None:
            first = 1  # no move into the first period
            fix0 = np.r_[np.zeros(n_reg), np.full(n_reg * (T - 1), np.inf)]
            model.set_col_bounds(delta, 0.0, fix0)
        else:
            init = np.asarray(initial, dtype=float).reshape(n_reg)  # may lie outside the set
        if T > first:
            d_u = sp.kron(diff[first:], number, format="csr")
            d_delta = sp.identity(n_reg * T, format="csr")[first * n_reg :]
            rhs = np.zeros(n_reg * (T - first))
            if first == 0:
                rhs[:n_reg] = init
            model.add_constraints("tap-changes_up", [(delta, d_delta), (u, -d_u)], lb=-rhs)
            model.add_constraints("tap-changes_down", [(delta, d_delta), (u, d_u)], lb=rhs)
        if max_changes is not None:
            cap = _per_regulator(max_changes, n_reg, "max_changes")
            total = sp.kron(np.ones((1, T)), sp.identity(n_reg), format="csr")
            limit = model.add_constraints("tap-changes_limit", [(delta, total)], ub=cap)
    return TapBlocks(
        regulators=reg,
        grid=grid,
        n_periods=T,
        u=u,
        w=w,
        delta=delta,
        select=select,
        send=send,
        limit=limit,
        v_bounds=bounds,
    )


def governing_regulator(math: MathFeeder, regulators: RegulatorData) -> np.ndarray:
    """Nearest upstream regulator of every node (its regulated node or a descendant), −1 if none.

    Vectorized pointer walk up the tree (one pass per level, no loop over nodes).
    """
    label = np.full(math.n_nodes, -1)
    label[regulators.node] = regulators.regulator_of
    own = label.copy()
    anc = math.parent.copy()
    todo = (label < 0) & (anc >= 0)
    while todo.any():
        label[todo] = own[anc[todo]]
        anc[todo] = math.parent[anc[todo]]
        todo = (label < 0) & (anc >= 0)
    return label


@dataclass(frozen=True)
class RegulatorAtLimit:
    """A regulator at the end of its allowed positions with nodes it governs outside the band.

    Attributes
    ----------
    name : str
    side : str
        ``"low"`` (voltages below ``v_min`` with the tap at its highest allowed position) or
        ``"high"`` (above ``v_max`` at its lowest).
    tap_number : int
        The end position (OpenDSS tap number).
    worst_node : str
    worst_v_pu : float
    n_periods : int
        Periods in which this happens.
    """

    name: str
    side: str
    tap_number: int
    worst_node: str
    worst_v_pu: float
    n_periods: int

    def describe(self) -> str:
        """One line for an error message."""
        where = "below v_min" if self.side == "low" else "above v_max"
        end = "highest" if self.side == "low" else "lowest"
        return (
            f"{self.name} at its {end} allowed tap {self.tap_number:+d} leaves {self.worst_node} "
            f"{where} ({self.worst_v_pu:.4f} p.u.) in {self.n_periods} period(s)"
        )


def regulators_at_limit(
    math: MathFeeder,
    taps: TapBlocks,
    numbers: np.ndarray,
    v_pu: np.ndarray,
    v_min: float,
    v_max: float,
    *,
    tol: float = 1e-6,
) -> list[RegulatorAtLimit]:
    """Regulators whose governed nodes are outside the band while the tap is at its range end.

    Parameters
    ----------
    numbers : ndarray of int, (R, T)
        Tap numbers (e.g. of a soft-band solution).
    v_pu : ndarray, (N, T)
        Node voltage magnitudes of the same solution.
    """
    reg, grid = taps.regulators, taps.grid
    gov = governing_regulator(math, reg)
    top = grid.number[grid.start + grid.count - 1]
    bottom = grid.number[grid.start]
    out: list[RegulatorAtLimit] = []
    names = math.node_names
    has = gov >= 0
    for side, outside, at_end in (
        ("low", v_pu < v_min - tol, numbers >= top[:, None]),
        ("high", v_pu > v_max + tol, numbers <= bottom[:, None]),
    ):
        bad = outside & has[:, None]
        bad[has] &= at_end[gov[has]]
        if not bad.any():
            continue
        node_t = np.argwhere(bad)
        which = gov[node_t[:, 0]]
        dist = np.where(side == "low", v_min - v_pu, v_pu - v_max)
        for r in np.unique(which):
            rows = node_t[which == r]
            worst = rows[np.argmax(dist[rows[:, 0], rows[:, 1]])]
            out.append(
                RegulatorAtLimit(
                    name=reg.names[r],
                    side=side,
                    tap_number=int(top[r] if side == "low" else bottom[r]),
                    worst_node=names[worst[0]],
                    worst_v_pu=float(v_pu[worst[0], worst[1]]),
                    n_periods=len(np.unique(rows[:, 1])),
                )
            )
    return out


def rounded_start(taps: TapBlocks, net: NetworkBlocks, relaxed: Solution) -> np.ndarray:
    """A MIP start for ``tap-u``: the relaxation's continuous taps rounded to the nearest position.

    In the LP relaxation ``v_send / v_parent`` is a continuous ratio² per regulated
    branch-phase (the relaxation is the continuous-tap model). Its square root, averaged over
    the phases of a regulator and converted to a tap (``(ρ / base_ratio) ** (1 / exponent)``),
    is rounded to the nearest allowed position; HiGHS completes the start with an LP. The
    relaxed ``u`` themselves are no guide: they spread over distant positions whose mixture has
    the right ratio. A start that violates a tap-change limit is rejected by HiGHS.

    Returns
    -------
    ndarray, shape (T · K,)
        0/1 values of ``tap-u`` (period-major).
    """
    grid, reg, T = taps.grid, taps.regulators, taps.n_periods
    math = net.physics.math
    send = net.values(relaxed, net.sending_voltage)  # (J, T)
    v = np.empty((math.n_nodes, T))
    v[net.physics.nonroot] = net.values(relaxed, net.v)
    v[net.physics.root] = (math.root_v_pu[net.physics.root] ** 2)[:, None]
    pos = np.full(math.n_nodes, -1)
    pos[net.physics.nonroot] = np.arange(net.n_branch_phases)
    v_parent = net.physics.parent_weight[pos[reg.node]] @ v  # the pair for line-to-line windings
    ratio = np.sqrt(np.maximum(send, 0.0) / np.maximum(v_parent, 1e-12))
    n_of = np.bincount(reg.regulator_of, minlength=reg.n_regulators)[:, None]
    mean = np.zeros((reg.n_regulators, T))
    np.add.at(mean, reg.regulator_of, ratio)
    mean /= n_of
    tap = (mean / reg.base_ratio[:, None]) ** (1.0 / reg.tap_exponent[:, None])
    number = (tap - 1.0) / reg.tap_step[:, None]
    # nearest allowed position, ties to the lower column
    dist = np.abs(grid.number[:, None] - number[grid.regulator])
    dist = dist + 1e-9 * np.arange(grid.size)[:, None]
    best = np.minimum.reduceat(dist, grid.start, axis=0)  # (R, T)
    return (dist == best[grid.regulator]).astype(float).T.ravel()


def polish_taps(model: LinearModel, taps: TapBlocks, solution: Solution, options=None) -> Solution:
    """Re-solve with ``u`` fixed at its rounded MILP values: the exact cost of the chosen taps.

    A MILP solution satisfies integrality only to HiGHS's tolerance (1e-6): a ``u`` of 1e-6
    at a wrong position lets ``w ≤ U u`` leak ~1e-6 p.u.² into ``v_send`` (measured on
    IEEE 123: objective 2.8e-6 relative below the LP at the reported taps). Fixing ``u`` and
    solving the remaining LP removes the leak, so the reported voltages and cost are those of
    the reported taps. Skipped (``solution`` returned) when other integer columns exist
    (polishing would re-solve a MILP). The bounds of ``u`` are restored afterwards.
    """
    cols = model.columns(taps.u)
    if int(model.columns().integer.sum()) != taps.u.size:
        return solution
    fixed = np.clip(np.rint(solution.value(taps.u)), cols.lb, cols.ub)
    model.set_start(None)
    model.set_col_bounds(taps.u, fixed, fixed)
    try:
        polished = model.solve(options)
    finally:
        model.set_col_bounds(taps.u, cols.lb, cols.ub)
    return replace(
        polished,
        solve_seconds=solution.solve_seconds + polished.solve_seconds,
        mip_gap=solution.mip_gap,
        dual_bound=solution.dual_bound,
    )
