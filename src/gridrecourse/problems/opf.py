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
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import InvalidSeriesError
from gridrecourse.network.math_model import MathFeeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.solvers.highs import ConstraintBlock, LinearModel, VariableBlock
from gridrecourse.solvers.options import SolverOptions

DEFAULT_POLYGON_SIDES = 12


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
    theta = 2 * np.pi * np.arange(n_sides) / n_sides
    return np.cos(theta), np.sin(theta), float(np.cos(np.pi / n_sides))


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
    variables: dict[str, VariableBlock]
    constraints: dict[str, ConstraintBlock]
    pv_map: sp.csr_matrix
    pv_rating_kw: np.ndarray
    pv_kva: np.ndarray
    build_seconds: float


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


def _pv_layout(math: MathFeeder, config: OPFConfig) -> tuple[sp.csr_matrix, np.ndarray, np.ndarray]:
    """PV node map, rating (kW) and inverter kVA: the feeder's PV or PV added at its loads."""
    if len(math.pv_names):
        rating = np.maximum(math.pv_kva / config.pv_kva_over_kw, 0.0)
        return math.pv_map, rating, math.pv_kva
    rating = config.pv_penetration * np.maximum(math.load_kw, 0.0)
    return math.load_map, rating, rating * config.pv_kva_over_kw


def build_opf(math: MathFeeder, config: OPFConfig) -> OPFModel:
    """Build the multi-period OPF model (vectorized; see module docstring)."""
    t0 = time.perf_counter()
    physics = LinDist3Flow(math)
    T = config.n_periods
    e = physics.n_branch_phases
    it = sp.identity(T, format="csr")
    kron = lambda m: sp.kron(it, sp.csr_matrix(m), format="csr")  # noqa: E731
    s_base = math.s_base_kva
    pv_map, pv_rating, pv_kva = _pv_layout(math, config)
    n_pv = pv_map.shape[1]

    m = LinearModel(f"opf-{math.name}")
    p = m.add_variables("branch-p", e * T, lb=-np.inf)
    q = m.add_variables("branch-q", e * T, lb=-np.inf)
    soft = config.voltage_penalty_per_pu_h is not None
    v = m.add_variables(
        "bus-v",
        e * T,
        lb=0.0 if soft else config.v_min**2,
        ub=np.inf if soft else config.v_max**2,
    )
    pv_p = m.add_variables("pv-p", n_pv * T, lb=0.0, ub=0.0)
    pv_q = m.add_variables("pv-q", n_pv * T, lb=-np.inf)
    price_kw = np.asarray(config.price_per_mwh) * config.period_hours / 1000.0 * s_base
    p0 = m.add_variables("substation-p", T, lb=-np.inf, cost=price_kw)

    mpv = pv_map[physics.nonroot]
    re, im = sp.csr_matrix(mpv.real), sp.csr_matrix(mpv.imag)
    cons: dict[str, ConstraintBlock] = {}
    zeros = np.zeros(e * T)
    cons["branch-p_balance"] = m.add_constraints(
        "branch-p_balance",
        [(p, kron(physics.flow)), (pv_p, kron(re)), (pv_q, kron(-im))],
        lb=zeros,
        ub=zeros,
    )
    cons["branch-q_balance"] = m.add_constraints(
        "branch-q_balance",
        [
            (q, kron(physics.flow)),
            (v, kron(sp.diags(physics.cap_b))),
            (pv_p, kron(im)),
            (pv_q, kron(re)),
        ],
        lb=zeros,
        ub=zeros,
    )
    volt = sp.identity(e, format="csr") - physics.voltage_parent
    cons["branch-voltage_drop"] = m.add_constraints(
        "branch-voltage_drop",
        [(p, kron(physics.m_p)), (q, kron(physics.m_q)), (v, kron(volt))],
        lb=zeros,
        ub=zeros,
    )
    ones_root = sp.csr_matrix(np.ones((1, len(physics.root))))
    root_pv = pv_map[physics.root]
    cons["substation-p_balance"] = m.add_constraints(
        "substation-p_balance",
        [
            (p0, sp.identity(T)),
            (p, kron(-(ones_root @ physics.root_outflow))),
            (
                pv_p,
                kron(sp.csr_matrix(np.ones((1, len(physics.root)))) @ sp.csr_matrix(root_pv.real)),
            ),
        ],
        lb=np.zeros(T),
        ub=np.zeros(T),
    )
    if soft:
        penalty = config.voltage_penalty_per_pu_h * config.period_hours
        over = m.add_variables("bus-v_over", e * T, lb=0.0, cost=penalty)
        under = m.add_variables("bus-v_under", e * T, lb=0.0, cost=penalty)
        eye_et = sp.identity(e * T, format="csr")
        cons["bus-v_upper"] = m.add_constraints(
            "bus-v_upper", [(v, eye_et), (over, -eye_et)], ub=np.full(e * T, config.v_max**2)
        )
        cons["bus-v_lower"] = m.add_constraints(
            "bus-v_lower", [(v, eye_et), (under, eye_et)], lb=np.full(e * T, config.v_min**2)
        )
    cos, sin, inscribe = polygon_rows(config.polygon_sides)
    k = config.polygon_sides
    if n_pv:
        poly = sp.kron(sp.identity(n_pv), np.c_[cos], format="csr")
        polyq = sp.kron(sp.identity(n_pv), np.c_[sin], format="csr")
        s_pv = np.repeat(pv_kva / s_base * inscribe, k)
        cons["pv-capability"] = m.add_constraints(
            "pv-capability",
            [(pv_p, kron(poly)), (pv_q, kron(polyq))],
            ub=np.tile(s_pv, T),
        )
    rating = math.rating_pu[physics.nonroot]
    rated = np.flatnonzero(np.isfinite(rating) & (rating > 0))
    if config.thermal_limits and len(rated):
        sel = sp.csr_matrix(
            (np.ones(len(rated)), (np.arange(len(rated)), rated)), shape=(len(rated), e)
        )
        poly_p = sp.kron(sel, np.c_[cos], format="csr")
        poly_q = sp.kron(sel, np.c_[sin], format="csr")
        terms = [(p, kron(poly_p)), (q, kron(poly_q))]
        if config.thermal_penalty_per_pu_h is not None:
            overload = m.add_variables(
                "branch-overload",
                len(rated) * T,
                lb=0.0,
                cost=config.thermal_penalty_per_pu_h * config.period_hours,
            )
            share = sp.kron(sp.identity(len(rated)), np.ones((k, 1)), format="csr")
            terms.append((overload, kron(-share)))
        cons["branch-thermal"] = m.add_constraints(
            "branch-thermal", terms, ub=np.tile(np.repeat(rating[rated] * inscribe, k), T)
        )
    opf = OPFModel(
        math=math,
        physics=physics,
        config=config,
        model=m,
        variables=dict(m.variables),
        constraints=cons,
        pv_map=pv_map,
        pv_rating_kw=pv_rating,
        pv_kva=pv_kva,
        build_seconds=0.0,
    )
    set_operating_data(opf, config.load_profile, config.pv_profile, config.price_per_mwh)
    return OPFModel(**{**opf.__dict__, "build_seconds": time.perf_counter() - t0})


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
    math, physics, config = opf.math, opf.physics, opf.config
    T = config.n_periods
    s_base = math.s_base_kva
    kw = math.load_kw if load_kw is None else load_kw
    kvar = math.load_kvar if load_kvar is None else load_kvar
    s_nom = (math.load_map @ (kw + 1j * kvar)) / s_base  # (N,)
    # other fixed injections (generators, storage at their dispatch)
    s_nom_fixed = (
        -(
            math.gen_map @ (math.gen_kw + 1j * math.gen_kvar)
            + math.storage_map @ (math.storage_kw + 1j * math.storage_kvar)
        )
        / s_base
    )
    s_t = np.outer(s_nom, np.asarray(load_profile)) + s_nom_fixed[:, None]  # (N, T)
    p_rhs = s_t.real[physics.nonroot].T.ravel()
    q_rhs = s_t.imag[physics.nonroot].T.ravel()
    m = opf.model
    m.set_row_bounds(opf.constraints["branch-p_balance"], p_rhs, p_rhs)
    m.set_row_bounds(opf.constraints["branch-q_balance"], q_rhs, q_rhs)
    v_root_sq = (math.root_v_pu[physics.root] ** 2)[:, None].repeat(T, axis=1)
    volt_rhs = (physics.voltage_root @ v_root_sq).T.ravel()
    m.set_row_bounds(opf.constraints["branch-voltage_drop"], volt_rhs, volt_rhs)
    root_load = s_t.real[physics.root].sum(axis=0)
    m.set_row_bounds(opf.constraints["substation-p_balance"], root_load, root_load)
    avail = np.outer(opf.pv_rating_kw, np.asarray(pv_profile)) / s_base  # (n_pv, T)
    m.set_col_bounds(opf.variables["pv-p"], 0.0, avail.T.ravel())
    if price_per_mwh is not None:
        price_kw = np.asarray(price_per_mwh) * config.period_hours / 1000.0 * s_base
        m.set_cost(opf.variables["substation-p"], price_kw)


def solve_opf(opf: OPFModel, options: SolverOptions | None = None) -> OPFResult:
    """Solve a built OPF with HiGHS and return typed results in engineering units."""
    sol = opf.model.solve(options)
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
    )
