"""Deterministic multi-period OPF on LinDist3Flow: the smoke problem that ties the layers.

Minimize the cost of energy imported at the substation over ``T`` periods::

    min  Σ_t  c_t · Δt · P0_t
    s.t. LinDist3Flow (METHODS §1.1) at every t, with net load p = load_t − PV_t
         0 ≤ p_pv,t ≤ P_avail,t                  (curtailment is the slack)
         cos θ_k p_pv + sin θ_k q_pv ≤ S_pv      (inscribed inverter polygon, METHODS §1.4)
         v_min² − s⁻ ≤ v ≤ v_max² + s⁺,  s ≥ 0    (squared magnitude, soft band)
         cos θ_k P + sin θ_k Q ≤ S_branch + σ     (thermal polygon, METHODS §1.4, σ ≥ 0)

The voltage band is soft: violations ``s`` cost ``voltage_penalty_per_pu_h`` each (p.u. of v²
per hour), because with regulator taps fixed a feeder may already sit outside the band (IEEE 13
does at OpenDSS's own taps); ``voltage_penalty_per_pu_h=None`` makes the band hard. Thermal
limits are soft in the same way
(``thermal_penalty_per_pu_h``): imported ratings are often defaults (OpenDSS's 400 A), and a
feeder whose base case already exceeds them should still solve and report the overloads.

Every block is one sparse matrix Kronecker-multiplied by ``I_T``: no Python loop over buses,
phases or periods. Loads follow a load profile; PV follows a PV profile. A feeder without PV
systems gets distributed PV at its load nodes sized as ``pv_penetration`` × load.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import InfeasibleModelError, InvalidSeriesError, SolverError
from gridrecourse.formulation.injections import Injection, fixed_net_load
from gridrecourse.formulation.limits import (
    DEFAULT_POLYGON_SIDES,
    LimitMode,
    add_capability_polygon,
    add_thermal_polygon,
    add_voltage_band,
)
from gridrecourse.formulation.network import NetworkBlocks, SubstationMode, add_lindist3flow
from gridrecourse.formulation.periods import by_period
from gridrecourse.formulation.switches import (
    SwitchBlocks,
    SwitchingOptions,
    add_switching,
    add_tie_flows,
    add_tie_thermal_polygon,
    node_injection_bound,
    tree_switch_positions,
)
from gridrecourse.formulation.taps import (
    TapBlocks,
    TapOptions,
    add_tap_selection,
    polish_taps,
    regulated_positions,
    regulators_at_limit,
    rounded_start,
)
from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.solvers.highs import LinearModel, VariableBlock
from gridrecourse.solvers.options import SolverOptions


@dataclass(frozen=True)
class OPFConfig:
    """Inputs of the deterministic OPF.

    Attributes
    ----------
    load_profile : ndarray, shape (T,)
        Multiplier of every load's nominal kW/kvar per period.
    pv_profile : ndarray, shape (T,)
        PV availability per unit of rating per period.
    price_per_mwh : ndarray, shape (T,)
        Energy price at the substation per period (currency/MWh).
    period_hours : float
        Length of a period (h).
    v_min, v_max : float
        Voltage band (p.u.).
    pv_penetration : float
        PV rating as a fraction of each load's kW, used only when the feeder has no PV.
    pv_kva_over_kw : float
        Inverter kVA per kW of PV rating for added PV.
    thermal_limits : bool
        Enforce branch thermal polygons where ratings are known.
    polygon_sides : int
    voltage_penalty_per_pu_h : float or None
        Cost of one p.u. (of v²) outside the band for one hour; ``None``: hard band.
    thermal_penalty_per_pu_h : float or None
        Cost of one p.u. of apparent power above a rating for one hour; ``None``: hard limit.
    """

    load_profile: np.ndarray
    pv_profile: np.ndarray
    price_per_mwh: np.ndarray
    period_hours: float = 1.0
    v_min: float = 0.95
    v_max: float = 1.05
    pv_penetration: float = 0.5
    pv_kva_over_kw: float = 1.1
    thermal_limits: bool = True
    polygon_sides: int = DEFAULT_POLYGON_SIDES
    voltage_penalty_per_pu_h: float | None = 1.0e5
    thermal_penalty_per_pu_h: float | None = 1.0e4

    def __post_init__(self) -> None:
        for name in ("load_profile", "pv_profile", "price_per_mwh"):
            arr = np.asarray(getattr(self, name), dtype=float)
            if arr.ndim != 1 or not np.all(np.isfinite(arr)):
                raise InvalidSeriesError(
                    f"OPFConfig.{name} must be a 1-D array of finite values (got shape "
                    f"{arr.shape}, {int(np.sum(~np.isfinite(arr)))} non-finite)"
                )
            if name != "price_per_mwh" and np.any(arr < 0):
                raise InvalidSeriesError(f"OPFConfig.{name} has negative values")
        if not (len(self.load_profile) == len(self.pv_profile) == len(self.price_per_mwh)):
            raise InvalidSeriesError(
                "OPFConfig: load_profile, pv_profile and price_per_mwh must have equal length"
            )

    @property
    def n_periods(self) -> int:
        """Number of periods T."""
        return len(self.load_profile)


@dataclass(frozen=True, eq=False)
class OPFModel:
    """The built OPF (kept for re-solving with new load/PV/price vectors)."""

    math: MathFeeder
    physics: LinDist3Flow
    config: OPFConfig
    model: LinearModel
    network: NetworkBlocks
    variables: dict[str, VariableBlock]
    pv_map: sp.csr_matrix
    pv_rating_kw: np.ndarray
    pv_kva: np.ndarray
    build_seconds: float
    #: regulator taps as decisions (``build_opf(..., taps=...)``), else None
    taps: TapBlocks | None = None
    tap_options: TapOptions | None = None
    #: switch states as decisions (``build_opf(..., switching=...)``), else None
    switching: SwitchBlocks | None = None
    switching_options: SwitchingOptions | None = None


@dataclass(frozen=True, eq=False)
class OPFResult:
    """Solution of the deterministic OPF.

    Attributes
    ----------
    cost : float
        Objective (currency).
    import_kw : ndarray, shape (T,)
        Substation active power (kW).
    v_pu : ndarray, shape (N, T)
        Node voltage magnitudes (p.u.).
    pv_kw, pv_available_kw, pv_kvar : ndarray, shape (n_pv, T)
    curtailed_kwh : float
    energy_cost : float
        Cost of imported energy alone (currency), without voltage penalties.
    n_voltage_violations : int
        (node, period) pairs outside ``[v_min, v_max]`` by more than 1e-6 p.u.
    max_voltage_violation_pu : float
        Largest distance outside the band (p.u. of magnitude).
    n_thermal_violations : int
        (branch-phase, period) pairs loaded above 100 % of a known rating.
    max_loading_pct : float
        Highest loading of a rated branch-phase (percent).
    status : str
    build_seconds, solve_seconds : float
    taps : dict or None
        ``{regulator name: [OpenDSS tap number per period]}`` when taps are decisions.
    switch_states : dict or None
        ``{switch name: [0/1 per period]}`` when switch states are decisions.
    n_switch_operations : int or None
        Switch state changes over the horizon (from the initial states).
    """

    cost: float
    import_kw: np.ndarray
    v_pu: np.ndarray
    pv_kw: np.ndarray
    pv_available_kw: np.ndarray
    pv_kvar: np.ndarray
    curtailed_kwh: float
    energy_cost: float
    n_voltage_violations: int
    max_voltage_violation_pu: float
    n_thermal_violations: int
    max_loading_pct: float
    status: str
    build_seconds: float
    solve_seconds: float
    taps: dict[str, list[int]] | None = None
    switch_states: dict[str, list[int]] | None = None
    n_switch_operations: int | None = None


def _pv_layout(math: MathFeeder, config: OPFConfig) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """PV node map, rating (kW) and inverter kVA: the feeder's PV or PV added at its loads."""
    if len(math.pv_names):
        rating = np.maximum(math.pv_kva / config.pv_kva_over_kw, 0.0)
        return math.pv_map, rating, math.pv_kva
    rating = config.pv_penetration * np.maximum(math.load_kw, 0.0)
    return math.load_map, rating, rating * config.pv_kva_over_kw


def build_opf(
    math: MathFeeder,
    config: OPFConfig,
    *,
    taps: TapOptions | None = None,
    switching: SwitchingOptions | None = None,
) -> OPFModel:
    """Build the multi-period OPF from the formulation blocks (see module docstring).

    Parameters
    ----------
    math : MathFeeder
    config : OPFConfig
    taps : TapOptions, optional
        Make the taps of every regulator (``math.regulators``) decisions per period (METHODS
        §1.2, paper B eqs 5–8, :func:`~gridrecourse.formulation.taps.add_tap_selection`); the
        model becomes a MILP. The big-M bounds of the parent voltages are the hard band, or
        ``taps.envelope_pu`` (default 0.8–1.2 p.u., then a hard limit on the regulators'
        input nodes only) with the soft band. Default ``None``: taps fixed at the feeder's.
    switching : SwitchingOptions, optional
        Make the states of every switch (``math.switches``, a feeder built with
        ``keep_switches=True``) decisions per period: big-M flows and drops, radiality and
        connectivity, switching counts (METHODS §1.3, paper B eqs 14–17,
        :func:`~gridrecourse.formulation.switches.add_switching`); the model becomes a MILP.
        With the soft band every voltage gets the hard outer bounds ``switching.v_bounds_pu``
        (they make the voltage big-M finite). The flow big-M is the feeder's load at the
        highest load multiplier plus the PV and DER ratings of each phase (rebuild rather than
        :func:`set_operating_data` to larger loads), or the switch rating when
        ``switching.rated_flows`` (default: when thermal limits are hard).
        Default ``None``: switches at the states ``math`` was built with.
    """
    t0 = time.perf_counter()
    physics = LinDist3Flow(math)
    T = config.n_periods
    s_base = math.s_base_kva
    pv_map, pv_rating, pv_kva = _pv_layout(math, config)
    n_pv = pv_map.shape[1]

    m = LinearModel(f"opf-{math.name}")
    pv_p = m.add_variables("pv-p", n_pv * T, lb=0.0, ub=0.0)
    pv_q = m.add_variables("pv-q", n_pv * T, lb=-np.inf)
    sw_data = None if switching is None else math.switches
    if switching is not None and sw_data is None:
        raise ValueError(
            "build_opf(switching=...) needs a feeder built with keep_switches=True "
            "(network.prepare.OperatingPoint(switches=SwitchMode.AS_DECISIONS))"
        )
    ties = None if sw_data is None else add_tie_flows(m, math, sw_data, T)
    with_taps = taps is not None and math.regulators.n_regulators > 0
    soft_v = config.voltage_penalty_per_pu_h is not None
    net = add_lindist3flow(
        m,
        physics,
        T,
        (Injection.active(pv_p, pv_map), Injection.reactive(pv_q, pv_map))
        + (() if ties is None else ties.injections),
        substation=SubstationMode.NET,
        substation_cost=_price_per_pu(config, config.price_per_mwh, s_base),
        regulated=regulated_positions(physics, math.regulators) if with_taps else None,
        **_switching_network_args(physics, sw_data, switching, soft_v),
    )
    add_voltage_band(
        m,
        net,
        config.v_min,
        config.v_max,
        LimitMode.SOFT if soft_v else LimitMode.HARD,
        penalty=(config.voltage_penalty_per_pu_h or 0.0) * config.period_hours,
    )
    tap_blocks = None
    if with_taps:
        envelope = None if not soft_v else tuple(x**2 for x in taps.envelope_pu)
        tap_blocks = add_tap_selection(
            m,
            net,
            math.regulators,
            taps.positions,
            v_bounds=envelope,
            max_changes=taps.max_changes,
            initial=taps.initial_numbers(math.regulators),
            change_cost=taps.change_cost,
            hull=taps.hull,
            fixed=taps.fixed,
        )
    switch_blocks = None
    if sw_data is not None:
        rated = switching.rated_flows
        if rated is None:
            rated = config.thermal_limits and config.thermal_penalty_per_pu_h is None
        switch_blocks = add_switching(
            m,
            net,
            sw_data,
            T,
            ties=ties,
            fixed=switching.fixed,
            max_operations=switching.max_operations,
            max_total_operations=switching.max_total_operations,
            initial=switching.initial,
            operation_cost=switching.operation_cost,
            node_bound_pu=node_injection_bound(
                math, float(np.max(config.load_profile)), pv_kva=pv_kva, pv_map=pv_map
            ),
            flow_limit_pu=sw_data.rating_pu if rated else None,
        )
    if n_pv:
        add_capability_polygon(
            m, "pv-capability", pv_p, pv_q, pv_kva / s_base, T, n_sides=config.polygon_sides
        )
    if config.thermal_limits:
        soft_t = config.thermal_penalty_per_pu_h is not None
        add_thermal_polygon(
            m,
            net,
            math.rating_pu[physics.nonroot],
            LimitMode.SOFT if soft_t else LimitMode.HARD,
            n_sides=config.polygon_sides,
            penalty=(config.thermal_penalty_per_pu_h or 0.0) * config.period_hours,
        )
        if ties is not None:
            add_tie_thermal_polygon(
                m,
                ties,
                sw_data,
                T,
                LimitMode.SOFT if soft_t else LimitMode.HARD,
                n_sides=config.polygon_sides,
                penalty=(config.thermal_penalty_per_pu_h or 0.0) * config.period_hours,
            )
    opf = OPFModel(
        math=math,
        physics=physics,
        config=config,
        model=m,
        network=net,
        variables=dict(m.variables),
        pv_map=pv_map,
        pv_rating_kw=pv_rating,
        pv_kva=pv_kva,
        build_seconds=0.0,
        taps=tap_blocks,
        tap_options=taps,
        switching=switch_blocks,
        switching_options=switching,
    )
    set_operating_data(opf, config.load_profile, config.pv_profile, config.price_per_mwh)
    return OPFModel(**{**opf.__dict__, "build_seconds": time.perf_counter() - t0})


def _switching_start(opf: OPFModel, options: SolverOptions | None) -> np.ndarray | None:
    """Switch states ``(S·T,)`` of the best configuration at the highest-load hour held for
    every hour (a one-period reconfiguration with the same options), as a MIP start; None
    when that hour has no solution (HiGHS then starts without).

    On IEEE123Switches (24 h) HiGHS found the optimum only after 168 s without this start
    (sub-MIP heuristic); the one-hour problem takes a few seconds."""
    cfg, sw = opf.config, opf.switching_options
    t = int(np.argmax(cfg.load_profile))
    hour = slice(t, t + 1)
    one = replace(
        cfg,
        load_profile=np.asarray(cfg.load_profile)[hour],
        pv_profile=np.asarray(cfg.pv_profile)[hour],
        price_per_mwh=np.asarray(cfg.price_per_mwh)[hour],
    )
    fixed = None
    if sw.fixed:
        fixed = {
            k: np.broadcast_to(np.asarray(v), (cfg.n_periods,))[t] for k, v in sw.fixed.items()
        }
    try:
        sub = build_opf(opf.math, one, switching=replace(sw, fixed=fixed))
        z = sub.switching.state_matrix(sub.model.solve(options))  # (S, 1)
    except SolverError:
        return None
    return np.tile(z[:, 0].astype(float), cfg.n_periods)


def _switching_network_args(
    physics: LinDist3Flow, switches, switching: SwitchingOptions | None, soft_v: bool
) -> dict:
    """``gapped`` (tree-switch positions) and, with a soft band, the outer ``v_bounds``."""
    if switches is None or switching is None:
        return {}
    args: dict = {"gapped": tree_switch_positions(physics, switches)}
    if soft_v:
        args["v_bounds"] = tuple(x**2 for x in switching.v_bounds_pu)
    return args


def _price_per_pu(config: OPFConfig, price_per_mwh: np.ndarray, s_base_kva: float) -> np.ndarray:
    """Cost of one p.u. of substation power for one period (currency)."""
    return np.asarray(price_per_mwh, dtype=float) * config.period_hours / 1000.0 * s_base_kva


def set_operating_data(
    opf: OPFModel,
    load_profile: np.ndarray,
    pv_profile: np.ndarray,
    price_per_mwh: np.ndarray | None = None,
    *,
    load_kw: np.ndarray | None = None,
    load_kvar: np.ndarray | None = None,
) -> None:
    """Set load, PV availability and prices in the built model (right-hand sides and bounds).

    Parameters
    ----------
    load_profile, pv_profile : ndarray, shape (T,)
    price_per_mwh : ndarray, shape (T,), optional
    load_kw, load_kvar : ndarray, shape (n_loads,), optional
        Nominal loads (default: the feeder's).
    """
    math, config = opf.math, opf.config
    s_base = math.s_base_kva
    kw = math.load_kw if load_kw is None else load_kw
    kvar = math.load_kvar if load_kvar is None else load_kvar
    profile = np.asarray(load_profile, dtype=float)
    # the PV systems are decisions of this model: their fixed output is zero
    no_pv = np.zeros((len(math.pv_names), len(profile)))
    p_pu, q_pu = fixed_net_load(
        math, np.outer(kw, profile), np.outer(kvar, profile), pv_kw=no_pv, pv_kvar=no_pv
    )
    m = opf.model
    opf.network.set_rhs(m, opf.network.rhs(p_pu, q_pu))
    avail = np.outer(opf.pv_rating_kw, np.asarray(pv_profile)) / s_base  # (n_pv, T)
    m.set_col_bounds(opf.variables["pv-p"], 0.0, by_period(avail))
    if price_per_mwh is not None:
        m.set_cost(opf.variables["substation-p"], _price_per_pu(config, price_per_mwh, s_base))


def solve_opf(opf: OPFModel, options: SolverOptions | None = None) -> OPFResult:
    """Solve a built OPF with HiGHS and return typed results in engineering units.

    Raises
    ------
    InfeasibleModelError
        With taps as decisions and a hard voltage band, the message names the regulators whose
        tap range cannot hold the band (:func:`_explain_tap_infeasibility`).
    """
    try:
        starts = {}
        if opf.taps is not None:
            # MIP start: the relaxation's taps rounded to the nearest positions
            relax = replace(options or SolverOptions(), relax_integrality=True)
            starts[opf.taps.u] = rounded_start(opf.taps, opf.network, opf.model.solve(relax))
        if opf.switching is not None and opf.config.n_periods > 1:
            # MIP start: the best configuration of the highest-load hour, held all day
            z_start = _switching_start(opf, options)
            if z_start is not None:
                starts[opf.switching.z] = z_start
        if starts:
            opf.model.set_start(starts)
        sol = opf.model.solve(options)
        if opf.taps is not None:
            # the exact cost of the chosen taps (no integrality-tolerance leak)
            sol = polish_taps(opf.model, opf.taps, sol, options)
    except InfeasibleModelError as exc:
        if opf.taps is None or opf.config.voltage_penalty_per_pu_h is not None:
            raise
        raise _explain_tap_infeasibility(opf, options, exc) from exc
    math, physics, config = opf.math, opf.physics, opf.config
    T = config.n_periods
    e = physics.n_branch_phases
    s_base = math.s_base_kva
    vsq = sol.value(opf.variables["bus-v"]).reshape(T, e).T
    v = np.empty((math.n_nodes, T))
    v[physics.root] = math.root_v_pu[physics.root][:, None]
    v[physics.nonroot] = np.sqrt(np.maximum(vsq, 0.0))
    n_pv = opf.pv_map.shape[1]
    pv = sol.value(opf.variables["pv-p"]).reshape(T, n_pv).T * s_base
    pvq = sol.value(opf.variables["pv-q"]).reshape(T, n_pv).T * s_base
    avail = np.outer(opf.pv_rating_kw, config.pv_profile)
    imports = sol.value(opf.variables["substation-p"]) * s_base
    price_kwh = np.asarray(config.price_per_mwh) / 1000.0
    outside = np.maximum(v - config.v_max, 0.0) + np.maximum(config.v_min - v, 0.0)
    flows_p = sol.value(opf.variables["branch-p"]).reshape(T, e).T
    flows_q = sol.value(opf.variables["branch-q"]).reshape(T, e).T
    rating = math.rating_pu[physics.nonroot][:, None]
    loading = np.where(np.isfinite(rating), np.hypot(flows_p, flows_q) / rating * 100.0, 0.0)
    return OPFResult(
        cost=sol.objective,
        import_kw=imports,
        v_pu=v,
        pv_kw=pv,
        pv_available_kw=avail,
        pv_kvar=pvq,
        curtailed_kwh=float((avail - pv).sum() * config.period_hours),
        energy_cost=float(np.sum(price_kwh * imports) * config.period_hours),
        n_voltage_violations=int(np.sum(outside > 1e-6)),
        max_voltage_violation_pu=float(outside.max()),
        n_thermal_violations=int(np.sum(loading > 100.0 + 1e-6)),
        max_loading_pct=float(loading.max()) if loading.size else 0.0,
        status=sol.status,
        build_seconds=opf.build_seconds,
        solve_seconds=sol.solve_seconds,
        taps=None if opf.taps is None else opf.taps.as_dict(sol),
        switch_states=None if opf.switching is None else opf.switching.states(sol),
        n_switch_operations=None if opf.switching is None else opf.switching.n_operations(sol),
    )


def _explain_tap_infeasibility(
    opf: OPFModel, options: SolverOptions | None, exc: InfeasibleModelError
) -> InfeasibleModelError:
    """Re-solve with the soft band (and soft thermal limits) and name the regulators whose
    governed nodes stay outside the band with the tap at the end of its allowed positions.

    The re-solve uses the operating data of ``opf.config``.
    """
    config = replace(
        opf.config,
        voltage_penalty_per_pu_h=OPFConfig.voltage_penalty_per_pu_h,
        thermal_penalty_per_pu_h=opf.config.thermal_penalty_per_pu_h
        or OPFConfig.thermal_penalty_per_pu_h,
    )
    soft = solve_opf(build_opf(opf.math, config, taps=opf.tap_options), options)
    numbers = np.array([soft.taps[n] for n in opf.math.regulators.names])
    stuck = regulators_at_limit(opf.math, opf.taps, numbers, soft.v_pu, config.v_min, config.v_max)
    if not stuck:
        return InfeasibleModelError(
            f"{exc}; with the soft band no regulator is at the end of its allowed taps with "
            f"governed nodes outside [{config.v_min}, {config.v_max}] p.u. (the band is not "
            "held for another reason: nodes upstream of every regulator, or thermal limits)"
        )
    return InfeasibleModelError(
        f"{exc}: the allowed tap positions cannot hold the voltage band "
        f"[{config.v_min}, {config.v_max}] p.u. — regulator(s) "
        + ", ".join(s.name for s in stuck)
        + " ("
        + "; ".join(s.describe() for s in stuck)
        + ")"
    )


@dataclass(frozen=True, eq=False)
class OPFACCheck:
    """An OPF solution replayed in OpenDSS's AC power flow, period by period.

    Attributes
    ----------
    max_abs_voltage_error_pu : float
        ``max |V_model − V_AC|`` over compared nodes and periods (p.u.).
    max_abs_voltage_error_by_period : ndarray, shape (T,)
    worst_node : str
    worst_period : int
    ac_v_min_pu, ac_v_max_pu : ndarray, shape (T,)
        Extreme AC voltages over the compared nodes.
    converged : bool
        Every period's AC power flow converged.
    """

    max_abs_voltage_error_pu: float
    max_abs_voltage_error_by_period: np.ndarray
    worst_node: str
    worst_period: int
    ac_v_min_pu: np.ndarray
    ac_v_max_pu: np.ndarray
    converged: bool
