"""Extensive form against brute-force enumeration, tangent accuracy, and the IEEE 123 (P1)."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.formulation.limits import LimitMode
from gridrecourse.methods.extensive_form import (
    allocate_tangent_points,
    build_extensive_form,
    solve_extensive_form,
)
from gridrecourse.problems.base import SolveStatus, tangent_rows
from gridrecourse.problems.siting import (
    PVSitingProblem,
    SitingObjective,
    TapSetting,
)
from gridrecourse.solvers.options import SolverOptions

# ------------------------------------------------------------------------------------------
# The 5-bus feeder of tests/problems/test_siting.py (tests have no shared package).
from siting_cases import BUDGET, EXACT, PROB, brute_force, tiny_problem


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
    # optimal: the reported bound is the incumbent less the stopping tolerance (1e-4 relative)
    assert res.gap == pytest.approx(1e-4, rel=1e-6) or res.status is SolveStatus.TIME_LIMIT
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


def test_mip_start_keeps_the_optimum_and_checks_its_size():
    prob = tiny_problem()
    values = brute_force(prob)
    worst = max(values, key=values.get)
    res = solve_extensive_form(prob, EXACT, start=prob.first_stage_vector(np.array(worst)))
    assert res.objective == pytest.approx(min(values.values()), rel=1e-9)
    with pytest.raises(ValueError, match="first stage"):
        solve_extensive_form(prob, EXACT, start=np.zeros(1))
