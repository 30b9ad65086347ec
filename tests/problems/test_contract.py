"""The general two-stage contract (problems.base): scenario costs and column bounds, several
linking blocks, integer recourse; checked against brute-force references (contract_cases)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from contract_cases import Dispatch, Startup
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.problems.base import (
    ConstraintBlockSpec,
    LinkingBlock,
    ProblemSpecError,
    ScenarioData,
    SecondStageSpec,
    VariableBlockSpec,
)
from gridrecourse.solvers.options import SolverOptions, stopping_tolerance

EXACT = SolverOptions(mip_gap=1e-9)
GRID = [np.array([a, b], dtype=float) for a in range(4) for b in range(4)]


def test_evaluator_matches_the_merit_order_for_every_first_stage_and_scenario():
    prob = Dispatch()
    model = prob.build_second_stage()
    for x in GRID:
        for w in range(prob.n_scenarios):
            res = model.solve(x, w, EXACT)
            assert res.objective == pytest.approx(prob.merit_order(x, w), rel=1e-9, abs=1e-9)
            assert res.dual_bound == pytest.approx(res.objective, rel=1e-12)
            assert res.mip_gap == 0.0


def test_subgradient_sums_both_linking_blocks_with_their_scale():
    """``∂Q/∂x = −Σ_k T_kᵀ S_kω λ_k`` against a finite difference at a fractional first stage."""
    prob = Dispatch()
    model = prob.build_second_stage()
    x = np.array([0.63, 0.41])  # inside linear pieces of Q (no capacity is exactly binding)
    h = 1e-6
    for w in range(prob.n_scenarios):
        res = model.solve(x, w)
        assert res.linking_duals.shape == (2,)
        for j in range(2):
            step = np.eye(2)[j] * h
            fd = (prob.merit_order(x + step, w) - prob.merit_order(x - step, w)) / (2 * h)
            assert res.subgradient[j] == pytest.approx(fd, rel=1e-6, abs=1e-6)


def test_extensive_form_equals_enumeration_with_scenario_costs_and_two_links():
    prob = Dispatch()
    best, arg = prob.enumerate()
    ef = solve_extensive_form(prob, EXACT)
    assert ef.objective == pytest.approx(best, rel=1e-9)
    np.testing.assert_array_equal(ef.x, arg)
    expected = [prob.merit_order(arg, w) for w in range(prob.n_scenarios)]
    assert ef.recourse == pytest.approx(expected, rel=1e-8, abs=1e-9)
    exact = evaluate_first_stage(prob, ef.x, options=EXACT, desc=None)
    assert exact.expected_objective == pytest.approx(best, rel=1e-9)


def test_ef_on_a_subset_uses_the_subset_prices():
    prob = Dispatch(n_scenarios=6, seed=3)
    subset = [4, 1]
    ef = solve_extensive_form(prob, EXACT, scenarios=subset)
    w = prob.probability[subset] / prob.probability[subset].sum()
    values = [
        float(prob.build_cost @ x + w @ [prob.merit_order(x, k) for k in subset]) for x in GRID
    ]
    assert ef.objective == pytest.approx(min(values), rel=1e-9)


def test_milp_recourse_evaluator_matches_closed_form_and_records_the_gap():
    prob = Startup()
    model = prob.build_second_stage()
    assert model.is_mip
    for x in range(prob.MAX_UNITS + 1):
        for w in range(prob.n_scenarios):
            res = model.solve(np.array([float(x)]), w, EXACT)
            assert res.objective == pytest.approx(prob.startup_value(x, w), rel=1e-9)
            # the bound proves nothing finer than the stopping tolerance (Solution.dual_bound)
            tolerance = stopping_tolerance(res.objective, EXACT)
            assert np.isfinite(res.dual_bound)
            assert res.objective - 1e-6 * abs(res.objective) - tolerance <= res.dual_bound
            assert res.dual_bound <= res.objective - tolerance + 1e-12
            assert 0.0 <= res.mip_gap <= 1e-6  # HiGHS's own gap closed
            assert np.isnan(res.linking_duals).all() and np.isnan(res.subgradient).all()


def test_milp_recourse_extensive_form_equals_enumeration_of_the_exact_evaluator():
    prob = Startup()
    ef = solve_extensive_form(prob, EXACT)
    evaluated = [
        evaluate_first_stage(prob, np.array([float(x)]), options=EXACT, desc=None)
        for x in range(prob.MAX_UNITS + 1)
    ]
    values = [e.expected_objective for e in evaluated]
    assert ef.objective == pytest.approx(min(values), rel=1e-9)
    assert ef.x[0] == float(np.argmin(values))
    assert min(values) == pytest.approx(prob.enumerate()[0], rel=1e-9)  # closed form agrees
    best = evaluated[int(np.argmin(values))]
    assert best.expected_dual_bound <= best.expected_objective + 1e-9
    assert best.mip_gaps.shape == (prob.n_scenarios,)


def test_milp_recourse_infeasible_scenario_gives_a_relaxation_cut():
    prob = Startup()
    spec = prob.second_stage
    model = prob.build_second_stage()
    # demand served by production only (no shortage column): infeasible when capacity is short
    strict = Startup()
    strict._second = SecondStageSpec(
        variables=(spec.variables[0], spec.variables[1], VariableBlockSpec("unserved", 1, ub=0.0)),
        constraints=spec.constraints,
        linking=spec.links,
    )
    model = strict.build_second_stage()
    res = model.solve(np.array([0.0]), 0)
    assert not res.feasible and res.dual_bound == float("inf")
    assert res.cut is not None and res.cut.violation(np.array([0.0])) > 0
    enough = np.ceil(prob.demand[0] / prob.availability[0])
    assert res.cut.violation(np.array([enough])) <= 1e-9


def test_scenario_data_rejects_undeclared_blocks_and_wrong_widths():
    prob = Dispatch()
    spec = prob.second_stage
    with pytest.raises(ProblemSpecError, match="does not declare"):
        ScenarioData([0], cost={"nope": np.zeros((1, 1))}).validate(spec)
    with pytest.raises(ProblemSpecError, match="columns"):
        ScenarioData([0], technology_scale=np.ones((1, 3))).validate(spec)
    with pytest.raises(ProblemSpecError, match=r"shape \(S=2"):
        ScenarioData([0, 1], row_lb=np.zeros((1, 3)))
    lb, ub = ScenarioData([0, 0]).row_bounds(spec)  # nominal rows when none given
    assert lb.shape == (2, 3) and np.all(ub[:, 1:] == 0.0)


def test_linking_blocks_are_validated():
    v = (VariableBlockSpec("y", 1),)
    c = (ConstraintBlockSpec("a", (("y", sp.csr_matrix([[1.0]])),)),)
    with pytest.raises(ProblemSpecError, match="not a constraint block"):
        SecondStageSpec(v, c, (LinkingBlock("b", sp.csr_matrix([[1.0]])),))
    with pytest.raises(ProblemSpecError, match="technology matrix has 2 rows"):
        SecondStageSpec(v, c, (LinkingBlock("a", sp.csr_matrix(np.ones((2, 1)))),))
    with pytest.raises(ProblemSpecError, match="needs a technology"):
        SecondStageSpec(v, c, "a")
    with pytest.raises(ProblemSpecError, match="unknown variable block"):
        SecondStageSpec(v, c, "a", sp.csr_matrix([[1.0]]), scenario_costs=("z",))
