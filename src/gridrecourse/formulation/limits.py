"""Operating limits: voltage band, thermal and inverter polygons, voltage deviation.

* Voltage band on the squared magnitude ``v`` (paper A eq 6b, paper C eq 53, METHODS §1.1):
  hard ``v_min² ≤ v ≤ v_max²`` or soft ``v_min² − s⁻ ≤ v ≤ v_max² + s⁺``, ``s ≥ 0`` priced.
* Regular polygon inscribed in a circle (METHODS §1.4; paper B eqs 9, 13; paper C eqs 49–52):
  ``cos θ_k p + sin θ_k q ≤ cos(π/n) S`` for ``θ_k = 2πk/n``, on branch flows (thermal) or on
  a device's ``(p, q)`` (inverter capability).
* Voltage deviation ``e ≥ ±(v − v_ref²)`` (paper C P1 objective, eq 41).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np
import scipy.sparse as sp

from gridrecourse.formulation.network import NetworkBlocks
from gridrecourse.formulation.periods import over_periods, tile_periods
from gridrecourse.solvers.highs import ConstraintBlock, LinearModel, VariableBlock

#: Default number of polygon sides (METHODS §1.4, our choice).
DEFAULT_POLYGON_SIDES = 12


class LimitMode(str, Enum):
    """How an operating limit (voltage band, thermal rating) enters a model."""

    #: enforced exactly (the model may be infeasible)
    HARD = "hard"
    #: violations allowed at a linear penalty (always feasible)
    SOFT = "soft"
    #: not modelled
    OFF = "off"


def polygon_rows(n_sides: int) -> tuple[np.ndarray, np.ndarray, float]:
    """Rows ``cos θ_k p + sin θ_k q ≤ scale · S`` of a polygon inscribed in the circle of radius S.

    METHODS §1.4 replaces ``p² + q² ≤ S²`` by a regular polygon with ``θ_k = 2πk/n``. With
    ``scale = cos(π/n)`` the polygon lies inside the circle (vertices on it), so a solution
    never exceeds a rating; the cost is at most ``1 − cos(π/n)`` (1.7 % for n = 12) of capacity.

    Returns
    -------
    cos_theta, sin_theta : ndarray, shape (n_sides,)
    scale : float
    """
    if int(n_sides) < 3:
        raise ValueError(f"polygon_sides must be >= 3, got {n_sides}")
    theta = 2 * np.pi * np.arange(n_sides) / n_sides
    return np.cos(theta), np.sin(theta), float(np.cos(np.pi / n_sides))


@dataclass(frozen=True, eq=False)
class VoltageBand:
    """Handle of a voltage band: ``over``/``under`` are the soft-band slacks (p.u.², or None)."""

    mode: LimitMode
    v_min: float
    v_max: float
    over: VariableBlock | None
    under: VariableBlock | None
    upper: ConstraintBlock | None
    lower: ConstraintBlock | None


def add_voltage_band(
    model: LinearModel,
    net: NetworkBlocks,
    v_min: float,
    v_max: float,
    mode: LimitMode,
    *,
    penalty: float = 0.0,
    penalty_is_marked: bool = False,
) -> VoltageBand:
    """Voltage band ``v_min ≤ |V| ≤ v_max`` (p.u.) on every branch-phase and period.

    Parameters
    ----------
    model : LinearModel
    net : NetworkBlocks
    v_min, v_max : float
        Band on the magnitude (p.u.); rows act on ``v = |V|²``.
    mode : LimitMode
        HARD: bounds of ``bus-v``; SOFT: slacks ``bus-v_over``/``bus-v_under`` at ``penalty``
        per p.u.² each; OFF: nothing.
    penalty : float
        Cost per p.u.² outside the band per period (SOFT only).
    """
    if not 0 < v_min < v_max:
        raise ValueError(f"voltage band must satisfy 0 < v_min < v_max, got {v_min}, {v_max}")
    if mode is LimitMode.HARD:
        model.set_col_bounds(net.v, v_min**2, v_max**2)
        return VoltageBand(mode, v_min, v_max, None, None, None, None)
    if mode is LimitMode.OFF:
        return VoltageBand(mode, v_min, v_max, None, None, None, None)
    size = net.v.size
    eye = sp.identity(size, format="csr")
    over = model.add_variables("bus-v_over", size, lb=0.0, cost=penalty)
    under = model.add_variables("bus-v_under", size, lb=0.0, cost=penalty)
    upper = model.add_constraints("bus-v_upper", [(net.v, eye), (over, -eye)], ub=v_max**2)
    lower = model.add_constraints("bus-v_lower", [(net.v, eye), (under, eye)], lb=v_min**2)
    return VoltageBand(mode, v_min, v_max, over, under, upper, lower)


@dataclass(frozen=True, eq=False)
class ThermalLimit:
    """Handle of the thermal polygon: the rated branch-phases and the overload slack."""

    rated: np.ndarray
    rows: ConstraintBlock | None
    overload: VariableBlock | None


def add_thermal_polygon(
    model: LinearModel,
    net: NetworkBlocks,
    rating_pu: np.ndarray,
    mode: LimitMode,
    *,
    n_sides: int = DEFAULT_POLYGON_SIDES,
    penalty: float = 0.0,
    select: np.ndarray | None = None,
) -> ThermalLimit:
    """Thermal limit ``|S_n| ≤ rating_n`` of every rated branch-phase as an inscribed polygon.

    Parameters
    ----------
    model : LinearModel
    net : NetworkBlocks
    rating_pu : ndarray, shape (E,)
        Apparent-power rating per branch-phase (p.u.; inf or <= 0: unrated, no rows).
    mode : LimitMode
        HARD: rows only; SOFT: one overload column ``branch-overload`` per rated branch-phase
        and period (p.u., cost ``penalty`` each) shared by its polygon rows; OFF: nothing.
    n_sides : int
    penalty : float
    select : ndarray of bool, shape (E,), optional
        Further restriction of the rated set (e.g. screening out branch-phases that cannot
        reach their rating).
    """
    rating = np.asarray(rating_pu, dtype=float)
    rated_mask = np.isfinite(rating) & (rating > 0)
    if select is not None:
        rated_mask &= np.asarray(select, dtype=bool)
    rated = np.flatnonzero(rated_mask)
    if mode is LimitMode.OFF or not len(rated):
        return ThermalLimit(rated[:0], None, None)
    T, e = net.n_periods, net.n_branch_phases
    cos, sin, inscribe = polygon_rows(n_sides)
    n_r = len(rated)
    sel = sp.csr_matrix((np.ones(n_r), (np.arange(n_r), rated)), shape=(n_r, e))
    terms = [
        (net.p, over_periods(sp.kron(sel, np.c_[cos], format="csr"), T)),
        (net.q, over_periods(sp.kron(sel, np.c_[sin], format="csr"), T)),
    ]
    overload = None
    if mode is LimitMode.SOFT:
        overload = model.add_variables("branch-overload", n_r * T, lb=0.0, cost=penalty)
        share = sp.kron(sp.identity(n_r), np.ones((n_sides, 1)), format="csr")
        terms.append((overload, over_periods(-share, T)))
    ub = tile_periods(np.repeat(rating[rated] * inscribe, n_sides), T)
    rows = model.add_constraints("branch-thermal", terms, ub=ub)
    return ThermalLimit(rated, rows, overload)


def add_capability_polygon(
    model: LinearModel,
    name: str,
    p: VariableBlock,
    q: VariableBlock,
    s_rating_pu: np.ndarray,
    n_periods: int,
    *,
    n_sides: int = DEFAULT_POLYGON_SIDES,
) -> ConstraintBlock:
    """Inverter capability ``p² + q² ≤ S²`` of ``n`` devices as inscribed polygons (eq 9).

    Parameters
    ----------
    name : str
        Row block name (e.g. ``"pv-capability"``).
    p, q : VariableBlock
        Active and reactive output, ``n`` per period.
    s_rating_pu : ndarray, shape (n,)
        Apparent-power rating (p.u.).
    """
    cos, sin, inscribe = polygon_rows(n_sides)
    n = len(s_rating_pu)
    poly_p = sp.kron(sp.identity(n), np.c_[cos], format="csr")
    poly_q = sp.kron(sp.identity(n), np.c_[sin], format="csr")
    rating = np.asarray(s_rating_pu, dtype=float)
    ub = tile_periods(np.repeat(rating * inscribe, n_sides), n_periods)
    return model.add_constraints(
        name,
        [(p, over_periods(poly_p, n_periods)), (q, over_periods(poly_q, n_periods))],
        ub=ub,
    )


def add_voltage_deviation(
    model: LinearModel, net: NetworkBlocks, v_ref: float, *, cost: float = 1.0
) -> VariableBlock:
    """Deviation ``e ≥ |v − v_ref²|`` per branch-phase and period, priced at ``cost`` (eq 41).

    Returns the ``bus-v_deviation`` block (p.u.²).
    """
    size = net.v.size
    eye = sp.identity(size, format="csr")
    dev = model.add_variables("bus-v_deviation", size, lb=0.0, cost=cost)
    model.add_constraints("bus-v_deviation_upper", [(dev, eye), (net.v, -eye)], lb=-(v_ref**2))
    model.add_constraints("bus-v_deviation_lower", [(dev, eye), (net.v, eye)], lb=v_ref**2)
    return dev
