"""Paper A's battery capacity expansion as a scenario-based two-stage program (METHODS §2, §5).

The robust single-stage LP of :mod:`gridrecourse.problems.storage_expansion` (paper A eq 19)
sizes batteries against a predicted box. This module states the *same* sizing decision as a
two-stage stochastic program over observed days, so that every two-stage method (extensive
form, progressive hedging, SPAR, exact evaluation; METHODS §2) runs on it::

    min_n   Σ_j c_j u n_j  +  Σ_ω π_ω Q(n, ξ_ω)                         (METHODS §2)
    s.t.    0 ≤ n_j ≤ L_j          (integer with CapacityDomain.INTEGER_UNITS)

    Q(n, ξ_ω) = min  Σ_t Δt y_P,ω,t P0_t  (+ voltage/thermal penalties)
                s.t. LinDist3Flow every hour t at the day's loads y_D,ω     (paper A 4a–4c, 7a)
                     SOC_j,t = SOC_j,t−1 + Δt (η_c ch_j,t − dis_j,t / η_d)  (7c, 7d)
                     SOC_min u n_j ≤ SOC_j,t ≤ SOC_max u n_j                (7e)   linking
                     0 ≤ ch_j,t, dis_j,t ≤ C-rate · u n_j                   (7b)   linking
                     voltage band (6b), thermal polygons (6c) as configured

* **First stage** ``n_j``: battery units at candidate bus ``j``, each of ``u`` =
  :attr:`StorageScenarioConfig.capacity_unit_kwh` kWh (capacity ``x_j = u n_j``). Candidates,
  installation cost ``c_j`` (currency/kWh for the horizon) and the capacity bounds are those of
  the robust LP (:class:`~gridrecourse.problems.storage_expansion.StorageExpansionProblem`):
  ``L_j = max_capacity_kwh_j / u``, rounded down for integer units. With
  :attr:`CapacityDomain.INTEGER_UNITS` the problem declares a
  :class:`~gridrecourse.problems.separable.SeparableFirstStage` (argument ``bess-units``, no
  indicator, no rows), which SPAR needs; :attr:`CapacityDomain.CONTINUOUS` has no such
  declaration and SPAR refuses it with the requirement error.
* **Second stage** per scenario ω (one day of ``τ`` hours): the dispatch of the capacities
  against that day's **prices** (objective coefficients of ``substation-p``, declared in
  :attr:`SecondStageSpec.scenario_costs`) and **loads** (right-hand sides of the balance rows).
  The linking blocks are the four capacity rows above (``T`` = their coefficients on ``n``);
  their duals give ``∂Q/∂n`` for SPAR.
* **Scenarios**: given days (for ``gridrecourse expand``: training days of the data ETO/E2E use),
  equal probability by default.

Prices are settled on the net substation power ``P0_t`` (import positive, export negative) at
the day's price, exactly as
:meth:`~gridrecourse.problems.storage_expansion.StorageExpansionProblem.realized_cost` settles a
fixed capacity against realized data (a degenerate price box), so ``c_j x_j + Q`` at a fixed
capacity equals ``realized_cost`` on the same day.

Assembly: the recourse is written once with the formulation layer
(:func:`~gridrecourse.formulation.battery.add_battery` over the capacity column,
:func:`~gridrecourse.formulation.network.add_lindist3flow` with the battery's injections,
:func:`~gridrecourse.formulation.limits.add_voltage_band`,
:func:`~gridrecourse.formulation.limits.add_thermal_polygon`) into a
:class:`~gridrecourse.solvers.highs.LinearModel` that also holds the capacity column; the model
is then read back as the contract's block specs
(:func:`~gridrecourse.problems.spec_blocks.spec_blocks`), the capacity column's coefficients
becoming the technology matrices. Nothing is rebuilt per scenario: :class:`SecondStageModel`
re-solves with new row bounds and costs.

Units: powers in p.u. of ``s_base`` (the feeder's ``s_base_kva``; p.u.·h for energies), prices
currency/MWh, loads and PV kW per load site, capacities kWh, objective currency per day of
``τ`` hours.

Note: with the voltage band and thermal limits off (the defaults of
:class:`~gridrecourse.problems.storage_expansion.StorageExpansionConfig`) the lossless recourse is
positively homogeneous in the capacities (scale the dispatch), so ``Q(n, ξ)`` is linear in ``n``
and the optimum sits at a vertex (no battery, or every candidate at its bound).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from enum import Enum

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import GridRecourseError
from gridrecourse.formulation.battery import BatteryParameters, add_battery
from gridrecourse.formulation.injections import fixed_net_load
from gridrecourse.formulation.limits import add_thermal_polygon, add_voltage_band
from gridrecourse.formulation.network import NetworkBlocks, SubstationMode, add_lindist3flow
from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.problems.base import (
    ConstraintBlockSpec,
    FirstStageSpec,
    LinkingBlock,
    ScenarioData,
    SecondStageSpec,
    TwoStageProblem,
    VariableBlockSpec,
)
from gridrecourse.problems.separable import SeparableFirstStage
from gridrecourse.problems.spec_blocks import SpecBlocks, spec_blocks
from gridrecourse.problems.storage_expansion import (
    StorageExpansionConfig,
    StorageExpansionProblem,
)
from gridrecourse.solvers.highs import LinearModel

__all__ = [
    "CAPACITY_BLOCK",
    "CapacityDomain",
    "StorageCapacityDecision",
    "StorageScenarioConfig",
    "StorageScenarioInputError",
    "StorageScenarioProblem",
    "evenly_spaced",
]

#: Name of the first-stage block (battery units per candidate bus).
CAPACITY_BLOCK = "bess-units"
#: Name of the recourse column whose cost is the scenario's price.
PRICE_BLOCK = "substation-p"


class StorageScenarioInputError(GridRecourseError, ValueError):
    """Scenario data or settings of the two-stage battery expansion do not fit the feeder."""


class CapacityDomain(str, Enum):
    """Domain of the first-stage battery units ``n_j``."""

    #: ``n_j ∈ {0, 1, …, L_j}``: capacities in whole units (SPAR's separable first stage)
    INTEGER_UNITS = "integer"
    #: ``n_j ∈ [0, L_j]``: any capacity up to the bound (an LP first stage)
    CONTINUOUS = "continuous"


@dataclass(frozen=True)
class StorageScenarioConfig:
    """Settings of the two-stage battery expansion (on top of the robust LP's config).

    Attributes
    ----------
    capacity_unit_kwh : float
        ``u``, the capacity of one battery unit (kWh); the first stage counts units.
        **Our choice: 100 kWh** (on the IEEE 13 the candidate bounds are 680–4620 kWh, i.e.
        6–46 units).
    domain : CapacityDomain
        Integer units (default; needed by SPAR) or continuous capacities.
    """

    capacity_unit_kwh: float = 100.0
    domain: CapacityDomain = CapacityDomain.INTEGER_UNITS

    def __post_init__(self) -> None:
        object.__setattr__(self, "domain", CapacityDomain(self.domain))
        if not (np.isfinite(self.capacity_unit_kwh) and self.capacity_unit_kwh > 0):
            raise StorageScenarioInputError(
                f"capacity_unit_kwh must be positive and finite, got {self.capacity_unit_kwh}"
            )


@dataclass(frozen=True, eq=False)
class StorageCapacityDecision:
    """A first-stage decision: battery units per candidate bus.

    Attributes
    ----------
    candidate_buses : tuple of str
    units : ndarray, shape (J,)
        ``n_j`` (whole numbers for integer units).
    unit_kwh : float
        Capacity of one unit (kWh).
    """

    candidate_buses: tuple[str, ...]
    units: np.ndarray
    unit_kwh: float

    @property
    def capacity_vector_kwh(self) -> np.ndarray:
        """``x_j = u n_j`` (kWh) in candidate order."""
        return self.unit_kwh * np.asarray(self.units, dtype=float)

    @property
    def capacity_kwh(self) -> dict[str, float]:
        """Capacity per candidate bus (kWh)."""
        return dict(zip(self.candidate_buses, self.capacity_vector_kwh.tolist(), strict=True))

    @property
    def total_capacity_kwh(self) -> float:
        """``Σ_j x_j`` (kWh)."""
        return float(self.capacity_vector_kwh.sum())


def evenly_spaced(n_available: int, n_wanted: int | None) -> np.ndarray:
    """``n_wanted`` indices spread evenly over ``0..n_available−1`` (all when ``None``).

    The scenario subset of ``gridrecourse expand --scenarios N``: training days evenly over the
    training period (so a subset spans the seasons), deterministic.

    Raises
    ------
    StorageScenarioInputError
        ``n_wanted`` outside ``1..n_available``.
    """
    if n_wanted is None:
        return np.arange(n_available)
    if not 1 <= int(n_wanted) <= n_available:
        raise StorageScenarioInputError(
            f"the number of scenarios must be in 1..{n_available} (available days), got {n_wanted}"
        )
    return np.unique(np.rint(np.linspace(0, n_available - 1, int(n_wanted))).astype(int))


# ------------------------------------------------------------------------------ the model
def _split_first_stage(
    blocks: SpecBlocks, first_stage: str
) -> tuple[
    tuple[VariableBlockSpec, ...], tuple[ConstraintBlockSpec, ...], tuple[LinkingBlock, ...]
]:
    """Take the first-stage column block out of a model's specs: its terms become ``T``.

    Every constraint block with a term on ``first_stage`` becomes a linking block whose
    technology matrix is that term (the rows ``L ≤ W y + T x ≤ U`` of METHODS §2); the other
    terms stay ``W``.
    """
    variables = tuple(v for v in blocks.variables if v.name != first_stage)
    constraints, links = [], []
    for c in blocks.constraints:
        terms = dict(c.terms)
        technology = terms.pop(first_stage, None)
        if technology is None:
            constraints.append(c)
            continue
        constraints.append(ConstraintBlockSpec(c.name, tuple(terms.items()), lb=c.lb, ub=c.ub))
        links.append(LinkingBlock(c.name, technology))
    return variables, tuple(constraints), tuple(links)


class StorageScenarioProblem(TwoStageProblem[StorageCapacityDecision]):
    """Two-stage battery expansion over price/load scenarios (module docstring).

    Parameters
    ----------
    expansion : StorageExpansionProblem
        The robust LP on the same feeder: its feeder, config (horizon, battery parameters,
        limits), load sites, candidates, installation costs and capacity bounds are used; the
        problem keeps none of its solver objects (instances stay picklable).
    price_eur_per_mwh : ndarray, shape (S, τ)
        Price of each scenario and hour (currency/MWh).
    load_kw : ndarray, shape (S, τ, n_sites)
        Load per load site (kW), sites in the order of ``expansion.load_sites``.
    pv_kw : ndarray, shape (S, τ, n_sites), optional
        PV output per load site (kW; fixed injection, spread over the bus's phases).
    config : StorageScenarioConfig, optional
    probability : ndarray, shape (S,), optional
        Scenario probabilities (default equal).

    Raises
    ------
    StorageScenarioInputError
        Wrong shapes, non-finite data, bad probabilities, a curtailable-PV configuration, or
        (integer units) a candidate whose bound is below one unit.
    """

    name = "storage-scenarios"

    def __init__(
        self,
        expansion: StorageExpansionProblem,
        price_eur_per_mwh: np.ndarray,
        load_kw: np.ndarray,
        pv_kw: np.ndarray | None = None,
        config: StorageScenarioConfig | None = None,
        probability: np.ndarray | None = None,
    ):
        self.config = config or StorageScenarioConfig()
        self.expansion_config: StorageExpansionConfig = expansion.config
        self.math: MathFeeder = expansion.math
        self.name = f"storage-scenarios-{self.math.name}"
        self.load_sites: tuple[str, ...] = tuple(expansion.load_sites)
        self.candidate_buses: tuple[str, ...] = tuple(expansion.candidate_buses)
        self.installation_cost_per_kwh = np.asarray(expansion.installation_cost_per_kwh, float)
        self.max_capacity_kwh = np.asarray(expansion.max_capacity_kwh, dtype=float)
        site_kw = np.asarray(expansion.nominal_load_kw, dtype=float)
        if self.expansion_config.pv_curtailment:
            raise StorageScenarioInputError(
                "pv_curtailment=True is not supported by the two-stage form (PV is a fixed "
                "injection of each scenario)"
            )
        self._set_data(price_eur_per_mwh, load_kw, pv_kw, probability)
        unit = self.config.capacity_unit_kwh
        levels = self.max_capacity_kwh / unit
        if self.config.domain is CapacityDomain.INTEGER_UNITS:
            levels = np.floor(levels + 1e-9)
            small = [b for b, lv in zip(self.candidate_buses, levels, strict=True) if lv < 1]
            if small:
                raise StorageScenarioInputError(
                    f"candidate buses {small} allow less than one unit of {unit:g} kWh "
                    f"(bounds {self.max_capacity_kwh.tolist()} kWh for "
                    f"{list(self.candidate_buses)}); use a smaller capacity_unit_kwh"
                )
        self.max_units = levels
        physics = LinDist3Flow(self.math)
        self._load_p, self._load_q = self._site_operators(site_kw, physics)
        self._first = FirstStageSpec(
            (
                VariableBlockSpec(
                    CAPACITY_BLOCK,
                    len(self.candidate_buses),
                    lb=0.0,
                    ub=levels,
                    cost=self.installation_cost_per_kwh * unit,
                    integer=self.config.domain is CapacityDomain.INTEGER_UNITS,
                ),
            ),
            (),
        )
        zero = np.zeros((len(self.math.load_kw), 1))
        #: fixed net load per node (p.u.): feeder generators, storage and PV at their dispatch
        self._fixed_p, self._fixed_q = fixed_net_load(self.math, zero, zero)
        self._second, self._network = self._build_second_stage(physics)

    # ------------------------------------------------------------------ data
    def _set_data(self, price, load, pv, probability) -> None:
        T, n_sites = self.expansion_config.n_hours, len(self.load_sites)
        price = np.asarray(price, dtype=float)
        load = np.asarray(load, dtype=float)
        if price.ndim != 2 or price.shape[1] != T:
            raise StorageScenarioInputError(
                f"price must have shape (S, τ = {T}), got {price.shape}"
            )
        s = price.shape[0]
        if s < 1:
            raise StorageScenarioInputError("at least one scenario is needed")
        if load.shape != (s, T, n_sites):
            raise StorageScenarioInputError(
                f"load_kw must have shape (S, τ, n_sites) = {(s, T, n_sites)} (sites "
                f"{list(self.load_sites)[:8]}), got {load.shape}"
            )
        if pv is not None:
            pv = np.asarray(pv, dtype=float)
            if pv.shape != load.shape:
                raise StorageScenarioInputError(
                    f"pv_kw must have the shape of load_kw {load.shape}, got {pv.shape}"
                )
            if np.any(pv < 0):
                raise StorageScenarioInputError("pv_kw must be >= 0")
        for what, arr in (("price", price), ("load_kw", load), ("pv_kw", pv)):
            if arr is not None and not np.all(np.isfinite(arr)):
                raise StorageScenarioInputError(f"{what} contains NaN or infinite values")
        if probability is None:
            prob = np.full(s, 1.0 / s)
        else:
            prob = np.asarray(probability, dtype=float).ravel()
            if prob.shape != (s,) or np.any(prob < 0) or not np.isclose(prob.sum(), 1.0):
                raise StorageScenarioInputError(
                    f"probability must be {s} nonnegative values summing to 1"
                )
        for arr in (price, load, prob) + (() if pv is None else (pv,)):
            arr.setflags(write=False)
        self.price_eur_per_mwh, self.load_kw, self.pv_kw = price, load, pv
        self._probability = prob

    def _site_operators(
        self, site_kw: np.ndarray, physics: LinDist3Flow
    ) -> tuple[sp.csr_matrix, sp.csr_matrix]:
        """Node net load (p.u.) per kW of site load (``p``, ``q``) and per kW of site PV (``p``).

        A site's kW is spread over the feeder's loads at its bus in proportion to their nominal
        kW, each at its nominal power factor (as the robust LP does); computed through
        :func:`~gridrecourse.formulation.injections.fixed_net_load` (difference to zero load).
        Returns ``(N, 2·n_sites)`` maps: columns ``0..n_sites−1`` load, then PV.
        """
        math = self.math
        index = {b: i for i, b in enumerate(math.bus_names)}
        site_bus = np.array([index[b] for b in self.load_sites])
        site_of_bus = np.full(len(math.bus_names), -1)
        site_of_bus[site_bus] = np.arange(len(site_bus))
        lm = abs(sp.csc_matrix(math.load_map))
        n_loads = lm.shape[1]
        has_node = np.diff(lm.indptr) > 0
        first_node = np.where(has_node, lm.indices[np.minimum(lm.indptr[:-1], lm.nnz - 1)], 0)
        load_site = np.where(has_node, site_of_bus[math.node_bus[first_node]], -1)
        on_site = np.flatnonzero(load_site >= 0)
        share = np.zeros((n_loads, len(site_bus)))
        share[on_site, load_site[on_site]] = 1.0 / site_kw[load_site[on_site]]
        p0, q0 = fixed_net_load(math, np.zeros((n_loads, 1)), np.zeros((n_loads, 1)))
        p1, q1 = fixed_net_load(
            math, math.load_kw[:, None] * share, math.load_kvar[:, None] * share
        )
        node_site = site_of_bus[math.node_bus]
        at_site = np.flatnonzero(node_site >= 0)
        phases = np.bincount(math.node_bus, minlength=len(math.bus_names))
        pv_map = sp.csr_matrix(
            (
                -1.0 / (phases[math.node_bus[at_site]] * math.s_base_kva),
                (at_site, node_site[at_site]),
            ),
            shape=(math.n_nodes, len(site_bus)),
        )
        load_p = sp.csr_matrix(p1 - p0)
        load_q = sp.csr_matrix(q1 - q0)
        return sp.hstack([load_p, pv_map], format="csr"), sp.hstack(
            [load_q, sp.csr_matrix(pv_map.shape)], format="csr"
        )

    # ------------------------------------------------------------------ recourse
    def _build_second_stage(self, physics: LinDist3Flow) -> tuple[SecondStageSpec, NetworkBlocks]:
        cfg, math = self.expansion_config, self.math
        T, J = cfg.n_hours, len(self.candidate_buses)
        dt = cfg.period_hours
        model = LinearModel(self.name)
        capacity = model.add_variables(CAPACITY_BLOCK, J, ub=self.max_units)
        # E in units of u: fractions and rates per unit of capacity scaled by u (p.u.·h)
        unit = self.config.capacity_unit_kwh / math.s_base_kva
        battery = add_battery(
            model,
            T,
            BatteryParameters.uniform(
                J,
                dt,
                round_trip_efficiency=cfg.round_trip_efficiency,
                soc_min=cfg.soc_min * unit,
                soc_max=cfg.soc_max * unit,
                c_rate=cfg.c_rate_per_h * unit,
            ),
            capacity,
        )
        index = {b: i for i, b in enumerate(math.bus_names)}
        cand_of_bus = np.full(len(math.bus_names), -1)
        cand_of_bus[[index[b] for b in self.candidate_buses]] = np.arange(J)
        node_cand = cand_of_bus[math.node_bus]
        nodes = np.flatnonzero(node_cand >= 0)
        phases = np.bincount(math.node_bus, minlength=len(math.bus_names))
        bess_map = sp.csr_matrix(
            (1.0 / phases[math.node_bus[nodes]], (nodes, node_cand[nodes])),
            shape=(math.n_nodes, J),
        )
        net = add_lindist3flow(
            model,
            physics,
            T,
            battery.injections(bess_map),
            v_bounds=(-np.inf, np.inf),
            substation=SubstationMode.NET,
        )
        band = add_voltage_band(
            model,
            net,
            cfg.v_min,
            cfg.v_max,
            cfg.voltage_limits,
            penalty=cfg.voltage_penalty_per_pu_h * dt,
        )
        thermal = add_thermal_polygon(
            model,
            net,
            math.rating_pu[physics.nonroot],
            cfg.thermal_limits,
            n_sides=cfg.polygon_sides,
            penalty=cfg.thermal_penalty_per_pu_h * dt,
        )
        blocks = spec_blocks(model, penalty=(band.over, band.under, thermal.overload))
        variables, constraints, links = _split_first_stage(blocks, capacity.name)
        spec = SecondStageSpec(variables, constraints, links, scenario_costs=(PRICE_BLOCK,))
        return spec, net

    # ------------------------------------------------------------------ contract
    @property
    def first_stage(self) -> FirstStageSpec:
        """Battery units ``n`` per candidate bus, cost ``c_j u`` per unit (currency/day)."""
        return self._first

    @property
    def second_stage(self) -> SecondStageSpec:
        """One day's dispatch; linking blocks: SOC and power limits (7b, 7e)."""
        return self._second

    @property
    def probability(self) -> np.ndarray:
        """``π``, shape (S,)."""
        return self._probability

    def scenario_data(self, indices: Sequence[int] | np.ndarray) -> ScenarioData:
        """Prices (cost of ``substation-p``) and loads/PV (balance right-hand sides).

        Vectorized over the scenarios: the network's right-hand sides of ``S`` days are those
        of one model with ``S·τ`` periods, cut back into days.
        """
        idx = np.asarray(indices, dtype=int).ravel()
        spec, cfg = self._second, self.expansion_config
        s, T = len(idx), cfg.n_hours
        load = self.load_kw[idx]  # (s, T, sites)
        pv = np.zeros_like(load) if self.pv_kw is None else self.pv_kw[idx]
        site = np.concatenate([load, pv], axis=2).reshape(s * T, -1).T  # (2·sites, s·T)
        p = self._fixed_p + self._load_p @ site  # (N, s·T), fixed part broadcast
        q = self._fixed_q + self._load_q @ site
        rhs = replace(self._network, n_periods=s * T).rhs(p, q)
        lb, ub = np.tile(spec.row_lb, (s, 1)), np.tile(spec.row_ub, (s, 1))
        net = self._network
        for block, values in (
            (net.p_balance, rhs.p_balance),
            (net.q_balance, rhs.q_balance),
            (net.voltage_drop, rhs.voltage_drop),
            (net.substation_balance, rhs.substation),
        ):
            rs = spec.row_slice(block.name)
            lb[:, rs] = ub[:, rs] = np.asarray(values).reshape(s, -1)
        s_base_mw = self.math.s_base_kva / 1000.0
        cost = cfg.period_hours * s_base_mw * self.price_eur_per_mwh[idx]
        return ScenarioData(indices=idx, row_lb=lb, row_ub=ub, cost={PRICE_BLOCK: cost})

    def decode(self, x: np.ndarray) -> StorageCapacityDecision:
        """Units per candidate bus of a first-stage vector (rounded for integer units)."""
        n = np.asarray(x, dtype=float).ravel()[self._first.slice(CAPACITY_BLOCK)]
        if self.config.domain is CapacityDomain.INTEGER_UNITS:
            n = np.rint(n)
        n = np.clip(n, 0.0, self.max_units)
        return StorageCapacityDecision(self.candidate_buses, n, self.config.capacity_unit_kwh)

    @property
    def separable_first_stage(self) -> SeparableFirstStage | None:
        """SPAR's view: the units ``n`` (integer units only; ``None`` for continuous)."""
        if self.config.domain is not CapacityDomain.INTEGER_UNITS:
            return None
        return SeparableFirstStage(self._first, CAPACITY_BLOCK)

    # ------------------------------------------------------------------ helpers
    def first_stage_vector(
        self, capacity_kwh: np.ndarray | Mapping[str, float] | StorageCapacityDecision
    ) -> np.ndarray:
        """``n = x / u`` from capacities (kWh; a mapping's missing buses are 0)."""
        if isinstance(capacity_kwh, StorageCapacityDecision):
            return np.asarray(capacity_kwh.units, dtype=float).copy()
        if isinstance(capacity_kwh, Mapping):
            unknown = set(capacity_kwh) - set(self.candidate_buses)
            if unknown:
                raise StorageScenarioInputError(f"non-candidate buses {sorted(unknown)}")
            cap = np.array([float(capacity_kwh.get(b, 0.0)) for b in self.candidate_buses])
        else:
            cap = np.asarray(capacity_kwh, dtype=float).ravel()
        if cap.shape != (len(self.candidate_buses),):
            raise StorageScenarioInputError(
                f"capacity needs {len(self.candidate_buses)} values, got {cap.shape}"
            )
        return cap / self.config.capacity_unit_kwh
