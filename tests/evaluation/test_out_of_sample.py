"""Out-of-sample evaluation: executors agree, build once per worker, means, duals, infeasibility."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridrecourse.evaluation.out_of_sample import (
    OutOfSampleError,
    chain_lanes,
    evaluate_first_stage,
)
from gridrecourse.evaluation.scenario_order import warm_start_order
from gridrecourse.execution import InProcessExecutor, ProcessPoolExecutor
from gridrecourse.formulation.limits import LimitMode
from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, SitingObjective
from gridrecourse.solvers.highs import SimplexPricing

# ------------------------------------------------------------------------------------------
# The 5-bus feeder of tests/problems/test_siting.py (tests have no shared package), with 8
# scenarios here.
from siting_cases import BUDGET, tiny_scenarios
from siting_cases import tiny_problem as shared_tiny_problem

RNG = np.random.default_rng(7)
LOAD = RNG.uniform(0.3, 1.2, (8, 3))
PV = RNG.uniform(0.0, 0.9, (8, 3))
PROB = RNG.uniform(0.5, 1.5, 8)
PROB = PROB / PROB.sum()


def tiny_problem(objective=SitingObjective.VOLTAGE_DEVIATION, load_scale=1.0, **config):
    """The shared tiny feeder with 8 random scenarios."""
    return shared_tiny_problem(objective, load_scale, tiny_scenarios(LOAD, PV, PROB), **config)


# ------------------------------------------------------------------------------------------


def test_in_process_and_process_pool_give_identical_evaluations():
    problems = [tiny_problem(), tiny_problem(SitingObjective.LOSSES)]
    units = [2, 0, 1]
    with InProcessExecutor() as serial, ProcessPoolExecutor(2) as pool:
        for prob in problems:
            a = evaluate_first_stage(prob, prob.first_stage_vector(units), executor=serial)
            b = evaluate_first_stage(prob, prob.first_stage_vector(units), executor=pool)
            assert np.array_equal(a.scenario_indices, b.scenario_indices)
            assert b.objectives == pytest.approx(a.objectives, rel=1e-9, abs=1e-12)
            assert b.linking_duals == pytest.approx(a.linking_duals, rel=1e-6, abs=1e-9)
            assert b.expected_objective == pytest.approx(a.expected_objective, rel=1e-9)


def test_model_is_built_once_per_worker_and_reused(monkeypatch):
    builds = []
    original = PVSitingProblem.build_second_stage

    def counting(self):
        builds.append(1)
        return original(self)

    monkeypatch.setattr(PVSitingProblem, "build_second_stage", counting)
    prob = tiny_problem()
    with InProcessExecutor() as ex:
        first = evaluate_first_stage(prob, prob.first_stage_vector([0, 0, 0]), executor=ex)
        second = evaluate_first_stage(prob, prob.first_stage_vector([1, 2, 1]), executor=ex)
    assert len(builds) == 1  # 16 scenario solves, one model
    assert second.expected_objective < first.expected_objective


def test_mean_duals_and_slopes_are_consistent():
    prob = tiny_problem()
    x = prob.first_stage_vector([1, 1, 1])
    calls = []
    res = evaluate_first_stage(prob, x, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (8, 8)
    assert res.n_infeasible == 0 and res.feasible.all()
    assert res.probability == pytest.approx(PROB)
    assert res.expected_objective == pytest.approx(PROB @ res.objectives)
    model = prob.build_second_stage()
    for w in (0, 5):
        assert res.objectives[w] == pytest.approx(model.solve(x, w).objective, rel=1e-9)
    # ĝ_i = dual(44) × g × PV_mult (paper C) is the n-part of the subgradient
    slopes = res.linking_duals * BUDGET.unit_kw * PV
    assert prob.slopes_per_unit(res.subgradients) == pytest.approx(slopes)
    assert res.expected_subgradient[:3] == pytest.approx(PROB @ slopes)
    assert np.all(res.subgradients[:, 3:] == 0)  # s does not enter the recourse


def test_subset_decision_input_and_bad_shapes():
    prob = tiny_problem()
    decision = prob.decode(prob.first_stage_vector([0, 3, 1]))
    full = evaluate_first_stage(prob, decision, desc=None)
    sub = evaluate_first_stage(prob, decision, scenarios=[2, 6], desc=None)
    p = PROB[[2, 6]] / PROB[[2, 6]].sum()
    assert sub.probability == pytest.approx(p)
    assert sub.expected_objective == pytest.approx(p @ full.objectives[[2, 6]])
    with pytest.raises(OutOfSampleError, match="shape"):
        evaluate_first_stage(prob, np.zeros(4), desc=None)
    with pytest.raises(OutOfSampleError, match="scenario"):
        evaluate_first_stage(prob, decision, scenarios=[8], desc=None)


def test_hard_limits_count_infeasible_scenarios_and_return_cuts():
    prob = tiny_problem(load_scale=1.5, voltage_limits=LimitMode.HARD)
    x = np.zeros(prob.first_stage.size)
    res = evaluate_first_stage(prob, x, desc=None)
    heavy = LOAD.max(axis=1) > 0.8
    assert res.n_infeasible >= 1
    assert res.expected_objective == np.inf
    assert np.all(res.objectives[~res.feasible] == np.inf)
    assert np.all(np.isnan(res.linking_duals[~res.feasible]))
    assert not np.any(res.feasible & heavy & (LOAD.min(axis=1) > 1.0))
    assert len(res.cuts) == res.n_infeasible
    for cut in res.cuts:
        assert cut.violation(x) > 0
    quiet = evaluate_first_stage(prob, x, desc=None, farkas=False)
    assert quiet.cuts == ()
    assert np.array_equal(quiet.feasible, res.feasible)
    assert np.array_equal(quiet.objectives, res.objectives)


def test_devex_recourse_resolves_give_the_steepest_edge_and_cold_objectives(feeder_dir):
    """Pricing changes the dual simplex's pivot path, not the optimum: along the warm-start
    chain of an ieee13 evaluation, the recourse model's Devex re-solves equal HiGHS's steepest
    edge re-solves and cold (presolved) solves scenario by scenario, to 1e-9 relative."""
    prob = PVSitingProblem.from_feeder("ieee13", 24, seed=3)
    units = np.zeros(prob.n_sites)
    units[[0, prob.n_sites // 2, prob.n_sites - 1]] = [40, 25, 60]
    x = prob.first_stage_vector(units)
    devex = prob.build_second_stage()
    steepest = prob.build_second_stage()
    steepest.model.set_simplex_pricing(SimplexPricing.STEEPEST_EDGE)
    cold = prob.build_second_stage()
    assert devex.model.simplex_pricing is SimplexPricing.DEVEX
    order = warm_start_order(prob, np.arange(prob.n_scenarios))
    for scenario in order:
        cold.model.reset()
        a, b, c = (m.solve(x, int(scenario)).objective for m in (devex, steepest, cold))
        assert a == pytest.approx(c, rel=1e-9, abs=1e-12)
        assert b == pytest.approx(c, rel=1e-9, abs=1e-12)
    res = evaluate_first_stage(prob, x, desc=None)  # the evaluation uses the Devex models
    assert res.objectives[order[-1]] == pytest.approx(c, rel=1e-9, abs=1e-12)


def test_every_solve_after_the_first_is_warm(feeder_dir):
    """The recourse model is re-solved from the previous basis, never rebuilt or presolved:
    on ieee13, a scenario solved again right after itself takes no simplex iteration, and
    going from the darkest to the sunniest scenario and back takes fewer than the cold solve
    (the full LP: the reduced one, ``SitingConfig.reduced_recourse``, is solved cold)."""
    prob = PVSitingProblem.from_feeder("ieee13", 24, SitingConfig(reduced_recourse=False), seed=3)
    units = np.zeros(prob.n_sites)
    units[[0, prob.n_sites // 2, prob.n_sites - 1]] = [40, 25, 60]
    x = prob.first_stage_vector(units)
    pv = prob.scenarios.pv_multiplier.mean(axis=1)
    dark, sunny = int(np.argmin(pv)), int(np.argmax(pv))
    order = [dark, dark, sunny, sunny, dark]
    res = evaluate_first_stage(prob, x, scenarios=order, reorder=False, desc=None)
    its = res.simplex_iterations
    assert its.dtype.kind == "i" and its.shape == (5,)
    assert its[1] == 0 and its[3] == 0
    assert 0 < its[2] < its[0] and 0 < its[4] < its[0]
    np.testing.assert_array_equal(res.objectives[[0, 2]], res.objectives[[1, 3]])
    assert res.objectives[4] == pytest.approx(res.objectives[0], rel=1e-9)


def test_chain_lanes_for_two_workers_of_1200_scenarios():
    lanes = chain_lanes(1200, 2, pieces_per_lane=4)
    assert lanes == [
        [(0, 150), (150, 300), (300, 450), (450, 600)],
        [(600, 750), (750, 900), (900, 1050), (1050, 1200)],
    ]


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.integers(1, 6), st.integers(1, 20))
def test_chain_lanes_are_contiguous_parts_of_the_chain(n, workers, pieces):
    lanes = chain_lanes(n, workers, pieces)
    assert len(lanes) == min(n, workers)
    chunks = [c for lane in lanes for c in lane]  # lanes in chain order, pieces in lane order
    assert all(b > a for a, b in chunks)
    assert all(chunks[k][1] == chunks[k + 1][0] for k in range(len(chunks) - 1))
    assert (chunks[0][0], chunks[-1][1]) == (0, n) if n else chunks == []
    sizes = [lane[-1][1] - lane[0][0] for lane in lanes]
    assert not sizes or max(sizes) - min(sizes) <= 1
    assert all(len(lane) == min(pieces, size) for lane, size in zip(lanes, sizes, strict=True))


def test_penalty_is_the_cost_of_the_penalty_columns():
    """The penalty part of each objective, against the spec's penalty blocks and the values
    (loads doubled: soft voltage limits are violated in most scenarios)."""
    prob = tiny_problem(load_scale=2.0)
    x = prob.first_stage_vector([2, 0, 1])
    model = prob.build_second_stage()
    spec = prob.second_stage
    penalties = []
    for scenario in range(prob.n_scenarios):
        res = model.solve(x, scenario, keep_values=True)
        expected = sum(
            float(np.dot(v.cost, res.values[spec.col_slice(v.name)]))
            for v in spec.variables
            if v.penalty
        )
        assert res.penalty == pytest.approx(expected, rel=1e-12, abs=1e-15)
        penalties.append(res.penalty)
    assert min(penalties) == 0.0 and max(penalties) > 1.0


def test_reweighted_keeps_the_solves_and_changes_only_the_expectation():
    """A stratified SAA batch weighs its scenarios by its design, not by their probabilities."""
    problem = tiny_problem()
    ev = evaluate_first_stage(problem, problem.first_stage_vector([2, 0, 1]), desc=None)
    same = ev.reweighted(ev.probability * 7.0)  # renormalized
    assert same.expected_objective == pytest.approx(ev.expected_objective, rel=1e-14)
    w = np.arange(1.0, ev.probability.size + 1.0)
    other = ev.reweighted(w)
    first_cost = float(problem.first_stage.cost @ ev.x)
    assert other.expected_objective == pytest.approx(
        first_cost + float((w / w.sum()) @ ev.objectives), rel=1e-12
    )
    np.testing.assert_array_equal(other.objectives, ev.objectives)
    np.testing.assert_allclose(other.expected_subgradient, (w / w.sum()) @ ev.subgradients)
    with pytest.raises(OutOfSampleError, match="non-negative"):
        ev.reweighted(-w)


# ------------------------------------------------------------------------------------------
# A recourse MILP that reaches its time limit without a feasible point
# ------------------------------------------------------------------------------------------
def test_a_timed_out_recourse_milp_is_unresolved_not_a_failed_evaluation(monkeypatch):
    """ieee123 FM × 50: one scenario's recourse MILP hit its 120 s limit with no feasible
    point and the whole evaluation failed. Now that scenario is reported unresolved: not
    shown feasible (the expectation is inf), not proven infeasible (its dual bound stays
    finite, so the expected dual bound does too), and counted apart from the infeasible."""
    from contract_cases import Startup
    from gridrecourse.errors import SolverTimeLimitError
    from gridrecourse.solvers.highs import LinearModel

    prob = Startup(n_scenarios=4)
    x = np.array([2.0])
    solve, calls = LinearModel.solve, []

    def second_call_times_out(self, options=None):
        calls.append(1)
        if len(calls) == 2:
            raise SolverTimeLimitError("time limit (test)", dual_bound=0.25)
        return solve(self, options)

    monkeypatch.setattr(LinearModel, "solve", second_call_times_out)
    res = evaluate_first_stage(prob, x, desc=None, reorder=False)
    assert res.n_unresolved == 1 and res.n_infeasible == 1
    assert not res.feasible[1] and res.objectives[1] == np.inf and res.dual_bounds[1] == 0.25
    for w in (0, 2, 3):
        assert res.objectives[w] == pytest.approx(prob.startup_value(2.0, w), rel=1e-9)
    assert res.expected_objective == np.inf
    expected_bound = 0.9 * 2.0 + np.mean([*res.dual_bounds[[0, 2, 3]], 0.25])
    assert res.expected_dual_bound == pytest.approx(expected_bound, rel=1e-12)
