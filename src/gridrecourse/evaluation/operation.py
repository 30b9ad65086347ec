"""Post-evaluation of a day-ahead schedule (paper D §V-D, eq 33) and its AC certificate.

:func:`evaluate_schedule` fixes a first stage ``x`` and solves the recourse LP of
:mod:`gridrecourse.problems.operation` for each scenario (a held-out day): the model is built
once and re-solved with new ``xi`` bounds and loss terms (warm start). Losses of each scenario are
evaluated at its own net load with the schedule's planned injections (eq 8f).

:func:`expected_project_budget` is eq 33 over the scenarios every compared schedule can serve::

    EPB = cᵀx + (1/N_F) Σ_{n ∈ F} dᵀy_n,     F = scenarios feasible for all methods

and the reliability of a schedule is its share of feasible scenarios.

:func:`ac_certificate` replays the plan (forecast loads and PV, planned DG p and q, storage) in
OpenDSS's AC power flow hour by hour and compares voltages with the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridrecourse.errors import InfeasibleModelError, SolverError
from gridrecourse.physics.lindistflow import LossTerms
from gridrecourse.problems.operation import (
    FirstStageSchedule,
    OperationCase,
    build_operation_model,
)
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "ACCertificate",
    "ScheduleEvaluation",
    "ac_certificate",
    "evaluate_schedule",
    "expected_project_budget",
]


@dataclass(frozen=True, eq=False)
class ScheduleEvaluation:
    """Recourse of one schedule on N scenarios.

    Attributes
    ----------
    first_stage_cost : float
        cᵀx ($).
    recourse_cost : ndarray, shape (N,)
        dᵀy per scenario ($; NaN where infeasible).
    feasible : ndarray of bool, shape (N,)
    solve_seconds : float
    n_solver_failures : int
        Scenarios where HiGHS neither solved nor proved infeasibility, warm and cold (counted
        as not served).
    """

    first_stage_cost: float
    recourse_cost: np.ndarray
    feasible: np.ndarray
    solve_seconds: float
    n_solver_failures: int = 0

    @property
    def reliability(self) -> float:
        """Share of scenarios with a feasible recourse."""
        return float(np.mean(self.feasible)) if len(self.feasible) else float("nan")

    def within_budget(self, budget: float) -> np.ndarray:
        """Scenarios feasible with ``cᵀx + dᵀy ≤ budget``."""
        total = self.first_stage_cost + np.where(self.feasible, self.recourse_cost, np.inf)
        return total <= budget * (1 + 1e-9)


def evaluate_schedule(
    math,
    case: OperationCase,
    schedule: FirstStageSchedule,
    price_per_mwh: np.ndarray,
    load: np.ndarray,
    pv: np.ndarray,
    *,
    physics=None,
    options: SolverOptions | None = None,
    lossy: bool = True,
) -> ScheduleEvaluation:
    """Solve the recourse of a fixed first stage on every scenario.

    Parameters
    ----------
    math : MathFeeder
    case : OperationCase
    schedule : FirstStageSchedule
    price_per_mwh : ndarray, shape (T,)
    load : ndarray, shape (N, T, K_L)
        Load multipliers of each scenario.
    pv : ndarray, shape (N, T, K_PV)
        PV per unit of rating of each scenario.
    lossy : bool
        Loss terms at each scenario's net load (eq 8f); False: lossless.
    """
    load = np.asarray(load, dtype=float)
    pv = np.asarray(pv, dtype=float)
    n, T = load.shape[0], load.shape[1]
    om = build_operation_model(
        math,
        case,
        price_per_mwh,
        n_load_sources=load.shape[2],
        n_pv_sources=pv.shape[2],
        n_copies=1,
        with_plan=False,
        fixed_schedule=schedule,
        physics=physics,
        peak_multiplier=float(load.max()) if load.size else 1.0,
    )
    om.model.set_cost(om.recourse_cost, 1.0)
    losses = None
    if lossy and n:
        p_ref, q_ref = om.reference_net_load(
            load,
            pv,
            schedule.dg_kw,
            schedule.dg_kvar,
            schedule.discharge_kw - schedule.charge_kw,
        )
        losses = om.losses_at(p_ref, q_ref)
    cost = np.full(n, np.nan)
    seconds = 0.0
    failures = 0
    for k in range(n):  # one warm re-solve per scenario (the model is built once)
        om.set_uncertain(load[k][None], pv[k][None])
        if losses is not None:
            cols = slice(k * T, (k + 1) * T)
            om.set_losses(LossTerms(losses.flow[:, cols], losses.drop[:, cols]))
        try:
            sol = om.model.solve(options)
        except InfeasibleModelError:
            om.model.reset()  # an infeasible basis is a poor warm start
            continue
        except SolverError:  # e.g. status "Unknown" after a warm start: once more, cold
            om.model.reset()
            try:
                sol = om.model.solve(options)
            except SolverError:
                om.model.reset()
                failures += 1
                continue
        seconds += sol.solve_seconds
        cost[k] = float(sol.x[om.recourse_cost.slice][0])
    return ScheduleEvaluation(schedule.cost, cost, np.isfinite(cost), seconds, failures)


def expected_project_budget(evaluations: dict[str, ScheduleEvaluation]) -> dict[str, float]:
    """EPB (eq 33) of each schedule over the scenarios feasible for all of them.

    Returns NaN for every schedule when no scenario is feasible for all.
    """
    common = np.logical_and.reduce([e.feasible for e in evaluations.values()])
    out = {}
    for name, e in evaluations.items():
        out[name] = (
            float(e.first_stage_cost + e.recourse_cost[common].mean())
            if common.any()
            else float("nan")
        )
    return out


@dataclass(frozen=True, eq=False)
class ACCertificate:
    """The plan replayed in OpenDSS, hour by hour.

    Attributes
    ----------
    converged : bool
    max_abs_voltage_error_pu : float
        ``max |V_model − V_AC|`` over compared nodes and hours (p.u.).
    ac_v_min_pu, ac_v_max_pu : float
        Extreme AC voltages over the compared nodes and hours.
    n_voltage_violations : int
        (node, hour) pairs outside the case's band by more than 1e-4 p.u. in AC.
    substation_kw_error : float
        Largest ``|P_model − P_AC|`` of the substation import over the hours (kW; the import
        itself can approach 0 when DGs and PV cover the load, so no percentage).
    """

    converged: bool
    max_abs_voltage_error_pu: float
    ac_v_min_pu: float
    ac_v_max_pu: float
    n_voltage_violations: int
    substation_kw_error: float


def ac_certificate(
    feeder,
    math,
    case: OperationCase,
    schedule: FirstStageSchedule,
    forecast_load: np.ndarray,
    forecast_pv: np.ndarray,
    model_v_pu: np.ndarray,
    model_substation_kw: np.ndarray,
) -> ACCertificate:
    """Replay a plan in OpenDSS (controls off, model taps) and compare with the model.

    Loads are set to their forecast (nominal × multiplier of their source, constant power
    factor); the DGs (planned p and q), the storage (net discharge) and the PV (forecast,
    unity power factor) are added as negative constant-power loads at their buses, one per
    device bus and phase set, split equally over the bus's phases as in the model.

    Parameters
    ----------
    feeder : Feeder
        Source feeder of ``math`` (compiled in OpenDSS here).
    forecast_load : ndarray, shape (T, K_L)
    forecast_pv : ndarray, shape (T, K_PV)
    model_v_pu : ndarray, shape (N, T)
        Model voltages of the plan (roots included).
    model_substation_kw : ndarray, shape (T,)
    """
    from types import SimpleNamespace

    import opendssdirect as dss

    from gridrecourse.evaluation.ac_check import (
        Decisions,
        apply_decisions,
        ensure_compiled,
        read_snapshot,
    )
    from gridrecourse.evaluation.validation import _compare

    T, k_l = forecast_load.shape
    k_p = forecast_pv.shape[1]
    n_loads = len(math.load_names)
    src_l = np.arange(n_loads) % k_l
    mult = forecast_load[:, src_l].T  # (n_loads, T)
    load_kw = math.load_kw[:, None] * mult * case.load_scale
    load_kvar = math.load_kvar[:, None] * mult * case.load_scale
    pv_kw = (
        np.array([p.rating_kw for p in case.pv])[:, None]
        * forecast_pv[:, np.arange(len(case.pv)) % k_p].T
    )
    # net injection per device bus (kW, kvar), hours in columns
    bus_kw: dict[str, np.ndarray] = {}
    bus_kvar: dict[str, np.ndarray] = {}

    def add(bus: str, kw: np.ndarray, kvar: np.ndarray) -> None:
        bus_kw[bus] = bus_kw.get(bus, np.zeros(T)) + kw
        bus_kvar[bus] = bus_kvar.get(bus, np.zeros(T)) + kvar

    for g, dg in enumerate(case.dgs):
        add(dg.bus, schedule.dg_kw[g], schedule.dg_kvar[g])
    for j, unit in enumerate(case.storage):
        add(unit.bus, schedule.discharge_kw[j] - schedule.charge_kw[j], np.zeros(T))
    for p, plant in enumerate(case.pv):
        add(plant.bus, pv_kw[p], np.zeros(T))
    reg = math.regulators
    taps = {
        (x, int(w)): float(t)
        for x, w, t in zip(reg.transformer_names, reg.winding, reg.tap, strict=True)
    }
    ensure_compiled(feeder)
    names = {}
    index = {b: i for i, b in enumerate(math.bus_names)}
    for bus in bus_kw:
        nodes = np.flatnonzero(math.node_bus == index[bus])
        phases = ".".join(str(int(math.node_phase[n])) for n in nodes)
        kv = float(math.kv_base_ln[nodes[0]])
        n_ph = len(nodes)
        kv_rating = kv * np.sqrt(3.0) if n_ph > 1 else kv
        name = f"gr_operate_{bus}"
        dss.Text.Command(
            f"New Load.{name} bus1={bus}.{phases} phases={n_ph} kV={kv_rating:.6f} "
            f"kW=0 kvar=0 model=1 vminpu=0.5 vmaxpu=1.5"
        )
        names[bus] = name
    err = np.zeros(T)
    v_lo, v_hi = np.inf, -np.inf
    violations = 0
    p_err = np.zeros(T)
    converged = True
    for t in range(T):  # one AC power flow per hour
        apply_decisions(
            Decisions(
                taps=taps,
                load_kw=dict(zip(math.load_names, load_kw[:, t].tolist(), strict=True)),
                load_kvar=dict(zip(math.load_names, load_kvar[:, t].tolist(), strict=True)),
            )
        )
        for bus, name in names.items():
            dss.Loads.Name(name)
            dss.Loads.kW(-float(bus_kw[bus][t]))
            dss.Loads.kvar(-float(bus_kvar[bus][t]))
        dss.Text.Command("Set maxiterations=100")
        dss.Text.Command("Solve")
        snap = read_snapshot()
        converged &= snap.converged
        idx = snap.index()
        take = np.array([idx[n.lower()] for n in math.node_names])

        e = _compare(
            SimpleNamespace(v_pu=model_v_pu[:, t]), snap.v_pu[take], snap.v_phasor_pu[take], math
        )
        err[t] = np.nanmax(e)
        v_ac = snap.v_pu[take]
        v_lo, v_hi = min(v_lo, float(v_ac.min())), max(v_hi, float(v_ac.max()))
        violations += int(np.sum((v_ac > case.v_max + 1e-4) | (v_ac < case.v_min - 1e-4)))
        p_ac = snap.substation_kw
        p_err[t] = abs(model_substation_kw[t] - p_ac)
    # leave the engine clean for the next certificate
    dss.Text.Command("Clear")
    return ACCertificate(
        converged=bool(converged),
        max_abs_voltage_error_pu=float(err.max()),
        ac_v_min_pu=v_lo,
        ac_v_max_pu=v_hi,
        n_voltage_violations=violations,
        substation_kw_error=float(p_err.max()),
    )
