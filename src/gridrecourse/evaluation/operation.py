"""Post-evaluation of a day-ahead schedule (paper D §V-D, eq 33) and its AC certificate.

:func:`evaluate_schedule` fixes a first stage ``x`` and solves the recourse of every scenario
(a held-out day) of an :class:`~gridrecourse.problems.operation_two_stage.OperationProblem`
through the shared exact evaluator
(:func:`~gridrecourse.evaluation.out_of_sample.evaluate_first_stage`: the recourse model is built
once per worker, each day only changes row bounds and re-solves warm, in parallel through an
executor). By default the days' loss terms (eq 8f) are taken at each day's net load with the
schedule's own planned injections (the problem's
:meth:`~gridrecourse.problems.operation_two_stage.OperationProblem.with_loss_reference`);
``own_losses=False`` keeps the problem's common reference, so that several schedules (and the
extensive form's) are compared on one recourse function.

:func:`expected_project_budget` is eq 33 over the scenarios every compared schedule can serve::

    EPB = cᵀx + (1/N_F) Σ_{n ∈ F} dᵀy_n,     F = scenarios feasible for all methods

and the reliability of a schedule is its share of feasible scenarios.

:func:`ac_certificate` replays the plan (forecast loads and PV, planned DG p and q, storage) in
OpenDSS's AC power flow hour by hour and compares voltages with the model's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridrecourse.evaluation.out_of_sample import OutOfSampleResult, evaluate_first_stage
from gridrecourse.execution import Executor
from gridrecourse.problems.operation import FirstStageSchedule, OperationCase
from gridrecourse.problems.operation_two_stage import OperationProblem
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
        HiGHS time summed over the scenarios (s).
    n_solver_failures : int
        Scenarios where HiGHS neither solved nor proved infeasibility, warm and cold (counted
        as not served).
    result : OutOfSampleResult, optional
        The exact evaluation behind these figures (duals, subgradients, wall time).
    """

    first_stage_cost: float
    recourse_cost: np.ndarray
    feasible: np.ndarray
    solve_seconds: float
    n_solver_failures: int = 0
    result: OutOfSampleResult | None = None

    @property
    def reliability(self) -> float:
        """Share of scenarios with a feasible recourse."""
        return float(np.mean(self.feasible)) if len(self.feasible) else float("nan")

    @property
    def expected_total_cost(self) -> float:
        """``cᵀx + Σ π_ω dᵀy_ω`` (inf when some scenario is not served)."""
        return self.result.expected_objective if self.result is not None else float("nan")

    def within_budget(self, budget: float) -> np.ndarray:
        """Scenarios feasible with ``cᵀx + dᵀy ≤ budget``."""
        total = self.first_stage_cost + np.where(self.feasible, self.recourse_cost, np.inf)
        return total <= budget * (1 + 1e-9)


def evaluate_schedule(
    problem: OperationProblem,
    schedule: FirstStageSchedule,
    *,
    own_losses: bool = True,
    scenarios: np.ndarray | None = None,
    executor: Executor | None = None,
    options: SolverOptions | None = None,
    desc: str | None = None,
) -> ScheduleEvaluation:
    """Solve the recourse of a fixed first stage on every scenario of ``problem``.

    Parameters
    ----------
    problem : OperationProblem
        Its scenarios are the evaluation days.
    schedule : FirstStageSchedule
        Must be a feasible plan at the problem's forecast
        (:meth:`OperationProblem.first_stage_vector`).
    own_losses : bool
        Loss terms of each day at the schedule's planned injections (default; eq 8f); False:
        at the problem's ``loss_reference``.
    scenarios : ndarray of int, optional
        Subset of the problem's scenarios (default all).
    executor : Executor, optional
        Where the days are solved (default in-process; not closed here).
    options : SolverOptions, optional
    desc : str, optional
        Progress label on stderr (None: silent).
    """
    pb = problem.with_loss_reference(schedule) if own_losses else problem
    x = pb.first_stage_vector(schedule)
    res = evaluate_first_stage(
        pb, x, scenarios=scenarios, executor=executor, options=options, desc=desc
    )
    feasible = np.asarray(res.feasible, dtype=bool)
    return ScheduleEvaluation(
        first_stage_cost=float(pb.first_stage.cost @ x),
        recourse_cost=np.where(feasible, res.objectives, np.nan),
        feasible=feasible,
        solve_seconds=float(np.sum(res.solve_seconds)),
        # the operation recourse marks a scenario that failed warm and cold by a NaN bound
        n_solver_failures=int(np.sum(~feasible & np.isnan(res.dual_bounds))),
        result=res,
    )


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
