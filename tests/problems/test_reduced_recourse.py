"""The exact reduced recourse LP (problems.reduced_recourse) against the full recourse LP."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridrecourse.formulation.limits import LimitMode
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.prepare import prepare_math_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.problems.base import SecondStageModel
from gridrecourse.problems.reduced_recourse import ReducedSecondStageModel
from gridrecourse.problems.siting import (
    PVSitingProblem,
    SitingConfig,
    SitingObjective,
    TapSetting,
)
from gridrecourse.problems.siting_budget import SitingBudget
from gridrecourse.uncertainty.scenarios import ScenarioSet
from line_to_line_cases import open_delta_master
from siting_cases import tiny_problem


def assert_same_recourse(problem: PVSitingProblem, decisions, scenarios) -> int:
    """Reduced and full model agree on every (decision, scenario); returns the penalized
    solves seen (so a test can check it exercised the soft limits)."""
    reduced = problem.build_second_stage()
    assert isinstance(reduced, ReducedSecondStageModel)
    full = SecondStageModel(problem)
    a = full.model.matrix()
    cost = np.concatenate([v.cost for v in problem.second_stage.variables])
    penalized = 0
    for units, scenario in itertools.product(decisions, scenarios):
        x = problem.first_stage_vector(np.asarray(units, dtype=float))
        r = reduced.solve(x, scenario, keep_values=True)
        f = full.solve(x, scenario)
        scale = max(1.0, abs(f.objective))
        assert r.feasible and f.feasible
        assert r.objective == pytest.approx(f.objective, rel=1e-9, abs=1e-9)
        assert r.penalty == pytest.approx(f.penalty, abs=1e-8 * scale)
        assert r.linking_duals == pytest.approx(f.linking_duals, abs=1e-8)
        assert r.subgradient == pytest.approx(f.subgradient, abs=1e-7)
        # the rebuilt primal is feasible for the full LP and has its objective
        lb, ub, _ = full._bounds(x, scenario)
        act = a @ r.values
        assert np.all(act >= lb - 1e-7) and np.all(act <= ub + 1e-7)
        spec = problem.second_stage
        assert np.all(r.values >= spec.col_lb - 1e-9) and np.all(r.values <= spec.col_ub + 1e-9)
        assert float(cost @ r.values) == pytest.approx(f.objective, rel=1e-9, abs=1e-9)
        penalized += f.penalty > 1e-6
    assert reduced.fallbacks == 0
    return penalized


def test_reduced_equals_full_on_the_tiny_feeder():
    """Every decision of a grid (zero, one site, several, the largest), every scenario (one
    without PV), at a load where the soft band binds in some solves."""
    problem = tiny_problem(load_scale=1.4)
    decisions = list(itertools.product((0, 1, 3), repeat=3))
    penalized = assert_same_recourse(problem, decisions, range(4))
    assert penalized > 0


def test_reduced_equals_full_behind_line_to_line_windings(tmp_path):
    """An open-delta regulator bank couples the P and Q balances (LinDist3Flow.coupled)."""
    math = prepare_math_feeder(resolve_feeder_spec(open_delta_master(tmp_path)))
    assert LinDist3Flow(math).coupled
    sites = ("b2", "b3")
    scen = ScenarioSet(
        np.array([[1.0, 0.8], [0.4, 0.6], [0.2, 0.1]]),
        np.array([[0.9, 1.0], [0.1, 0.3], [0.0, 0.0]]),
        np.full(3, 1 / 3),
        sites,
    )
    budget = SitingBudget(
        unit_kw=400.0, max_units=3, cost_per_kw=1000.0, budget=2_000_000.0, max_sites=2
    )
    problem = PVSitingProblem(math, scen, SitingConfig(budget=budget))
    assert_same_recourse(problem, list(itertools.product(range(4), repeat=2)), range(3))


def test_reduced_equals_full_on_ieee13_with_thermal_rows(feeder_dir):
    """A real feeder with rated branches (thermal polygon rows and their overload columns)."""
    problem = PVSitingProblem.from_feeder(
        "ieee13", 24, SitingConfig(), seed=0, taps=TapSetting.OPENDSS
    )
    assert problem.n_thermal_rows > 0
    rng = np.random.default_rng(1)
    decisions = [np.zeros(problem.n_sites), np.full(problem.n_sites, 100.0)]
    for _ in range(3):
        units = np.zeros(problem.n_sites)
        sites = rng.choice(problem.n_sites, size=3, replace=False)
        units[sites] = rng.integers(1, 101, size=3)
        decisions.append(units)
    assert_same_recourse(problem, decisions, range(0, 24, 3))


@pytest.mark.parametrize(
    ("config", "reduced"),
    [
        ({}, True),
        ({"objective": SitingObjective.LOSSES}, False),  # quadratic
        # a hard band is the bounds of the state v: checked on the rebuilt state
        ({"voltage_limits": LimitMode.HARD}, True),
    ],
)
def test_the_reduced_model_is_used_where_the_structure_allows(config, reduced):
    model = tiny_problem(**config).build_second_stage()
    assert isinstance(model, ReducedSecondStageModel) is reduced
    assert isinstance(model, SecondStageModel)


def test_a_scenario_the_reduction_cannot_certify_goes_to_the_full_model():
    """Negative units make a linking row's bound negative (no PV output is feasible): the
    reduction declines and the full model reports the infeasibility with its Farkas cut."""
    problem = tiny_problem()
    reduced = problem.build_second_stage()
    x = problem.first_stage_vector(np.array([-1.0, 0.0, 0.0]))
    r = reduced.solve(x, 0)
    f = SecondStageModel(problem).solve(x, 0)
    assert reduced.fallbacks == 1
    assert not r.feasible and not f.feasible
    assert r.cut is not None and f.cut is not None
    assert r.cut.violation(x) > 0


def test_a_hard_band_the_reduced_optimum_violates_goes_to_the_full_model():
    """The reduced LP leaves the state's bounds out; a hard band that no PV output can meet
    (heavy load, no PV) is found on the rebuilt state and the full model proves infeasibility;
    a scenario within the band is solved by the reduction and equals the full model."""
    problem = tiny_problem(load_scale=1.5, voltage_limits=LimitMode.HARD)
    reduced = problem.build_second_stage()
    x0 = np.zeros(problem.first_stage.size)
    r = reduced.solve(x0, 0)
    assert reduced.fallbacks == 1
    assert not r.feasible and r.cut is not None and r.cut.violation(x0) > 0
    light = tiny_problem(load_scale=0.5, voltage_limits=LimitMode.HARD)
    assert_same_recourse(light, [(0, 0, 0), (3, 0, 1)], range(4))


def test_the_evaluation_skips_the_warm_start_order_of_a_reduced_recourse(monkeypatch):
    """The reduced LP is solved cold: ordering the scenarios for warm starts is wasted time
    (2.7 s for the 1200 ieee9500 scenarios); the full LP still gets its chain."""
    import gridrecourse.evaluation.out_of_sample as oos

    calls: list[int] = []
    original = oos.warm_start_order

    def counting(problem, indices):
        calls.append(len(indices))
        return original(problem, indices)

    monkeypatch.setattr(oos, "warm_start_order", counting)
    x = tiny_problem().first_stage_vector((1, 0, 2))
    reduced = tiny_problem()
    full = tiny_problem(reduced_recourse=False)
    assert not reduced.recourse_warm_starts and full.recourse_warm_starts
    for problem in (reduced, full):  # the flag says which model build_second_stage gives
        model = problem.build_second_stage()
        assert isinstance(model, ReducedSecondStageModel) is not problem.recourse_warm_starts
    hard_thermal = tiny_problem(thermal_limits=LimitMode.HARD)
    assert hard_thermal.recourse_warm_starts
    a = oos.evaluate_first_stage(reduced, x, desc=None)
    assert calls == []
    b = oos.evaluate_first_stage(full, x, desc=None)
    assert calls == [4]
    assert a.objectives == pytest.approx(b.objectives, rel=1e-9)
    assert a.subgradients == pytest.approx(b.subgradients, abs=1e-8)
