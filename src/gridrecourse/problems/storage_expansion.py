"""Paper A's battery (BESS) capacity expansion as one LP (METHODS §5, paper A eqs 7b–7e, 19).

Paper A sizes batteries ``x_j`` (kWh) at candidate buses against a *box* of electricity prices
``[y̲_P, ȳ_P]`` and loads ``[y̲_D, ȳ_D]`` over a horizon of τ hours. The two-stage robust
problem (eq 16) becomes the single-stage LP of eq 19 because

* the load box has the dominant set ``{ȳ_D}`` (Prop. 1 with m = k = 1, β = 1): the LP is solved
  at the **upper** loads;
* the price enters only the objective: the worst case of ``y_P,t · P0_t`` over the box is
  ``ȳ_P,t P0_t`` when the substation imports (P0_t > 0) and ``y̲_P,t P0_t`` when it exports
  (P0_t < 0). Paper A writes ``η ≥ ȳ_P · Re(s_0)``, which credits exports at the *upper* price;
  METHODS §5 requires the correct worst case, ``max(ȳ_P,t P0_t, y̲_P,t P0_t)``.

The LP solved here (all powers per unit of ``s_base`` = 1 MW, so p.u. = MW and p.u.·h = MWh)::

    min  Σ_j c_j x_j + Σ_t Δt (ȳ_P,t P0⁺_t − y̲_P,t P0⁻_t) + voltage/thermal penalties
    s.t. LinDist3Flow (METHODS §1.1) every hour t, net load per node
             p = load(ȳ_D,t) − PV_t + BESS_t (+ fixed feeder injections)            (7a)
         P0_t = P0⁺_t − P0⁻_t = power entering at the substation,  P0⁺, P0⁻ ≥ 0
         s^d_j,t = ch_j,t − dis_j,t,   0 ≤ ch, dis ≤ C-rate · x_j                   (7b)
         SOC_j,t = SOC_j,t−1 + Δt (η_c ch_j,t − dis_j,t / η_d),  SOC_j,−1 = 0       (7c, 7d)
         SOC_min x_j ≤ SOC_j,t ≤ SOC_max x_j                                         (7e)
         0 ≤ x_j ≤ x_max

The split ``P0 = P0⁺ − P0⁻`` is the epigraph ``η_t ≥ ȳ_P,t P0_t, η_t ≥ y̲_P,t P0_t`` written so
that the prices are *costs* (``Δt ȳ_P,t`` on P0⁺, ``−Δt y̲_P,t`` on P0⁻): for ȳ_P ≥ y̲_P
importing and exporting in the same hour never pays, so at the optimum one of them is zero and
the cost equals the epigraph's. Prices are then objective coefficients and loads right-hand
sides, so the model is built **once** and every new box only changes costs, row bounds and
column bounds (HiGHS keeps its basis: warm start).

Gradients (envelope theorem, used by :mod:`gridrecourse.learning.lp_layer`): with V the optimal
value,

* ``∂V/∂ȳ_P,t = Δt P0⁺_t`` (MWh): the import of hour t when the upper-price row is the active
  one, else 0;
* ``∂V/∂y̲_P,t = −Δt P0⁻_t`` (MWh, ≤ 0): minus the export of hour t;
* ``∂V/∂ȳ_D,t,s = Σ_rows dual_row · ∂rhs_row/∂load`` ($/kW): the load enters only the right-hand
  sides of the active- and reactive-power balance rows (reactive power at the site's nominal
  power factor) and of the substation balance.

Units and conventions
---------------------
* Prices: currency per **MWh** (the bundled SMARD prices are €/MWh), shape ``(τ,)``.
* Loads and PV: **kW** per *load site* (a bus with load), shape ``(τ, n_sites)`` in the order of
  :attr:`StorageExpansionProblem.load_sites`. A site's kW is spread over its nodes in the
  proportions of the feeder's nominal loads at that bus, with reactive power at their nominal
  power factor (so a site's kvar = kW × nominal kvar/kW). PV is spread equally over the bus's
  phases at unity power factor; it is fixed (paper A) unless ``pv_curtailment=True``.
* BESS: one 3-phase battery per candidate bus, power split equally over the bus's phases, unity
  power factor; dispatch positive = charging (a load). Capacity in kWh.
* Installation cost ``c_j``: currency per kWh of capacity *for the horizon* — the capital cost
  annualized with the capital-recovery factor and prorated to ``τ Δt`` hours
  (:func:`horizon_installation_cost`), so it is comparable to a τ-hour energy bill. Default
  **(our choice)**: 150 /kWh capital, 20 years, 5 % → 0.033 /kWh per day, i.e. a battery pays off
  when the daily price spread it can capture exceeds ≈ 33 /MWh; the bundled 2018 SMARD daily
  spreads (median ≈ 28 €/MWh) straddle this threshold, so the sizing decision depends on the
  predicted box.
* Feeder generators, storage and PV systems stay at their imported dispatch (fixed injections);
  ``pv_kw`` is PV *from data* on top of them.
* SOC bounds apply to end-of-hour states; the initial state is SOC_−1 = 0 (paper eq 7d), which
  would force x = 0 if 7e also applied to it with SOC_min > 0.
* Voltage band (paper A eq 6b): off by default **(our choice)**, soft (penalty per p.u. of v²
  per hour, as in :mod:`gridrecourse.problems.opf`) or hard. The IEEE feeders at their imported
  regulator taps leave the 0.95–1.05 band whatever the batteries do (ieee13: 1.056 p.u. at the
  regulator output rg60 at every load level; ieee123: up to 1.11 p.u. below 35 % load), so a
  soft band by default would turn the sizing into a voltage-support problem dominated by
  penalties on nodes storage can hardly move. Thermal polygons (eq 6c): off by default, soft or
  hard. Penalties are part of the optimal value (and of :meth:`realized_cost`).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import partial

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import GridRecourseError, InfeasibleModelError, InvalidSeriesError
from gridrecourse.formulation.battery import Battery, BatteryParameters, add_battery
from gridrecourse.formulation.injections import Injection, fixed_net_load
from gridrecourse.formulation.limits import (
    DEFAULT_POLYGON_SIDES,
    LimitMode,
    add_thermal_polygon,
    add_voltage_band,
)
from gridrecourse.formulation.network import NetworkBlocks, SubstationMode, add_lindist3flow
from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.solvers.highs import LinearModel, Solution, VariableBlock
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "HOURS_PER_YEAR",
    "ExpansionBox",
    "ParametricLP",
    "StorageExpansionConfig",
    "StorageExpansionInputError",
    "StorageExpansionProblem",
    "StorageExpansionSolution",
    "capital_recovery_factor",
    "horizon_installation_cost",
    "solve_expansion_box",
]

HOURS_PER_YEAR = 8760.0
#: A bus is a load site when its nominal loads total more than this (kW).
_MIN_SITE_KW = 1e-9
#: Number of violations quoted in an infeasibility message.
_MAX_REPORTED = 5


class StorageExpansionInputError(GridRecourseError, ValueError):
    """The storage-expansion configuration or its inputs do not fit the feeder."""


def capital_recovery_factor(rate: float, years: float) -> float:
    """Capital-recovery factor ``r (1+r)^n / ((1+r)^n − 1)`` (1/n for r = 0), per year."""
    if years <= 0:
        raise StorageExpansionInputError(f"lifetime must be positive, got {years} years")
    if rate == 0:
        return 1.0 / years
    growth = (1.0 + rate) ** years
    return rate * growth / (growth - 1.0)


def horizon_installation_cost(
    capital_per_kwh: float, lifetime_years: float, discount_rate: float, horizon_hours: float
) -> float:
    """Capital cost annualized (capital-recovery factor) and prorated to a horizon.

    Parameters
    ----------
    capital_per_kwh : float
        Installed capital cost (currency/kWh).
    lifetime_years, discount_rate : float
    horizon_hours : float
        Length of the optimization horizon (h).

    Returns
    -------
    float
        Currency per kWh of capacity for the horizon (the ``c_j`` of paper A eq 19).
    """
    crf = capital_recovery_factor(discount_rate, lifetime_years)
    return capital_per_kwh * crf * horizon_hours / HOURS_PER_YEAR


@dataclass(frozen=True)
class StorageExpansionConfig:
    """Parameters of the storage-expansion LP (paper A eqs 7b–7e, 19).

    Attributes
    ----------
    n_hours : int
        τ, number of periods of the horizon.
    period_hours : float
        Δt, length of a period (h).
    candidate_buses : tuple of str or None
        Buses where a battery may be built. ``None``: every non-root 3-phase bus with load.
    installation_cost_per_kwh : float, tuple of float, or None
        ``c_j`` (currency/kWh of capacity for the whole horizon), one value or one per
        candidate. ``None``: :func:`horizon_installation_cost` of the three fields below.
    capital_cost_per_kwh, lifetime_years, discount_rate : float
        Capital cost (currency/kWh), lifetime (years) and discount rate used when
        ``installation_cost_per_kwh`` is ``None`` **(our choice: 150, 20, 0.05)**.
    c_rate_per_h : float
        Power limit per kWh of capacity (kW/kWh), charge and discharge (7b).
    soc_min, soc_max : float
        State-of-charge bounds as fractions of capacity (7e).
    round_trip_efficiency : float
        In (0, 1]; split equally into charge and discharge efficiency √η. 1 (paper A): lossless.
    max_capacity_kwh : float, tuple of float, or None
        Upper bound on each ``x_j`` (kWh), one value or one per candidate; ``inf``: none (the
        LP is unbounded when a price spread beats the installation cost and nothing else binds).
        ``None`` **(our choice)**: ``max_capacity_hours`` × the candidate bus's nominal load
        (the mean nominal site load for a candidate without load).
    max_capacity_hours : float
        Hours of nominal bus load used when ``max_capacity_kwh`` is ``None``.
    v_min, v_max : float
        Voltage band (p.u.).
    voltage_limits : LimitMode
        ``SOFT``: penalty ``voltage_penalty_per_pu_h`` per p.u. of v² outside the band per
        hour; ``HARD``: bounds; ``OFF`` (default, **our choice**, see the module docstring):
        no band.
    voltage_penalty_per_pu_h : float
    thermal_limits : LimitMode
        Branch thermal polygons (METHODS §1.4) where ratings are known; ``OFF`` by default.
    thermal_penalty_per_pu_h : float
        Cost of one p.u. of apparent power above a rating for one hour (``SOFT``).
    polygon_sides : int
    pv_curtailment : bool
        Allow PV below its availability (``False``, paper A: PV is a fixed injection).
    """

    n_hours: int = 24
    period_hours: float = 1.0
    candidate_buses: tuple[str, ...] | None = None
    installation_cost_per_kwh: float | tuple[float, ...] | None = None
    capital_cost_per_kwh: float = 150.0
    lifetime_years: float = 20.0
    discount_rate: float = 0.05
    c_rate_per_h: float = 0.5
    soc_min: float = 0.0
    soc_max: float = 1.0
    round_trip_efficiency: float = 1.0
    max_capacity_kwh: float | tuple[float, ...] | None = None
    max_capacity_hours: float = 4.0
    v_min: float = 0.95
    v_max: float = 1.05
    voltage_limits: LimitMode = LimitMode.OFF
    voltage_penalty_per_pu_h: float = 1.0e5
    thermal_limits: LimitMode = LimitMode.OFF
    thermal_penalty_per_pu_h: float = 1.0e4
    polygon_sides: int = DEFAULT_POLYGON_SIDES
    pv_curtailment: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "voltage_limits", LimitMode(self.voltage_limits))
        object.__setattr__(self, "thermal_limits", LimitMode(self.thermal_limits))
        if self.candidate_buses is not None:
            object.__setattr__(self, "candidate_buses", tuple(str(b) for b in self.candidate_buses))
        checks = [
            (self.n_hours >= 1 and int(self.n_hours) == self.n_hours, "n_hours must be >= 1"),
            (self.period_hours > 0, "period_hours must be > 0"),
            (self.c_rate_per_h > 0, "c_rate_per_h must be > 0"),
            (0.0 <= self.soc_min <= self.soc_max, "need 0 <= soc_min <= soc_max"),
            (self.soc_max > 0, "soc_max must be > 0"),
            (0.0 < self.round_trip_efficiency <= 1.0, "round_trip_efficiency must be in (0, 1]"),
            (self.max_capacity_hours > 0, "max_capacity_hours must be > 0"),
            (0.0 < self.v_min < self.v_max, "need 0 < v_min < v_max"),
            (self.voltage_penalty_per_pu_h > 0, "voltage_penalty_per_pu_h must be > 0"),
            (self.thermal_penalty_per_pu_h > 0, "thermal_penalty_per_pu_h must be > 0"),
            (self.polygon_sides >= 4, "polygon_sides must be >= 4"),
        ]
        for ok, message in checks:
            if not ok:
                raise StorageExpansionInputError(f"StorageExpansionConfig: {message}")
        for name in ("installation_cost_per_kwh", "max_capacity_kwh"):
            value = getattr(self, name)
            if isinstance(value, Sequence | np.ndarray):
                value = tuple(float(c) for c in value)
                object.__setattr__(self, name, value)
            if value is not None and (
                np.any(np.asarray(value, dtype=float) < 0)
                or np.any(np.isnan(np.asarray(value, dtype=float)))
            ):
                raise StorageExpansionInputError(f"StorageExpansionConfig: {name} must be >= 0")

    @property
    def horizon_hours(self) -> float:
        """τ Δt (h)."""
        return self.n_hours * self.period_hours

    @property
    def default_installation_cost_per_kwh(self) -> float:
        """The capital cost prorated to the horizon (currency/kWh); see the module docstring."""
        return horizon_installation_cost(
            self.capital_cost_per_kwh, self.lifetime_years, self.discount_rate, self.horizon_hours
        )


@dataclass(frozen=True, eq=False)
class StorageExpansionSolution:
    """Optimal (or fixed-capacity) solution of the storage-expansion LP.

    Attributes
    ----------
    candidate_buses : tuple of str
    capacity_kwh : dict of str to float
        Battery capacity per candidate bus (kWh).
    objective : float
        Optimal value (currency): installation + worst-case energy + penalties.
    installation_cost, energy_cost, penalty_cost : float
        ``cᵀx``; ``Σ_t Δt max(ȳ_P,t P0_t, y̲_P,t P0_t)``; voltage/thermal penalties (currency).
    import_kw : ndarray, shape (τ,)
        Substation active power P0_t (kW; negative = export).
    dispatch_kw : ndarray, shape (τ, n_candidates)
        Battery power (kW; positive = charging).
    soc_kwh : ndarray, shape (τ, n_candidates)
        End-of-period state of charge (kWh).
    v_pu : ndarray, shape (N, τ)
        Node voltage magnitudes (p.u.).
    grad_price_upper, grad_price_lower : ndarray, shape (τ,)
        ``∂V/∂ȳ_P`` = Δt P0⁺ ≥ 0 and ``∂V/∂y̲_P`` = −Δt P0⁻ ≤ 0 (MWh: currency per
        currency/MWh).
    grad_load_kw : ndarray, shape (τ, n_sites)
        ``∂V/∂ȳ_D`` (currency per kW), from the duals of the balance rows.
    balance_dual_p, balance_dual_q : ndarray, shape (τ, E)
        Duals of the active/reactive branch-phase balance rows (currency per p.u.).
    substation_dual : ndarray, shape (τ,)
        Dual of the substation balance rows (currency per p.u.).
    status : str
    solve_seconds : float
    """

    candidate_buses: tuple[str, ...]
    capacity_kwh: dict[str, float]
    objective: float
    installation_cost: float
    energy_cost: float
    penalty_cost: float
    import_kw: np.ndarray
    dispatch_kw: np.ndarray
    soc_kwh: np.ndarray
    v_pu: np.ndarray
    grad_price_upper: np.ndarray
    grad_price_lower: np.ndarray
    grad_load_kw: np.ndarray
    balance_dual_p: np.ndarray
    balance_dual_q: np.ndarray
    substation_dual: np.ndarray
    status: str
    solve_seconds: float

    @property
    def capacity_vector_kwh(self) -> np.ndarray:
        """Capacities (kWh) in the order of :attr:`candidate_buses`."""
        return np.array([self.capacity_kwh[b] for b in self.candidate_buses])

    @property
    def total_capacity_kwh(self) -> float:
        """Sum of the capacities (kWh)."""
        return float(sum(self.capacity_kwh.values()))

    @property
    def dispatch(self) -> np.ndarray:
        """Alias of :attr:`dispatch_kw`."""
        return self.dispatch_kw


@dataclass(frozen=True, eq=False)
class ParametricLP:
    """The LP as data, affine in the uncertain parameters (for cross-checks, e.g. cvxpy).

    ``min (cost + C_u ȳ_P + C_l y̲_P)ᵀ z`` s.t. ``row_lb + K ȳ_D ≤ A z ≤ row_ub + K ȳ_D``,
    ``col_lb ≤ z ≤ col_ub``, with ``ȳ_D`` the loads flattened hour-major (``load.ravel()``,
    kW) and prices in currency/MWh.
    """

    a: sp.csr_matrix
    cost: np.ndarray
    cost_price_upper: sp.csr_matrix
    cost_price_lower: sp.csr_matrix
    row_lb: np.ndarray
    row_ub: np.ndarray
    rhs_load: sp.csr_matrix
    col_lb: np.ndarray
    col_ub: np.ndarray
    capacity_columns: np.ndarray


@dataclass(frozen=True, eq=False)
class _Built:
    """A built LP and the handles of its formulation blocks (re-solved per box)."""

    model: LinearModel
    capacity: VariableBlock
    battery: Battery
    pv: VariableBlock
    network: NetworkBlocks


#: Balance blocks whose right-hand sides carry the load.
_LOAD_BLOCKS = ("branch-p_balance", "branch-q_balance", "substation-p_balance")


class StorageExpansionProblem:
    """Paper A's single-stage storage-expansion LP (eq 19), built once, re-solved per box.

    Parameters
    ----------
    math : MathFeeder
        Per-unit radial feeder (e.g. from ``prepare_for_linear_model`` + ``build_math_feeder``).
    config : StorageExpansionConfig, optional
    solver_options : SolverOptions, optional

    Attributes
    ----------
    load_sites : tuple of str
        Buses with load, in the column order of every ``(τ, n_sites)`` load/PV array.
    nominal_load_kw : ndarray, shape (n_sites,)
        The feeder's nominal load per site (kW), e.g. to scale a load profile.
    candidate_buses : tuple of str
        Buses where a battery may be built, in the order of capacity vectors.
    installation_cost_per_kwh : ndarray, shape (n_candidates,)
        ``c_j`` (currency/kWh of capacity for the horizon).
    max_capacity_kwh : ndarray, shape (n_candidates,)
        Upper bounds on the capacities (kWh).
    build_seconds : float

    Raises
    ------
    StorageExpansionInputError
        Unknown, root or de-energized candidate bus; no load on the feeder; wrong number of
        installation costs.
    """

    def __init__(
        self,
        math: MathFeeder,
        config: StorageExpansionConfig | None = None,
        solver_options: SolverOptions | None = None,
    ):
        t0 = time.perf_counter()
        self.math = math
        self.config = config or StorageExpansionConfig()
        self.solver_options = solver_options
        self.physics = LinDist3Flow(math)
        self._layout_sites()
        self._layout_candidates()
        self._fixed_injection_pu = self._fixed_injections()
        self._load_rhs = self._load_operators()
        self._main = self._build(fixed_capacity=False)
        self._fixed: _Built | None = None
        self.build_seconds = time.perf_counter() - t0

    # ----------------------------------------------------------------------------------------
    # Layout
    # ----------------------------------------------------------------------------------------
    @property
    def n_hours(self) -> int:
        """τ, number of periods."""
        return int(self.config.n_hours)

    @property
    def n_sites(self) -> int:
        """Number of load sites."""
        return len(self.load_sites)

    @property
    def n_candidates(self) -> int:
        """Number of candidate buses."""
        return len(self.candidate_buses)

    @property
    def lp_shape(self) -> tuple[int, int]:
        """(rows, columns) of the optimization LP."""
        return self._main.model.n_rows, self._main.model.n_cols

    @property
    def factory(self) -> partial:
        """A picklable zero-argument callable building an equal problem (executor state)."""
        return partial(StorageExpansionProblem, self.math, self.config, self.solver_options)

    def _layout_sites(self) -> None:
        math = self.math
        n_bus = len(math.bus_names)
        s_nom = np.asarray(math.load_map @ (math.load_kw + 1j * math.load_kvar)).ravel()
        bus_kw = np.bincount(math.node_bus, weights=s_nom.real, minlength=n_bus)
        sites = np.flatnonzero(bus_kw > _MIN_SITE_KW)
        if len(sites) == 0:
            raise StorageExpansionInputError(
                f"feeder {math.name!r} has no load with positive kW: no load site to size for"
            )
        site_of_bus = np.full(n_bus, -1)
        site_of_bus[sites] = np.arange(len(sites))
        node_site = site_of_bus[math.node_bus]
        nodes = np.flatnonzero((node_site >= 0) & (s_nom != 0))
        n = math.n_nodes
        #: (N, S) complex: node load (kW, kvar) per kW of site load
        self._site_map = sp.csr_matrix(
            (s_nom[nodes] / bus_kw[math.node_bus[nodes]], (nodes, node_site[nodes])),
            shape=(n, len(sites)),
        )
        self._bus_phases = np.bincount(math.node_bus, minlength=n_bus)
        at_site = np.flatnonzero(node_site >= 0)
        #: (N, S) real: PV per kW of site PV, spread equally over the bus's phases
        self._pv_site_map = sp.csr_matrix(
            (
                1.0 / self._bus_phases[math.node_bus[at_site]],
                (at_site, node_site[at_site]),
            ),
            shape=(n, len(sites)),
        )
        self.load_sites: tuple[str, ...] = tuple(math.bus_names[b] for b in sites)
        self.nominal_load_kw: np.ndarray = bus_kw[sites]
        self._site_bus = sites

    def _layout_candidates(self) -> None:
        math, config = self.math, self.config
        index = {name: i for i, name in enumerate(math.bus_names)}
        root_buses = set(math.node_bus[math.is_root].tolist())
        if config.candidate_buses is None:
            buses = [b for b in self._site_bus if self._bus_phases[b] == 3 and b not in root_buses]
            if not buses:
                raise StorageExpansionInputError(
                    f"feeder {math.name!r} has no non-root 3-phase bus with load; pass "
                    "candidate_buses explicitly"
                )
        else:
            if len(config.candidate_buses) == 0:
                raise StorageExpansionInputError("candidate_buses is empty")
            unknown = [b for b in config.candidate_buses if b not in index]
            if unknown:
                raise StorageExpansionInputError(
                    f"candidate buses {unknown} are not buses of feeder {math.name!r} "
                    f"(buses with load: {list(self.load_sites)[:20]})"
                )
            buses = [index[b] for b in config.candidate_buses]
            if len(set(buses)) != len(buses):
                raise StorageExpansionInputError(
                    f"candidate_buses has duplicates: {list(config.candidate_buses)}"
                )
            bad_root = [math.bus_names[b] for b in buses if b in root_buses]
            if bad_root:
                raise StorageExpansionInputError(
                    f"candidate buses {bad_root} are substation (root) buses of "
                    f"{math.name!r}; a battery there does not change the feeder's flows"
                )
            dead = [math.bus_names[b] for b in buses if self._bus_phases[b] == 0]
            if dead:
                raise StorageExpansionInputError(
                    f"candidate buses {dead} of {math.name!r} are not energized"
                )
        buses_arr = np.asarray(buses, dtype=int)
        self.candidate_buses: tuple[str, ...] = tuple(math.bus_names[b] for b in buses_arr)
        cand_of_bus = np.full(len(math.bus_names), -1)
        cand_of_bus[buses_arr] = np.arange(len(buses_arr))
        node_cand = cand_of_bus[math.node_bus]
        nodes = np.flatnonzero(node_cand >= 0)
        #: (N, J): node power per unit of battery power, equal split over the bus's phases
        self._bess_map = sp.csr_matrix(
            (1.0 / self._bus_phases[math.node_bus[nodes]], (nodes, node_cand[nodes])),
            shape=(math.n_nodes, len(buses_arr)),
        )
        cost = config.installation_cost_per_kwh
        if cost is None:
            cost = config.default_installation_cost_per_kwh
        self.installation_cost_per_kwh = self._per_candidate("installation_cost_per_kwh", cost)
        cap = config.max_capacity_kwh
        if cap is None:
            bus_kw = np.zeros(len(math.bus_names))
            bus_kw[self._site_bus] = self.nominal_load_kw
            own = bus_kw[buses_arr]
            cap = config.max_capacity_hours * np.where(own > 0, own, self.nominal_load_kw.mean())
        self.max_capacity_kwh = self._per_candidate("max_capacity_kwh", cap)

    def _per_candidate(self, name: str, value) -> np.ndarray:
        arr = np.asarray(value, dtype=float)
        if arr.ndim == 1 and len(arr) != self.n_candidates:
            raise StorageExpansionInputError(
                f"{name} has {len(arr)} values for {self.n_candidates} candidate buses "
                f"{list(self.candidate_buses)}"
            )
        return np.broadcast_to(arr, (self.n_candidates,)).copy()

    def _fixed_injections(self) -> np.ndarray:
        """Net load (p.u., complex, (N,)) of the feeder's own generators, storage and PV."""
        m = self.math
        p, q = fixed_net_load(m, np.zeros_like(m.load_kw), np.zeros_like(m.load_kvar))
        return p + 1j * q

    def _net_load_pu(self, load_kw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fixed net load per node and hour (p.u., (N, τ) each) at site loads ``(τ, S)`` kW.

        The feeder's own injections plus the site loads (reactive at the nominal power factor);
        the site PV is a decision of the LP (``pv-p``) and is not included.
        """
        s = (self._site_map @ load_kw.T) / self.math.s_base_kva
        fixed = self._fixed_injection_pu[:, None]
        return np.asarray(s.real + fixed.real), np.asarray(s.imag + fixed.imag)

    def _load_operators(self) -> dict[str, sp.csr_matrix]:
        """Sparse maps from loads (kW, hour-major flat) to each balance block's rhs (p.u.)."""
        ph, t_eye = self.physics, sp.identity(self.n_hours, format="csr")
        s = self.math.s_base_kva
        site = self._site_map
        root = sp.csr_matrix(np.ones((1, len(ph.root)))) @ site[ph.root]
        return {
            "branch-p_balance": sp.kron(t_eye, site[ph.nonroot].real / s, format="csr"),
            "branch-q_balance": sp.kron(t_eye, site[ph.nonroot].imag / s, format="csr"),
            "substation-p_balance": sp.kron(t_eye, root.real / s, format="csr"),
        }

    # ----------------------------------------------------------------------------------------
    # Model
    # ----------------------------------------------------------------------------------------
    def _build(self, *, fixed_capacity: bool) -> _Built:
        """Assemble the LP from the formulation blocks (each a sparse matrix ⊗ I_T).

        Columns: ``bess-capacity`` x (MWh), the battery block (7b–7e), ``pv-p`` (site PV), the
        LinDist3Flow block with ``substation-import``/``-export`` (P0⁺, P0⁻), then the
        voltage band and thermal polygon (6b, 6c). ``fixed_capacity`` only names the model;
        :meth:`evaluate` fixes x through its bounds.
        """
        math, cfg = self.math, self.config
        T, J, S = self.n_hours, self.n_candidates, self.n_sites
        dt = cfg.period_hours
        name = f"storage-expansion-{math.name}" + ("-fixed-x" if fixed_capacity else "")
        m = LinearModel(name)
        x = m.add_variables(
            "bess-capacity",
            J,
            lb=0.0,
            ub=self.max_capacity_kwh / 1000.0,
            cost=self.installation_cost_per_kwh * 1000.0,  # currency per MWh of capacity
        )
        params = BatteryParameters.uniform(
            J,
            dt,
            round_trip_efficiency=cfg.round_trip_efficiency,
            soc_min=cfg.soc_min,
            soc_max=cfg.soc_max,
            c_rate=cfg.c_rate_per_h,
        )
        battery = add_battery(m, T, params, x)
        pv = m.add_variables("pv-p", S * T, lb=0.0, ub=0.0)
        v_lb = {LimitMode.HARD: 0.0, LimitMode.SOFT: 0.0, LimitMode.OFF: -np.inf}
        net = add_lindist3flow(
            m,
            self.physics,
            T,
            (*battery.injections(self._bess_map), Injection.active(pv, self._pv_site_map)),
            v_bounds=(v_lb[cfg.voltage_limits], np.inf),
            substation=SubstationMode.IMPORT_EXPORT,
        )
        add_voltage_band(
            m,
            net,
            cfg.v_min,
            cfg.v_max,
            cfg.voltage_limits,
            penalty=cfg.voltage_penalty_per_pu_h * dt,
        )
        add_thermal_polygon(
            m,
            net,
            math.rating_pu[self.physics.nonroot],
            cfg.thermal_limits,
            n_sides=cfg.polygon_sides,
            penalty=cfg.thermal_penalty_per_pu_h * dt,
        )
        zero_load = np.zeros((self.n_sites, T))
        net.set_rhs(m, net.rhs(*self._net_load_pu(zero_load.T)))
        return _Built(model=m, capacity=x, battery=battery, pv=pv, network=net)

    def _apply(
        self,
        built: _Built,
        price_upper: np.ndarray,
        price_lower: np.ndarray,
        load_kw: np.ndarray,
        pv_kw: np.ndarray,
    ) -> None:
        """Write one box into a built model: costs (prices), rhs (loads), bounds (PV)."""
        dt = self.config.period_hours
        m, net = built.model, built.network
        imports, exports = net.substation
        m.set_cost(imports, dt * price_upper)
        m.set_cost(exports, -dt * price_lower)
        net.set_rhs(m, net.rhs(*self._net_load_pu(load_kw)))
        avail = pv_kw.ravel() / self.math.s_base_kva
        m.set_col_bounds(built.pv, 0.0 if self.config.pv_curtailment else avail, avail)

    # ----------------------------------------------------------------------------------------
    # Inputs
    # ----------------------------------------------------------------------------------------
    def _series(self, name: str, value, shape: tuple[int, ...], nonneg: bool) -> np.ndarray:
        arr = np.asarray(value, dtype=float)
        if arr.shape != shape:
            raise InvalidSeriesError(
                f"{name} must have shape {shape} (τ = {self.n_hours} hours"
                + (
                    f", {self.n_sites} load sites {list(self.load_sites)[:8]}"
                    if len(shape) > 1
                    else ""
                )
                + f"), got {arr.shape}"
            )
        bad = ~np.isfinite(arr)
        if bad.any():
            idx = np.argwhere(bad)[0]
            raise InvalidSeriesError(f"{name}{list(idx)} is {arr[tuple(idx)]}; expected finite")
        if nonneg and np.any(arr < 0):
            idx = np.argwhere(arr < 0)[0]
            raise InvalidSeriesError(f"{name}{list(idx)} = {arr[tuple(idx)]} is negative")
        return arr

    def _inputs(
        self, price_upper, price_lower, load_kw, pv_kw
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        T, S = self.n_hours, self.n_sites
        pu = self._series("price_upper", price_upper, (T,), nonneg=False)
        pl = self._series("price_lower", price_lower, (T,), nonneg=False)
        crossed = np.flatnonzero(pu < pl)
        if len(crossed):
            t = int(crossed[0])
            raise InvalidSeriesError(
                f"price box is crossed at hour {t}: price_upper {pu[t]} < price_lower {pl[t]} "
                f"({len(crossed)} hours); the LP would be unbounded"
            )
        load = self._series("load_upper_kw", load_kw, (T, S), nonneg=False)
        pv = (
            np.zeros((T, S)) if pv_kw is None else self._series("pv_kw", pv_kw, (T, S), nonneg=True)
        )
        return pu, pl, load, pv

    def _capacity_vector(self, capacity_kwh) -> np.ndarray:
        if isinstance(capacity_kwh, Mapping):
            unknown = set(capacity_kwh) - set(self.candidate_buses)
            if unknown:
                raise StorageExpansionInputError(
                    f"capacity given for non-candidate buses {sorted(unknown)}; candidates: "
                    f"{list(self.candidate_buses)}"
                )
            cap = np.array([float(capacity_kwh.get(bus, 0.0)) for bus in self.candidate_buses])
        else:
            cap = np.asarray(capacity_kwh, dtype=float).ravel()
            if cap.shape != (self.n_candidates,):
                raise StorageExpansionInputError(
                    f"capacity_kwh must have {self.n_candidates} values (candidates "
                    f"{list(self.candidate_buses)}), got {cap.shape}"
                )
        if not np.all(np.isfinite(cap)) or np.any(cap < 0):
            raise StorageExpansionInputError(f"capacity_kwh must be finite and >= 0, got {cap}")
        return cap

    # ----------------------------------------------------------------------------------------
    # Solve
    # ----------------------------------------------------------------------------------------
    def solve(
        self,
        price_upper: np.ndarray,
        price_lower: np.ndarray,
        load_upper_kw: np.ndarray,
        pv_kw: np.ndarray | None = None,
    ) -> StorageExpansionSolution:
        """Solve eq 19 at a box: size the batteries against the worst case.

        Parameters
        ----------
        price_upper, price_lower : ndarray, shape (τ,)
            ȳ_P and y̲_P (currency/MWh); ``price_upper >= price_lower``.
        load_upper_kw : ndarray, shape (τ, n_sites)
            ȳ_D, upper loads per load site (kW), columns in the order of :attr:`load_sites`.
        pv_kw : ndarray, shape (τ, n_sites), optional
            PV availability per load site (kW); default 0.

        Returns
        -------
        StorageExpansionSolution

        Raises
        ------
        InvalidSeriesError
            Wrong shape, non-finite values, crossed price box, negative PV.
        InfeasibleModelError
            No capacity/dispatch meets the hard limits at the box; the message names the
            feeder and the hours/nodes that violate them without storage.
        """
        pu, pl, load, pv = self._inputs(price_upper, price_lower, load_upper_kw, pv_kw)
        self._apply(self._main, pu, pl, load, pv)
        return self._solve(self._main, pu, pl, load, pv, "box")

    def evaluate(
        self,
        capacity_kwh: np.ndarray | Mapping[str, float],
        price: np.ndarray,
        load_kw: np.ndarray,
        pv_kw: np.ndarray | None = None,
    ) -> StorageExpansionSolution:
        """Optimal dispatch of a *fixed* capacity against realized prices and loads.

        A second LP (built on first use) equal to eq 19 with ``x`` fixed and a degenerate price
        box ``[price, price]``. See :meth:`realized_cost`.
        """
        cap = self._capacity_vector(capacity_kwh)
        pu, pl, load, pv = self._inputs(price, price, load_kw, pv_kw)
        if self._fixed is None:
            self._fixed = self._build(fixed_capacity=True)
        self._fixed.model.set_col_bounds(self._fixed.capacity, cap / 1000.0, cap / 1000.0)
        self._apply(self._fixed, pu, pl, load, pv)
        return self._solve(self._fixed, pu, pl, load, pv, "realized data with fixed capacity")

    def realized_cost(
        self,
        capacity_kwh: np.ndarray | Mapping[str, float],
        price: np.ndarray,
        load_kw: np.ndarray,
        pv_kw: np.ndarray | None = None,
    ) -> float:
        """``cᵀx`` + optimal dispatch cost of capacity ``x`` on realized data (currency).

        Parameters
        ----------
        capacity_kwh : ndarray (n_candidates,) or mapping bus → kWh
            The decision to score (missing buses of a mapping: 0).
        price : ndarray, shape (τ,)
            Realized price (currency/MWh); imports and exports are settled at it.
        load_kw, pv_kw : ndarray, shape (τ, n_sites)
            Realized loads and PV (kW).

        Returns
        -------
        float
            Installation + energy cost + penalties of the best dispatch with ``x`` fixed.
        """
        return self.evaluate(capacity_kwh, price, load_kw, pv_kw).objective

    def parametric_form(self, pv_kw: np.ndarray | None = None) -> ParametricLP:
        """The LP of :meth:`solve` as data affine in (ȳ_P, y̲_P, ȳ_D), PV fixed to ``pv_kw``."""
        T = self.n_hours
        zeros_t = np.zeros(T)
        _, _, load, pv = self._inputs(zeros_t, zeros_t, np.zeros((T, self.n_sites)), pv_kw)
        built = self._build(fixed_capacity=False)
        self._apply(built, zeros_t, zeros_t, load, pv)
        model, net = built.model, built.network
        a = model.matrix().tocsr()
        dt = self.config.period_hours
        n_cols, n_rows = model.n_cols, model.n_rows
        imp, exp = (block.indices for block in net.substation)
        cu = sp.csr_matrix((np.full(T, dt), (imp, np.arange(T))), shape=(n_cols, T))
        cl = sp.csr_matrix((np.full(T, -dt), (exp, np.arange(T))), shape=(n_cols, T))
        blocks = [self._load_rhs[name] for name in _LOAD_BLOCKS]
        starts = [model.constraints[name].start for name in _LOAD_BLOCKS]
        rows = [sp.coo_matrix(k) for k in blocks]
        k_all = sp.csr_matrix(
            (
                np.concatenate([r.data for r in rows]),
                (
                    np.concatenate([r.row + s0 for r, s0 in zip(rows, starts, strict=True)]),
                    np.concatenate([r.col for r in rows]),
                ),
            ),
            shape=(n_rows, T * self.n_sites),
        )
        cols, rows_all = model.columns(), model.rows()
        return ParametricLP(
            a=a,
            cost=cols.cost,
            cost_price_upper=cu,
            cost_price_lower=cl,
            row_lb=rows_all.lb,
            row_ub=rows_all.ub,
            rhs_load=k_all,
            col_lb=cols.lb,
            col_ub=cols.ub,
            capacity_columns=built.capacity.indices,
        )

    def _solve(
        self,
        built: _Built,
        pu: np.ndarray,
        pl: np.ndarray,
        load: np.ndarray,
        pv: np.ndarray,
        what: str,
    ) -> StorageExpansionSolution:
        try:
            sol = built.model.solve(self.solver_options)
        except InfeasibleModelError as exc:
            raise InfeasibleModelError(self._infeasibility_message(load, pv, what)) from exc
        return self._result(built, sol, pu, pl)

    def _result(
        self, built: _Built, sol: Solution, pu: np.ndarray, pl: np.ndarray
    ) -> StorageExpansionSolution:
        T, J, e = self.n_hours, self.n_candidates, self.physics.n_branch_phases
        dt = self.config.period_hours
        net, bess = built.network, built.battery
        x_mwh = sol.value(built.capacity)
        p_in, p_out = (sol.value(block) for block in net.substation)
        dispatch = (sol.value(bess.charge) - sol.value(bess.discharge)).reshape(T, J)
        duals = {name: sol.dual(built.model.constraints[name]) for name in _LOAD_BLOCKS}
        grad_load = sum(self._load_rhs[name].T @ duals[name] for name in _LOAD_BLOCKS)
        installation = float(self.installation_cost_per_kwh @ x_mwh * 1000.0)
        energy = float(dt * (pu @ p_in - pl @ p_out))
        vsq = sol.value(net.v).reshape(T, e).T
        v = np.empty((self.math.n_nodes, T))
        v[self.physics.root] = self.math.root_v_pu[self.physics.root][:, None]
        v[self.physics.nonroot] = np.sqrt(np.maximum(vsq, 0.0))
        cap = np.maximum(x_mwh * 1000.0, 0.0)
        return StorageExpansionSolution(
            candidate_buses=self.candidate_buses,
            capacity_kwh={bus: float(c) for bus, c in zip(self.candidate_buses, cap, strict=True)},
            objective=sol.objective,
            installation_cost=installation,
            energy_cost=energy,
            penalty_cost=float(sol.objective - installation - energy),
            import_kw=(p_in - p_out) * 1000.0,
            dispatch_kw=dispatch * 1000.0,
            soc_kwh=sol.value(bess.soc).reshape(T, J) * 1000.0,
            v_pu=v,
            grad_price_upper=dt * p_in,
            grad_price_lower=-dt * p_out,
            grad_load_kw=np.asarray(grad_load).reshape(T, self.n_sites),
            balance_dual_p=duals["branch-p_balance"].reshape(T, e),
            balance_dual_q=duals["branch-q_balance"].reshape(T, e),
            substation_dual=duals["substation-p_balance"].copy(),
            status=sol.status,
            solve_seconds=sol.solve_seconds,
        )

    def _infeasibility_message(self, load: np.ndarray, pv: np.ndarray, what: str) -> str:
        """Name the hours/nodes that break hard limits without storage (a diagnosis)."""
        math, ph, cfg = self.math, self.physics, self.config
        p, q = self._net_load_pu(load)
        p = p - (self._pv_site_map @ pv.T) / math.s_base_kva
        flow = ph.solve(p, q)
        head = (
            f"storage-expansion LP on feeder {math.name!r} is infeasible at the {what} "
            f"(τ = {self.n_hours} h, candidates {list(self.candidate_buses)})"
        )
        found: list[str] = []
        bad_hours: set[int] = set()
        names = math.node_names
        if cfg.voltage_limits is LimitMode.HARD:
            v = flow.v_pu[ph.nonroot]
            dist = np.maximum(v - cfg.v_max, 0.0) + np.maximum(cfg.v_min - v, 0.0)
            bad_hours.update(np.flatnonzero((dist > 1e-9).any(axis=0)).tolist())
            worst = np.argsort(dist, axis=None)[::-1][:_MAX_REPORTED]
            for flat in worst:
                node, hour = np.unravel_index(flat, dist.shape)
                if dist[node, hour] > 1e-9:
                    found.append(
                        f"hour {hour}: bus {math.bus_names[math.node_bus[ph.nonroot[node]]]} "
                        f"(node {names[ph.nonroot[node]]}) at {v[node, hour]:.4f} p.u. outside "
                        f"[{cfg.v_min}, {cfg.v_max}]"
                    )
        if cfg.thermal_limits is LimitMode.HARD:
            rating = math.rating_pu[ph.nonroot][:, None]
            s_flow = np.hypot(flow.p_flow_pu[ph.nonroot], flow.q_flow_pu[ph.nonroot])
            loading = np.where(np.isfinite(rating), s_flow / rating, 0.0)
            bad_hours.update(np.flatnonzero((loading > 1.0).any(axis=0)).tolist())
            worst = np.argsort(loading, axis=None)[::-1][:_MAX_REPORTED]
            for flat in worst:
                node, hour = np.unravel_index(flat, loading.shape)
                if loading[node, hour] > 1.0:
                    branch = math.branch_names[math.branch_of_node[ph.nonroot[node]]]
                    found.append(
                        f"hour {hour}: {branch} (node {names[ph.nonroot[node]]}) loaded "
                        f"{100 * loading[node, hour]:.0f} % of its rating"
                    )
        if found:
            return (
                f"{head}: without storage, LinDist3Flow at these loads violates the hard limits "
                f"in hours {sorted(bad_hours)}, worst at {'; '.join(found)}; batteries of "
                f"C-rate {cfg.c_rate_per_h}/h cannot restore them"
            )
        return (
            f"{head}: no hard limit is violated without storage; check the battery parameters "
            f"(SOC bounds {cfg.soc_min}–{cfg.soc_max}, C-rate {cfg.c_rate_per_h}/h)"
        )


@dataclass(frozen=True, eq=False)
class ExpansionBox:
    """One box (a light, picklable task for :meth:`gridrecourse.execution.Executor.map`).

    Attributes
    ----------
    price_upper, price_lower : ndarray, shape (τ,)
        Currency/MWh.
    load_upper_kw : ndarray, shape (τ, n_sites)
    pv_kw : ndarray, shape (τ, n_sites) or None
    """

    price_upper: np.ndarray
    price_lower: np.ndarray
    load_upper_kw: np.ndarray
    pv_kw: np.ndarray | None = None


def solve_expansion_box(
    problem: StorageExpansionProblem, box: ExpansionBox
) -> StorageExpansionSolution:
    """Solve one box on a (worker's) problem: the task function for ``Executor.map``."""
    return problem.solve(box.price_upper, box.price_lower, box.load_upper_kw, box.pv_kw)
