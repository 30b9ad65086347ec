"""Paper D's operation problem on the two-stage contract (case33bw, a few days)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gridrecourse.evaluation.operation import evaluate_schedule
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.methods.igdt import OperationInstance, operation_problem, solve_dt
from gridrecourse.network.prepare import prepare_feeder
from gridrecourse.physics.lindistflow import LossTerms
from gridrecourse.problems.operation import (
    build_operation_model,
    bundled_operation_data,
    default_case,
)
from gridrecourse.problems.operation_two_stage import OperationProblem, OperationProblemError
from gridrecourse.solvers.options import SolverOptions


@pytest.fixture(scope="module")
def case33():
    math = prepare_feeder("case33bw").math
    inst = OperationInstance(math, default_case("case33bw"), bundled_operation_data())
    return inst, solve_dt(inst)


def _fixed_schedule_costs(inst, schedule, load, pv) -> np.ndarray:
    """Reference: the builder's recourse with the first stage fixed by column bounds (no
    linking rows, no contract), losses at each day's net load with the schedule's injections,
    one LP per day (the former evaluation loop)."""
    from gridrecourse.errors import InfeasibleModelError

    om = build_operation_model(
        inst.math,
        inst.case,
        inst.data.price_per_mwh,
        n_load_sources=inst.n_load,
        n_pv_sources=inst.n_pv,
        n_copies=1,
        with_plan=False,
        fixed_schedule=schedule,
        physics=inst.physics,
        peak_multiplier=float(load.max()),
    )
    om.model.set_cost(om.recourse_cost, 1.0)
    p_ref, q_ref = om.reference_net_load(
        load, pv, schedule.dg_kw, schedule.dg_kvar, schedule.discharge_kw - schedule.charge_kw
    )
    losses = om.losses_at(p_ref, q_ref)
    T = om.n_periods
    out = np.full(len(load), np.nan)
    for k in range(len(load)):
        om.set_uncertain(load[k][None], pv[k][None])
        cols = slice(k * T, (k + 1) * T)
        om.set_losses(LossTerms(losses.flow[:, cols], losses.drop[:, cols]))
        try:
            out[k] = om.model.solve().x[om.recourse_cost.slice][0]
        except InfeasibleModelError:
            om.model.reset()
    return out


def test_contract_evaluation_equals_the_fixed_schedule_lp(case33):
    """The exact evaluator on the contract (x through linking rows, net load folded into the
    rows) gives the recourse cost of the builder's fixed-schedule LP, day by day; a day no plan
    can serve is infeasible in both."""
    inst, dt = case33
    d = inst.data
    days = d.test_days[:4]
    load = np.concatenate([d.load[days], 3.0 * d.load[days[:1]].clip(min=0.8)])
    pv = np.concatenate([d.pv[days], d.pv[days[:1]]])
    problem = operation_problem(inst, dt, load=load, pv=pv)
    ev = evaluate_schedule(problem, dt.schedule)
    ref = _fixed_schedule_costs(inst, dt.schedule, load, pv)
    assert ev.feasible.tolist() == [True] * 4 + [False]
    assert ev.recourse_cost[:4] == pytest.approx(ref[:4], rel=1e-7, abs=1e-6)
    assert np.isnan(ref[4]) and ev.n_solver_failures == 0
    assert ev.first_stage_cost == pytest.approx(dt.cost, rel=1e-9)
    assert ev.reliability == pytest.approx(0.8)


def test_first_stage_vector_round_trip_and_plan(case33):
    """A schedule's x is feasible for the first stage (plan at the forecast completed by an LP)
    and decodes back to the schedule; Λ1 = cᵀx."""
    inst, dt = case33
    problem = operation_problem(inst, dt, days=inst.data.test_days[:2])
    x = problem.first_stage_vector(dt.schedule)
    assert problem.first_stage.is_feasible(x, tol=1e-6)
    back = problem.decode(x)
    for name in ("dg_kw", "charge_kw", "discharge_kw", "purchase_kw"):
        assert getattr(back, name) == pytest.approx(getattr(dt.schedule, name), abs=1e-9)
    assert back.cost == pytest.approx(dt.cost, rel=1e-9)
    # a DG far above its p̄ is not a plan
    bad = type(dt.schedule)(
        dt.schedule.dg_kw * 10,
        dt.schedule.dg_kvar,
        dt.schedule.charge_kw,
        dt.schedule.discharge_kw,
        dt.schedule.purchase_kw,
        0.0,
    )
    with pytest.raises(OperationProblemError, match="not a feasible plan"):
        problem.first_stage_vector(bad)


def test_problem_pickles_without_its_builder(case33):
    inst, dt = case33
    problem = operation_problem(inst, dt, days=inst.data.test_days[:2])
    before = pickle.dumps(problem)
    problem.build_second_stage().solve(problem.first_stage_vector(dt.schedule), 0)
    assert pickle.dumps(problem) == before  # the executors key their model caches on it
    copy = pickle.loads(before)
    data = copy.scenario_data([1])
    assert np.array_equal(data.row_lb, problem.scenario_data([1]).row_lb)
    with pytest.raises(OperationProblemError, match="not pickled"):
        copy.with_loss_reference(dt.schedule)


def test_bad_scenario_shapes_are_named(case33):
    inst, _ = case33
    d = inst.data
    with pytest.raises(OperationProblemError, match="forecasts must be"):
        OperationProblem(
            inst.math,
            inst.case,
            d.price_per_mwh,
            d.load[:2],
            d.pv[:2],
            forecast_load=d.forecast_load[:5],
            forecast_pv=d.forecast_pv,
        )
    with pytest.raises(OperationProblemError, match="finite and >= 0"):
        OperationProblem(
            inst.math,
            inst.case,
            d.price_per_mwh,
            -d.load[:2],
            d.pv[:2],
            forecast_load=d.forecast_load,
            forecast_pv=d.forecast_pv,
        )


@pytest.mark.slow
def test_extensive_form_beats_dt_and_its_first_stage_evaluates_exactly(case33):
    """Three training days as scenarios: the EF (storage modes as binaries) is optimal for the
    expected cost, so it is at most the DT plan's expected cost on the same problem (same
    recourse function: common loss reference), and its first stage re-evaluated exactly by the
    shared evaluator gives the EF objective."""
    inst, dt = case33
    problem = operation_problem(inst, dt, days=inst.data.train_days[::100][:3])
    ef = solve_extensive_form(problem, SolverOptions(mip_gap=1e-9))
    dt_ev = evaluate_schedule(problem, dt.schedule, own_losses=False)
    assert dt_ev.reliability == 1.0
    assert ef.objective <= dt_ev.expected_total_cost * (1 + 1e-9)
    exact = evaluate_first_stage(problem, ef.x, desc=None)
    assert exact.n_infeasible == 0
    assert exact.expected_objective == pytest.approx(ef.objective, rel=1e-6)
    schedule = problem.decode(ef.x)
    assert np.all(np.minimum(schedule.charge_kw, schedule.discharge_kw) <= 1e-6)


def _failing_first(monkeypatch, model, n_failures: int) -> list[int]:
    """Make the recourse model's HiGHS solve fail ``n_failures`` times, then work."""
    from gridrecourse.errors import SolverError

    real, calls = type(model.model).solve, []

    def flaky(self, options=None):
        calls.append(1)
        if len(calls) <= n_failures:
            raise SolverError("HiGHS model status Unknown")
        return real(self, options)

    monkeypatch.setattr(type(model.model), "solve", flaky)
    return calls


def test_a_solver_failure_is_retried_cold_and_a_second_one_counted(case33, monkeypatch):
    """One failure: the cold retry gives the same recourse; two: the day is reported not
    served with a NaN bound (counted as a solver failure), not raised."""
    from gridrecourse.errors import SolverError
    from siting_cases import tiny_problem

    inst, dt = case33
    d = inst.data
    problem = operation_problem(inst, dt, load=d.load[d.test_days[:2]], pv=d.pv[d.test_days[:2]])
    model = problem.build_second_stage()
    x = problem.first_stage_vector(dt.schedule)
    ref = model.solve(x, 1)
    calls = _failing_first(monkeypatch, model, 1)
    again = model.solve(x, 1)
    assert len(calls) == 2 and again.feasible
    assert again.objective == pytest.approx(ref.objective, rel=1e-9)
    monkeypatch.undo()
    calls = _failing_first(monkeypatch, model, 2)
    failed = model.solve(x, 1)
    assert len(calls) == 2 and not failed.feasible and np.isnan(failed.dual_bound)
    monkeypatch.undo()
    # a problem that does not report failures raises after the cold retry
    siting = tiny_problem()
    recourse = siting.build_second_stage()
    calls = _failing_first(monkeypatch, recourse, 2)
    with pytest.raises(SolverError, match="Unknown"):
        recourse.solve(np.zeros(siting.first_stage.size), 0)
    assert len(calls) == 2
