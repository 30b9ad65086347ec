"""Paper B's two-stage stochastic Volt-VAR optimization (2S-VVO) with taps and reconfiguration.

METHODS §4 (with §1.2–1.4); paper B ("neural two-stage stochastic VVO", seed 002) eqs 1–17.

First stage ``x`` (one day of ``T`` hourly periods, identical in every scenario)::

    u_{r,k,t} ∈ {0,1}, Σ_k u_{r,k,t} = 1       tap position k of regulator r in hour t   (eqs 5–6)
    δ_{r,t} ≥ ±(k_{r,t} − k_{r,t−1}),  Σ_t δ_{r,t} ≤ N_OLTC (4)  tap changes in positions (eq 8)
    z_{s,t} ∈ {0,1}                            switch s closed in hour t                (eq 15)
    radiality + connectivity per phase, every hour (single-commodity flow; eqs 14–16)
    o_{s,t} ≥ ±(z_{s,t} − z_{s,t−1}),  Σ_t o_{s,t} ≤ N_sw (8)    switch operations      (eq 17)
    cost  C_tap Σ δ + C_sw Σ o          (C_tap = 300 $/position change, C_sw = 100 $/op; eq 1)

``k_{r,t} = Σ_k k u_{r,k,t}`` is the *position index* (0..K−1) in the allowed set (paper B
counts changes of "the tap position"; with its five taps ``{0.95, …, 1.05}`` one change is one
0.025 p.u. move, i.e. four regulator steps of 0.00625). ``k_{r,−1}`` is the initial tap
(default: the source model's tap, placed at the nearest allowed position; a tap beyond the
allowed range counts as the whole positions beyond the end, rounded up, so a range that cannot
be reached within ``N_OLTC`` changes makes the first stage infeasible).

Second stage per scenario ω (load and PV availability of each bus and hour)::

    min  C_cur Δt Σ_{pv,t} c_{pv,t}                 curtailment, C_cur = 120 $/kWh        (eq 1)
    p_pv + c_pv = P_avail,ω,  p, c ≥ 0              (PV active dispatch and curtailment)
    cos θ_k p + sin θ_k q ≤ cos(π/n) S_pv           inverter polygon (eq 9), S = 50 kVA
    LinDist3Flow with tap dummy buses (eqs 2–7) and switch big-M (eq 15)
    cos θ_k P + sin θ_k Q ≤ cos(π/n) S_line         line polygon (eq 13), 2000 kVA per phase
    v ∈ [0.917², 1.058²]                            Range B, hard (eq 10)
    |v_φ − mean_φ v| ≤ 2 ε_imb                      three-phase buses (eq 11), ε_imb = 0.02
    v ≤ 1.05² + (1.058² − 1.05²) o_{n,t},  v ≥ 0.95² − (0.95² − 0.917²) o_{n,t}   Range A (eq 12)
    Σ_t o_{n,t} ≤ N_vio^tot (8),  Σ_{τ=t}^{t+4} o_{n,τ} ≤ N_vio^cons (4)           (eq 12)

on the monitored nodes n (all phases of the monitored buses), ``o`` binary: each scenario is a
MILP. Eq 12's deviation ``e ≥ |v − band|, e ≤ M o`` is written without ``e`` (the same set:
``e`` appears nowhere else); ``M`` is the distance from Range A to Range B, which the hard
Range B makes exact. The imbalance bound is on squared magnitudes: ``|V_φ| − |V̄| ≤ ε`` is
``v_φ − v̄ ≈ 2 (|V_φ| − |V̄|)`` to first order at 1 p.u.

How the blocks are assembled
----------------------------
One scenario's model is written once with the formulation blocks
(:func:`~gridrecourse.formulation.network.add_lindist3flow`,
:func:`~gridrecourse.formulation.taps.add_tap_selection`,
:func:`~gridrecourse.formulation.switches.add_switching`,
:mod:`~gridrecourse.formulation.limits`) into a :class:`LinearModel` that also holds the
first-stage columns; it is read back as block specs
(:func:`~gridrecourse.problems.spec_blocks.spec_blocks`) and split: blocks of
:data:`FIRST_STAGE_BLOCKS` form the first stage, rows over first-stage columns only are
first-stage rows, rows over both are *linking blocks* (their first-stage terms are the
technology matrices ``T_k``: the tap big-M rows of eq 7 and the switch big-M rows of eq 15).
Scenarios change only right-hand sides (the balances' net load and the PV availability rows).

Primary and auxiliary first-stage columns (paper B eq 18: ``x`` and ``x̃``): the decisions are
``tap-u`` and ``switch-z`` (:data:`PRIMARY_BLOCKS`, :meth:`VoltVarProblem.primary_columns`);
the tap and switch counters and the connectivity flows are functions of them
(:meth:`VoltVarProblem.complete_first_stage` computes them).

IEEE 123 study case (``IEEE123Switches.dss``; our choices, documented)
-----------------------------------------------------------------------
* Regulators: the feeder's 4 regulator sites are 7 single- or three-phase controlled
  transformers (RegControls ``creg1a`` ganged three-phase at 150; ``creg2a`` at 9;
  ``creg3a``/``creg3c`` at 25; ``creg4a``/``b``/``c`` at 160). Each RegControl keeps its own tap
  (as OpenDSS operates them), so the per-phase banks can correct imbalance (eq 11).
* Switches: the file has 6 normally-closed (Sw1–Sw6) and 2 normally-open (Sw7 151–300,
  Sw8 54–94 single-phase) switch lines. Switchable by default are the switches that lie on a
  loop of the all-closed network (:func:`loop_switches`): Sw2, Sw3, Sw4, Sw5, Sw7, Sw8 — six,
  as in paper B. Sw1 (150r–149, the feeder head: opening it de-energizes everything) and Sw6
  (61–61s, the only path to the unloaded XFM1 branch) lie on no loop and stay closed.
* PV: 14 systems of 50 kVA (:data:`IEEE123_PV_BUSES`), one per lateral at a bus with load,
  spread over all four regulator zones (three of them three-phase: 48, 65, 76). A system at a
  multi-phase bus splits equally over its phases.
* Monitoring: LM = {85, 114} (paper B); MM (our choice, :data:`IEEE123_MM_BUSES`): the end bus
  of 10 laterals spread over the feeder and the regulator zones: 11, 20, 32, 39, 46, 66, 79, 88,
  96, 104; FM: every non-root bus.
* Line limits: 2000 kVA per phase on every branch-phase (a three-phase total of 2000 kVA is
  below the IEEE 123's own peak demand at the feeder head); rows that cannot bind (the most
  power the branch-phase's component can carry stays below the inscribed rating at the
  scenarios' largest load multiplier) are screened out: exact for the scenario set.

Scenarios (paper B §III-F, :func:`voltvar_scenarios`): days drawn uniformly from the bundled
real year (load and PV of 17 homes, :mod:`gridrecourse.data.bundled_data`), each bus's load
and PV multiplied per hour by independent uniform factors in ``[1 − r, 1 + r]``
(``r = 0.1``, our choice).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from gridrecourse.data.bundled_data import normalized_load_multiplier, normalized_pv_multiplier
from gridrecourse.errors import GridRecourseError, InfeasibleModelError
from gridrecourse.formulation.injections import Injection, fixed_net_load
from gridrecourse.formulation.limits import (
    DEFAULT_POLYGON_SIDES,
    LimitMode,
    add_capability_polygon,
    add_thermal_polygon,
    polygon_rows,
)
from gridrecourse.formulation.network import NetworkBlocks, SubstationMode, add_lindist3flow
from gridrecourse.formulation.periods import over_periods
from gridrecourse.formulation.switches import (
    SwitchBlocks,
    add_switching,
    add_tie_flows,
    add_tie_thermal_polygon,
    node_injection_bound,
    tree_switch_positions,
)
from gridrecourse.formulation.taps import (
    TapBlocks,
    TapGrid,
    TapPositions,
    add_tap_selection,
    regulated_positions,
)
from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.problems.base import (
    ConstraintBlockSpec,
    FirstStageSpec,
    LinkingBlock,
    ScenarioData,
    SecondStageSpec,
    TwoStageProblem,
    add_second_stage_blocks,
)
from gridrecourse.problems.spec_blocks import spec_blocks
from gridrecourse.solvers.highs import LinearModel, VariableBlock
from gridrecourse.solvers.options import SolverOptions
from gridrecourse.uncertainty.scenarios import ScenarioMethod, ScenarioSet

__all__ = [
    "FIRST_STAGE_BLOCKS",
    "IEEE123_LM_BUSES",
    "IEEE123_MM_BUSES",
    "IEEE123_PV_BUSES",
    "PRIMARY_BLOCKS",
    "Monitor",
    "VoltVarConfig",
    "VoltVarConfigError",
    "VoltVarDecision",
    "VoltVarProblem",
    "VoltVarRecourse",
    "loop_switches",
    "voltvar_scenarios",
]

#: First-stage decision blocks (paper B's ``x``): tap position binaries and switch states.
PRIMARY_BLOCKS = ("tap-u", "switch-z")
#: Every first-stage block (``x`` and the auxiliary ``x̃``), in the order of the first stage.
FIRST_STAGE_BLOCKS = (
    "tap-u",
    "tap-position_changes",
    "switch-z",
    "switch-connectivity_flow",
    "switch-operations",
)
#: Paper B's light monitoring set LM.
IEEE123_LM_BUSES = ("85", "114")
#: Medium monitoring set MM (our choice): the end bus of 10 laterals across the feeder.
IEEE123_MM_BUSES = ("11", "20", "32", "39", "46", "66", "79", "88", "96", "104")
#: PV buses of the IEEE 123 study case (our choice): one per lateral, at buses with load.
IEEE123_PV_BUSES = (
    "11", "20", "29", "33", "39", "46", "48", "65", "76", "83", "88", "96", "104", "113",
)  # fmt: skip


class VoltVarConfigError(GridRecourseError, ValueError):
    """Invalid Volt-VAR settings or inputs (unknown buses, infeasible first stage, …)."""


class Monitor(str, Enum):
    """Monitoring set of the Range A duration limits (paper B Table IV)."""

    #: light: buses 85 and 114 (paper B)
    LM = "lm"
    #: medium: 10 buses over the laterals (:data:`IEEE123_MM_BUSES`, our choice)
    MM = "mm"
    #: full: every non-root bus
    FM = "fm"


@dataclass(frozen=True)
class VoltVarConfig:
    """Settings of the 2S-VVO (paper B Table II values; "our choice" where marked).

    Attributes
    ----------
    n_periods : int
        Hours of the horizon ``T`` (24).
    start_hour : int
        Hour of the day of the first period (0); ``start_hour + n_periods ≤ 24``.
    tap_positions : TapPositions
        Allowed taps (paper B: five, ``{0.95, 0.975, 1.0, 1.025, 1.05}``).
    max_tap_changes : int
        ``N_OLTC``: position changes per regulator over the horizon (4).
    tap_change_cost : float
        ``C_OLTC`` ($ per position change; 300).
    initial_taps : "current", None or tuple of float
        Taps before the first period (p.u. per regulator); ``"current"``: the source model's
        taps; ``None``: the first period is free.
    switchable : tuple of str, optional
        Switches that are decisions; default :func:`loop_switches` (those on a loop). The others
        stay in their initial state.
    max_switch_operations : int
        ``N_sw``: operations per switch over the horizon (8).
    switch_operation_cost : float
        ``C_sw`` ($ per operation; 100).
    initial_switches : mapping of str to bool, optional
        States before the first period (default: the normal states).
    pv_buses : tuple of str, optional
        Buses with a PV system (default :data:`IEEE123_PV_BUSES` when the feeder has them all,
        else 14 buses with load evenly over the bus list).
    pv_kva : float
        Inverter rating of every PV system (kVA; 50). The array's rating (kW) is the same.
    curtailment_cost : float
        ``C_cur`` ($/kWh; 120).
    line_rating_kva : float
        Per-phase apparent-power limit of every branch-phase (kVA; 2000).
    range_a, range_b : (float, float)
        ANSI C84.1 ranges (p.u.): A ``(0.95, 1.05)`` soft with duration limits, B
        ``(0.917, 1.058)`` hard.
    imbalance : float or None
        ``ε_imb`` (p.u. of magnitude; 0.02, our choice); ``None``: no imbalance rows.
    max_violation_hours : int
        ``N_vio^total`` (8) per monitored node.
    max_consecutive_violations : int
        ``N_vio^cons`` (4): every window of ``N + 1`` hours has at most N violating hours.
    monitor : Monitor
        Monitoring set (LM, MM, FM).
    monitored_buses : tuple of str, optional
        Explicit monitored buses (overrides ``monitor``'s list).
    max_load_multiplier : float
        Largest load multiplier any scenario may use (our choice 1.2: bundled days reach 1.0
        before the perturbation): the flow big-M of the switches is computed at it, so the
        first stage does not depend on the scenario draw.
    polygon_sides : int
        Sides of the inverter and line polygons (12).
    """

    n_periods: int = 24
    start_hour: int = 0
    tap_positions: TapPositions = field(default_factory=TapPositions.paper_b)
    max_tap_changes: int = 4
    tap_change_cost: float = 300.0
    initial_taps: str | tuple[float, ...] | None = "current"
    switchable: tuple[str, ...] | None = None
    max_switch_operations: int = 8
    switch_operation_cost: float = 100.0
    initial_switches: Mapping[str, bool] | None = None
    pv_buses: tuple[str, ...] | None = None
    pv_kva: float = 50.0
    curtailment_cost: float = 120.0
    line_rating_kva: float = 2000.0
    range_a: tuple[float, float] = (0.95, 1.05)
    range_b: tuple[float, float] = (0.917, 1.058)
    imbalance: float | None = 0.02
    max_violation_hours: int = 8
    max_consecutive_violations: int = 4
    monitor: Monitor = Monitor.LM
    monitored_buses: tuple[str, ...] | None = None
    max_load_multiplier: float = 1.2
    polygon_sides: int = DEFAULT_POLYGON_SIDES

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            set_(self, "monitor", Monitor(self.monitor))
        except ValueError as exc:
            raise VoltVarConfigError(f"VoltVarConfig.monitor: {exc}") from None
        if not (1 <= int(self.n_periods) and 0 <= int(self.start_hour)):
            raise VoltVarConfigError("VoltVarConfig: need n_periods >= 1 and start_hour >= 0")
        if int(self.start_hour) + int(self.n_periods) > 24:
            raise VoltVarConfigError(
                f"VoltVarConfig: start_hour + n_periods = "
                f"{int(self.start_hour) + int(self.n_periods)} exceeds one day (24 h)"
            )
        for name in ("max_tap_changes", "max_switch_operations", "max_violation_hours",
                     "max_consecutive_violations"):  # fmt: skip
            value = getattr(self, name)
            if int(value) != value or value < 0:
                raise VoltVarConfigError(f"VoltVarConfig.{name} must be an integer >= 0")
        for name in ("tap_change_cost", "switch_operation_cost", "curtailment_cost"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value >= 0):
                raise VoltVarConfigError(f"VoltVarConfig.{name} must be finite and >= 0")
        for name in ("pv_kva", "line_rating_kva", "max_load_multiplier"):
            value = getattr(self, name)
            if not (np.isfinite(value) and value > 0):
                raise VoltVarConfigError(f"VoltVarConfig.{name} must be positive")
        (a_lo, a_hi), (b_lo, b_hi) = self.range_a, self.range_b
        if not (0 < b_lo <= a_lo < a_hi <= b_hi):
            raise VoltVarConfigError(
                f"VoltVarConfig: need 0 < B_min <= A_min < A_max <= B_max, got range_a "
                f"{self.range_a}, range_b {self.range_b}"
            )
        if self.imbalance is not None and not self.imbalance > 0:
            raise VoltVarConfigError("VoltVarConfig.imbalance must be positive or None")
        for name in ("switchable", "pv_buses", "monitored_buses"):
            value = getattr(self, name)
            if isinstance(value, str):
                raise VoltVarConfigError(f"VoltVarConfig.{name} must be a sequence of names")
            if value is not None:
                set_(self, name, tuple(str(v) for v in value))
        if isinstance(self.initial_taps, str) and self.initial_taps != "current":
            raise VoltVarConfigError("VoltVarConfig.initial_taps: 'current', None or taps (p.u.)")
        if self.initial_taps is not None and not isinstance(self.initial_taps, str):
            set_(self, "initial_taps", tuple(float(t) for t in self.initial_taps))


@dataclass(frozen=True, eq=False)
class VoltVarDecision:
    """A first-stage decision: taps and switch states per hour.

    Attributes
    ----------
    regulator_names : tuple of str
    tap_pu : ndarray, shape (R, T)
        Tap of each regulator per hour (p.u.).
    tap_numbers : ndarray of int, shape (R, T)
        OpenDSS tap numbers (``tap = 1 + number · step``).
    tap_positions : ndarray of int, shape (R, T)
        Index in the allowed set (0..K−1).
    switch_names : tuple of str
    switch_closed : ndarray of int, shape (S, T)
        0/1 state of every switch of the feeder per hour (fixed ones included).
    """

    regulator_names: tuple[str, ...]
    tap_pu: np.ndarray
    tap_numbers: np.ndarray
    tap_positions: np.ndarray
    switch_names: tuple[str, ...]
    switch_closed: np.ndarray

    @property
    def taps(self) -> dict[str, list[int]]:
        """``{regulator: [OpenDSS tap number per hour]}``."""
        return {n: self.tap_numbers[i].tolist() for i, n in enumerate(self.regulator_names)}

    @property
    def switch_states(self) -> dict[str, list[int]]:
        """``{switch: [0/1 per hour]}``."""
        return {n: self.switch_closed[k].tolist() for k, n in enumerate(self.switch_names)}


@dataclass(frozen=True, eq=False)
class VoltVarRecourse:
    """One scenario's recourse solution in engineering units.

    Attributes
    ----------
    v_pu : ndarray, shape (N, T)
        Node voltage magnitudes (p.u.; roots at their fixed voltage).
    pv_kw, pv_kvar, curtailed_kw, available_kw : ndarray, shape (n_pv, T)
    violation : ndarray of int, shape (M, T)
        Range A violation indicators of the monitored nodes.
    """

    v_pu: np.ndarray
    pv_kw: np.ndarray
    pv_kvar: np.ndarray
    curtailed_kw: np.ndarray
    available_kw: np.ndarray
    violation: np.ndarray


def loop_switches(math: MathFeeder) -> tuple[str, ...]:
    """Switches that lie on a loop of the all-switches-closed network (bus level).

    A switch on no loop cannot be opened without de-energizing what it feeds (or, feeding
    nothing with load, its state changes nothing), so it is no reconfiguration decision.
    One connectivity check per switch (a handful).
    """
    sw = math.switches
    if sw is None:
        return ()
    physics_nonroot = np.flatnonzero(~math.is_root)
    n_bus = len(math.bus_names)
    tail = np.r_[math.node_bus[math.parent[physics_nonroot]], math.node_bus[sw.tie_from_node]]
    head = np.r_[math.node_bus[physics_nonroot], math.node_bus[sw.tie_to_node]]
    sw_of_node = np.full(math.n_nodes, -1)
    sw_of_node[sw.tree_node] = sw.tree_switch
    owner = np.r_[sw_of_node[physics_nonroot], sw.tie_switch]
    roots = np.unique(math.node_bus[math.is_root])
    out = []
    for k in range(sw.n_switches):  # a handful of switches
        keep = owner != k
        rows = np.r_[tail[keep], np.full(len(roots), n_bus)]
        cols = np.r_[head[keep], roots]
        adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_bus + 1, n_bus + 1))
        _, labels = connected_components(adj, directed=False)
        if labels[sw.bus_from[k]] == labels[sw.bus_to[k]]:
            out.append(sw.names[k])
    return tuple(out)


def voltvar_scenarios(
    site_names: Sequence[str],
    n_scenarios: int,
    *,
    n_periods: int = 24,
    start_hour: int = 0,
    perturbation: float = 0.1,
    seed: int | None = 0,
) -> ScenarioSet:
    """Daily scenarios from the bundled real year with uniform per-bus perturbations.

    Paper B §III-F: days drawn uniformly (with replacement) from the 365 days of
    :func:`~gridrecourse.data.bundled_data.normalized_load_multiplier` (aggregate load of 17
    homes over its annual peak) and
    :func:`~gridrecourse.data.bundled_data.normalized_pv_multiplier` (kW per kW of PV);
    every site's load and PV are multiplied per hour by independent factors ``U(1 − r, 1 + r)``.

    Parameters
    ----------
    site_names : sequence of str
        Bus names (load and PV sites).
    n_scenarios : int
    n_periods, start_hour : int
        Hours ``start_hour … start_hour + n_periods − 1`` of each drawn day.
    perturbation : float
        ``r`` (dimensionless, 0 ≤ r < 1; 0.1 our choice).
    seed : int or None

    Returns
    -------
    ScenarioSet
        Multipliers of shape ``(S, n_sites, T)``, equal probabilities, ``hour_of_year (S, T)``.
    """
    if int(n_scenarios) < 1:
        raise VoltVarConfigError(f"the number of scenarios must be >= 1, got {n_scenarios}")
    if not 0 <= perturbation < 1:
        raise VoltVarConfigError(f"perturbation must be in [0, 1), got {perturbation}")
    if start_hour < 0 or start_hour + n_periods > 24:
        raise VoltVarConfigError("scenario hours must lie within one day")
    load, pv = normalized_load_multiplier(), normalized_pv_multiplier()
    s, n, T = int(n_scenarios), len(site_names), int(n_periods)
    rng = np.random.default_rng(seed)
    days = rng.integers(0, len(load) // 24, size=s)
    hours = days[:, None] * 24 + int(start_hour) + np.arange(T)[None, :]
    f_load = rng.uniform(1 - perturbation, 1 + perturbation, size=(s, n, T))
    f_pv = rng.uniform(1 - perturbation, 1 + perturbation, size=(s, n, T))
    return ScenarioSet(
        load_multiplier=load[hours][:, None, :] * f_load,
        pv_multiplier=pv[hours][:, None, :] * f_pv,
        probability=np.full(s, 1.0 / s),
        site_names=tuple(site_names),
        seed=seed,
        method=ScenarioMethod.SAMPLED,
        hour_of_year=hours,
    )


def _sel(rows, cols, shape, values=None) -> sp.csr_matrix:
    vals = np.ones(len(rows)) if values is None else values
    return sp.csr_matrix((vals, (rows, cols)), shape=shape)


class VoltVarProblem(TwoStageProblem[VoltVarDecision]):
    """Paper B's 2S-VVO as a :class:`TwoStageProblem` (module docstring).

    Parameters
    ----------
    math : MathFeeder
        Built with ``keep_switches=True`` (switch states as decisions) when the feeder has
        switches; :meth:`from_feeder` prepares one.
    scenarios : ScenarioSet
        Multi-period scenarios ``(S, n_sites, T)`` whose sites include every bus with load and
        every PV bus (:func:`voltvar_scenarios`).
    config : VoltVarConfig

    Raises
    ------
    VoltVarConfigError
        Unknown monitored/PV/switch names, scenarios that do not fit, or a first stage that
        admits no point (the message names the tap or switch limits responsible).

    Attributes
    ----------
    math, scenarios, config
    pv_buses, monitored_buses : tuple of str
    switchable : tuple of str
    grid : TapGrid
        Allowed tap positions of every regulator.
    monitored_nodes : ndarray of int
        Node indices with Range A duration limits.
    n_thermal_rows : int
        Branch-phases with line-limit rows after screening.
    """

    def __init__(
        self, math: MathFeeder, scenarios: ScenarioSet, config: VoltVarConfig | None = None
    ):
        t0 = time.perf_counter()
        self.math = math
        self.scenarios = scenarios
        self.config = config or VoltVarConfig()
        cfg = self.config
        self.name = f"volt-var-{math.name}-{cfg.monitor.value}"
        self.T = int(cfg.n_periods)
        physics = LinDist3Flow(math)
        self._nonroot = physics.nonroot
        self._e = physics.n_branch_phases
        self._lookup = {b: i for i, b in enumerate(math.bus_names)}
        self.pv_buses = self._resolve_pv_buses()
        self.monitored_buses = self._resolve_monitored()
        self.switchable = self._resolve_switchable()
        self._pv_map = self._pv_node_map()
        self._load_site, self._pv_site = self._scenario_columns()
        reg = math.regulators
        self.grid: TapGrid = cfg.tap_positions.grid(reg)
        self._initial_position = self._initial_positions()
        self._build(physics)
        self._check_first_stage()
        self.build_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_feeder(
        cls,
        feeder,
        n_scenarios: int | ScenarioSet = 10,
        config: VoltVarConfig | None = None,
        *,
        seed: int | None = 0,
        perturbation: float = 0.1,
    ) -> VoltVarProblem:
        """Prepare a feeder (name, path or :class:`Feeder`) and draw scenarios.

        The linear model keeps every switch as decision data
        (``OperatingPoint(switches=SwitchMode.AS_DECISIONS)``), the source model's taps (the
        initial taps) and nominal root voltages.
        """
        from gridrecourse.network.prepare import (
            OperatingPoint,
            RootVoltages,
            SwitchMode,
            prepare_math_feeder,
        )

        point = OperatingPoint(switches=SwitchMode.AS_DECISIONS, root_voltages=RootVoltages.NOMINAL)
        math = prepare_math_feeder(feeder, point)
        cfg = config or VoltVarConfig()
        if isinstance(n_scenarios, ScenarioSet):
            scenarios = n_scenarios
        else:
            scenarios = voltvar_scenarios(
                cls.site_names(math, cfg),
                int(n_scenarios),
                n_periods=cfg.n_periods,
                start_hour=cfg.start_hour,
                perturbation=perturbation,
                seed=seed,
            )
        return cls(math, scenarios, cfg)

    @staticmethod
    def site_names(math: MathFeeder, config: VoltVarConfig) -> tuple[str, ...]:
        """Scenario sites the problem needs: every bus with load and every PV bus."""
        loaded = np.unique(math.node_bus[np.asarray(abs(math.load_map).sum(axis=1)).ravel() > 0])
        names = [math.bus_names[b] for b in loaded]
        pv = config.pv_buses or _default_pv_buses(math)
        return tuple(dict.fromkeys(names + [b for b in pv if b in set(math.bus_names)]))

    def _unknown(self, buses: Sequence[str]) -> list[str]:
        return [b for b in buses if b not in self._lookup]

    def _resolve_pv_buses(self) -> tuple[str, ...]:
        buses = self.config.pv_buses or _default_pv_buses(self.math)
        bad = self._unknown(buses)
        if bad:
            raise VoltVarConfigError(
                f"feeder {self.math.name!r} has no PV bus(es) {bad} (e.g. "
                f"{list(self.math.bus_names[:6])})"
            )
        if len(set(buses)) != len(buses):
            raise VoltVarConfigError(f"duplicate PV buses in {buses}")
        root = set(self.math.node_bus[self.math.is_root].tolist())
        at_root = [b for b in buses if self._lookup[b] in root]
        if at_root:
            raise VoltVarConfigError(f"PV bus(es) {at_root} are root (substation) buses")
        return tuple(buses)

    def _resolve_monitored(self) -> tuple[str, ...]:
        cfg, math = self.config, self.math
        root = set(math.node_bus[math.is_root].tolist())
        if cfg.monitored_buses is not None:
            buses = cfg.monitored_buses
        elif cfg.monitor is Monitor.LM:
            buses = IEEE123_LM_BUSES
        elif cfg.monitor is Monitor.MM:
            buses = IEEE123_MM_BUSES
        else:
            nonroot = np.unique(math.node_bus[~math.is_root])
            buses = tuple(math.bus_names[b] for b in nonroot if b not in root)
        bad = self._unknown(buses)
        if bad:
            raise VoltVarConfigError(
                f"monitored bus(es) {bad} are not on feeder {math.name!r} (monitoring set "
                f"{cfg.monitor.value}); give monitored_buses that exist, e.g. "
                f"{list(math.bus_names[:6])}, or use the full set (fm)"
            )
        at_root = [b for b in buses if self._lookup[b] in root]
        if at_root:
            raise VoltVarConfigError(f"monitored bus(es) {at_root} are root (substation) buses")
        if not buses:
            raise VoltVarConfigError("the monitoring set is empty")
        return tuple(buses)

    def _resolve_switchable(self) -> tuple[str, ...]:
        sw = self.math.switches
        if sw is None:
            if self.config.switchable:
                raise VoltVarConfigError(
                    f"switchable {list(self.config.switchable)}: the model of feeder "
                    f"{self.math.name!r} keeps no switches (build it with keep_switches=True)"
                )
            return ()
        if self.config.switchable is None:
            return loop_switches(self.math)
        known = {n.lower(): n for n in sw.names}
        bad = [s for s in self.config.switchable if s.lower() not in known]
        if bad:
            raise VoltVarConfigError(
                f"unknown switch(es) {bad} on feeder {self.math.name!r}; switches: {list(sw.names)}"
            )
        return tuple(known[s.lower()] for s in self.config.switchable)

    def _pv_node_map(self) -> sp.csr_matrix:
        """``(N, n_pv)``: each PV system's share on the nodes of its bus (equal over phases)."""
        math = self.math
        pv_bus = np.array([self._lookup[b] for b in self.pv_buses], dtype=int)
        site_of_bus = np.full(len(math.bus_names), -1)
        site_of_bus[pv_bus] = np.arange(len(pv_bus))
        site = site_of_bus[math.node_bus]
        rows = np.flatnonzero((site >= 0) & ~math.is_root)
        k = np.bincount(site[rows], minlength=len(pv_bus))
        if np.any(k == 0):
            dead = [self.pv_buses[i] for i in np.flatnonzero(k == 0)]
            raise VoltVarConfigError(f"PV bus(es) {dead} have no energized phase")
        return _sel(rows, site[rows], (math.n_nodes, len(pv_bus)), 1.0 / k[site[rows]])

    def _scenario_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Scenario site of each load (by its bus) and of each PV system."""
        math, scen = self.math, self.scenarios
        if scen.n_periods != self.T:
            raise VoltVarConfigError(
                f"scenarios have {scen.n_periods} periods, the problem {self.T} (n_periods)"
            )
        col = {name: k for k, name in enumerate(scen.site_names)}
        lm = abs(sp.csc_matrix(math.load_map))
        has = np.diff(lm.indptr) > 0
        first = np.where(has, lm.indices[np.minimum(lm.indptr[:-1], max(lm.nnz - 1, 0))], 0)
        load_bus = [math.bus_names[b] for b in math.node_bus[first]]
        missing = sorted({b for b, h in zip(load_bus, has, strict=True) if h and b not in col})
        if missing:
            raise VoltVarConfigError(
                f"scenario set has no site for load bus(es) {missing[:10]} ({len(missing)} "
                "missing); its site_names must include every bus with load"
            )
        missing_pv = [b for b in self.pv_buses if b not in col]
        if missing_pv:
            raise VoltVarConfigError(f"scenario set has no site for PV bus(es) {missing_pv}")
        if np.max(scen.load_multiplier, initial=0.0) > self.config.max_load_multiplier:
            raise VoltVarConfigError(
                f"scenario load multipliers reach {np.max(scen.load_multiplier):.3f}, above "
                f"max_load_multiplier = {self.config.max_load_multiplier} (the big-M basis)"
            )
        load_site = np.array([col.get(b, 0) for b in load_bus], dtype=int)
        return load_site, np.array([col[b] for b in self.pv_buses], dtype=int)

    def _initial_positions(self) -> np.ndarray | None:
        """Initial position (real) of each regulator on its allowed-position scale."""
        cfg, reg, grid = self.config, self.math.regulators, self.grid
        if cfg.initial_taps is None or reg.n_regulators == 0:
            return None
        if isinstance(cfg.initial_taps, str):
            taps = np.asarray(reg.tap, dtype=float)
        else:
            taps = np.asarray(cfg.initial_taps, dtype=float)
            if taps.shape != (reg.n_regulators,):
                raise VoltVarConfigError(
                    f"initial_taps needs one tap per regulator {list(reg.names)}, got {taps.shape}"
                )
        out = np.empty(reg.n_regulators)
        for r in range(reg.n_regulators):  # a handful of regulators
            tp = grid.tap_pu[grid.start[r] : grid.start[r] + grid.count[r]]
            if len(tp) == 1:  # one allowed tap: one change away unless already there
                out[r] = 0.0 if np.isclose(taps[r], tp[0]) else float(np.sign(taps[r] - tp[0]))
                continue
            if taps[r] < tp[0]:  # beyond the allowed range: whole positions beyond the end
                out[r] = -np.ceil((tp[0] - taps[r]) / (tp[1] - tp[0]) - 1e-9)
            elif taps[r] > tp[-1]:
                out[r] = len(tp) - 1 + np.ceil((taps[r] - tp[-1]) / (tp[-1] - tp[-2]) - 1e-9)
            else:  # the nearest allowed position
                out[r] = float(np.argmin(np.abs(tp - taps[r])))
        return out

    def _fixed_switches(self) -> dict[str, bool]:
        sw = self.math.switches
        if sw is None:
            return {}
        init = dict(zip(sw.names, sw.normal_closed.astype(bool).tolist(), strict=True))
        if self.config.initial_switches:
            known = {n.lower(): n for n in sw.names}
            bad = [s for s in self.config.initial_switches if s.lower() not in known]
            if bad:
                raise VoltVarConfigError(f"initial_switches: unknown switch(es) {bad}")
            for name, value in self.config.initial_switches.items():
                init[known[name.lower()]] = bool(value)
        free = set(self.switchable)
        return {n: init[n] for n in sw.names if n not in free}

    def _build(self, physics: LinDist3Flow) -> None:
        """One scenario's model (first-stage columns included), split into the two stages."""
        cfg, math = self.config, self.math
        T = self.T
        s_base = math.s_base_kva
        reg, sw = math.regulators, math.switches
        n_pv = len(self.pv_buses)
        m = LinearModel(self.name)
        pv_p = m.add_variables("pv-p", n_pv * T, lb=0.0)
        pv_q = m.add_variables("pv-q", n_pv * T, lb=-np.inf)
        pv_c = m.add_variables(
            "pv-curtailment", n_pv * T, lb=0.0, cost=cfg.curtailment_cost * s_base * 1.0
        )
        ties = add_tie_flows(m, math, sw, T) if sw is not None else None
        b_lo, b_hi = cfg.range_b
        with_taps = reg.n_regulators > 0
        net: NetworkBlocks = add_lindist3flow(
            m,
            physics,
            T,
            (Injection.active(pv_p, self._pv_map), Injection.reactive(pv_q, self._pv_map))
            + (() if ties is None else ties.injections),
            v_bounds=(b_lo**2, b_hi**2),  # Range B, hard (eq 10)
            substation=SubstationMode.NONE,
            regulated=regulated_positions(physics, reg) if with_taps else None,
            gapped=tree_switch_positions(physics, sw) if sw is not None else None,
        )
        zero = np.zeros((math.n_nodes, T))
        net.set_rhs(m, net.rhs(zero, zero))
        self._network = net
        taps: TapBlocks | None = None
        if with_taps:
            taps = add_tap_selection(m, net, reg, self.grid)  # eqs 5–7
            self._add_tap_changes(m, taps)  # eq 8
        switching: SwitchBlocks | None = None
        if sw is not None:
            flow_bound = node_injection_bound(
                math, cfg.max_load_multiplier, pv_kva=np.full(n_pv, cfg.pv_kva), pv_map=self._pv_map
            )
            switching = add_switching(  # eqs 14–17
                m,
                net,
                sw,
                T,
                ties=ties,
                fixed=self._fixed_switches(),
                max_operations=cfg.max_switch_operations,
                initial=self._initial_switch_states(),
                operation_cost=cfg.switch_operation_cost,
                node_bound_pu=flow_bound,
            )
        self._taps, self._switching = taps, switching
        # PV: p + c = available (rhs per scenario), inverter polygon (eq 9)
        eye = sp.identity(n_pv * T, format="csr")
        m.add_constraints("pv-availability", [(pv_p, eye), (pv_c, eye)], lb=0.0, ub=0.0)
        add_capability_polygon(
            m, "pv-capability", pv_p, pv_q, np.full(n_pv, cfg.pv_kva / s_base), T,
            n_sides=cfg.polygon_sides,
        )  # fmt: skip
        self._add_line_limits(m, net, physics, ties)  # eq 13
        self._add_imbalance(m, net, physics)  # eq 11
        self._add_range_a(m, net, physics)  # eq 12
        self._split(spec_blocks(m))

    def _initial_switch_states(self) -> dict[str, bool] | None:
        return dict(self.config.initial_switches) if self.config.initial_switches else None

    def _add_tap_changes(self, m: LinearModel, taps: TapBlocks) -> None:
        """Position changes ``δ ≥ ±(k_t − k_{t−1})``, ``Σ_t δ ≤ N_OLTC``, cost C_tap (eq 8)."""
        cfg, grid, T = self.config, self.grid, self.T
        n_reg, k_cols = len(grid.count), grid.size
        position = np.arange(k_cols) - grid.start[grid.regulator]
        kmat = _sel(grid.regulator, np.arange(k_cols), (n_reg, k_cols), position.astype(float))
        delta = m.add_variables(
            "tap-position_changes",
            n_reg * T,
            lb=0.0,
            ub=np.tile((grid.count - 1).astype(float), T) + np.r_[
                np.zeros(n_reg) if self._initial_position is None
                else np.abs(np.clip(self._initial_position, -1e6, 1e6)) + grid.count,
                np.zeros(n_reg * (T - 1)),
            ],
            cost=cfg.tap_change_cost,
        )  # fmt: skip
        diff = sp.identity(T, format="csr") - sp.eye(T, k=-1, format="csr")
        first = 0 if self._initial_position is not None else 1
        if self._initial_position is None:
            m.set_col_bounds(delta, 0.0, np.r_[np.zeros(n_reg), np.full(n_reg * (T - 1), np.inf)])
        if T > first:
            d_u = sp.kron(diff[first:], kmat, format="csr")
            d_delta = sp.identity(n_reg * T, format="csr")[first * n_reg :]
            rhs = np.zeros(n_reg * (T - first))
            if first == 0:
                rhs[:n_reg] = self._initial_position
            up = [(delta, d_delta), (taps.u, -d_u)]
            down = [(delta, d_delta), (taps.u, d_u)]
            m.add_constraints("tap-position_changes_up", up, lb=-rhs)
            m.add_constraints("tap-position_changes_down", down, lb=rhs)
        total = sp.kron(np.ones((1, T)), sp.identity(n_reg), format="csr")
        m.add_constraints(
            "tap-position_changes_limit", [(delta, total)], ub=float(cfg.max_tap_changes)
        )

    def _add_line_limits(self, m, net, physics, ties) -> None:
        """Line polygons at ``line_rating_kva`` per phase, screened (eq 13)."""
        cfg, math = self.config, self.math
        rating = np.full(self._e, cfg.line_rating_kva / math.s_base_kva)
        inscribe = polygon_rows(cfg.polygon_sides)[2]
        # screened at the scenarios' largest load multiplier: exact for this scenario set
        peak = float(np.max(self.scenarios.load_multiplier, initial=0.0))
        bound = node_injection_bound(
            math,
            peak,
            pv_kva=np.full(len(self.pv_buses), cfg.pv_kva),
            pv_map=self._pv_map,
        )
        # the most any branch-phase can carry: everything in its all-closed component
        comp = _phase_components(math)
        total = np.bincount(comp[comp >= 0], weights=bound[comp >= 0])
        reach = total[comp[physics.nonroot]]
        select = reach > inscribe * rating
        limit = add_thermal_polygon(
            m, net, rating, LimitMode.HARD, n_sides=cfg.polygon_sides, select=select
        )
        self.n_thermal_rows = len(limit.rated)
        sw = math.switches
        if ties is not None and sw is not None:
            tie_reach = total[np.maximum(comp[sw.tie_to_node], 0)]
            if np.any(tie_reach > inscribe * cfg.line_rating_kva / math.s_base_kva):
                rated = replace(sw, rating_pu=np.full(sw.n_switches, rating[0]))
                add_tie_thermal_polygon(
                    m, ties, rated, self.T, LimitMode.HARD, n_sides=cfg.polygon_sides
                )

    def _add_imbalance(self, m: LinearModel, net: NetworkBlocks, physics: LinDist3Flow) -> None:
        """``|v_φ − mean_φ v| ≤ 2 ε_imb`` on three-phase non-root buses (eq 11)."""
        eps = self.config.imbalance
        if eps is None:
            self._imbalance_buses = np.zeros(0, dtype=int)
            return
        math = self.math
        bus = math.node_bus[physics.nonroot]
        count = np.bincount(bus, minlength=len(math.bus_names))
        three = np.flatnonzero(count == 3)
        self._imbalance_buses = three
        if not len(three):
            return
        row_of_bus = np.full(len(math.bus_names), -1)
        row_of_bus[three] = np.arange(len(three))
        pos = np.flatnonzero(count[bus] == 3)  # branch-phases of three-phase buses
        order = np.argsort(row_of_bus[bus[pos]], kind="stable")
        pos = pos[order]
        r = np.arange(len(pos))
        grp = row_of_bus[bus[pos]]
        # row i: v_i − (1/3) Σ_{j in bus(i)} v_j
        rows = np.r_[r, np.repeat(r, 3)]
        members = pos.reshape(-1, 3)[grp]  # (rows, 3)
        cols = np.r_[pos, members.ravel()]
        vals = np.r_[np.ones(len(r)), np.full(3 * len(r), -1.0 / 3.0)]
        mat = _sel(rows, cols, (len(r), self._e), vals)
        bound = 2.0 * eps
        m.add_constraints(
            "bus-v_imbalance", [(net.v, over_periods(mat, self.T))], lb=-bound, ub=bound
        )

    def _add_range_a(self, m: LinearModel, net: NetworkBlocks, physics: LinDist3Flow) -> None:
        """Range A with violation binaries and duration limits on the monitored nodes (eq 12)."""
        cfg, math, T = self.config, self.math, self.T
        buses = np.array([self._lookup[b] for b in self.monitored_buses])
        pos = np.flatnonzero(np.isin(math.node_bus[physics.nonroot], buses))
        self.monitored_nodes = physics.nonroot[pos]
        n_m = len(pos)
        (a_lo, a_hi), (b_lo, b_hi) = cfg.range_a, cfg.range_b
        o = m.add_variables("voltage-violation", n_m * T, lb=0.0, ub=1.0, integer=True)
        pick = over_periods(_sel(np.arange(n_m), pos, (n_m, self._e)), T)
        eye = sp.identity(n_m * T, format="csr")
        m.add_constraints(
            "voltage-range_a_upper", [(net.v, pick), (o, -(b_hi**2 - a_hi**2) * eye)], ub=a_hi**2
        )
        m.add_constraints(
            "voltage-range_a_lower", [(net.v, pick), (o, (a_lo**2 - b_lo**2) * eye)], lb=a_lo**2
        )
        m.add_constraints(
            "voltage-violation_total",
            [(o, sp.kron(np.ones((1, T)), sp.identity(n_m), format="csr"))],
            ub=float(cfg.max_violation_hours),
        )
        width = int(cfg.max_consecutive_violations) + 1
        if T >= width:
            n_win = T - width + 1
            win = sp.csr_matrix(
                (np.ones(n_win * width),
                 (np.repeat(np.arange(n_win), width),
                  (np.arange(n_win)[:, None] + np.arange(width)[None, :]).ravel())),
                shape=(n_win, T),
            )  # fmt: skip
            m.add_constraints(
                "voltage-violation_consecutive",
                [(o, sp.kron(win, sp.identity(n_m), format="csr"))],
                ub=float(cfg.max_consecutive_violations),
            )

    def _split(self, blocks) -> None:
        """First-stage blocks → first stage; rows over both stages → linking blocks."""
        first_names = [v.name for v in blocks.variables if v.name in FIRST_STAGE_BLOCKS]
        first_vars = tuple(
            next(v for v in blocks.variables if v.name == n)
            for n in FIRST_STAGE_BLOCKS
            if n in first_names
        )
        first_set = {v.name for v in first_vars}
        sizes = {v.name: v.size for v in first_vars}
        second_vars = tuple(v for v in blocks.variables if v.name not in first_set)
        first_rows, second_rows, links = [], [], []
        for c in blocks.constraints:
            terms = dict(c.terms)
            on_first = [n for n in terms if n in first_set]
            if len(on_first) == len(terms):
                first_rows.append(c)
                continue
            if not on_first:
                second_rows.append(c)
                continue
            tech = sp.hstack(
                [
                    terms.pop(v.name) if v.name in terms else sp.csr_matrix((c.size, sizes[v.name]))
                    for v in first_vars
                ],
                format="csr",
            )
            second_rows.append(ConstraintBlockSpec(c.name, tuple(terms.items()), lb=c.lb, ub=c.ub))
            links.append(LinkingBlock(c.name, tech))
        self._first = FirstStageSpec(first_vars, tuple(first_rows))
        if not links:
            # no regulator and no switch: a dummy link keeps the contract (x has no columns)
            raise VoltVarConfigError(
                f"feeder {self.math.name!r} has neither regulators nor switches: no first stage"
            )
        self._second = SecondStageSpec(
            variables=second_vars, constraints=tuple(second_rows), linking=tuple(links)
        )
        spec = self._second
        self._rows = {
            name: spec.row_slice(name)
            for name in ("branch-p_balance", "branch-q_balance", "pv-availability")
        }

    # ------------------------------------------------------------------ feasibility
    def first_stage_model(
        self, *, drop: Sequence[str] = ()
    ) -> tuple[LinearModel, dict[str, VariableBlock]]:
        """The first stage alone as a :class:`LinearModel` (its blocks by name).

        Every first-stage row and bound (radiality, tap/switch counters and limits) with the
        operation costs as objective: the base of a surrogate MILP (add the network's rows and
        its output cost) or of the feasibility repair of paper B eq 36. ``drop`` leaves out
        the named row blocks.
        """
        return self._first_stage_model(drop=drop)

    def _first_stage_model(self, *, drop: Sequence[str] = ()) -> tuple[LinearModel, dict]:
        fs = self._first
        model = LinearModel(f"first-stage-{self.name}")
        blocks = {
            v.name: model.add_variables(
                v.name, v.size, lb=v.lb, ub=v.ub, cost=v.cost, integer=v.integer
            )
            for v in fs.variables
        }
        for c in fs.constraints:
            if c.name in drop:
                continue
            model.add_constraints(c.name, [(blocks[n], mm) for n, mm in c.terms], lb=c.lb, ub=c.ub)
        return model, blocks

    def _check_first_stage(self) -> None:
        """Solve the first stage alone; if infeasible, name the limits responsible."""
        options = SolverOptions(mip_gap=1.0, time_limit=60.0)
        try:
            self._first_stage_model()[0].solve(options)
            return
        except InfeasibleModelError:
            pass
        names = [c.name for c in self._first.constraints]
        tap_rows = [n for n in names if n.startswith("tap-position_changes")]
        sw_rows = [n for n in names if n.startswith("switch-operations")]
        culprits = []
        for label, rows in (("tap-change limit", tap_rows), ("switch-operation limit", sw_rows)):
            try:
                self._first_stage_model(drop=rows)[0].solve(options)
                culprits.append(label)
            except InfeasibleModelError:
                continue
        detail = ""
        if "tap-change limit" in culprits and self._initial_position is not None:
            k0 = self._initial_position
            need = np.maximum(0.0, np.maximum(-k0, k0 - (self.grid.count - 1)))
            bad = np.flatnonzero(need > self.config.max_tap_changes + 1e-9)
            if len(bad):
                reg = self.math.regulators
                detail = "; ".join(
                    f"{reg.names[r]}: initial tap needs {need[r]:.2f} position changes to reach "
                    f"the allowed taps {self.grid.tap_pu[self.grid.regulator == r].tolist()}"
                    for r in bad
                )
        what = " and ".join(culprits) if culprits else "the tap and switch constraints together"
        raise VoltVarConfigError(
            f"the first stage of {self.name!r} admits no tap/switch schedule: {what} "
            f"(max_tap_changes={self.config.max_tap_changes}, max_switch_operations="
            f"{self.config.max_switch_operations}, initial switch states "
            f"{self._initial_switch_states() or 'normal'})" + (f" — {detail}" if detail else "")
        )

    # ------------------------------------------------------------------ TwoStageProblem
    @property
    def first_stage(self) -> FirstStageSpec:
        """Taps, switch states and their counters (module docstring)."""
        return self._first

    @property
    def second_stage(self) -> SecondStageSpec:
        """One scenario's recourse (MILP: Range A violation binaries)."""
        return self._second

    @property
    def probability(self) -> np.ndarray:
        """Scenario probabilities."""
        return self.scenarios.probability

    def net_load_pu(self, indices: Sequence[int] | np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Net load (load − fixed generation) per node, scenario and hour, p.u.

        Returns
        -------
        p, q : ndarray, shape (S, N, T)
        """
        idx = np.asarray(indices, dtype=int).ravel()
        math, T = self.math, self.T
        mult = self.scenarios.load_multiplier[idx][:, self._load_site, :]  # (S, L, T)
        s = len(idx)
        kw = (math.load_kw[None, :, None] * mult).transpose(1, 0, 2).reshape(-1, s * T)
        kvar = (math.load_kvar[None, :, None] * mult).transpose(1, 0, 2).reshape(-1, s * T)
        zero_pv = np.zeros((len(math.pv_names), s * T))
        p, q = fixed_net_load(math, kw, kvar, pv_kw=None if not len(math.pv_names) else zero_pv,
                              pv_kvar=None if not len(math.pv_names) else zero_pv)  # fmt: skip
        return p.reshape(-1, s, T).transpose(1, 0, 2), q.reshape(-1, s, T).transpose(1, 0, 2)

    def available_pv_kw(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        """PV availability (kW) per scenario, PV system and hour, shape (S, n_pv, T)."""
        idx = np.asarray(indices, dtype=int).ravel()
        return self.config.pv_kva * self.scenarios.pv_multiplier[idx][:, self._pv_site, :]

    def scenario_data(self, indices: Sequence[int] | np.ndarray) -> ScenarioData:
        """Net loads (balance rows) and PV availability (``pv-availability`` rows)."""
        idx = np.asarray(indices, dtype=int).ravel()
        spec = self._second
        s = len(idx)
        lb = np.tile(spec.row_lb, (s, 1))
        ub = np.tile(spec.row_ub, (s, 1))
        p, q = self.net_load_pu(idx)
        nr = self._nonroot
        avail = self.available_pv_kw(idx) / self.math.s_base_kva  # (S, n_pv, T)
        for name, values in (
            ("branch-p_balance", p[:, nr, :]),
            ("branch-q_balance", q[:, nr, :]),
            ("pv-availability", avail),
        ):
            flat = values.transpose(0, 2, 1).reshape(s, -1)  # period-major
            rs = self._rows[name]
            lb[:, rs] = flat
            ub[:, rs] = flat
        return ScenarioData(indices=idx, row_lb=lb, row_ub=ub)

    def decode(self, x: np.ndarray) -> VoltVarDecision:
        """Taps and switch states of a first-stage vector."""
        x = np.asarray(x, dtype=float)
        fs, grid, T = self._first, self.grid, self.T
        reg = self.math.regulators
        if reg.n_regulators:
            u = x[fs.slice("tap-u")].reshape(T, grid.size).T  # (K, T)
            position = np.arange(grid.size) - grid.start[grid.regulator]
            kmat = _sel(grid.regulator, np.arange(grid.size), (reg.n_regulators, grid.size),
                        position.astype(float))  # fmt: skip
            col = grid.start[:, None] + np.rint(kmat @ u).astype(int)  # (R, T) grid columns
            numbers = grid.number[col]
            positions = col - grid.start[:, None]
            taps = grid.tap_pu[col]
        else:
            numbers = positions = np.zeros((0, T), dtype=int)
            taps = np.zeros((0, T))
        sw = self.math.switches
        if sw is not None:
            z = np.rint(x[fs.slice("switch-z")].reshape(T, sw.n_switches).T).astype(int)
            names = sw.names
        else:
            z, names = np.zeros((0, T), dtype=int), ()
        return VoltVarDecision(
            regulator_names=tuple(reg.names),
            tap_pu=taps,
            tap_numbers=numbers.astype(int),
            tap_positions=positions.astype(int),
            switch_names=tuple(names),
            switch_closed=z,
        )

    # ------------------------------------------------------------------ helpers
    @property
    def n_periods(self) -> int:
        """Hours ``T``."""
        return self.T

    def primary_columns(self) -> np.ndarray:
        """Positions in ``x`` of the decision columns (``tap-u`` then ``switch-z``), int."""
        fs = self._first
        names = [v.name for v in fs.variables]
        parts = [
            np.arange(fs.slice(n).start, fs.slice(n).stop) for n in PRIMARY_BLOCKS if n in names
        ]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=int)

    def complete_first_stage(
        self, primary: np.ndarray, options: SolverOptions | None = None
    ) -> np.ndarray:
        """The full first stage ``x`` for given decision columns (taps and switches).

        Fixes ``x[primary_columns()]`` and solves the first stage alone for the auxiliary
        columns at least cost (tap and switch counters equal the moves; connectivity flows any
        feasible).

        Raises
        ------
        InfeasibleModelError
            The taps/switches violate a first-stage row (radiality, operation limits, …).
        """
        cols = self.primary_columns()
        primary = np.asarray(primary, dtype=float).ravel()
        if primary.shape != cols.shape:
            raise VoltVarConfigError(f"primary must have {len(cols)} entries, got {primary.shape}")
        fs = self._first
        model, blocks = self._first_stage_model()
        full = np.full(fs.size, np.nan)
        full[cols] = primary
        for v in fs.variables:
            if v.name in PRIMARY_BLOCKS:
                vals = full[fs.slice(v.name)]
                model.set_col_bounds(blocks[v.name], vals, vals)
        sol = model.solve(options or SolverOptions(mip_gap=1e-9))
        x = np.concatenate([sol.value(blocks[v.name]) for v in fs.variables])
        x[fs.integer] = np.round(x[fs.integer])
        return x

    def first_stage_vector(
        self, tap_positions: np.ndarray, switch_closed: np.ndarray | None = None
    ) -> np.ndarray:
        """``x`` from tap positions ``(R, T)`` (indices 0..K−1) and switch states ``(S, T)``."""
        grid, T = self.grid, self.T
        reg, sw = self.math.regulators, self.math.switches
        parts = []
        if reg.n_regulators:
            pos = np.broadcast_to(np.asarray(tap_positions, dtype=int), (reg.n_regulators, T))
            if np.any(pos < 0) or np.any(pos >= grid.count[:, None]):
                raise VoltVarConfigError("tap positions outside 0..K−1")
            u = np.zeros((T, grid.size))
            u[np.arange(T)[None, :].repeat(reg.n_regulators, 0), grid.start[:, None] + pos] = 1.0
            parts.append(u.ravel())
        if sw is not None:
            if switch_closed is None:
                raise VoltVarConfigError("switch states are needed (the feeder has switches)")
            z = np.broadcast_to(np.asarray(switch_closed, dtype=float), (sw.n_switches, T))
            parts.append(z.T.ravel())
        return self.complete_first_stage(np.concatenate(parts))

    def neutral_start(self) -> np.ndarray:
        """A first stage for MIP starts: every regulator at the allowed tap nearest 1.0 p.u.
        all day, the switches at their initial states all day.

        Its cost is the moves from the initial taps; on the IEEE 123 study case its recourse
        was feasible in every scenario measured (LM and FM, 10 scenarios, seed 0: no
        curtailment, 1800 $ of tap moves), whereas HiGHS found no incumbent of the extensive
        form within 600 s without a start. Not guaranteed feasible in general.
        """
        grid, T = self.grid, self.T
        dist = np.abs(grid.tap_pu - 1.0) + 1e-9 * np.arange(grid.size)
        col = np.flatnonzero(dist == np.minimum.reduceat(dist, grid.start)[grid.regulator])
        positions = np.repeat((col - grid.start[grid.regulator[col]])[:, None], T, axis=1)
        return self.first_stage_vector(positions, self._initial_schedule())

    def _initial_schedule(self) -> np.ndarray | None:
        """Initial switch states held all day, ``(S, T)`` (None without switches)."""
        sw = self.math.switches
        if sw is None:
            return None
        init = sw.normal_closed.astype(float).copy()
        if self.config.initial_switches:
            known = {n.lower(): k for k, n in enumerate(sw.names)}
            for name, value in self.config.initial_switches.items():
                init[known[name.lower()]] = float(bool(value))
        return np.repeat(init[:, None], self.T, axis=1)

    def relaxation_start(
        self,
        scenarios: Sequence[int] | np.ndarray | None = None,
        options: SolverOptions | None = None,
        *,
        constant: bool = False,
    ) -> np.ndarray:
        """A first stage for MIP starts, from the LP relaxation of the extensive form.

        Solves the relaxation over ``scenarios`` (default all) and reads the continuous tap
        ratio ``√(v_send / v_parent)`` of every regulated node (the relaxation is the
        continuous-tap model), averaged over phases and scenarios (and hours when
        ``constant``). The schedule nearest to it in positions that meets the tap-change limit
        is then found by the first stage alone with cost ``|k − target|`` on every tap
        binary (paper B eq 36's repair, with the switches held at their initial states).
        A heuristic in the spirit of :func:`~gridrecourse.formulation.taps.rounded_start`:
        its recourse may still be infeasible.

        Returns
        -------
        ndarray, shape (n_x,)
            A first stage satisfying the first-stage rows (auxiliaries completed).
        """
        fs, spec, T = self._first, self._second, self.T
        math, reg, grid = self.math, self.math.regulators, self.grid
        idx = np.arange(self.n_scenarios) if scenarios is None else np.asarray(scenarios, int)
        weights = self.probability[idx] / self.probability[idx].sum()
        relax = LinearModel(f"relaxation-{self.name}")
        first = {
            v.name: relax.add_variables(v.name, v.size, lb=v.lb, ub=v.ub, cost=v.cost)
            for v in fs.variables
        }
        for c in fs.constraints:
            relax.add_constraints(c.name, [(first[n], mm) for n, mm in c.terms], lb=c.lb, ub=c.ub)
        stacked = add_second_stage_blocks(
            relax, spec, weights, data=self.scenario_data(idx), first_stage=first,
            first_stage_spec=fs, integer=False,
        )  # fmt: skip
        sol = relax.solve(options or SolverOptions())
        model, blocks = self._first_stage_model()
        for v in fs.variables:  # only the distance to the target counts
            model.set_cost(blocks[v.name], 0.0)
        if reg.n_regulators:
            s, e = len(idx), self._e
            send = sol.value(stacked.variables["branch-v_send"]).reshape(s, T, -1)  # (S, T, J)
            v = sol.value(stacked.variables["bus-v"]).reshape(s, T, e)
            pos = np.full(math.n_nodes, -1)
            pos[self._nonroot] = np.arange(e)
            parent = math.parent[reg.node]
            v_par = np.where(
                pos[parent][None, None, :] >= 0,
                v[:, :, np.maximum(pos[parent], 0)],
                (math.root_v_pu[parent] ** 2)[None, None, :],
            )
            ratio = np.sqrt(np.maximum(send, 0.0) / np.maximum(v_par, 1e-9)).mean(axis=0)
            if constant:
                ratio = np.repeat(ratio.mean(axis=0, keepdims=True), T, axis=0)
            count = np.bincount(reg.regulator_of, minlength=reg.n_regulators)
            mean = np.zeros((T, reg.n_regulators))
            np.add.at(mean.T, reg.regulator_of, ratio.T)
            mean /= count[None, :]
            tap = (mean / reg.base_ratio) ** (1.0 / reg.tap_exponent)  # (T, R)
            target = np.zeros((T, grid.size))  # fractional position of the target tap
            for r in range(reg.n_regulators):  # a handful of regulators
                cols = slice(grid.start[r], grid.start[r] + grid.count[r])
                target[:, cols] = np.interp(
                    tap[:, r], grid.tap_pu[cols], np.arange(grid.count[r], dtype=float)
                )[:, None]
            position = np.arange(grid.size) - grid.start[grid.regulator]
            model.set_cost(blocks["tap-u"], np.abs(position[None, :] - target).ravel())
        z = self._initial_schedule()
        if z is not None:
            model.set_col_bounds(blocks["switch-z"], z.T.ravel(), z.T.ravel())
        rep = model.solve(SolverOptions(mip_gap=1e-6))
        primary = np.concatenate([rep.value(blocks[n]) for n in PRIMARY_BLOCKS if n in blocks])
        return self.complete_first_stage(np.rint(primary))

    def recourse(self, values: np.ndarray, scenario: int) -> VoltVarRecourse:
        """One scenario's recourse columns (``SecondStageResult.values``) in engineering units."""
        spec, math, T = self._second, self.math, self.T
        n_pv = len(self.pv_buses)
        s_base = math.s_base_kva

        def block(name: str) -> np.ndarray:
            return np.asarray(values)[spec.col_slice(name)]

        v = np.empty((math.n_nodes, T))
        v[self._nonroot] = np.sqrt(np.maximum(block("bus-v").reshape(T, -1).T, 0.0))
        v[math.is_root] = math.root_v_pu[math.is_root][:, None]
        as_nt = lambda a: a.reshape(T, n_pv).T  # noqa: E731
        viol = np.rint(block("voltage-violation").reshape(T, -1).T).astype(int)
        return VoltVarRecourse(
            v_pu=v,
            pv_kw=as_nt(block("pv-p")) * s_base,
            pv_kvar=as_nt(block("pv-q")) * s_base,
            curtailed_kw=as_nt(block("pv-curtailment")) * s_base,
            available_kw=self.available_pv_kw([scenario])[0],
            violation=viol,
        )


def _default_pv_buses(math: MathFeeder) -> tuple[str, ...]:
    """:data:`IEEE123_PV_BUSES` when the feeder has them all, else up to 14 load buses."""
    names = set(math.bus_names)
    if all(b in names for b in IEEE123_PV_BUSES):
        return IEEE123_PV_BUSES
    loaded = np.unique(math.node_bus[(np.asarray(abs(math.load_map).sum(axis=1)).ravel() > 0)
                                     & ~math.is_root])  # fmt: skip
    pick = loaded[np.unique(np.linspace(0, len(loaded) - 1, min(14, len(loaded))).astype(int))]
    return tuple(math.bus_names[b] for b in pick)


def _phase_components(math: MathFeeder) -> np.ndarray:
    """Component of every node in the all-closed node graph without the roots (−1 at roots)."""
    nonroot = np.flatnonzero(~math.is_root)
    tail, head = math.parent[nonroot], nonroot
    sw = math.switches
    if sw is not None:
        tail = np.r_[tail, sw.tie_from_node]
        head = np.r_[head, sw.tie_to_node]
    keep = ~math.is_root[tail] & ~math.is_root[head]
    n = math.n_nodes
    adj = sp.csr_matrix((np.ones(keep.sum()), (tail[keep], head[keep])), shape=(n, n))
    _, labels = connected_components(adj, directed=False)
    out = np.full(n, -1)
    _, out[nonroot] = np.unique(labels[nonroot], return_inverse=True)
    return out
