"""Paper D's operation problem: devices, data, network rows and the schedule evaluation."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.errors import FeederInputError
from gridrecourse.evaluation.operation import evaluate_schedule, expected_project_budget
from gridrecourse.methods.igdt import OperationInstance, operation_problem, solve_dt
from gridrecourse.network.prepare import prepare_feeder
from gridrecourse.problems.operation import (
    PAPER_D_DGS,
    PAPER_D_STORAGE,
    DispatchableGenerator,
    OperationCase,
    build_operation_model,
    bundled_operation_data,
    default_case,
)


@pytest.fixture(scope="module")
def case33():
    math = prepare_feeder("case33bw").math
    inst = OperationInstance(math, default_case("case33bw"), bundled_operation_data())
    return inst, solve_dt(inst)


def test_default_case_carries_tables_i_and_ii():
    case = default_case("case33bw")
    assert [
        (g.p_max_kw, g.p_min_kw, g.ramp_up_kw, g.q_min_kvar, g.cost_per_mwh) for g in case.dgs
    ] == [(r[1], r[2], r[3], r[6], r[7]) for r in PAPER_D_DGS]
    assert [
        (u.charge_max_kw, u.energy_max_kwh, u.energy_min_kwh, u.efficiency) for u in case.storage
    ] == [(r[1], r[3], r[4], r[5]) for r in PAPER_D_STORAGE]
    with pytest.raises(FeederInputError, match="no documented"):
        default_case("ieee13")


def test_device_on_a_bus_the_feeder_does_not_have_is_named():
    math = prepare_feeder("case33bw").math
    case = default_case("case33bw")
    bad = OperationCase(
        dgs=(DispatchableGenerator("DGx", "bus-nope", 100, 10, 10, 10, 50, -50, 30),),
        storage=case.storage,
        pv=case.pv,
    )
    with pytest.raises(FeederInputError, match=r"DGx.*bus-nope"):
        build_operation_model(math, bad, np.ones(24), n_load_sources=1, n_pv_sources=1, n_copies=1)


def test_bundled_data_split_forecasts_and_samples():
    data = bundled_operation_data(n_sources=3, n_test_days=50, seed=1)
    assert len(data.test_days) == 50 and len(np.intersect1d(data.train_days, data.test_days)) == 0
    assert len(data.train_days) + 50 == 365
    assert data.load.shape == (365, 24, 3) and data.pv.shape == (365, 24, 3)
    assert data.load[data.train_days].max(axis=(0, 1)) == pytest.approx(np.ones(3))
    assert data.forecast_load == pytest.approx(data.load[data.train_days].mean(axis=0))
    samples = data.load_samples()  # (T·K, n): series t·K + k
    assert samples.shape == (72, len(data.train_days))
    assert samples[5 * 3 + 2] == pytest.approx(data.load[data.train_days, 5, 2])
    sub = data.with_train_subset(30)
    assert len(sub.train_days) == 30 and set(sub.train_days) <= set(data.train_days)


def test_network_rows_equal_the_factorized_lindist3flow(case33):
    """With every injection fixed, the model's voltages are LinDist3Flow's (lossless)."""
    inst, dt = case33
    d = inst.data
    om = build_operation_model(
        inst.math,
        inst.case,
        d.price_per_mwh,
        n_load_sources=1,
        n_pv_sources=1,
        n_copies=1,
        with_plan=False,
        fixed_schedule=dt.schedule,
        physics=inst.physics,
    )
    s_base = inst.math.s_base_kva
    om.set_uncertain(d.forecast_load[None], d.forecast_pv[None])
    om.model.set_col_bounds(
        om.dg_q, dt.schedule.dg_kvar.T.ravel() / s_base, dt.schedule.dg_kvar.T.ravel() / s_base
    )
    om.set_losses(None)
    om.model.set_cost(om.recourse_cost, 1.0)
    sol = om.model.solve()
    p, q = om.reference_net_load(
        d.forecast_load[None],
        d.forecast_pv[None],
        dt.schedule.dg_kw,
        dt.schedule.dg_kvar,
        dt.schedule.discharge_kw - dt.schedule.charge_kw,
    )
    ref = inst.physics.solve(p, q)
    v_model = np.sqrt(om.net.values(sol, om.net.v))
    assert v_model == pytest.approx(ref.v_pu[inst.physics.nonroot], abs=1e-8)


def test_evaluation_at_the_forecast_and_at_an_impossible_day(case33):
    inst, dt = case33
    d = inst.data
    load = np.stack([d.forecast_load, 3.0 * d.forecast_load.clip(min=0.8)])
    pv = np.stack([d.forecast_pv, d.forecast_pv])
    ev = evaluate_schedule(operation_problem(inst, dt, load=load, pv=pv), dt.schedule)
    assert ev.feasible.tolist() == [True, False]
    # the plan is optimal at the forecast: recourse costs nothing beyond the loss-reference shift
    assert abs(ev.recourse_cost[0]) < 1e-3 * dt.cost
    assert ev.reliability == 0.5
    epb = expected_project_budget({"a": ev, "b": ev})
    assert epb["a"] == pytest.approx(dt.cost + ev.recourse_cost[0])


def test_dt_plan_respects_tables_and_band(case33):
    inst, dt = case33
    s = dt.schedule
    p_max = np.array([g.p_max_kw for g in inst.case.dgs])[:, None]
    p_min = np.array([g.p_min_kw for g in inst.case.dgs])[:, None]
    assert np.all(s.dg_kw <= p_max + 1e-6) and np.all(s.dg_kw >= p_min - 1e-6)
    ramps = np.diff(s.dg_kw, axis=1)
    assert np.all(ramps <= np.array([g.ramp_up_kw for g in inst.case.dgs])[:, None] + 1e-6)
    assert np.all(np.minimum(s.charge_kw, s.discharge_kw) <= 1e-3)  # mode binaries hold
    v = dt.plan_v_pu[~inst.math.is_root]
    assert v.min() >= inst.case.v_min - 1e-6 and v.max() <= inst.case.v_max + 1e-6
    assert np.all(s.purchase_kw >= -1e-6)


@pytest.mark.slow
def test_ac_certificate_of_the_dt_plan(case33):
    """The plan replayed in OpenDSS: voltages within 1e-4 p.u. of the lossy model."""
    from gridrecourse.evaluation.operation import ac_certificate
    from gridrecourse.network.loading import resolve_feeder_spec

    inst, dt = case33
    d = inst.data
    cert = ac_certificate(
        resolve_feeder_spec("case33bw"),
        inst.math,
        inst.case,
        dt.schedule,
        d.forecast_load,
        d.forecast_pv,
        dt.plan_v_pu,
        dt.plan_substation_kw,
    )
    assert cert.converged
    assert cert.max_abs_voltage_error_pu < 1e-4
    assert cert.n_voltage_violations == 0
