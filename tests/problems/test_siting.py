"""PV siting (paper C, METHODS §3): structure, re-solve, duals, Farkas cuts, solver additions."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError, SolverError
from gridrecourse.formulation.limits import LimitMode
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.network.prepare import prepare_math_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow, net_injections
from gridrecourse.problems.base import SecondStageModel
from gridrecourse.problems.siting import (
    LINKING_BLOCK,
    PVSitingProblem,
    SitingConfig,
    SitingConfigError,
    SitingObjective,
    TapSetting,
)
from gridrecourse.problems.siting_budget import SitingBudget
from gridrecourse.solvers.highs import LinearModel
from gridrecourse.solvers.options import SolverOptions
from gridrecourse.uncertainty.scenarios import ScenarioSet
from line_to_line_cases import open_delta_master
from siting_cases import BUDGET, LOAD, PROB, PV, tiny_feeder, tiny_problem

# ------------------------------------------------------------------------------------------
# Solver additions (LinearModel.add_quadratic_cost, dual_ray, dual_bound, thread changes)


def test_quadratic_cost_gives_the_convex_qp_and_its_duals():
    """min x² + 2y² s.t. x + y ≥ c: x = 2c/3, y = c/3, objective 2c²/3, dual 4c/3."""
    m = LinearModel("qp")
    xy = m.add_variables("xy", 2, lb=-np.inf)
    row = m.add_constraints("sum", [(xy, np.array([[1.0, 1.0]]))], lb=3.0)
    m.add_quadratic_cost(xy, [1.0, 2.0])
    assert m.is_quadratic
    for c in (3.0, 6.0):  # second solve: warm re-solve after a bound change
        m.set_row_bounds(row, c, np.inf)
        sol = m.solve()
        assert sol.objective == pytest.approx(2 * c**2 / 3, rel=1e-6)
        assert sol.value(xy) == pytest.approx([2 * c / 3, c / 3], rel=1e-6)
        assert sol.dual(row)[0] == pytest.approx(4 * c / 3, rel=1e-6)
        assert sol.dual_bound == pytest.approx(sol.objective)


def test_quadratic_cost_rejects_nonconvex_terms_and_miqp():
    m = LinearModel("bad")
    x = m.add_variables("x", 2)
    with pytest.raises(ValueError, match="x"):
        m.add_quadratic_cost(x, [-1.0, 1.0])
    k = m.add_variables("k", 1, ub=3.0, integer=True)
    m.add_constraints("c", [(x, np.ones((1, 2))), (k, np.ones((1, 1)))], lb=1.0)
    m.add_quadratic_cost(x, [1.0, 1.0])
    with pytest.raises(SolverError, match="MIQP"):
        m.solve()


def test_dual_ray_is_a_farkas_certificate():
    """Rows x0 + x1 ≥ 3, x1 ≤ 5; columns in [0, 1]: the ray's row side exceeds the column side."""
    m = LinearModel("infeasible")
    x = m.add_variables("x", 2, lb=0.0, ub=1.0)
    m.add_constraints(
        "r", [(x, np.array([[1.0, 1.0], [0.0, 1.0]]))], lb=[3.0, -np.inf], ub=[np.inf, 5]
    )
    assert m.dual_ray() is None  # not solved yet
    with pytest.raises(InfeasibleModelError):
        m.solve()
    ray = m.dual_ray()
    assert ray is not None
    lo, hi = np.array([3.0, -np.inf]), np.array([np.inf, 5.0])
    ray = ray if ray[0] > 0 else -ray
    row_side = sum(r * (lo[i] if r > 0 else hi[i]) for i, r in enumerate(ray) if r != 0)
    d = m.matrix().T @ ray
    col_side = np.sum(np.where(d > 0, d * 1.0, 0.0))
    assert row_side > col_side + 1e-9


def test_mip_reports_its_dual_bound_and_thread_changes_work():
    m = LinearModel("mip")
    k = m.add_variables("k", 3, ub=5.0, cost=[-1.0, -2.0, -3.0], integer=True)
    m.add_constraints("cap", [(k, np.array([[2.0, 3.0, 4.0]]))], ub=11.0)
    first = m.solve(SolverOptions(threads=1))
    second = m.solve(SolverOptions(threads=2))  # HiGHS's global scheduler is reset, not broken
    assert first.objective == pytest.approx(second.objective)
    assert second.dual_bound <= second.objective + 1e-9


# ------------------------------------------------------------------------------------------
# Problem structure


def test_candidates_default_to_load_buses_and_pv_splits_over_phases():
    prob = tiny_problem()
    assert prob.candidates == ("b2", "b3", "b4")
    spec = prob.second_stage
    pv_terms = dict(next(c for c in spec.constraints if c.name == "branch-p_balance").terms)
    share = pv_terms["pv-p"].toarray()
    assert share.sum(axis=0) == pytest.approx([1.0, 1.0, 1.0])
    assert sorted(np.unique(share[share > 0]).round(12)) == pytest.approx([1 / 3, 1.0])
    assert spec.linking == LINKING_BLOCK
    fs = prob.first_stage
    assert fs.size == 6 and fs.integer.all()
    decision = prob.decode(prob.first_stage_vector([0, 2, 1]))
    assert decision.units_by_bus() == {"b3": 2, "b4": 1}
    assert decision.total_kw == pytest.approx(150.0)
    assert list(decision.sited) == [False, True, True]


@pytest.mark.parametrize(
    ("candidates", "match"),
    [(("b2", "nowhere"), "nowhere"), (("s",), "root"), (("b2", "b2"), "duplicate")],
)
def test_bad_candidates_are_named(candidates, match):
    with pytest.raises(SitingConfigError, match=match):
        tiny_problem(candidates=candidates)


def test_scenarios_must_cover_every_load_bus():
    math = build_math_feeder(tiny_feeder())
    partial = ScenarioSet(LOAD[:, :2], PV[:, :2], PROB, ("b2", "b3"))
    with pytest.raises(SitingConfigError, match="b4"):
        PVSitingProblem(math, partial, SitingConfig(budget=BUDGET, candidates=("b2",)))


def test_no_pv_recourse_matches_the_power_flow():
    """Independent reference: at n = 0 the LP's P1 and P2 values equal the direct LinDist3Flow."""
    math = build_math_feeder(tiny_feeder())
    ld = LinDist3Flow(math)
    p, q = net_injections(math)
    scale = LOAD[:, [0, 1, 2]]  # per bus b2, b3, b4
    bus = math.node_bus
    col = {math.bus_names.index(b): k for k, b in enumerate(("b2", "b3", "b4"))}
    mult = np.array([[scale[w, col[b]] if b in col else 1.0 for b in bus] for w in range(4)])
    flows = ld.solve((p * mult).T, (q * mult).T)
    nonroot = ~math.is_root
    dev = np.abs(flows.v_pu[nonroot] ** 2 - 1.0).sum(axis=0)
    r = np.real(math.z_pu.diagonal())[nonroot]
    loss_kw = 1000.0 * (
        r[:, None] * (flows.p_flow_pu[nonroot] ** 2 + flows.q_flow_pu[nonroot] ** 2)
    )
    wide = {"v_min": 0.5, "v_max": 1.5}
    for objective, expected in (
        (SitingObjective.VOLTAGE_DEVIATION, dev),
        (SitingObjective.LOSSES, loss_kw.sum(axis=0)),
    ):
        prob = tiny_problem(objective, **wide)
        model = prob.build_second_stage()
        x0 = np.zeros(prob.first_stage.size)
        got = [model.solve(x0, w).objective for w in range(4)]
        assert got == pytest.approx(expected, rel=1e-6)


# ------------------------------------------------------------------------------------------
# Build once, re-solve


@pytest.mark.parametrize("objective", list(SitingObjective))
def test_resolve_with_changed_vectors_equals_a_fresh_model(objective):
    prob = tiny_problem(objective)
    warm = prob.build_second_stage()
    for units, scenario in [((0, 0, 0), 0), ((3, 1, 0), 2), ((0, 2, 2), 1), ((1, 1, 1), 0)]:
        x = prob.first_stage_vector(units)
        a = warm.solve(x, scenario)
        b = SecondStageModel(prob).solve(x, scenario)
        assert a.objective == pytest.approx(b.objective, rel=1e-7, abs=1e-9)
        assert a.linking_duals == pytest.approx(b.linking_duals, rel=1e-5, abs=1e-7)


# ------------------------------------------------------------------------------------------
# Linking duals are the slopes of the recourse


@pytest.mark.parametrize(
    ("objective", "rel"),
    # P1 is an LP: locally linear, so forward and backward differences agree with the dual to
    # round-off (1e-6). P2 is a QP: the central difference has O(δ²) error (1e-4).
    [(SitingObjective.VOLTAGE_DEVIATION, 1e-6), (SitingObjective.LOSSES, 1e-4)],
)
def test_linking_dual_times_g_times_pv_is_the_finite_difference(objective, rel):
    prob = tiny_problem(objective)
    model = prob.build_second_stage()
    units = np.array([1.0, 1.0, 1.0])  # interior: every unit's output is used (undervoltage)
    scenario = 2
    base = model.solve(prob.first_stage_vector(units), scenario)
    g = BUDGET.unit_kw
    slope = base.linking_duals * g * PV[scenario]
    assert prob.slopes_per_unit(base.subgradient) == pytest.approx(slope)
    assert np.all(slope < 0)  # more PV lowers the objective here
    delta = 1e-3  # units (the recourse is continuous in n)
    for i in range(3):
        step = np.zeros(3)
        step[i] = delta
        up = model.solve(prob.first_stage_vector(units + step), scenario).objective
        down = model.solve(prob.first_stage_vector(units - step), scenario).objective
        central = (up - down) / (2 * delta)
        assert central == pytest.approx(slope[i], rel=rel)
        if objective is SitingObjective.VOLTAGE_DEVIATION:
            assert (up - base.objective) / delta == pytest.approx(slope[i], rel=rel)
            assert (base.objective - down) / delta == pytest.approx(slope[i], rel=rel)


# ------------------------------------------------------------------------------------------
# Hard limits: Farkas rays and feasibility cuts


def test_farkas_cut_cuts_off_the_infeasible_first_stage_and_keeps_feasible_ones():
    """Heavy load with a hard band: no PV is infeasible; every feasible siting passes the cut."""
    prob = tiny_problem(load_scale=1.5, voltage_limits=LimitMode.HARD)
    model = prob.build_second_stage()
    x0 = np.zeros(prob.first_stage.size)
    scenario = 0
    res = model.solve(x0, scenario)
    assert not res.feasible and res.objective == np.inf
    assert res.cut is not None and res.farkas_ray is not None
    assert res.cut.violation(x0) > 0
    cut = prob.units_cut(res.cut)
    assert np.any(cut.coefficients > 0)  # more PV is what restores feasibility
    n_feasible = 0
    for units in itertools.product(range(BUDGET.max_units + 1), repeat=3):
        x = prob.first_stage_vector(units)
        if model.solve(x, scenario, farkas=False).feasible:
            n_feasible += 1
            assert res.cut.violation(x) <= 1e-7
    assert n_feasible > 0


def test_quadratic_recourse_infeasibility_gives_a_cut_too():
    prob = tiny_problem(SitingObjective.LOSSES, load_scale=1.5, voltage_limits=LimitMode.HARD)
    res = prob.build_second_stage().solve(np.zeros(prob.first_stage.size), 0)
    assert not res.feasible
    assert res.cut is not None and res.cut.violation(np.zeros(prob.first_stage.size)) > 0


def test_qp_fallback_matches_the_qp(monkeypatch):
    """If HiGHS's QP solver fails, the cutting-plane LP gives the same value and duals."""
    prob = tiny_problem(SitingObjective.LOSSES)
    x = prob.first_stage_vector([2, 1, 1])
    exact = prob.build_second_stage().solve(x, 2)
    model = prob.build_second_stage()

    def broken(options=None):
        raise SolverError("model: HiGHS status Solve error")

    monkeypatch.setattr(model.model, "solve", broken)
    fallback = model.solve(x, 2)
    assert fallback.objective == pytest.approx(exact.objective, rel=1e-6)
    assert fallback.linking_duals == pytest.approx(exact.linking_duals, rel=1e-3, abs=1e-6)


# ------------------------------------------------------------------------------------------
# IEEE 123 at OpenDSS's regulator taps: why the voltage band is soft by default


def test_ieee123_hard_band_is_infeasible_at_opendss_taps_whatever_the_pv(feeder_dir):
    """Low-load hours sit above 1.05 p.u.; unity-pf PV cannot lower voltage, so the cut is
    ``0 ≥ rhs > 0`` (no first stage helps) and the soft band is the documented default."""
    soft = PVSitingProblem.from_feeder("ieee123", 24, taps=TapSetting.OPENDSS)
    assert soft.config.voltage_limits is LimitMode.SOFT
    hard = PVSitingProblem(soft.math, soft.scenarios, SitingConfig(voltage_limits=LimitMode.HARD))
    x0 = np.zeros(soft.first_stage.size)
    lightest = int(np.argmin(soft.scenarios.load_multiplier.mean(axis=1)))
    res = hard.build_second_stage().solve(x0, lightest)
    assert not res.feasible
    assert res.cut is not None
    assert np.allclose(res.cut.coefficients, 0.0) and res.cut.rhs > 0
    ok = soft.build_second_stage().solve(x0, lightest)
    assert ok.feasible and ok.penalty > 0


def test_flow_ranges_hold_behind_line_to_line_windings(tmp_path):
    """Behind an open-delta bank the balance rows mix P and Q (each winding shares its power
    between two primary phases); the flow ranges must still contain every scenario's flows at
    any budget-feasible PV output (enumerated corners), computed from the full model rows."""
    math = prepare_math_feeder(resolve_feeder_spec(open_delta_master(tmp_path)))
    physics = LinDist3Flow(math)
    assert physics.coupled
    sites = ("b2", "b3")
    load = np.array([[1.0, 0.8], [0.4, 0.6]])
    pv = np.array([[0.9, 1.0], [0.1, 0.3]])
    scen = ScenarioSet(load, pv, np.array([0.5, 0.5]), sites)
    budget = SitingBudget(
        unit_kw=400.0, max_units=3, cost_per_kw=1000.0, budget=2_000_000.0, max_sites=2
    )
    problem = PVSitingProblem(math, scen, SitingConfig(budget=budget))
    fr = problem.flow_range
    nonroot = physics.nonroot
    site_of = {b: k for k, b in enumerate(sites)}
    base_p, base_q = net_injections(math)
    for s in range(2):
        for units in itertools.product(range(4), repeat=2):
            if sum(units) * budget.unit_kw * budget.cost_per_kw > budget.budget:
                continue
            p, q = base_p.copy(), base_q.copy()
            for n in nonroot:
                bus = math.bus_names[math.node_bus[n]]
                if bus in site_of:
                    k = site_of[bus]
                    on_bus = (math.node_bus == math.node_bus[n]).sum()
                    p[n] = p[n] * load[s, k] - units[k] * budget.unit_kw * pv[s, k] / (
                        on_bus * math.s_base_kva
                    )
                    q[n] = q[n] * load[s, k]
            sol = physics.solve(p, q)
            pf, qf = sol.p_flow_pu[nonroot], sol.q_flow_pu[nonroot]
            assert np.all(pf >= fr.p_lo - 1e-9) and np.all(pf <= fr.p_hi + 1e-9)
            assert np.all(qf >= fr.q_lo - 1e-9) and np.all(qf <= fr.q_hi + 1e-9)


def test_coupled_flow_ranges_reduce_to_the_tree_ranges_without_coupling():
    """On a feeder without line-to-line windings the signed-coefficient ranges of
    ``_flow_range_coupled`` are the tree's ranges (PV and capacitors only lower the flows; a
    site's share of a branch is at most 1): upper ends equal, lower ends no looser."""
    problem = PVSitingProblem.from_feeder("case33bw", 24, SitingConfig(power_factor=0.95), seed=0)
    physics = LinDist3Flow(problem.math)
    assert not physics.coupled
    tree, signed = problem.flow_range, problem._flow_range_coupled(physics)
    assert np.allclose(signed.p_hi, tree.p_hi) and np.allclose(signed.q_hi, tree.q_hi)
    assert np.all(signed.p_lo >= tree.p_lo - 1e-12) and np.all(signed.q_lo >= tree.q_lo - 1e-12)
    assert np.any(signed.p_lo < tree.p_hi - 1e-6)  # the PV reach is there, not dropped
