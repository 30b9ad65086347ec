"""PV siting and sizing on a three-phase feeder: paper C's two-stage problem (METHODS §3).

First stage (paper C D1, eqs. 37–40), over the candidate buses ``i``::

    n_i ∈ {0..L} integer PV units,  s_i ∈ {0, 1} sited
    G_min s_i ≤ g n_i ≤ G_max s_i            (38)  [kW]      block "pv-size_min" / "pv-size_max"
    Σ_i c_DG g n_i ≤ budget                  (39)  [$]       block "pv-budget" (÷ c_DG g)
    N_min ≤ Σ_i s_i ≤ N_max                  (40)            block "pv-site_count"

with ``g, L, c_DG, budget, G_min, G_max, N_min, N_max`` from
:class:`~gridrecourse.problems.siting_budget.SitingBudget`. The first stage costs nothing:
the objective is the expected recourse.

Second stage, one hourly snapshot ω per scenario (paper C eqs. 41–53)::

    P1 (SitingObjective.VOLTAGE_DEVIATION):  min Σ_nodes e,   e ≥ ±(v − v_ref²)      (41)–(43)
    P2 (SitingObjective.LOSSES):             min Σ_branch-phases s_base r (P² + Q²)   (53) [kW]
    0 ≤ s_base p_DG,i ≤ g PV_i,ω n_i         (44) block "pv-linking" (rows in kW)
    q_DG,i = tan(acos pf) p_DG,i             (46)
    LinDist3Flow (METHODS §1.1)              (45)–(47) with loads = nominal × load_mult_bus,ω
    v_min² ≤ v ≤ v_max²                      (48) squared magnitude
    cos θ_k P + sin θ_k Q ≤ cos(π/K) S        (49)–(52) inscribed thermal polygon, K sides

A 3-phase (or 2-phase) site splits its PV equally over the bus's phases. In P2, ``r`` is the real
part of the diagonal of each branch-phase's series impedance (p.u.) and the voltage in the loss
term is nominal (paper C after eq. 53); the objective is in kW. In P1, ``e`` is over the
non-root nodes (roots are fixed) and is in p.u. of v² (dimensionless).

Limits: hard, soft or off
-------------------------
``SitingConfig.voltage_limits`` defaults to :attr:`LimitMode.SOFT`: with OpenDSS's regulator taps
(set for the peak load) the IEEE 123 feeder sits above 1.05 p.u. in low-load hours (|V| up to
1.13 p.u. at the year's lowest bundled-data load) and PV at unity power factor can only raise
voltages, so the hard box (48) is infeasible for such scenarios at **every** first stage —
checked: all 24 stratified bundled-data scenarios at n = 0 (load multipliers 0.13–0.57), each
with a Farkas cut ``0 ≥ β > 0``; 96 % of the soft objective is then a PV-independent penalty.
With the regulators at tap 1.0 (:attr:`TapSetting.NEUTRAL`, one voltage base as in paper C)
|V| stays within about 0.92–1.03 p.u. from 10 % to 100 % load and P1 rewards PV. The soft band adds
``v_over, v_under ≥ 0`` with ``v − v_over ≤ v_max²``, ``v + v_under ≥ v_min²`` and charges
``voltage_penalty`` per p.u. of v² outside the band (defaults
:data:`DEFAULT_VOLTAGE_PENALTY`: 100 for P1, i.e. a violation costs 100× a deviation inside the
band; 1e4 kW per p.u. for P2). :attr:`LimitMode.HARD` enforces (48) exactly; infeasible
scenarios then yield Farkas rays and feasibility cuts
(:class:`~gridrecourse.problems.base.SecondStageResult`). Thermal limits (49)–(52) default to
soft as well: imported ratings are often OpenDSS defaults (400 A), and the IEEE 123 at nominal
(peak) load already loads five branch elements near the substation above them (up to 155 %; the
bundled-data scenarios, at most 57 % of peak, do not); the overload variable of
a rated branch-phase costs ``thermal_penalty`` per p.u. of apparent power (defaults
:data:`DEFAULT_THERMAL_PENALTY`).

Thermal screening: a rated branch-phase whose largest possible apparent power (from the flow
ranges below, any scenario, any budget-feasible siting) stays below
:data:`THERMAL_SCREEN_FRACTION` of its inscribed rating cannot bind, so its polygon rows are left
out (``SitingConfig.thermal_screening``). Flows are linear in the injections, so the active-power
range is exact; the reactive range assumes capacitor voltages within ``[0.8, 1.2]`` p.u., which the
20 % margin covers.

Flow ranges (:class:`FlowRange`): ``P = F⁻¹(p_load − M p_DG)`` with ``F`` the LinDist3Flow flow
block, so over the scenarios' loads and ``0 ≤ p_DG,i ≤ min(G_max, budget/c_DG) · max_ω PV_i,ω``
(and at most the whole budget's PV on one branch-phase) ``P`` spans ``[min_ω F⁻¹p_ω − reach,
max_ω F⁻¹p_ω]``. The extensive form places the tangent planes of the P2 losses on these ranges.

References
----------
Paper C ("SPAR-OPF"), §III-A–B, eqs. (37)–(53). METHODS §1.1, §1.4, §3.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum

import numpy as np
import scipy.sparse as sp
from scipy.sparse.linalg import splu

from gridrecourse.data.bundled_data import normalized_load_multiplier, normalized_pv_multiplier
from gridrecourse.errors import GridRecourseError
from gridrecourse.formulation.injections import Injection
from gridrecourse.formulation.limits import (
    LimitMode,
    add_thermal_polygon,
    add_voltage_band,
    add_voltage_deviation,
    polygon_rows,
)
from gridrecourse.formulation.network import SubstationMode, add_lindist3flow
from gridrecourse.network.components import Feeder
from gridrecourse.network.loading import FeederSpec
from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.problems.base import (
    FeasibilityCut,
    FirstStageSpec,
    ScenarioData,
    SecondStageModel,
    SecondStageSpec,
    TwoStageProblem,
    VariableBlockSpec,
)
from gridrecourse.problems.reduced_recourse import (
    ReducedSecondStageModel,
    ReductionNotApplicable,
)
from gridrecourse.problems.separable import SeparableFirstStage
from gridrecourse.problems.siting_budget import SITED, UNITS, SitingBudget
from gridrecourse.problems.spec_blocks import spec_blocks
from gridrecourse.solvers.highs import LinearModel
from gridrecourse.uncertainty.scenarios import (
    ScenarioMethod,
    ScenarioSet,
    sampled_scenarios,
    stratified_scenarios,
)

__all__ = [
    "DEFAULT_THERMAL_PENALTY",
    "DEFAULT_VOLTAGE_PENALTY",
    "LINKING_BLOCK",
    "THERMAL_SCREEN_FRACTION",
    "FlowRange",
    "PVSitingProblem",
    "SitingBudget",
    "SitingConfig",
    "SitingConfigError",
    "SitingDecision",
    "SitingObjective",
    "TapSetting",
    "siting_scenarios",
]

#: Name of the linking constraint block (paper C eq. 44).
LINKING_BLOCK = "pv-linking"
#: Rows kept by thermal screening: largest possible |S| above this fraction of the rating.
THERMAL_SCREEN_FRACTION = 0.8
#: Capacitor squared-voltage range assumed by the flow ranges (p.u.²).
_CAP_V_SQ = (0.8**2, 1.2**2)


class SitingConfigError(GridRecourseError, ValueError):
    """Invalid PV-siting settings or inputs; the message names the culprit."""


class SitingObjective(str, Enum):
    """Second-stage objective of paper C."""

    #: P1: Σ |v − v_ref²| over non-root nodes (p.u., LP), eqs. (41)–(43)
    VOLTAGE_DEVIATION = "voltage_deviation"
    #: P2: Σ s_base r (P² + Q²) over branch-phases (kW, QP), eq. (53)
    LOSSES = "losses"


class TapSetting(str, Enum):
    """Regulator taps of the linear model built by :meth:`PVSitingProblem.from_feeder`."""

    #: the taps OpenDSS settled at the source model's (peak) load
    OPENDSS = "opendss"
    #: every regulator at tap 1.0 (regulators bypassed; one voltage base as in paper C)
    NEUTRAL = "neutral"


#: Default penalty per p.u. of v² outside [v_min², v_max²] (objective units), by objective.
DEFAULT_VOLTAGE_PENALTY: Mapping[SitingObjective, float] = {
    SitingObjective.VOLTAGE_DEVIATION: 100.0,
    SitingObjective.LOSSES: 1.0e4,
}
#: Default penalty per p.u. (of s_base) of apparent power above a rating, by objective.
DEFAULT_THERMAL_PENALTY: Mapping[SitingObjective, float] = {
    SitingObjective.VOLTAGE_DEVIATION: 100.0,
    SitingObjective.LOSSES: 1.0e4,
}


@dataclass(frozen=True)
class SitingConfig:
    """Settings of the PV-siting problem (METHODS §3; defaults partly our choice).

    Attributes
    ----------
    objective : SitingObjective
        P1 (voltage deviation, LP) or P2 (losses, QP).
    budget : SitingBudget
        First-stage constants (g = 10 kW, L = 100, $1000/kW, $1.5M, 1..20 sites).
    candidates : tuple of str, optional
        Candidate bus names; default every non-root bus with load.
    power_factor : float
        PV power factor (1.0: no reactive power); q_DG = tan(acos pf) p_DG, injected.
    v_min, v_max : float
        Voltage band (p.u. of magnitude); enforced on v = |V|² as [v_min², v_max²].
    v_ref : float
        Reference voltage of P1 (p.u.).
    voltage_limits, thermal_limits : LimitMode
        Hard, soft (default) or off; see the module docstring.
    voltage_penalty : float, optional
        Objective units per p.u. of v² outside the band; default
        :data:`DEFAULT_VOLTAGE_PENALTY` for the objective.
    thermal_penalty : float, optional
        Objective units per p.u. of apparent power above a rating; default
        :data:`DEFAULT_THERMAL_PENALTY`.
    polygon_sides : int
        Sides of the inscribed thermal polygon (METHODS §1.4: 12).
    thermal_screening : bool
        Leave out polygon rows that cannot bind (module docstring).
    reduced_recourse : bool
        Solve the recourse LP through its exact reduction
        (:meth:`PVSitingProblem.build_second_stage`; ``False``: the full LP, warm-started).
    """

    objective: SitingObjective = SitingObjective.VOLTAGE_DEVIATION
    budget: SitingBudget = field(default_factory=SitingBudget)
    candidates: tuple[str, ...] | None = None
    power_factor: float = 1.0
    v_min: float = 0.95
    v_max: float = 1.05
    v_ref: float = 1.0
    voltage_limits: LimitMode = LimitMode.SOFT
    thermal_limits: LimitMode = LimitMode.SOFT
    voltage_penalty: float | None = None
    thermal_penalty: float | None = None
    polygon_sides: int = 12
    thermal_screening: bool = True
    reduced_recourse: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        try:
            set_(self, "objective", SitingObjective(self.objective))
            set_(self, "voltage_limits", LimitMode(self.voltage_limits))
            set_(self, "thermal_limits", LimitMode(self.thermal_limits))
        except ValueError as exc:
            raise SitingConfigError(f"SitingConfig: {exc}") from None
        if not 0 < self.power_factor <= 1:
            raise SitingConfigError(
                f"SitingConfig.power_factor must be in (0, 1], got {self.power_factor!r}"
            )
        if not 0 < self.v_min < self.v_max:
            raise SitingConfigError(
                f"SitingConfig: need 0 < v_min < v_max, got {self.v_min}, {self.v_max}"
            )
        if self.polygon_sides < 4:
            raise SitingConfigError("SitingConfig.polygon_sides must be >= 4")
        for name in ("voltage_penalty", "thermal_penalty"):
            value = getattr(self, name)
            if value is not None and not (np.isfinite(value) and value > 0):
                raise SitingConfigError(f"SitingConfig.{name} must be positive, got {value!r}")
        if self.candidates is not None:
            if isinstance(self.candidates, str):
                raise SitingConfigError("SitingConfig.candidates must be a sequence of bus names")
            set_(self, "candidates", tuple(self.candidates))

    @property
    def voltage_penalty_value(self) -> float:
        """The voltage penalty in use (objective units per p.u. of v²)."""
        if self.voltage_penalty is not None:
            return float(self.voltage_penalty)
        return DEFAULT_VOLTAGE_PENALTY[self.objective]

    @property
    def thermal_penalty_value(self) -> float:
        """The thermal penalty in use (objective units per p.u. of apparent power)."""
        if self.thermal_penalty is not None:
            return float(self.thermal_penalty)
        return DEFAULT_THERMAL_PENALTY[self.objective]


@dataclass(frozen=True, eq=False)
class SitingDecision:
    """A PV siting and sizing decision.

    Attributes
    ----------
    site_names : tuple of str
        Candidate bus names.
    units : ndarray of int, shape (n_sites,)
        ``n_i`` PV units per candidate.
    sited : ndarray of bool, shape (n_sites,)
        ``s_i``.
    unit_kw : float
        ``g`` (kW per unit).
    """

    site_names: tuple[str, ...]
    units: np.ndarray
    sited: np.ndarray
    unit_kw: float

    @property
    def kw(self) -> np.ndarray:
        """Installed PV per candidate (kW)."""
        return self.units * self.unit_kw

    @property
    def total_kw(self) -> float:
        """Total installed PV (kW)."""
        return float(self.kw.sum())

    def units_by_bus(self) -> dict[str, int]:
        """``{bus: n_i}`` for the buses with PV."""
        return {self.site_names[i]: int(self.units[i]) for i in np.flatnonzero(self.units > 0)}


@dataclass(frozen=True, eq=False)
class FlowRange:
    """Possible branch-phase flows over the scenarios and budget-feasible sitings (p.u.).

    Attributes
    ----------
    p_lo, p_hi, q_lo, q_hi : ndarray, shape (E,)
        Bounds of the active and reactive sending-end flows of each branch-phase.
    """

    p_lo: np.ndarray
    p_hi: np.ndarray
    q_lo: np.ndarray
    q_hi: np.ndarray

    @property
    def s_max(self) -> np.ndarray:
        """Largest possible apparent power per branch-phase (p.u.)."""
        return np.hypot(
            np.maximum(np.abs(self.p_lo), np.abs(self.p_hi)),
            np.maximum(np.abs(self.q_lo), np.abs(self.q_hi)),
        )


def _bus_lookup(math: MathFeeder) -> dict[str, int]:
    return {name: i for i, name in enumerate(math.bus_names)}


def _load_buses(math: MathFeeder) -> np.ndarray:
    """Bus indices (sorted) of non-root nodes carrying nominal load."""
    s_nom = math.load_map @ (math.load_kw + 1j * math.load_kvar)
    loaded = (np.abs(s_nom) > 0) & ~math.is_root
    return np.unique(math.node_bus[loaded])


def default_candidates(math: MathFeeder) -> tuple[str, ...]:
    """Every non-root bus with load, in feeder bus order."""
    root_buses = np.unique(math.node_bus[math.is_root])
    buses = np.setdiff1d(_load_buses(math), root_buses)
    return tuple(math.bus_names[b] for b in buses)


def siting_scenarios(
    math: MathFeeder,
    n_scenarios: int,
    *,
    candidates: Sequence[str] | None = None,
    method: ScenarioMethod = ScenarioMethod.STRATIFIED,
    noise_std: float = 0.1,
    seed: int | None = 0,
) -> ScenarioSet:
    """Scenarios from the bundled hourly series for every load and candidate bus.

    Sites are the buses with load plus the candidates, in feeder order; multipliers come from
    :func:`~gridrecourse.data.bundled_data.normalized_load_multiplier` and
    :func:`~gridrecourse.data.bundled_data.normalized_pv_multiplier` (8760 real hours) with
    per-bus noise (paper C Algorithm 2 for ``ScenarioMethod.STRATIFIED``; ``n_scenarios`` a
    multiple of 24 there).
    """
    lookup = _bus_lookup(math)
    cand = tuple(candidates) if candidates is not None else default_candidates(math)
    missing = [c for c in cand if c not in lookup]
    if missing:
        raise SitingConfigError(f"feeder {math.name!r} has no candidate bus(es) {missing[:10]}")
    buses = np.union1d(_load_buses(math), [lookup[c] for c in cand]).astype(int)
    names = [math.bus_names[b] for b in buses]
    method = ScenarioMethod(method)
    if method is ScenarioMethod.STRATIFIED:
        generate = stratified_scenarios
    elif method is ScenarioMethod.SAMPLED:
        generate = sampled_scenarios
    else:
        raise SitingConfigError(f"siting_scenarios: cannot generate {method.value!r} scenarios")
    return generate(
        normalized_load_multiplier(),
        normalized_pv_multiplier(),
        n_scenarios,
        names,
        noise_std=noise_std,
        seed=seed,
    )


class PVSitingProblem(TwoStageProblem[SitingDecision]):
    """Paper C's PV siting and sizing as a :class:`TwoStageProblem` (module docstring).

    Parameters
    ----------
    math : MathFeeder
        Per-unit radial feeder (see :meth:`from_feeder` for a name, path or Feeder).
    scenarios : ScenarioSet
        Single-period scenarios whose ``site_names`` are bus names and include every bus with
        load and every candidate bus (:func:`siting_scenarios` builds one).
    config : SitingConfig

    Raises
    ------
    SitingConfigError
        Unknown or root candidate bus, buses missing from the scenarios, multi-period
        scenarios.

    Attributes
    ----------
    candidates : tuple of str
        Candidate bus names (site order of ``n`` and ``s``).
    flow_range : FlowRange
        Possible flows per branch-phase (tangent ranges, thermal screening).
    n_thermal_rows : int
        Branch-phases with thermal polygon rows (after screening).
    """

    def __init__(
        self, math: MathFeeder, scenarios: ScenarioSet, config: SitingConfig | None = None
    ):
        t0 = time.perf_counter()
        self.math = math
        self.scenarios = scenarios
        self.config = config or SitingConfig()
        self.name = f"pv-siting-{math.name}-{self.config.objective.value}"
        if scenarios.n_periods is not None:
            raise SitingConfigError(
                f"PV siting needs single-period scenarios (one hour each), got T = "
                f"{scenarios.n_periods}"
            )
        physics = LinDist3Flow(math)
        self._nonroot = physics.nonroot
        self._e = physics.n_branch_phases
        self.candidates = self._resolve_candidates()
        self._site_nodes_map = self._pv_map()
        self._load_col, self._pv_col = self._scenario_columns()
        self._s_nom, self._s_fixed = self._nominal_injections()
        self.flow_range = self._flow_range(physics)
        self._first = self._first_stage()
        self._second = self._second_stage(physics)
        self.build_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_feeder(
        cls,
        feeder: Feeder | FeederSpec,
        scenarios: ScenarioSet | int = 24,
        config: SitingConfig | None = None,
        *,
        seed: int | None = 0,
        taps: TapSetting = TapSetting.NEUTRAL,
    ) -> PVSitingProblem:
        """Build from a feeder name/path or :class:`Feeder` (reduced for the linear model).

        ``scenarios`` may be a :class:`ScenarioSet` or a number of stratified bundled-data
        scenarios (:func:`siting_scenarios` with ``seed``). ``taps`` chooses the regulator taps
        (:class:`TapSetting`; default neutral, as ``gridrecourse siting``'s ``--taps``).
        """
        from gridrecourse.network.prepare import (
            OperatingPoint,
            RootVoltages,
            TapMode,
            prepare_math_feeder,
        )

        # siting's operating point: the chosen taps, normal switches, nominal root voltages
        point = OperatingPoint(
            taps=TapMode(TapSetting(taps).value), root_voltages=RootVoltages.NOMINAL
        )
        math = prepare_math_feeder(feeder, point)
        config = config or SitingConfig()
        if not isinstance(scenarios, ScenarioSet):
            scenarios = siting_scenarios(
                math, int(scenarios), candidates=config.candidates, seed=seed
            )
        return cls(math, scenarios, config)

    def _resolve_candidates(self) -> tuple[str, ...]:
        math = self.math
        cand = (
            self.config.candidates
            if self.config.candidates is not None
            else default_candidates(math)
        )
        if not cand:
            raise SitingConfigError(f"feeder {math.name!r}: no candidate bus")
        if len(set(cand)) != len(cand):
            raise SitingConfigError(f"duplicate candidate buses in {cand}")
        lookup = _bus_lookup(math)
        unknown = [c for c in cand if c not in lookup]
        if unknown:
            raise SitingConfigError(
                f"unknown candidate bus(es) {unknown[:10]} on feeder {math.name!r} "
                f"(e.g. {list(math.bus_names[:5])})"
            )
        idx = np.array([lookup[c] for c in cand])
        root_buses = np.unique(math.node_bus[math.is_root])
        energized = np.unique(math.node_bus[~math.is_root])
        bad_root = [c for c, b in zip(cand, idx, strict=True) if b in root_buses]
        if bad_root:
            raise SitingConfigError(
                f"candidate bus(es) {bad_root} are root (substation) buses; PV there cannot "
                "change the second stage"
            )
        dead = [c for c, b in zip(cand, idx, strict=True) if b not in energized]
        if dead:
            raise SitingConfigError(f"candidate bus(es) {dead} have no energized phase")
        return tuple(cand)

    def _pv_map(self) -> sp.csr_matrix:
        """(E, n_sites): share of site i's PV on each branch-phase node (equal over phases)."""
        math = self.math
        lookup = _bus_lookup(math)
        site_of_bus = np.full(len(math.bus_names), -1)
        site_of_bus[[lookup[c] for c in self.candidates]] = np.arange(len(self.candidates))
        site = site_of_bus[math.node_bus[self._nonroot]]
        rows = np.flatnonzero(site >= 0)
        k = np.bincount(site[rows], minlength=len(self.candidates))
        return sp.csr_matrix(
            (1.0 / k[site[rows]], (rows, site[rows])), shape=(self._e, len(self.candidates))
        )

    def _scenario_columns(self) -> tuple[np.ndarray, np.ndarray]:
        """Scenario site column of each branch-phase node (load) and of each candidate (PV)."""
        math, scen = self.math, self.scenarios
        col_of = {name: k for k, name in enumerate(scen.site_names)}
        node_bus = math.node_bus[self._nonroot]
        bus_col = np.array([col_of.get(b, -1) for b in math.bus_names])
        load_col = bus_col[node_bus]
        s_nom = (math.load_map @ (math.load_kw + 1j * math.load_kvar))[self._nonroot]
        missing_load = np.unique(node_bus[(load_col < 0) & (np.abs(s_nom) > 0)])
        if len(missing_load):
            names = [math.bus_names[b] for b in missing_load]
            raise SitingConfigError(
                f"scenario set has no site for load bus(es) {names[:10]} "
                f"({len(names)} missing); its site_names must include every bus with load"
            )
        missing_pv = [c for c in self.candidates if c not in col_of]
        if missing_pv:
            raise SitingConfigError(
                f"scenario set has no site for candidate bus(es) {missing_pv[:10]} "
                f"({len(missing_pv)} missing)"
            )
        return np.maximum(load_col, 0), np.array([col_of[c] for c in self.candidates])

    def _nominal_injections(self) -> tuple[np.ndarray, np.ndarray]:
        """Nominal load (p.u., per branch-phase node) and fixed net load of gen/storage/PV."""
        math = self.math
        s_base = math.s_base_kva
        s_nom = (math.load_map @ (math.load_kw + 1j * math.load_kvar)) / s_base
        fixed = (
            -(
                math.gen_map @ (math.gen_kw + 1j * math.gen_kvar)
                + math.storage_map @ (math.storage_kw + 1j * math.storage_kvar)
                + math.pv_map @ (math.pv_p_kw + 1j * math.pv_q_kvar)
            )
            / s_base
        )
        return np.asarray(s_nom)[self._nonroot], np.asarray(fixed)[self._nonroot]

    def _net_load(self, indices: np.ndarray) -> np.ndarray:
        """Complex net load (p.u.) of scenarios ``indices``, shape (S, E)."""
        mult = self.scenarios.load_multiplier[indices][:, self._load_col]
        return self._s_nom[None, :] * mult + self._s_fixed[None, :]

    @property
    def _tan_phi(self) -> float:
        pf = self.config.power_factor
        return float(np.tan(np.arccos(pf))) if pf < 1 else 0.0

    @property
    def _site_cap_kw(self) -> float:
        b = self.config.budget
        return float(min(b.g_max_kw, b.max_units * b.unit_kw, b.budget / b.cost_per_kw))

    def _flow_range(self, physics: LinDist3Flow) -> FlowRange:
        if physics.coupled:
            return self._flow_range_coupled(physics)
        lu = splu(physics.flow.tocsc())
        s = self._net_load(np.arange(self.scenarios.n_scenarios))  # (S, E)
        p_load = lu.solve(np.ascontiguousarray(s.real.T))
        q_load = lu.solve(np.ascontiguousarray(s.imag.T))
        s_base = self.math.s_base_kva
        pv_max = self.scenarios.pv_multiplier[:, self._pv_col].max(axis=0)  # (n_sites,)
        cap = self._site_cap_kw * pv_max / s_base
        budget_pu = self.config.budget.budget / self.config.budget.cost_per_kw / s_base
        reach = np.minimum(
            lu.solve(np.asarray(self._site_nodes_map @ cap)), budget_pu * float(pv_max.max())
        )
        cap_b = physics.cap_b
        cap_lo = lu.solve(cap_b * _CAP_V_SQ[0])
        cap_hi = lu.solve(cap_b * _CAP_V_SQ[1])
        if p_load.ndim == 1:
            p_load, q_load = p_load[:, None], q_load[:, None]
        return FlowRange(
            p_lo=p_load.min(axis=1) - reach,
            p_hi=p_load.max(axis=1),
            q_lo=q_load.min(axis=1) - self._tan_phi * reach - np.maximum(cap_lo, cap_hi),
            q_hi=q_load.max(axis=1) - np.minimum(cap_lo, cap_hi),
        )

    def _flow_range_coupled(self, physics: LinDist3Flow) -> FlowRange:
        """:meth:`_flow_range` where windings between two phases share power among them.

        Their balance rows mix P and Q (``LinDist3Flow.coupled``), so a flow is a signed
        combination of the injections: the loads' flows are solved exactly
        (:meth:`LinDist3Flow.solve_flows`); so are the flows per unit of each site's PV
        (leaving the network as ``−(1 + j tan φ) p``) and of each capacitor (``−j b v²``).
        The range of ``Σ_i a_i p_i`` over ``0 ≤ p_i ≤ cap_i``, ``Σ_i p_i ≤`` the budget's
        output is ``[max(Σ min(a_i, 0) cap_i, min_i a_i · total), min(Σ max(a_i, 0) cap_i,
        max_i a_i · total)]`` per branch-phase; a capacitor's ``v²`` spans ``_CAP_V_SQ``.
        """
        flows = physics.solve_flows(self._net_load(np.arange(self.scenarios.n_scenarios)).T)
        if flows.ndim == 1:
            flows = flows[:, None]
        e = physics.n_branch_phases
        s_base = self.math.s_base_kva
        pv_max = self.scenarios.pv_multiplier[:, self._pv_col].max(axis=0)
        cap = self._site_cap_kw * pv_max / s_base
        budget_pu = self.config.budget.budget / self.config.budget.cost_per_kw / s_base
        total = budget_pu * float(pv_max.max()) if pv_max.size else 0.0
        site_map = sp.csc_matrix(self._site_nodes_map).toarray().reshape(e, -1)
        per_site = physics.solve_flows(-(1.0 + 1j * self._tan_phi) * site_map).reshape(e, -1)

        def pv_range(coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            if coef.shape[1] == 0:
                return np.zeros(e), np.zeros(e)
            up, dn = np.maximum(coef, 0.0), np.minimum(coef, 0.0)
            hi = np.minimum(up @ cap, up.max(axis=1) * total)
            lo = np.maximum(dn @ cap, dn.min(axis=1) * total)
            return lo, hi

        cap_nodes = np.flatnonzero(physics.cap_b)
        cap_cols = np.zeros((e, cap_nodes.size))
        cap_cols[cap_nodes, np.arange(cap_nodes.size)] = physics.cap_b[cap_nodes]
        per_cap = physics.solve_flows(-1j * cap_cols).reshape(e, -1)

        def cap_range(coef: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            ends = np.stack([coef * _CAP_V_SQ[0], coef * _CAP_V_SQ[1]])
            return ends.min(axis=0).sum(axis=1), ends.max(axis=0).sum(axis=1)

        p_pv, q_pv = pv_range(per_site.real), pv_range(per_site.imag)
        p_cap, q_cap = cap_range(per_cap.real), cap_range(per_cap.imag)
        return FlowRange(
            p_lo=flows.real.min(axis=1) + p_pv[0] + p_cap[0],
            p_hi=flows.real.max(axis=1) + p_pv[1] + p_cap[1],
            q_lo=flows.imag.min(axis=1) + q_pv[0] + q_cap[0],
            q_hi=flows.imag.max(axis=1) + q_pv[1] + q_cap[1],
        )

    def _first_stage(self) -> FirstStageSpec:
        b = self.config.budget
        m = len(self.candidates)
        units = VariableBlockSpec(UNITS, m, lb=0.0, ub=float(b.max_units), integer=True)
        sited = VariableBlockSpec(SITED, m, lb=0.0, ub=1.0, integer=True)
        # (39) divided by c_DG g (well scaled): Σ n_i ≤ budget / (c_DG g)  [units]
        return FirstStageSpec(variables=(units, sited), constraints=b.rows(m))

    def _second_stage(self, physics: LinDist3Flow) -> SecondStageSpec:
        """One scenario's recourse (eqs. 41–53) from the formulation blocks, as spec blocks.

        Built in a :class:`LinearModel` at nominal data (zero net load; the balances' bounds
        come from :meth:`scenario_data`) and converted by :func:`spec_blocks`.
        """
        cfg, math = self.config, self.math
        e, m = self._e, len(self.candidates)
        s_base = math.s_base_kva
        model = LinearModel(self.name)
        pv = model.add_variables("pv-p", m, lb=0.0)
        nonroot = sp.csr_matrix(
            (np.ones(e), (physics.nonroot, np.arange(e))), shape=(math.n_nodes, e)
        )
        pv_nodes = sp.csr_matrix(nonroot @ self._site_nodes_map)  # (N, m), eq. (46) below
        net = add_lindist3flow(
            model,
            physics,
            1,
            (Injection.active(pv, pv_nodes, self._tan_phi),),  # (45)–(47)
            substation=SubstationMode.NONE,
        )
        no_load = np.zeros((math.n_nodes, 1))
        net.set_rhs(model, net.rhs(no_load, no_load))
        # (44): s_base p_DG − g PV_ω n ≤ 0 [kW]; the first-stage term is the technology matrix
        model.add_constraints(LINKING_BLOCK, [(pv, s_base * sp.identity(m, format="csr"))], ub=0.0)
        ranges: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        if cfg.objective is SitingObjective.LOSSES:  # (53)
            fr = self.flow_range
            loss = s_base * np.asarray(physics.z.diagonal().real, dtype=float)
            model.add_quadratic_cost(net.p, loss)
            model.add_quadratic_cost(net.q, loss)
            ranges = {net.p.name: (fr.p_lo, fr.p_hi), net.q.name: (fr.q_lo, fr.q_hi)}
        else:  # (41)–(43)
            add_voltage_deviation(model, net, cfg.v_ref, cost=1.0)
        band = add_voltage_band(  # (48)
            model,
            net,
            cfg.v_min,
            cfg.v_max,
            cfg.voltage_limits,
            penalty=cfg.voltage_penalty_value,
        )
        rating = math.rating_pu[physics.nonroot]
        select = None
        if cfg.thermal_screening:
            inscribe = polygon_rows(cfg.polygon_sides)[2]
            known = np.where(np.isfinite(rating), rating, 0.0)
            select = self.flow_range.s_max > THERMAL_SCREEN_FRACTION * inscribe * known
        thermal = add_thermal_polygon(  # (49)–(52)
            model,
            net,
            rating,
            cfg.thermal_limits,
            n_sides=cfg.polygon_sides,
            penalty=cfg.thermal_penalty_value,
            select=select,
        )
        self.n_thermal_rows = len(thermal.rated)
        blocks = spec_blocks(
            model, penalty=(band.over, band.under, thermal.overload), quadratic_range=ranges
        )
        b = cfg.budget
        technology = sp.hstack(
            [-b.unit_kw * sp.identity(m, format="csr"), sp.csr_matrix((m, m))], format="csr"
        )
        return SecondStageSpec(
            variables=blocks.variables,
            constraints=blocks.constraints,
            linking=LINKING_BLOCK,
            technology=technology,
        )

    # ------------------------------------------------------------------ TwoStageProblem
    @property
    def first_stage(self) -> FirstStageSpec:
        """Paper C D1 (eqs. 37–40): blocks ``pv-units`` (n) and ``pv-sited`` (s)."""
        return self._first

    @property
    def second_stage(self) -> SecondStageSpec:
        """One scenario's recourse (eqs. 41–53)."""
        return self._second

    def build_second_stage(self) -> SecondStageModel:
        """The recourse model: exact reduced LP solves where the structure allows.

        P1 (soft or hard voltage band) is a state ``(P, Q, v)`` fixed by the LinDist3Flow rows plus
        penalty epigraphs, so its solves go through
        :class:`~gridrecourse.problems.reduced_recourse.ReducedSecondStageModel` (same
        objective, duals and values as the full LP; ieee9500: tens of ms instead of about a
        second per scenario, ``benchmarks/bench_reduced_recourse.py``). Otherwise (P2's
        quadratic losses, hard thermal limits, ``SitingConfig.reduced_recourse = False``) the
        full :class:`SecondStageModel`.
        """
        if not self.config.reduced_recourse:
            return SecondStageModel(self)
        try:
            return ReducedSecondStageModel(
                self,
                state=("branch-p", "branch-q", "bus-v"),
                decisions="pv-p",
                equalities=("branch-p_balance", "branch-q_balance", "branch-voltage_drop"),
            )
        except ReductionNotApplicable:
            return SecondStageModel(self)

    @property
    def recourse_warm_starts(self) -> bool:
        """Whether the recourse solves warm-start from the previous scenario's basis.

        False when :meth:`build_second_stage` gives the reduced LP (solved cold: P1 whose
        thermal rows have an overload column, ``reduced_recourse`` on); the exact evaluation
        then skips the warm-start order
        (:func:`~gridrecourse.evaluation.out_of_sample.evaluate_first_stage`). Only the order
        of the solves depends on it, never their results.
        """
        cfg = self.config
        return not (
            cfg.reduced_recourse
            and cfg.objective is SitingObjective.VOLTAGE_DEVIATION
            and cfg.thermal_limits is not LimitMode.HARD
        )

    @property
    def probability(self) -> np.ndarray:
        """Scenario probabilities."""
        return self.scenarios.probability

    def scenario_data(self, indices: Sequence[int] | np.ndarray) -> ScenarioData:
        """Loads (nominal × bus load multiplier) and PV availability of the scenarios.

        Row bounds change in the balance blocks (net load) only; the linking rows' technology
        scale is the PV multiplier of each candidate bus.
        """
        idx = np.asarray(indices, dtype=int).ravel()
        spec = self._second
        s = len(idx)
        lb = np.tile(spec.row_lb, (s, 1))
        ub = np.tile(spec.row_ub, (s, 1))
        net = self._net_load(idx)
        for name, values in (("branch-p_balance", net.real), ("branch-q_balance", net.imag)):
            rs = spec.row_slice(name)
            lb[:, rs] = values
            ub[:, rs] = values
        pv = self.scenarios.pv_multiplier[idx][:, self._pv_col]
        return ScenarioData(indices=idx, row_lb=lb, row_ub=ub, technology_scale=pv)

    def decode(self, x: np.ndarray) -> SitingDecision:
        """Units and siting of a first-stage vector (rounded to integers)."""
        x = np.asarray(x, dtype=float)
        fs = self._first
        return SitingDecision(
            site_names=self.candidates,
            units=np.rint(x[fs.slice("pv-units")]).astype(np.int64),
            sited=x[fs.slice("pv-sited")] > 0.5,
            unit_kw=float(self.config.budget.unit_kw),
        )

    @property
    def separable_first_stage(self) -> SeparableFirstStage:
        """SPAR's view of D1: units ``n`` (argument), siting ``s`` (indicator), rows (38)–(40).

        SPAR's MILP writes the budget (39) in $ as paper C does (the extensive form's row is
        divided by ``c_DG g``).

        Raises
        ------
        SitingInfeasibleError
            The settings alone admit no siting (too few candidates, budget too small).
        """
        b = self.config.budget
        b.check_sites(self.n_sites)
        return SeparableFirstStage(
            self._first, UNITS, SITED, rows=b.rows(self.n_sites, budget_in_units=False)
        )

    # ------------------------------------------------------------------ helpers
    @property
    def n_sites(self) -> int:
        """Number of candidate buses."""
        return len(self.candidates)

    def first_stage_vector(
        self, units: np.ndarray | Sequence[float] | SitingDecision, sited: np.ndarray | None = None
    ) -> np.ndarray:
        """``x = [n, s]`` from units (and siting; default ``s_i = n_i > 0``)."""
        if isinstance(units, SitingDecision):
            units, sited = units.units, units.sited
        n = np.asarray(units, dtype=float).ravel()
        if n.shape != (self.n_sites,):
            raise SitingConfigError(f"units must have {self.n_sites} entries, got {n.shape}")
        s = (n > 0) if sited is None else np.asarray(sited, dtype=bool).ravel()
        return np.concatenate([n, s.astype(float)])

    def units_cut(self, cut: FeasibilityCut) -> FeasibilityCut:
        """A feasibility cut restricted to ``n`` (for ``FirstStageModel.add_cut``).

        The technology matrix only touches ``n``, so the ``s`` coefficients are zero.
        """
        return FeasibilityCut(
            cut.scenario, cut.coefficients[self._first.slice("pv-units")], cut.rhs
        )

    def slopes_per_unit(self, subgradient: np.ndarray) -> np.ndarray:
        """``ĝ_i = dual(44) × g × PV_mult`` (objective units per PV unit) from a subgradient."""
        return np.asarray(subgradient)[..., self._first.slice("pv-units")]
