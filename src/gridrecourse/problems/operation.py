"""Day-ahead operation: DGs, storage, purchases and real-time recourse (paper D, METHODS §6).

**First stage** ``x`` (24 hourly periods, at the forecast net load ``ξ̃ = p^L − p^PV``):
DG outputs ``p^G`` within ``[p̲, p̄]`` and ramps ``RU, RD`` (eqs 2a–2c), storage charge /
discharge with mode binaries, efficiency and energy limits (eqs 3a–3d,
:func:`~gridrecourse.formulation.battery.add_battery`, Table II ratings), purchases
``p^S ≥ 0``; the plan must satisfy the network at the forecast (eqs 4–5; here the full lossy
LinDist3Flow with the voltage band and thermal limits, a superset of the paper's active balance
and flow limits, so the plan itself is physically feasible). Cost (eq 1)::

    Λ1 = Σ_t Δt (Σ_i c_i p^G_i,t + d_t p^S_t)

**Second stage** ``y`` for a realized net load ``ξ`` (eqs 6–9): DG adjustment
``Δp = up − down`` with ``up ≤ ω̄``, ``down ≤ ω̲`` (7a), reactive output ``q^G ∈ [q̲, q̄]``
(7b), adjusted output ``p' = p^G + Δp ∈ [p̲, p̄]`` with ramps on ``p'`` (7c–7e), purchase
adjustment ``p'^S = p^S + buy − sell`` (the substation may feed back), lossy DistFlow with
voltage and thermal limits (8a–8f, 9a–9b; :func:`~gridrecourse.formulation.network.add_lindist3flow`
with loss-corrected right-hand sides, METHODS §1.5). Loads keep their power factor (8e); PV runs
at unity power factor. Cost (eq 6, split by direction **(our choice)**: up-regulation and extra
purchases cost ``(1 + π)`` times the first-stage price, down-regulation and sold-back energy
refund ``(1 − π)`` times it, ``π = recourse_premium``)::

    Λ2 = Σ_t Δt (Σ_i c_i ((1+π) up_i,t − (1−π) down_i,t) + d_t ((1+π) buy_t − (1−π) sell_t))

**One model, several copies of the network.** The plan (slot 0, adjustments fixed to zero) and
``C`` recourse copies (slots 1..C, one per scenario or worst-case corner) share one
LinDist3Flow block over ``T·(1 + C)`` periods (period-major: slot ``s``, hour ``t`` is period
``s·T + t``), so every row is written once as ``I ⊗ M`` (no Python loop over buses, phases,
hours or copies). The uncertain net load enters through columns ``xi-load`` (load multiplier
of each load source, ``K_L`` per period) and ``xi-pv`` (PV per unit of rating of each PV source,
``K_PV`` per period); the methods (:mod:`gridrecourse.methods.igdt`) fix them by bounds (DT,
evaluation) or tie them to ``δ`` (IGDT) or to the switched confidence-level sets (CL-DIGDT).

Losses (eq 8f) are fixed terms of the right-hand sides evaluated at a reference operating point
(:meth:`~gridrecourse.physics.lindistflow.LinDist3Flow.loss_terms`): the optimization models
use the forecast net load with the DT dispatch; the evaluation of a schedule uses each
scenario's net load with the schedule's planned injections.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import FeederInputError, InvalidSeriesError
from gridrecourse.formulation.battery import Battery, BatteryParameters, add_battery
from gridrecourse.formulation.injections import Injection, fixed_net_load
from gridrecourse.formulation.limits import (
    DEFAULT_POLYGON_SIDES,
    LimitMode,
    add_thermal_polygon,
    add_voltage_band,
)
from gridrecourse.formulation.network import NetworkBlocks, SubstationMode, add_lindist3flow
from gridrecourse.formulation.periods import by_period, over_periods, tile_periods
from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import LinDist3Flow, LossTerms
from gridrecourse.solvers.highs import ConstraintBlock, LinearModel, Solution, VariableBlock

__all__ = [
    "CASE33BW_SITES",
    "IEEE123_SITES",
    "PAPER_D_DGS",
    "PAPER_D_STORAGE",
    "DispatchableGenerator",
    "FirstStageSchedule",
    "NetLoadCorner",
    "OperationCase",
    "OperationData",
    "OperationModel",
    "PVPlant",
    "StorageUnit",
    "build_operation_model",
    "bundled_operation_data",
    "default_case",
    "default_operating_point",
]

HOURS = 24


class NetLoadCorner(str, Enum):
    """A corner of a box of load and PV values (where a worst case may lie)."""

    #: loads at the top of their sets, PV at the bottom: the highest net load (paper D §III-C)
    HIGH = "high"
    #: loads at the bottom, PV at the top: the lowest net load (reverse flow, over-voltage)
    LOW = "low"


@dataclass(frozen=True)
class DispatchableGenerator:
    """A DG of paper D Table I at a bus (kW, kvar, $/MWh).

    Attributes
    ----------
    name, bus : str
    p_max_kw, p_min_kw : float
        p̄, p̲ (2a).
    ramp_up_kw, ramp_down_kw : float
        RU, RD per period (2b, 2c).
    q_max_kvar, q_min_kvar : float
        q̄, q̲ (7b).
    cost_per_mwh : float
        c (eq 1; Table I's "c ($)" read as $/MWh, **our reading**).
    """

    name: str
    bus: str
    p_max_kw: float
    p_min_kw: float
    ramp_up_kw: float
    ramp_down_kw: float
    q_max_kvar: float
    q_min_kvar: float
    cost_per_mwh: float

    def __post_init__(self) -> None:
        if not 0 <= self.p_min_kw <= self.p_max_kw:
            raise FeederInputError(f"DG {self.name!r}: need 0 <= p_min <= p_max")
        if self.q_min_kvar > self.q_max_kvar or self.ramp_up_kw < 0 or self.ramp_down_kw < 0:
            raise FeederInputError(f"DG {self.name!r}: need q_min <= q_max and ramps >= 0")


@dataclass(frozen=True)
class StorageUnit:
    """An ESS of paper D Table II at a bus (kW, kWh).

    Attributes
    ----------
    charge_max_kw, discharge_max_kw : float
    energy_max_kwh, energy_min_kwh : float
    efficiency : float
        η (charging and discharging).
    """

    name: str
    bus: str
    charge_max_kw: float
    discharge_max_kw: float
    energy_max_kwh: float
    energy_min_kwh: float
    efficiency: float


@dataclass(frozen=True)
class PVPlant:
    """A PV plant at a bus (kW rating, unity power factor)."""

    name: str
    bus: str
    rating_kw: float


#: Paper D Table I (p̄, p̲, RU, RD, q̄, q̲, c); buses set per feeder.
PAPER_D_DGS: tuple[tuple, ...] = (
    ("DG1", 600.0, 100.0, 100.0, 100.0, 500.0, -400.0, 40.0),
    ("DG2", 400.0, 100.0, 90.0, 90.0, 300.0, -200.0, 35.0),
    ("DG3", 250.0, 80.0, 60.0, 60.0, 200.0, -150.0, 25.0),
    ("DG4", 50.0, 10.0, 15.0, 15.0, 40.0, -25.0, 20.0),
)
#: Paper D Table II (p̄ch, p̄dis, ē, e̲, η); buses set per feeder.
PAPER_D_STORAGE: tuple[tuple, ...] = (
    ("ESS1", 120.0, 120.0, 600.0, 120.0, 0.9),
    ("ESS2", 40.0, 40.0, 200.0, 40.0, 0.9),
    ("ESS3", 60.0, 60.0, 300.0, 60.0, 0.9),
    ("ESS4", 80.0, 80.0, 400.0, 80.0, 0.9),
)

#: Device buses on ``case33bw`` (feeder bus names, 0-based; Baran–Wu number = name + 1),
#: **our choice** (paper D's Fig. 4 is not legible): DGs at the ends and middles of the long
#: laterals, ESS next to them, six 300 kW PV plants spread over the feeder.
CASE33BW_SITES: dict[str, tuple[str, ...]] = {
    "dg": ("11", "24", "29", "16"),
    "storage": ("13", "21", "27", "31"),
    "pv": ("9", "17", "21", "24", "28", "32"),
}
#: Device buses on ``ieee123`` (**our choice**, three-phase buses spread over the feeder).
IEEE123_SITES: dict[str, tuple[str, ...]] = {
    "dg": ("13", "60", "76", "101"),
    "storage": ("18", "67", "72", "105"),
    "pv": ("25", "44", "52", "86", "97", "108"),
}
_SITES = {"case33bw": CASE33BW_SITES, "ieee123": IEEE123_SITES}


@dataclass(frozen=True)
class OperationCase:
    """The devices, limits and prices of one operation problem.

    Attributes
    ----------
    dgs : tuple of DispatchableGenerator
    storage : tuple of StorageUnit
    pv : tuple of PVPlant
    v_min, v_max : float
        Voltage band (p.u., hard, 9b).
    recourse_fraction : float
        ω̄ = ω̲ = this fraction of each DG's p̄ (7a) **(our choice: 0.5)**.
    recourse_premium : float
        π of the second-stage prices (module docstring) **(our choice: 0.5)**.
    load_scale : float
        Multiplier of every nominal load on top of the data's multipliers (1: the nominal loads
        are the annual peak).
    thermal : bool
        Enforce thermal polygons on rated branch-phases (9a, 5).
    thermal_screen : float
        Rows only for branch-phases whose flow at ``screen`` × the highest forecast load without
        devices reaches this fraction of the rating (others cannot bind).
    polygon_sides : int
    period_hours : float
    initial_soc_fraction : float
        Storage energy before hour 0 as a fraction between e̲ (0) and ē (1); the same energy
        must remain at the end of the day **(our choice: 0.5, cyclic)**.
    """

    dgs: tuple[DispatchableGenerator, ...]
    storage: tuple[StorageUnit, ...]
    pv: tuple[PVPlant, ...]
    v_min: float = 0.95
    v_max: float = 1.05
    recourse_fraction: float = 0.5
    recourse_premium: float = 0.5
    load_scale: float = 1.0
    thermal: bool = True
    thermal_screen: float = 0.5
    polygon_sides: int = DEFAULT_POLYGON_SIDES
    period_hours: float = 1.0
    initial_soc_fraction: float = 0.5

    def __post_init__(self) -> None:
        if not 0 < self.v_min < self.v_max:
            raise FeederInputError(
                f"voltage band needs 0 < v_min < v_max, got {self.v_min}, {self.v_max}"
            )
        if not 0 <= self.recourse_premium < 1:
            raise FeederInputError("recourse_premium must lie in [0, 1)")
        if not 0 <= self.initial_soc_fraction <= 1:
            raise FeederInputError("initial_soc_fraction must lie in [0, 1]")


def default_operating_point(feeder_name: str):
    """Where the linear model of a feeder is built for operation.

    ``ieee123``: regulators at neutral taps. Its OpenDSS taps (settled at peak load, up to
    1.0625) put light-load voltages at 1.02–1.115 p.u.: with taps fixed (no tap decisions in
    paper D's problem) even the forecast day violates 1.05 p.u. Other feeders: the source
    model's own operating point.
    """
    from gridrecourse.network.prepare import OperatingPoint, TapMode

    if str(feeder_name).lower() == "ieee123":
        return OperatingPoint(taps=TapMode.NEUTRAL)
    return OperatingPoint()


def default_case(feeder_name: str, **overrides) -> OperationCase:
    """Paper D's devices (Tables I–II) at the documented buses of ``case33bw`` or ``ieee123``.

    Raises
    ------
    FeederInputError
        No documented sites for the feeder (pass an :class:`OperationCase`).
    """
    key = str(feeder_name).lower()
    if key not in _SITES:
        raise FeederInputError(
            f"no documented DG/ESS/PV sites for feeder {feeder_name!r} (known: "
            f"{', '.join(sorted(_SITES))}); build an OperationCase with your buses"
        )
    sites = _SITES[key]
    dgs = tuple(
        DispatchableGenerator(row[0], bus, *row[1:])
        for row, bus in zip(PAPER_D_DGS, sites["dg"], strict=True)
    )
    storage = tuple(
        StorageUnit(row[0], bus, *row[1:])
        for row, bus in zip(PAPER_D_STORAGE, sites["storage"], strict=True)
    )
    pv = tuple(PVPlant(f"PV{k + 1}", bus, 300.0) for k, bus in enumerate(sites["pv"]))
    return OperationCase(dgs=dgs, storage=storage, pv=pv, **overrides)


# --------------------------------------------------------------------------------------------
# data


@dataclass(frozen=True, eq=False)
class OperationData:
    """Daily load and PV multipliers, prices and the train/test split.

    Attributes
    ----------
    load : ndarray, shape (D, T, K_L)
        Load multiplier of each load source per day and hour (dimensionless; 1 = the source's
        highest hourly load over the training days = the feeder's nominal load).
    pv : ndarray, shape (D, T, K_PV)
        PV output per unit of rating (kW/kW) of each PV source.
    price_per_mwh : ndarray, shape (T,)
        First-stage purchase price d_t ($/MWh; EUR in the bundled data, read as $).
    train_days, test_days : ndarray of int
        Days used for forecasts and ambiguity sets / held out for post-evaluation.
    day_of_year : ndarray of int, shape (D,)
    """

    load: np.ndarray
    pv: np.ndarray
    price_per_mwh: np.ndarray
    train_days: np.ndarray
    test_days: np.ndarray
    day_of_year: np.ndarray

    def __post_init__(self) -> None:
        for name in ("load", "pv"):
            arr = getattr(self, name)
            if arr.ndim != 3 or arr.shape[1] != len(self.price_per_mwh):
                raise InvalidSeriesError(f"OperationData.{name} must be (days, hours, sources)")
            if not np.all(np.isfinite(arr)) or np.any(arr < 0):
                raise InvalidSeriesError(f"OperationData.{name} must be finite and >= 0")
        if len(np.intersect1d(self.train_days, self.test_days)):
            raise InvalidSeriesError("training and held-out days overlap")

    @property
    def n_periods(self) -> int:
        """T."""
        return self.load.shape[1]

    @property
    def forecast_load(self) -> np.ndarray:
        """Per-hour forecast: mean over the training days, shape (T, K_L)."""
        return self.load[self.train_days].mean(axis=0)

    @property
    def forecast_pv(self) -> np.ndarray:
        """Per-hour forecast: mean over the training days, shape (T, K_PV)."""
        return self.pv[self.train_days].mean(axis=0)

    def load_samples(self, days: np.ndarray | None = None) -> np.ndarray:
        """Empirical samples per (hour, source) series: shape (T·K_L, n_days), period-major."""
        d = self.train_days if days is None else np.asarray(days)
        x = self.load[d]  # (n, T, K)
        return x.reshape(len(d), -1).T

    def pv_samples(self, days: np.ndarray | None = None) -> np.ndarray:
        """As :meth:`load_samples` for PV, shape (T·K_PV, n_days)."""
        d = self.train_days if days is None else np.asarray(days)
        x = self.pv[d]
        return x.reshape(len(d), -1).T

    def with_train_subset(self, n_days: int, seed: int = 0) -> OperationData:
        """The same data with a random subset of ``n_days`` training days (data-size study)."""
        if not 0 < n_days <= len(self.train_days):
            raise InvalidSeriesError(f"n_days must be in 1..{len(self.train_days)}, got {n_days}")
        rng = np.random.default_rng(seed)
        sub = np.sort(rng.choice(self.train_days, size=n_days, replace=False))
        return OperationData(
            self.load, self.pv, self.price_per_mwh, sub, self.test_days, self.day_of_year
        )


def bundled_operation_data(
    *, n_sources: int = 1, n_test_days: int = 60, seed: int = 0
) -> OperationData:
    """Daily multipliers from the bundled real year (CityLearn Fontana homes, SMARD prices).

    The 17 homes are split into ``n_sources`` groups (home ``b`` in group ``b mod n_sources``);
    each group's summed load is one load source and its mean PV output per kW one PV source.
    Load multipliers are divided by the group's highest hourly load over the training days, so
    the feeder's nominal loads are the annual peak (as in ``case33bw``, whose loads are peak
    loads) and every training sample is at most 1. ``n_test_days`` random days (seeded) are
    held out for post-evaluation; the rest form the forecasts and the empirical samples.
    Prices: the hourly mean of the German 2018 day-ahead prices over the training days.

    Raises
    ------
    InvalidSeriesError
        ``n_sources`` outside 1..17 or fewer than 2 training days.
    """
    from gridrecourse.data.bundled_data import (
        HOURS_PER_DAY,
        N_BUILDINGS,
        W_PER_KW,
        load_day_ahead_prices,
        load_household_data,
    )

    if not 1 <= n_sources <= N_BUILDINGS:
        raise InvalidSeriesError(f"n_sources must be in 1..{N_BUILDINGS}, got {n_sources}")
    homes = load_household_data()
    n_days = homes.load_kw.shape[0] // HOURS_PER_DAY
    if not 0 <= n_test_days <= n_days - 2:
        raise InvalidSeriesError(f"n_test_days must be in 0..{n_days - 2}, got {n_test_days}")
    group = np.arange(N_BUILDINGS) % n_sources
    onehot = np.eye(n_sources)[group]  # (17, K)
    load = (homes.load_kw @ onehot).reshape(n_days, HOURS_PER_DAY, n_sources)
    pv = (homes.pv_w_per_kw @ (onehot / onehot.sum(axis=0)) / W_PER_KW).reshape(
        n_days, HOURS_PER_DAY, n_sources
    )
    rng = np.random.default_rng(seed)
    test = np.sort(rng.choice(n_days, size=n_test_days, replace=False))
    train = np.setdiff1d(np.arange(n_days), test)
    load = load / load[train].max(axis=(0, 1))[None, None, :]
    prices = load_day_ahead_prices().to_numpy()[: n_days * HOURS_PER_DAY]
    price = prices.reshape(n_days, HOURS_PER_DAY)[train].mean(axis=0)
    return OperationData(load, pv, price, train, test, np.arange(n_days))


# --------------------------------------------------------------------------------------------
# model


def _bus_map(math: MathFeeder, buses: tuple[str, ...], what: str) -> sp.csr_matrix:
    """(N, n) equal split of each device over the phases of its bus."""
    index = {b: i for i, b in enumerate(math.bus_names)}
    cols, rows, vals = [], [], []
    for k, (bus, label) in enumerate(buses):
        if bus not in index:
            raise FeederInputError(
                f"{what} {label!r} at bus {bus!r}: feeder {math.name!r} has no such bus "
                f"(e.g. {', '.join(math.bus_names[:8])}, ...)"
            )
        nodes = np.flatnonzero((math.node_bus == index[bus]) & ~math.is_root)
        if not len(nodes):
            raise FeederInputError(f"{what} {label!r} at bus {bus!r}: the bus is a source bus")
        rows.append(nodes)
        cols.append(np.full(len(nodes), k))
        vals.append(np.full(len(nodes), 1.0 / len(nodes)))
    n = len(buses)
    if not n:
        return sp.csr_matrix((math.n_nodes, 0))
    return sp.csr_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
        shape=(math.n_nodes, n),
    )


@dataclass(frozen=True, eq=False)
class DeviceMaps:
    """Node maps (N, ·) of every device and uncertain source (p.u. per unit of the column).

    Attributes
    ----------
    dg, storage, pv : scipy.sparse.csr_matrix
        Equal split over the bus's phases (per p.u. of device power); PV per unit of rating
        fraction is ``pv @ diag(rating)`` inside ``pv_source``.
    load_source : scipy.sparse.csr_matrix, complex, shape (N, K_L)
        Complex load (p.u.) at each node per unit of each load source's multiplier.
    pv_source : scipy.sparse.csr_matrix, shape (N, K_PV)
        PV output (p.u.) at each node per unit (kW/kW) of each PV source.
    """

    dg: sp.csr_matrix
    storage: sp.csr_matrix
    pv: sp.csr_matrix
    load_source: sp.csr_matrix
    pv_source: sp.csr_matrix


def device_maps(math: MathFeeder, case: OperationCase, n_load: int, n_pv: int) -> DeviceMaps:
    """Maps of the case's devices and of ``n_load``/``n_pv`` sources on ``math``.

    Load ``l`` follows load source ``l mod n_load``; PV plant ``p`` PV source ``p mod n_pv``.
    """
    s_base = math.s_base_kva
    dg = _bus_map(math, tuple((g.bus, g.name) for g in case.dgs), "DG")
    st = _bus_map(math, tuple((u.bus, u.name) for u in case.storage), "storage")
    pv = _bus_map(math, tuple((p.bus, p.name) for p in case.pv), "PV plant")
    n_loads = len(math.load_names)
    sel_l = sp.csr_matrix(
        (np.ones(n_loads), (np.arange(n_loads), np.arange(n_loads) % n_load)),
        shape=(n_loads, n_load),
    )
    s_load = (math.load_kw + 1j * math.load_kvar) * case.load_scale / s_base
    load_source = sp.csr_matrix(math.load_map @ sp.diags(s_load) @ sel_l)
    n_plants = len(case.pv)
    sel_p = sp.csr_matrix(
        (np.ones(n_plants), (np.arange(n_plants), np.arange(n_plants) % n_pv)),
        shape=(n_plants, n_pv),
    )
    rating = np.array([p.rating_kw for p in case.pv], dtype=float) / s_base
    pv_source = sp.csr_matrix(pv @ sp.diags(rating) @ sel_p)
    return DeviceMaps(dg, st, pv, load_source, pv_source)


@dataclass(frozen=True, eq=False)
class FirstStageSchedule:
    """A first-stage decision ``x`` (engineering units, shape (units, T)).

    Attributes
    ----------
    dg_kw, dg_kvar : ndarray, shape (G, T)
        Planned DG output (the kvar of the plan is not binding in real time).
    charge_kw, discharge_kw : ndarray, shape (J, T)
    purchase_kw : ndarray, shape (T,)
    cost : float
        Λ1 ($).
    """

    dg_kw: np.ndarray
    dg_kvar: np.ndarray
    charge_kw: np.ndarray
    discharge_kw: np.ndarray
    purchase_kw: np.ndarray
    cost: float


@dataclass(frozen=True, eq=False)
class OperationModel:
    """The assembled model (see module docstring) with its block handles.

    Attributes
    ----------
    n_copies : int
        Recourse copies C (slots 1..C; slot 0 is the plan when ``with_plan``).
    n_slots : int
        ``C + 1`` with the plan, else ``C``.
    first_cost, recourse_cost : VariableBlock
        ``first-stage-cost`` (1 column, $) and ``recourse-cost`` (C columns, $).
    xi_load, xi_pv : VariableBlock
        Uncertain multipliers per slot (K per period over ``T·n_slots`` periods).
    """

    math: MathFeeder
    physics: LinDist3Flow
    case: OperationCase
    maps: DeviceMaps
    model: LinearModel
    net: NetworkBlocks
    n_periods: int
    n_copies: int
    with_plan: bool
    price_per_mwh: np.ndarray
    dg_p: VariableBlock | None
    purchase: VariableBlock | None
    battery: Battery | None
    dg_out: VariableBlock
    dg_q: VariableBlock
    ess_net: VariableBlock
    xi_load: VariableBlock
    xi_pv: VariableBlock
    dg_up: VariableBlock
    dg_down: VariableBlock
    buy: VariableBlock
    sell: VariableBlock
    first_cost: VariableBlock
    recourse_cost: VariableBlock
    rows: dict[str, ConstraintBlock] = field(default_factory=dict)
    build_seconds: float = 0.0

    @property
    def n_slots(self) -> int:
        """Network copies in the model."""
        return self.n_copies + int(self.with_plan)

    @property
    def n_load_sources(self) -> int:
        """K_L."""
        return self.maps.load_source.shape[1]

    @property
    def n_pv_sources(self) -> int:
        """K_PV."""
        return self.maps.pv_source.shape[1]

    def cost_per_pu(self, price_per_mwh: np.ndarray | float) -> np.ndarray:
        """$ per p.u. of power held one period, for prices in $/MWh."""
        return (
            np.asarray(price_per_mwh, dtype=float)
            * self.math.s_base_kva
            / 1000.0
            * (self.case.period_hours)
        )

    def slot_values(self, block: VariableBlock, x: np.ndarray) -> np.ndarray:
        """Values of a per-slot block as (slots, units, T)."""
        T = self.n_periods
        return x[block.slice].reshape(self.n_slots, T, -1).transpose(0, 2, 1)

    def set_uncertain(
        self, slot_load: np.ndarray, slot_pv: np.ndarray, slots: np.ndarray | None = None
    ) -> None:
        """Fix ``xi-load``/``xi-pv`` of slots by bounds.

        Parameters
        ----------
        slot_load : ndarray, shape (S, T, K_L)
        slot_pv : ndarray, shape (S, T, K_PV)
        slots : ndarray of int, optional
            Which slots (default all).
        """
        self._set_slots(self.xi_load, slot_load, slots)
        self._set_slots(self.xi_pv, slot_pv, slots)

    def _set_slots(self, block: VariableBlock, values: np.ndarray, slots) -> None:
        T = self.n_periods
        k = block.size // (T * self.n_slots)
        cols = self.model.columns(block)
        lb, ub = cols.lb.reshape(self.n_slots, T, k), cols.ub.reshape(self.n_slots, T, k)
        sel = np.arange(self.n_slots) if slots is None else np.asarray(slots)
        v = np.asarray(values, dtype=float).reshape(len(sel), T, k)
        lb[sel] = v
        ub[sel] = v
        self.model.set_col_bounds(block, lb.ravel(), ub.ravel())

    def set_losses(self, losses: LossTerms | None) -> None:
        """Write the network right-hand sides: fixed injections of the feeder plus losses.

        Parameters
        ----------
        losses : LossTerms or None
            ``flow`` and ``drop`` of shape (E, T·n_slots) (None: lossless).
        """
        TT = self.n_periods * self.n_slots
        p0, q0 = fixed_net_load(
            self.math,
            np.zeros((len(self.math.load_names), TT)),
            np.zeros((len(self.math.load_names), TT)),
            pv_kw=np.zeros((len(self.math.pv_names), TT)),
            pv_kvar=np.zeros((len(self.math.pv_names), TT)),
        )
        self.net.set_rhs(self.model, self.net.rhs(p0, q0, losses=losses))

    def reference_net_load(
        self,
        load: np.ndarray,
        pv: np.ndarray,
        dg_kw: np.ndarray | None = None,
        dg_kvar: np.ndarray | None = None,
        ess_kw: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Net load (p.u., (N, S·T)) of slots for the loss reference point.

        Parameters
        ----------
        load : ndarray, shape (S, T, K_L)
        pv : ndarray, shape (S, T, K_PV)
        dg_kw, dg_kvar : ndarray, shape (G, T), optional
            Device injections held in every slot (kW, kvar).
        ess_kw : ndarray, shape (J, T), optional
            Storage net discharge (kW).
        """
        s_base = self.math.s_base_kva
        m = self.maps
        s = load.shape[0]
        xl = load.reshape(s * self.n_periods, -1).T  # (K_L, S·T), slot-major periods
        xp = pv.reshape(s * self.n_periods, -1).T
        inj = m.load_source @ xl - m.pv_source @ xp  # complex load
        p, q = np.real(inj), np.imag(inj)
        if dg_kw is not None:
            p = p - m.dg @ np.tile(dg_kw, (1, s)) / s_base
        if dg_kvar is not None:
            q = q - m.dg @ np.tile(dg_kvar, (1, s)) / s_base
        if ess_kw is not None:
            p = p - m.storage @ np.tile(ess_kw, (1, s)) / s_base
        p0, q0 = fixed_net_load(
            self.math,
            np.zeros((len(self.math.load_names), p.shape[1])),
            np.zeros((len(self.math.load_names), p.shape[1])),
            pv_kw=np.zeros((len(self.math.pv_names), p.shape[1])),
            pv_kvar=np.zeros((len(self.math.pv_names), p.shape[1])),
        )
        return np.asarray(p + p0), np.asarray(q + q0)

    def losses_at(self, p_ref: np.ndarray, q_ref: np.ndarray) -> LossTerms:
        """Loss terms (eq 8f) at a reference net load (N, T·n_slots), 3 fixed-point passes."""
        return self.physics.loss_terms(p_ref, q_ref, iterations=3)

    def simultaneous_storage(self, solution: Solution, tol_kw: float = 1e-3) -> bool:
        """Whether some storage charges and discharges in the same period (> ``tol_kw``)."""
        if self.battery is None:
            return False
        ch = solution.value(self.battery.charge) * self.math.s_base_kva
        dis = solution.value(self.battery.discharge) * self.math.s_base_kva
        return bool(np.any(np.minimum(ch, dis) > tol_kw))

    def schedule(self, solution: Solution) -> FirstStageSchedule:
        """The first stage of a solved model (plan included)."""
        if self.dg_p is None or self.battery is None or self.purchase is None:
            raise ValueError("this model has the first stage fixed; nothing to read")
        s_base = self.math.s_base_kva
        T = self.n_periods
        x = solution.x
        G, J = len(self.case.dgs), len(self.case.storage)

        def mat(block: VariableBlock, n: int) -> np.ndarray:
            return x[block.slice].reshape(T, n).T * s_base

        q = self.slot_values(self.dg_q, x)[0] * s_base if self.with_plan else np.zeros((G, T))
        return FirstStageSchedule(
            dg_kw=mat(self.dg_p, G),
            dg_kvar=q,
            charge_kw=mat(self.battery.charge, J),
            discharge_kw=mat(self.battery.discharge, J),
            purchase_kw=x[self.purchase.slice] * s_base,
            cost=float(x[self.first_cost.slice][0]),
        )


def _screened(
    math: MathFeeder, physics: LinDist3Flow, case: OperationCase, peak: float
) -> np.ndarray:
    """Branch-phases whose flow at 1.5 × the peak load (no devices) reaches the screen."""
    rating = math.rating_pu[physics.nonroot]
    finite = np.isfinite(rating) & (rating > 0)
    if not finite.any():
        return finite
    p, q = fixed_net_load(
        math,
        math.load_kw * peak * 1.5 * case.load_scale,
        math.load_kvar * peak * 1.5 * case.load_scale,
    )
    sol = physics.solve(p, q)
    s = np.hypot(sol.p_flow_pu, sol.q_flow_pu)[physics.nonroot]
    return finite & (s >= case.thermal_screen * rating)


def build_operation_model(
    math: MathFeeder,
    case: OperationCase,
    price_per_mwh: np.ndarray,
    *,
    n_load_sources: int,
    n_pv_sources: int,
    n_copies: int,
    with_plan: bool = True,
    fixed_schedule: FirstStageSchedule | None = None,
    physics: LinDist3Flow | None = None,
    peak_multiplier: float = 1.0,
    mode_binaries: bool = True,
) -> OperationModel:
    """Assemble the plan and ``n_copies`` recourse copies (module docstring).

    Parameters
    ----------
    math : MathFeeder
    case : OperationCase
    price_per_mwh : ndarray, shape (T,)
        d_t ($/MWh).
    n_load_sources, n_pv_sources : int
        K_L, K_PV.
    n_copies : int
        Recourse copies C (>= 0).
    with_plan : bool
        Include slot 0: the plan at the forecast, adjustments fixed to zero.
    fixed_schedule : FirstStageSchedule, optional
        Fix the first stage (columns with equal bounds, no mode binaries: the recourse is an LP);
        used by the evaluation of a schedule.
    peak_multiplier : float
        Highest load multiplier expected (thermal screening only).
    mode_binaries : bool
        Storage mode binaries (paper D); False builds their relaxation (no mode rows), whose
        solution is exact whenever no storage charges and discharges in the same period
        (:meth:`OperationModel.simultaneous_storage`).

    Returns
    -------
    OperationModel
        Objective empty: the methods set it. ``xi-load``/``xi-pv`` are free until fixed.

    Raises
    ------
    FeederInputError
        A device at a bus the feeder does not have.
    """
    t0 = time.perf_counter()
    physics = physics or LinDist3Flow(math)
    price = np.asarray(price_per_mwh, dtype=float)
    T = len(price)
    if not np.all(np.isfinite(price)):
        raise InvalidSeriesError("price_per_mwh must be finite")
    C = int(n_copies)
    S = C + int(with_plan)
    if S < 1:
        raise ValueError("the model needs the plan or at least one recourse copy")
    TT = T * S
    s_base = math.s_base_kva
    maps = device_maps(math, case, n_load_sources, n_pv_sources)
    G, J = len(case.dgs), len(case.storage)
    K_L, K_P = n_load_sources, n_pv_sources
    dt = case.period_hours

    def arr(attr: str, objs) -> np.ndarray:
        return np.array([getattr(o, attr) for o in objs], dtype=float)

    p_max, p_min = arr("p_max_kw", case.dgs) / s_base, arr("p_min_kw", case.dgs) / s_base
    ru, rd = arr("ramp_up_kw", case.dgs) / s_base, arr("ramp_down_kw", case.dgs) / s_base
    q_max, q_min = arr("q_max_kvar", case.dgs) / s_base, arr("q_min_kvar", case.dgs) / s_base
    c_dg = arr("cost_per_mwh", case.dgs)
    per_pu = s_base / 1000.0 * dt  # $ per p.u. per period per $/MWh

    m = LinearModel(f"operation-{math.name}")
    # ---- first stage (T periods)
    battery = None
    if fixed_schedule is None:
        dg_p = m.add_variables("dg-p", G * T, lb=tile_periods(p_min, T), ub=tile_periods(p_max, T))
        purchase = m.add_variables("purchase", T, lb=0.0)
        params, capacity = BatteryParameters.from_ratings(
            dt,
            arr("charge_max_kw", case.storage) / s_base,
            arr("discharge_max_kw", case.storage) / s_base,
            arr("energy_max_kwh", case.storage) / s_base,
            arr("energy_min_kwh", case.storage) / s_base,
            arr("efficiency", case.storage),
            initial_energy=(
                arr("energy_min_kwh", case.storage)
                + case.initial_soc_fraction
                * (arr("energy_max_kwh", case.storage) - arr("energy_min_kwh", case.storage))
            )
            / s_base,
        )
        battery = add_battery(m, T, params, capacity, mode_binaries=mode_binaries, name="ess")
        # cyclic: the last state of charge returns to the initial one (our choice)
        last = np.zeros(T)
        last[-1] = 1.0
        m.add_constraints(
            "ess-cyclic",
            [(battery.soc, sp.kron(last[None, :], sp.identity(J), format="csr"))],
            lb=params.initial_soc * capacity,
            ub=np.inf,
        )
        ch, dis = battery.charge, battery.discharge
    else:
        fs = fixed_schedule
        dg_p = m.add_variables(
            "dg-p", G * T, lb=by_period(fs.dg_kw / s_base), ub=by_period(fs.dg_kw / s_base)
        )
        purchase = m.add_variables(
            "purchase", T, lb=fs.purchase_kw / s_base, ub=fs.purchase_kw / s_base
        )
        ch = m.add_variables(
            "ess-charge",
            J * T,
            lb=by_period(fs.charge_kw / s_base),
            ub=by_period(fs.charge_kw / s_base),
        )
        dis = m.add_variables(
            "ess-discharge",
            J * T,
            lb=by_period(fs.discharge_kw / s_base),
            ub=by_period(fs.discharge_kw / s_base),
        )

    # ---- network copies (T·S periods)
    dg_out = m.add_variables(
        "dg-p_out", G * TT, lb=tile_periods(p_min, TT), ub=tile_periods(p_max, TT)
    )
    dg_q = m.add_variables("dg-q", G * TT, lb=tile_periods(q_min, TT), ub=tile_periods(q_max, TT))
    ess_net = m.add_variables("ess-p_net", J * TT, lb=-np.inf)
    xi_load = m.add_variables("xi-load", K_L * TT, lb=0.0)
    xi_pv = m.add_variables("xi-pv", K_P * TT, lb=0.0)
    injections = (
        Injection.active(dg_out, maps.dg),
        Injection.reactive(dg_q, maps.dg),
        Injection.active(ess_net, maps.storage),
        Injection.active(xi_load, -maps.load_source),
        Injection.active(xi_pv, maps.pv_source),
    )
    net = add_lindist3flow(m, physics, TT, injections, substation=SubstationMode.NET)
    add_voltage_band(m, net, case.v_min, case.v_max, LimitMode.HARD)
    if case.thermal:
        select = _screened(math, physics, case, peak_multiplier)
        add_thermal_polygon(
            m,
            net,
            math.rating_pu[physics.nonroot],
            LimitMode.HARD,
            n_sides=case.polygon_sides,
            select=select,
        )

    # ---- recourse columns (T·C periods)
    omega = case.recourse_fraction * p_max
    dg_up = m.add_variables("dg-up", G * T * C, ub=tile_periods(omega, T * C))
    dg_down = m.add_variables("dg-down", G * T * C, ub=tile_periods(omega, T * C))
    buy = m.add_variables("grid-buy", T * C)
    sell = m.add_variables("grid-sell", T * C)

    # slot embedding: (S·n, n) stacks a first-stage block into every slot; (S·n, C·n) the copies
    def every_slot(n: int) -> sp.csr_matrix:
        return sp.kron(np.ones((S, 1)), sp.identity(n), format="csr")

    def copies(n: int) -> sp.csr_matrix:
        pick = np.zeros((S, C))
        pick[int(with_plan) :, :] = np.eye(C)
        return sp.kron(pick, sp.identity(n), format="csr")

    eye = sp.identity
    rows: dict[str, ConstraintBlock] = {}
    # (7c) adjusted output p' = p + up − down
    rows["dg-adjust"] = m.add_constraints(
        "dg-adjust",
        [
            (dg_out, eye(G * TT)),
            (dg_p, -every_slot(G * T)),
            (dg_up, -copies(G * T)),
            (dg_down, copies(G * T)),
        ],
        lb=0.0,
        ub=0.0,
    )
    # (2b, 2c, 7d, 7e) ramps of the output within each slot
    diff_t = sp.eye(T, format="csr") - sp.eye(T, k=-1, format="csr")
    diff_t = diff_t[1:]
    ramp = sp.kron(eye(S), sp.kron(diff_t, eye(G)), format="csr")
    rows["dg-ramp"] = m.add_constraints(
        "dg-ramp",
        [(dg_out, ramp)],
        lb=-tile_periods(rd, (T - 1) * S),
        ub=tile_periods(ru, (T - 1) * S),
    )
    rows["ess-link"] = m.add_constraints(
        "ess-link",
        [(ess_net, eye(J * TT)), (dis, -every_slot(J * T)), (ch, every_slot(J * T))],
        lb=0.0,
        ub=0.0,
    )
    sub = net.substation[0]
    rows["grid-adjust"] = m.add_constraints(
        "grid-adjust",
        [(sub, eye(TT)), (purchase, -every_slot(T)), (buy, -copies(T)), (sell, copies(T))],
        lb=0.0,
        ub=0.0,
    )
    # costs ($)
    first_cost = m.add_variables("first-stage-cost", 1, lb=-np.inf)
    rows["first-stage-cost"] = m.add_constraints(
        "first-stage-cost",
        [
            (first_cost, sp.csr_matrix(np.ones((1, 1)))),
            (dg_p, -sp.csr_matrix(tile_periods(c_dg * per_pu, T)[None, :])),
            (purchase, -sp.csr_matrix((price * per_pu)[None, :])),
        ],
        lb=0.0,
        ub=0.0,
    )
    recourse_cost = m.add_variables("recourse-cost", C, lb=-np.inf)
    pi = case.recourse_premium
    per_copy = sp.kron(eye(C), np.ones((1, G * T)), format="csr")
    per_copy_t = sp.kron(eye(C), np.ones((1, T)), format="csr")
    c_dg_t = tile_periods(c_dg * per_pu, T * C)
    d_t = np.tile(price * per_pu, C)
    if C:
        rows["recourse-cost"] = m.add_constraints(
            "recourse-cost",
            [
                (recourse_cost, eye(C)),
                (dg_up, -per_copy @ sp.diags((1 + pi) * c_dg_t)),
                (dg_down, per_copy @ sp.diags((1 - pi) * c_dg_t)),
                (buy, -per_copy_t @ sp.diags((1 + pi) * d_t)),
                (sell, per_copy_t @ sp.diags((1 - pi) * d_t)),
            ],
            lb=0.0,
            ub=0.0,
        )
    if with_plan:
        # the plan never feeds back into the grid: substation power >= 0 in slot 0
        plan_sel = sp.csr_matrix(sp.hstack([eye(T), sp.csr_matrix((T, T * C))]))
        rows["plan-no-export"] = m.add_constraints("plan-no-export", [(sub, plan_sel)], lb=0.0)
    opm = OperationModel(
        math=math,
        physics=physics,
        case=case,
        maps=maps,
        model=m,
        net=net,
        n_periods=T,
        n_copies=C,
        with_plan=with_plan,
        price_per_mwh=price,
        dg_p=dg_p if fixed_schedule is None else None,
        purchase=purchase if fixed_schedule is None else None,
        battery=battery,
        dg_out=dg_out,
        dg_q=dg_q,
        ess_net=ess_net,
        xi_load=xi_load,
        xi_pv=xi_pv,
        dg_up=dg_up,
        dg_down=dg_down,
        buy=buy,
        sell=sell,
        first_cost=first_cost,
        recourse_cost=recourse_cost,
        rows=rows,
    )
    opm.set_losses(None)
    return OperationModel(**{**opm.__dict__, "build_seconds": time.perf_counter() - t0})


def over_slots(matrix: sp.spmatrix, n_slots: int) -> sp.csr_matrix:
    """``I_S ⊗ M`` (alias of :func:`over_periods` for slot-major stacking)."""
    return over_periods(matrix, n_slots)
