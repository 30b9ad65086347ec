"""Separable piecewise-linear convex value function learned by SPAR (paper C, §II-A to §II-D).

Paper C (SPAR-OPF, seed 003; restated in METHODS.md §3) approximates the expected recourse of
the integer first stage ``n`` (PV units per candidate bus, ``n_i ∈ {0..L}``) by a separable
function ``V(n) ≈ Σ_i v_i(n_i)``. Every coordinate function ``v_i`` is piecewise linear with
integer breakpoints, ``v_i(0) = 0`` and slopes ``u_i(k) = v_i(k+1) − v_i(k)`` for
``k = 0..L−1`` (eqs. (11)–(12)); it is convex when the slopes are nondecreasing.

SPAR (Powell, Ruszczyński & Topaloglu 2004; paper C Algorithm 1) learns the slopes from sampled
subgradients: at the visited point ``n_i`` the slope is smoothed towards the observation
``ĝ_i`` (Algorithm 1 step 5) and the slope row is then projected back onto the nondecreasing
cone (eqs. (19)–(26), conditions 1–3 of §II-D) by pooling the violating neighbours to their
average, without calling an optimizer.

Units: slopes and observations are in objective units per PV unit (for paper C's P1 that is
p.u. voltage deviation per unit, for P2 kW of losses per unit); function values are in
objective units. Site indices and points are plain integers (number of units).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike, NDArray

from gridrecourse.errors import GridRecourseError

__all__ = [
    "DEFAULT_RULE_1_CONSTANT",
    "MovingAverageStop",
    "SeparablePWL",
    "SparInputError",
    "StepRule",
    "isotonic_projection",
    "project_monotone",
    "project_monotone_rows",
    "slope_index",
    "step_size",
    "update",
]

DEFAULT_RULE_1_CONSTANT = 100.0
"""Constant ``a`` of step rule 1, ``α_n = a/(a + n)``.

**Our choice**: paper C §IV sets this constant to 100 but the symbol is lost in the available
text; 100 is the value we use (METHODS.md §3)."""

_RULE_3_EXPONENT = 0.7


class SparInputError(GridRecourseError, ValueError):
    """Invalid input to the SPAR value-function routines (shape, index, step, NaN)."""


class StepRule(Enum):
    """SPAR step-size rules of paper C §IV (α_n at iteration ``n ≥ 1``).

    Attributes
    ----------
    RULE_1
        ``α_n = a/(a + n)``, ``a = 100`` by default (:data:`DEFAULT_RULE_1_CONSTANT`, our choice
        for the paper's lost constant). The paper's default rule.
    RULE_2
        ``α_n = 1/n``.
    RULE_3
        ``α_n = 1/n^0.7``.
    """

    RULE_1 = 1
    RULE_2 = 2
    RULE_3 = 3


def step_size(rule: StepRule, n: int, a: float = DEFAULT_RULE_1_CONSTANT) -> float:
    """Step size ``α_n`` of a SPAR step rule (paper C §IV, Algorithm 1 step 5).

    All three rules satisfy ``Σ α_n = ∞`` and ``Σ α_n² < ∞`` (paper C §II-C).

    Parameters
    ----------
    rule : StepRule
        Which rule.
    n : int
        Iteration counter (or visit counter), ``n ≥ 1``.
    a : float, default 100
        Constant of rule 1 (ignored by rules 2 and 3); must be positive.

    Returns
    -------
    float
        ``α_n ∈ (0, 1]`` (dimensionless).

    Raises
    ------
    SparInputError
        ``n < 1``, ``a ≤ 0`` or ``rule`` is not a :class:`StepRule`.
    """
    if not isinstance(rule, StepRule):
        raise SparInputError(f"rule must be a StepRule, got {rule!r}")
    if int(n) != n or n < 1:
        raise SparInputError(f"step counter n must be an integer >= 1, got {n!r}")
    if rule is StepRule.RULE_1:
        if not a > 0:
            raise SparInputError(f"rule-1 constant a must be positive, got {a!r}")
        return float(a / (a + n))
    if rule is StepRule.RULE_2:
        return 1.0 / float(n)
    return float(n) ** -_RULE_3_EXPONENT


def slope_index(points: ArrayLike, max_units: int) -> NDArray[np.intp]:
    """Index of the slope that an observation at ``points`` estimates.

    Convention (ours, documented): the dual of the linking row (44) at ``n_i`` is read as the
    slope of the segment to the RIGHT of ``n_i``, ``u_i(n_i) = v_i(n_i + 1) − v_i(n_i)``, i.e.
    index ``k = n_i``. At the upper end ``n_i = L`` there is no right segment and the LEFT
    slope ``u_i(L − 1)`` is used instead (``k = L − 1``).

    Parameters
    ----------
    points : array_like of int
        Visited points ``n_i ∈ {0..L}`` (units).
    max_units : int
        ``L``, the number of slopes per site.

    Returns
    -------
    numpy.ndarray of intp
        ``min(n_i, L − 1)``.
    """
    pts = np.asarray(points)
    if pts.size and (not np.issubdtype(pts.dtype, np.integer)):
        if not np.all(np.isfinite(pts)) or np.any(pts != np.round(pts)):
            raise SparInputError("points must be integers (numbers of units)")
    pts = pts.astype(np.intp)
    if np.any(pts < 0) or np.any(pts > max_units):
        raise SparInputError(f"points must lie in 0..{max_units}, got {pts.min()}..{pts.max()}")
    return np.minimum(pts, max_units - 1)


@dataclass
class SeparablePWL:
    """Separable piecewise-linear value function ``V(n) = Σ_i v_i(n_i)`` (paper C (10)–(12)).

    Attributes
    ----------
    slopes : numpy.ndarray, shape (n_sites, L)
        ``slopes[i, k] = v_i(k+1) − v_i(k)`` in objective units per PV unit. ``v_i(0) = 0``.
    """

    slopes: np.ndarray

    def __post_init__(self) -> None:
        slopes = np.array(self.slopes, dtype=float)
        if slopes.ndim != 2 or slopes.shape[1] < 1:
            raise SparInputError(
                f"slopes must have shape (n_sites, L) with L >= 1, got {slopes.shape}"
            )
        if not np.all(np.isfinite(slopes)):
            raise SparInputError("slopes contain NaN or infinite values")
        self.slopes = slopes

    @classmethod
    def zeros(cls, n_sites: int, max_units: int) -> SeparablePWL:
        """All-zero slopes (the SPAR initialization of paper C Algorithm 1)."""
        return cls(np.zeros((n_sites, max_units)))

    @property
    def n_sites(self) -> int:
        """Number of coordinate functions (candidate sites)."""
        return int(self.slopes.shape[0])

    @property
    def max_units(self) -> int:
        """``L``, the largest breakpoint of every coordinate function."""
        return int(self.slopes.shape[1])

    def is_convex(self, atol: float = 0.0) -> bool:
        """Whether every slope row is nondecreasing (within ``atol``)."""
        return bool(np.all(np.diff(self.slopes, axis=1) >= -atol))

    def breakpoint_values(self) -> NDArray[np.float64]:
        """``v_i(k)`` for every site and ``k = 0..L`` (eq. (12)), shape ``(n_sites, L + 1)``."""
        out = np.zeros((self.n_sites, self.max_units + 1))
        np.cumsum(self.slopes, axis=1, out=out[:, 1:])
        return out

    def values(self, n: ArrayLike) -> NDArray[np.float64]:
        """``v_i(n_i)`` for every site.

        Parameters
        ----------
        n : array_like of int, shape (n_sites,)
            Units per site, ``0..L``.

        Returns
        -------
        numpy.ndarray, shape (n_sites,)
            Values in objective units.
        """
        pts = np.asarray(n)
        if pts.shape != (self.n_sites,):
            raise SparInputError(f"n must have shape ({self.n_sites},), got {pts.shape}")
        slope_index(pts, self.max_units)  # validates integrality and range
        return self.breakpoint_values()[np.arange(self.n_sites), pts.astype(np.intp)]

    def total(self, n: ArrayLike) -> float:
        """``V(n) = Σ_i v_i(n_i)`` in objective units (paper C (10))."""
        return float(self.values(n).sum())


def _first_true(mask: NDArray[np.bool_], axis: int = 1) -> NDArray[np.intp]:
    return np.argmax(mask, axis=axis)


def project_monotone_rows(rows: ArrayLike, updated_indices: ArrayLike) -> NDArray[np.float64]:
    """Project many slope rows, each changed at one coordinate, onto the nondecreasing cone.

    This is the SPAR projection of Powell, Ruszczyński & Topaloglu (2004), paper C §II-D
    (eqs. (19)–(26)): the Euclidean projection of a row that was nondecreasing before one
    coordinate ``k`` was changed.

    - Condition 1: the row is still nondecreasing — nothing changes.
    - Condition 2 (new ``u(k)`` too large): pool ``u(k..j)`` to their average, with ``j`` the
      first index ``≥ k`` whose right neighbour is not below the running average of
      ``u(k..j)``.
    - Condition 3 (new ``u(k)`` too small): symmetric, pool ``u(i..k)`` to the left.

    This is exactly pool-adjacent-violators restricted to the changed coordinate. It is
    vectorized over rows with cumulative sums (no optimizer, no Python loop over rows or
    breakpoints); cost ``O(rows × L)``.

    Parameters
    ----------
    rows : array_like, shape (m, L)
        Slope rows; row ``r`` must be nondecreasing apart from coordinate ``updated_indices[r]``.
    updated_indices : array_like of int, shape (m,)
        The changed coordinate of each row, ``0..L−1``.

    Returns
    -------
    numpy.ndarray, shape (m, L)
        Projected rows (a new array); nondecreasing, and the sum over each pooled block is
        preserved.

    Raises
    ------
    SparInputError
        Shapes mismatch or an index is out of range.
    """
    u = np.array(rows, dtype=float, copy=True)
    if u.ndim != 2:
        raise SparInputError(f"rows must be 2-D (m, L), got shape {u.shape}")
    k = np.asarray(updated_indices, dtype=np.intp)
    m, n_slopes = u.shape
    if k.shape != (m,):
        raise SparInputError(f"updated_indices must have shape ({m},), got {k.shape}")
    if m == 0:
        return u
    if np.any(k < 0) or np.any(k >= n_slopes):
        raise SparInputError(f"updated_indices must lie in 0..{n_slopes - 1}")
    r = np.arange(m)
    idx = np.arange(n_slopes)[None, :]
    kk = k[:, None]
    left_of_k = np.where(k > 0, u[r, np.maximum(k - 1, 0)], -np.inf)
    right_of_k = np.where(k < n_slopes - 1, u[r, np.minimum(k + 1, n_slopes - 1)], np.inf)

    # Condition 2: pool to the right. avg_j = mean(u[k..j]) for j >= k; the block ends at the
    # first j whose right neighbour is not below avg_j (always exists: +inf sentinel).
    on_right = idx >= kk
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = np.cumsum(np.where(on_right, u, 0.0), axis=1) / (idx - kk + 1)
    right_nb = np.concatenate([u[:, 1:], np.full((m, 1), np.inf)], axis=1)
    j = _first_true(on_right & (right_nb >= avg))
    # exact arithmetic gives avg >= u[k-1] here; the clip only removes round-off
    pooled = np.maximum(avg[r, j], np.minimum(left_of_k, u[r, k]))
    block = on_right & (idx <= j[:, None])
    u = np.where(block, pooled[:, None], u)

    # Condition 3: pool to the left. avg_i = mean(u[i..k]) for i <= k; the block starts at the
    # largest i whose left neighbour is not above avg_i (always exists: -inf sentinel).
    on_left = idx <= kk
    rev = np.where(on_left, u, 0.0)[:, ::-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        avg = (np.cumsum(rev, axis=1) / (kk - idx[:, ::-1] + 1))[:, ::-1]
    left_nb = np.concatenate([np.full((m, 1), -np.inf), u[:, :-1]], axis=1)
    i = n_slopes - 1 - _first_true((on_left & (left_nb <= avg))[:, ::-1])
    pooled = np.minimum(avg[r, i], np.maximum(right_of_k, u[r, k]))
    block = on_left & (idx >= i[:, None])
    return np.where(block, pooled[:, None], u)


def project_monotone(slopes_row: ArrayLike, updated_index: int) -> NDArray[np.float64]:
    """Project one slope row changed at ``updated_index`` onto the nondecreasing cone.

    Single-row form of :func:`project_monotone_rows` (paper C §II-D, PRT 2004 projection).

    Parameters
    ----------
    slopes_row : array_like, shape (L,)
        Row that was nondecreasing except at ``updated_index``.
    updated_index : int
        The changed coordinate, ``0..L−1``.

    Returns
    -------
    numpy.ndarray, shape (L,)
        The Euclidean projection onto ``{u : u_0 ≤ u_1 ≤ … ≤ u_{L−1}}``.
    """
    row = np.asarray(slopes_row, dtype=float)
    if row.ndim != 1:
        raise SparInputError(f"slopes_row must be 1-D, got shape {row.shape}")
    return project_monotone_rows(row[None, :], np.array([updated_index]))[0]


def isotonic_projection(row: ArrayLike) -> NDArray[np.float64]:
    """Full pool-adjacent-violators (PAVA) Euclidean projection onto nondecreasing vectors.

    General-purpose reference (no precondition on the input); SPAR uses the cheaper
    :func:`project_monotone`.

    Parameters
    ----------
    row : array_like, shape (L,)

    Returns
    -------
    numpy.ndarray, shape (L,)
        ``argmin_{w nondecreasing} ‖w − row‖₂``.
    """
    y = np.asarray(row, dtype=float)
    if y.ndim != 1:
        raise SparInputError(f"row must be 1-D, got shape {y.shape}")
    sums: list[float] = []
    counts: list[int] = []
    for value in y:
        sums.append(float(value))
        counts.append(1)
        while len(sums) > 1 and sums[-2] / counts[-2] > sums[-1] / counts[-1]:
            s, c = sums.pop(), counts.pop()
            sums[-1] += s
            counts[-1] += c
    return np.repeat(np.array(sums) / np.array(counts), counts) if sums else y.copy()


def update(
    slopes: ArrayLike,
    sites: ArrayLike | None,
    points: ArrayLike,
    gradients: ArrayLike,
    alpha: float | ArrayLike,
) -> NDArray[np.float64]:
    """One SPAR slope update with projection (paper C Algorithm 1 steps 5–6).

    For every listed site ``i`` with visited point ``n_i`` and observed slope ``ĝ_i``::

        k = n_i if n_i < L else L − 1            (see :func:`slope_index`)
        u_i(k) ← (1 − α) u_i(k) + α ĝ_i
        u_i ← Π_monotone(u_i)                    (:func:`project_monotone_rows`)

    The observation is read as the slope of the segment to the RIGHT of ``n_i``
    (``v_i(n_i + 1) − v_i(n_i)``); at ``n_i = L`` as the left slope ``u_i(L − 1)``. Paper C
    obtains ``ĝ_i`` as the dual of the linking row (44) times ``g · PV_mult``.

    Parameters
    ----------
    slopes : array_like, shape (n_sites, L)
        Current slopes; every row must be nondecreasing (the SPAR invariant).
    sites : array_like of int, shape (m,), or None
        Distinct sites to update; ``None`` means all sites (then ``m = n_sites``).
    points : array_like of int, shape (m,)
        Visited points ``n_i ∈ {0..L}`` of those sites (units).
    gradients : array_like, shape (m,)
        Observed slopes ``ĝ_i`` (objective units per PV unit).
    alpha : float or array_like, shape (m,)
        Step size(s) in ``[0, 1]`` (see :func:`step_size`): one for all sites (the paper's
        iteration-counter rules) or one per listed site (e.g. a rule evaluated at each
        (site, slope) visit count, the state-dependent variant of PRT 2004).

    Returns
    -------
    numpy.ndarray, shape (n_sites, L)
        New slopes (the input is not modified); every row nondecreasing.

    Raises
    ------
    SparInputError
        Shape mismatch, repeated or out-of-range sites, points outside ``0..L``, NaN
        observations, ``alpha`` outside ``[0, 1]`` or input rows that are not nondecreasing.
    """
    u = np.array(slopes, dtype=float, copy=True)
    if u.ndim != 2 or u.shape[1] < 1:
        raise SparInputError(f"slopes must have shape (n_sites, L), got {u.shape}")
    n_sites, n_slopes = u.shape
    site_idx = np.arange(n_sites) if sites is None else np.asarray(sites, dtype=np.intp).reshape(-1)
    g = np.asarray(gradients, dtype=float).reshape(-1)
    pts = np.asarray(points).reshape(-1)
    if not (site_idx.shape == g.shape == pts.shape):
        raise SparInputError(
            f"sites, points and gradients must have the same length, got "
            f"{site_idx.shape[0]}, {pts.shape[0]}, {g.shape[0]}"
        )
    if np.any(site_idx < 0) or np.any(site_idx >= n_sites):
        raise SparInputError(f"sites must lie in 0..{n_sites - 1}")
    if np.unique(site_idx).size != site_idx.size:
        raise SparInputError("sites must be distinct (one observation per site per update)")
    if not np.all(np.isfinite(g)):
        raise SparInputError("gradients contain NaN or infinite values")
    step = np.asarray(alpha, dtype=float)
    if step.ndim > 1 or (step.ndim == 1 and step.shape != site_idx.shape):
        raise SparInputError(f"alpha must be a scalar or have shape {site_idx.shape}")
    if not np.all((step >= 0.0) & (step <= 1.0)):
        raise SparInputError(f"alpha must lie in [0, 1], got {alpha!r}")
    if np.any(np.diff(u[site_idx], axis=1) < 0):
        raise SparInputError("slope rows to update must be nondecreasing (SPAR invariant)")
    k = slope_index(pts, n_slopes)
    rows = u[site_idx]
    rr = np.arange(site_idx.size)
    rows[rr, k] = (1.0 - step) * rows[rr, k] + step * g
    u[site_idx] = project_monotone_rows(rows, k)
    return u


class MovingAverageStop:
    """Stopping rule on the moving average of the SPAR objective (paper C §II-C).

    **Our choice** of the paper's unspecified details (METHODS.md §3): stop as soon as the
    moving average over the last ``window`` objectives differs from the moving average one
    iteration earlier by at most ``rel_tol · |previous average| + abs_tol``. The first test is
    made once ``window + 1`` objectives have been seen.

    Parameters
    ----------
    window : int, default 10
        Number of iterations in the moving average.
    rel_tol : float, default 1e-3
        Relative tolerance ``ε`` (dimensionless).
    abs_tol : float, default 0.0
        Absolute tolerance in objective units (guards a zero average).
    """

    def __init__(self, window: int = 10, rel_tol: float = 1e-3, abs_tol: float = 0.0) -> None:
        if int(window) != window or window < 1:
            raise SparInputError(f"window must be a positive integer, got {window!r}")
        if rel_tol < 0 or abs_tol < 0:
            raise SparInputError("rel_tol and abs_tol must be nonnegative")
        self.window = int(window)
        self.rel_tol = float(rel_tol)
        self.abs_tol = float(abs_tol)
        self._history: deque[float] = deque(maxlen=self.window + 1)
        self.previous_average: float | None = None
        self.current_average: float | None = None

    def update(self, objective: float) -> bool:
        """Record one iteration's objective; return whether to stop.

        Parameters
        ----------
        objective : float
            Objective of this iteration (objective units).

        Returns
        -------
        bool
            True when the moving average has settled (see the class docstring).
        """
        value = float(objective)
        if not np.isfinite(value):
            raise SparInputError(f"objective must be finite, got {objective!r}")
        self._history.append(value)
        if len(self._history) < self.window + 1:
            return False
        hist = np.fromiter(self._history, dtype=float)
        self.previous_average = float(hist[:-1].mean())
        self.current_average = float(hist[1:].mean())
        change = abs(self.current_average - self.previous_average)
        return change <= self.rel_tol * abs(self.previous_average) + self.abs_tol

    def reset(self) -> None:
        """Forget all recorded objectives."""
        self._history.clear()
        self.previous_average = None
        self.current_average = None
