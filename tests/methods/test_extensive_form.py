"""Extensive form against brute-force enumeration, tangent accuracy, and the IEEE 123 (P1)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.methods.extensive_form import (
    allocate_tangent_points,
    build_extensive_form,
    solve_extensive_form,
)
from gridrecourse.methods.spar_first_stage import SitingBudget
from gridrecourse.network.components import Bus, Connection, Feeder, Line, Load, Root
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.problems.base import SolveStatus, tangent_rows
from gridrecourse.problems.siting import (
    LimitMode,
    PVSitingProblem,
    SitingConfig,
    SitingObjective,
    TapSetting,
)
from gridrecourse.solvers.options import SolverOptions
from gridrecourse.uncertainty.scenarios import ScenarioSet

# ------------------------------------------------------------------------------------------
# The 5-bus feeder of tests/problems/test_siting.py (tests have no shared package).
KV_LN = 7.2
Z_KM = np.array(
    [
        [0.3 + 0.6j, 0.1 + 0.2j, 0.1 + 0.2j],
        [0.1 + 0.2j, 0.3 + 0.6j, 0.1 + 0.2j],
        [0.1 + 0.2j, 0.1 + 0.2j, 0.3 + 0.6j],
    ]
)
ABC = (1, 2, 3)
LOAD = np.array([[1.0, 0.9, 1.1], [0.6, 0.7, 0.5], [0.8, 1.0, 0.9], [0.4, 0.5, 0.3]])
PV = np.array([[0.9, 0.8, 0.85], [0.2, 0.3, 0.1], [0.6, 0.5, 0.7], [0.0, 0.0, 0.0]])
PROB = np.array([0.1, 0.2, 0.3, 0.4])
BUDGET = SitingBudget(
    unit_kw=50.0, max_units=3, cost_per_kw=1000.0, budget=200_000.0, min_sites=1, max_sites=2
)
EXACT = SolverOptions(mip_gap=1e-9)


def _line(name, a, b, km, phases=ABC):
    idx = [p - 1 for p in phases]
    z = Z_KM[np.ix_(idx, idx)] * km
    return Line(name, a, b, phases, phases, z, np.zeros_like(z), np.inf, np.inf, km)


def tiny_problem(objective=SitingObjective.VOLTAGE_DEVIATION, load_scale=1.0, **config):
    kv_ll = KV_LN * np.sqrt(3)
    feeder = Feeder(
        name="tiny",
        buses=(
            Bus("s", ABC, KV_LN),
            Bus("b1", ABC, KV_LN),
            Bus("b2", ABC, KV_LN),
            Bus("b3", ABC, KV_LN),
            Bus("b4", (2,), KV_LN),
        ),
        roots=(Root("s", (1.0, 1.0, 1.0)),),
        lines=(
            _line("l1", "s", "b1", 4.0),
            _line("l2", "b1", "b2", 3.0),
            _line("l3", "b2", "b3", 3.0),
            _line("l4", "b1", "b4", 4.0, (2,)),
        ),
        loads=(
            Load("ld2", "b2", ABC, Connection.WYE, 900.0 * load_scale, 300.0 * load_scale, kv_ll),
            Load("ld3", "b3", ABC, Connection.WYE, 600.0 * load_scale, 200.0 * load_scale, kv_ll),
            Load("ld4", "b4", (2,), Connection.WYE, 250.0 * load_scale, 80.0 * load_scale, KV_LN),
        ),
    )
    scenarios = ScenarioSet(LOAD, PV, PROB, ("b2", "b3", "b4"))
    cfg = SitingConfig(objective=objective, budget=BUDGET, **config)
    return PVSitingProblem(build_math_feeder(feeder), scenarios, cfg)


def brute_force(problem, scenarios=None) -> dict[tuple[int, ...], float]:
    """Exact expected recourse of every feasible first stage (all n, every admissible s)."""
    fs = problem.first_stage
    values = {}
    for units in itertools.product(range(BUDGET.max_units + 1), repeat=problem.n_sites):
        feasible_s = [
            s
            for s in itertools.product((0, 1), repeat=problem.n_sites)
            if fs.is_feasible(problem.first_stage_vector(units, np.array(s, dtype=bool)))
        ]
        if not feasible_s:
            continue
        x = problem.first_stage_vector(units, np.array(feasible_s[0], dtype=bool))
        ev = evaluate_first_stage(problem, x, scenarios=scenarios, desc=None)
        values[units] = ev.expected_objective
    return values


# ------------------------------------------------------------------------------------------


def test_budget_and_site_count_bind_in_the_test_instance():
    values = brute_force(tiny_problem())
    best = min(values, key=values.get)
    assert sum(best) == 4  # all the money is spent
    assert sum(u > 0 for u in best) == 2  # at the site-count limit
    assert len(values) < (BUDGET.max_units + 1) ** 3  # the first-stage rows cut something


def test_ef_equals_brute_force_for_voltage_deviation():
    prob = tiny_problem()
    values = brute_force(prob)
    best = min(values.values())
    res = solve_extensive_form(prob, EXACT)
    assert res.status is SolveStatus.OPTIMAL
    assert res.objective == pytest.approx(best, rel=1e-8)
    assert values[tuple(res.decision.units)] == pytest.approx(best, rel=1e-8)
    assert res.bound <= res.objective + 1e-9
    assert prob.first_stage.is_feasible(res.x)
    assert res.tangents is None
    # the per-scenario recourse of the EF solution is what the exact evaluation gives
    ev = evaluate_first_stage(prob, res.x, desc=None)
    assert res.recourse == pytest.approx(ev.objectives, rel=1e-7)
    assert PROB @ res.recourse == pytest.approx(res.objective, rel=1e-9)


def test_ef_with_tangents_is_within_the_stated_accuracy_for_losses():
    """P2: the EF (tangent planes) is a lower bound on the exact optimum, and the exact value of
    its first stage is within the a-priori tangent error bound of the brute-force optimum."""
    prob = tiny_problem(SitingObjective.LOSSES)
    values = brute_force(prob)  # exact QP evaluations
    best = min(values.values())
    res = solve_extensive_form(prob, EXACT)
    rep = res.tangents
    assert rep is not None and rep.outside_range == 0
    assert rep.mean_points == pytest.approx(9.0, abs=0.5)
    exact_of_ef = values[tuple(res.decision.units)]
    assert res.objective <= best + 1e-7
    assert best - res.objective <= rep.max_error_bound
    assert exact_of_ef - best <= rep.max_error_bound
    assert 0.0 <= rep.abs_error <= rep.max_error_bound
    assert rep.rel_error < 0.01  # measured 0.06 % here
    # more tangent points tighten the approximation
    fine = solve_extensive_form(prob, EXACT, tangent_points=33)
    assert fine.tangents.max_error_bound < rep.max_error_bound
    assert abs(fine.objective - best) <= fine.tangents.max_error_bound


def test_ef_on_a_subset_renormalizes_probabilities():
    prob = tiny_problem()
    subset = [1, 2]
    values = brute_force(prob, scenarios=subset)
    res = solve_extensive_form(prob, EXACT, scenarios=subset)
    assert res.n_scenarios == 2
    assert res.objective == pytest.approx(min(values.values()), rel=1e-8)


def test_ef_model_is_block_diagonal_over_scenarios():
    prob = tiny_problem()
    one = build_extensive_form(prob, scenarios=[0])
    four = build_extensive_form(prob)
    fs = prob.first_stage
    fs_rows = sum(c.size for c in fs.constraints)
    spec = prob.second_stage
    assert one.model.n_rows == fs_rows + spec.n_rows
    assert four.model.n_rows == fs_rows + 4 * spec.n_rows
    assert four.model.n_cols == fs.size + 4 * spec.n_cols


def test_ef_with_impossible_hard_limits_is_infeasible():
    prob = tiny_problem(load_scale=1.5, voltage_limits=LimitMode.HARD)  # needs > budget of PV
    with pytest.raises(InfeasibleModelError):
        solve_extensive_form(prob, EXACT)


def test_tangent_allocation_and_error_bound():
    rng = np.random.default_rng(3)
    h = rng.uniform(0.1, 5.0, 40)
    lo = rng.uniform(-2, 0, 40)
    hi = lo + rng.uniform(0, 3, 40)
    hi[0] = lo[0]  # a zero-width range gets one point
    k = allocate_tangent_points(h, hi - lo, 9)
    assert k[0] == 1 and np.all(k[1:] >= 2)
    assert k.mean() == pytest.approx(9, abs=0.5)
    # bound per variable: max tangent >= h y² − h (Δ/2)² anywhere in the range
    owner = np.repeat(np.arange(40), k)
    pos = np.arange(len(owner)) - np.repeat(np.cumsum(k) - k, k)
    t = lo[owner] + (hi - lo)[owner] * np.where(k[owner] > 1, pos / np.maximum(k[owner] - 1, 1), 0)
    a_l, a_y, rhs = tangent_rows(h, np.arange(40), 40, t, owner)
    y = lo + (hi - lo) * rng.uniform(0, 1, 40)
    ell = np.zeros(40)
    np.maximum.at(ell, owner, -(a_y @ y) + rhs)  # ℓ_j = max_k h(2 t y − t²)
    spacing = np.where(k > 1, (hi - lo) / np.maximum(k - 1, 1), 0.0)
    gap = h * y**2 - ell
    assert np.all(gap >= -1e-12)
    assert np.all(gap <= h * (spacing / 2) ** 2 + 1e-12)
    assert a_l.sum() == len(owner)


def test_status_mapping():
    assert SolveStatus.from_highs("Optimal") is SolveStatus.OPTIMAL
    assert SolveStatus.from_highs("Time limit reached") is SolveStatus.TIME_LIMIT
    assert SolveStatus.from_highs("Infeasible") is SolveStatus.INFEASIBLE


@pytest.mark.slow
def test_ieee123_ef_p1_with_24_bundled_scenarios(feeder_dir):
    """P1 on the IEEE 123 with 24 stratified bundled-data scenarios (regulators at tap 1.0, the
    single-voltage-base setting of paper C). Measured: ~20 s on 2 cores, objective 2.6197
    against 3.6029 without PV, the $1.5M budget fully used."""
    prob = PVSitingProblem.from_feeder("ieee123", 24, taps=TapSetting.NEUTRAL)
    res = solve_extensive_form(prob, SolverOptions(mip_gap=1e-4, time_limit=300))
    assert res.status in (SolveStatus.OPTIMAL, SolveStatus.TIME_LIMIT)
    assert res.gap <= 1e-4 or res.status is SolveStatus.TIME_LIMIT
    assert res.n_scenarios == 24 and res.n_integer == 2 * prob.n_sites
    ev = evaluate_first_stage(prob, res.x, desc=None)
    assert ev.n_infeasible == 0
    assert ev.expected_objective == pytest.approx(res.objective, rel=1e-6)
    none = evaluate_first_stage(prob, np.zeros(prob.first_stage.size), desc=None)
    assert res.objective < none.expected_objective
    cost = res.decision.total_kw * BUDGET.cost_per_kw
    assert cost <= prob.config.budget.budget + 1e-6
    assert 1 <= res.decision.sited.sum() <= prob.config.budget.max_sites
    print(
        f"\nIEEE 123 EF P1: {res.wall_seconds:.1f} s, objective {res.objective:.4f} "
        f"(no PV {none.expected_objective:.4f}), bound {res.bound:.4f}, gap {res.gap:.2e}, "
        f"{res.decision.total_kw:.0f} kW at {res.decision.units_by_bus()}"
    )
