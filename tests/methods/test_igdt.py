"""DT, IGDT and CL-DIGDT on case33bw (paper D): bisection, enumeration, worst case, bad input."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridrecourse.methods.igdt import (
    BudgetInfeasibleError,
    OperationInstance,
    Selection,
    igdt_feasible,
    solve_cl_digdt,
    solve_dt,
    solve_igdt,
    worst_case_scan,
)
from gridrecourse.network.prepare import prepare_feeder
from gridrecourse.problems.operation import NetLoadCorner, bundled_operation_data, default_case

SIGMA = 0.3


@pytest.fixture(scope="module")
def instance():
    math = prepare_feeder("case33bw").math
    inst = OperationInstance(math, default_case("case33bw"), bundled_operation_data())
    dt = solve_dt(inst)
    return inst, dt, (1 + SIGMA) * dt.cost


@pytest.fixture(scope="module")
def igdt(instance):
    inst, dt, budget = instance
    return solve_igdt(inst, dt, budget)


def test_budget_below_lambda0_fails_even_at_zero_deviation(instance):
    inst, dt, _ = instance
    with pytest.raises(BudgetInfeasibleError, match="below the deterministic cost"):
        solve_igdt(inst, dt, 0.99 * dt.cost)
    with pytest.raises(BudgetInfeasibleError):
        solve_cl_digdt(inst, dt, 0.99 * dt.cost)
    # at exactly Λ0 the forecast itself is the only guarantee: δ = 0
    ig = solve_igdt(inst, dt, dt.cost * (1 + 1e-9))
    assert ig.delta == pytest.approx(0.0, abs=1e-5)


def test_single_level_delta_is_the_bisection_bracket(instance, igdt):
    """δ* from the single-level model: feasible just below, infeasible just above (the
    bracket a bisection on δ converges to), each point an independent feasibility solve."""
    inst, dt, budget = instance
    d = igdt.delta
    assert 0.01 < d < 1.0
    ok = igdt_feasible(inst, dt, budget, np.array([0.0, 0.5 * d, d * (1 - 1e-4), d * 1.002]))
    assert ok.tolist() == [True, True, True, False]
    # the budget binds at the worst corner
    assert max(igdt.corner_cost.values()) == pytest.approx(budget, rel=1e-6)


def test_worst_case_of_the_delta_box_is_the_high_net_load_corner(instance, igdt):
    """case33bw: with the IGDT plan fixed, the exact recourse at the highest net load (loads
    up, PV down) costs more than at the opposite corner and at every sampled vertex and
    interior point of the δ-box; all of them are served."""
    inst, dt, budget = instance
    d = inst.data
    dl = igdt.delta
    box_l = ((1 - dl) * d.forecast_load, (1 + dl) * d.forecast_load)
    box_p = ((1 - dl) * d.forecast_pv, (1 + dl) * d.forecast_pv)
    scan = worst_case_scan(inst, igdt.schedule, box_l, box_p, n_vertices=16, n_interior=8, dt=dt)
    high, low = scan.corner_cost["high"], scan.corner_cost["low"]
    assert np.isfinite(high) and np.isfinite(low)
    assert high > low
    assert np.all(np.isfinite(scan.vertex_cost)) and np.all(np.isfinite(scan.interior_cost))
    assert scan.worst_sampled <= high + 1e-6 * budget
    # evaluated with its own losses, the corner stays within 1 % of the budget the model held
    assert high <= budget * 1.01


@pytest.mark.slow
def test_cl_digdt_reaches_epsilon_within_five_refinements(instance):
    inst, dt, budget = instance
    cl = solve_cl_digdt(inst, dt, budget, epsilon=1e-4)
    its = cl.iterations
    assert len(its) <= 5
    assert its[-1].ub - its[-1].lb <= 1e-4 * (1 + 1e-9)
    for prev, nxt in itertools.pairwise(its):
        assert prev.lb <= nxt.lb <= nxt.ub <= prev.ub + 1e-12  # nested ranges
    assert its[0].ub - its[0].lb == pytest.approx(0.1)
    assert 0.0 < cl.alpha <= cl.max_alpha
    assert all(c <= budget * (1 + 1e-7) for c in its[-1].corner_cost.values())
    assert cl.load_set is not None and np.all(cl.load_set.probability >= cl.alpha)


@pytest.mark.slow
def test_enumerated_selection_equals_the_big_m_milp(instance):
    """One refinement (10 sub-intervals, one corner): the top-down enumeration of the one-hot
    binaries and HiGHS's branch and bound on the big-M MILP pick the same α."""
    inst, dt, budget = instance
    high = OperationInstance(
        inst.math, inst.case, inst.data, corners=(NetLoadCorner.HIGH,), physics=inst.physics
    )
    a = solve_cl_digdt(high, dt, budget, max_refinements=1, selection=Selection.ENUMERATE)
    b = solve_cl_digdt(high, dt, budget, max_refinements=1, selection=Selection.MILP)
    assert a.alpha == b.alpha
    assert a.iterations[0].ub == b.iterations[0].ub


@pytest.mark.slow
def test_points_the_relaxation_leaves_unknown_are_decided_by_the_exact_model(instance):
    """σ = 0.5: HiGHS ends "Unknown" (warm and cold) on the storage-mode relaxation at the grid
    point α = 0.7 of the first refinement; the exact model with the mode binaries then decides
    it (infeasible), so no point is left unresolved and the bracket closes to ε."""
    inst, dt, _ = instance
    budget = 1.5 * dt.cost
    cl = solve_cl_digdt(inst, dt, budget, epsilon=1e-3)
    assert all(not it.unresolved for it in cl.iterations)
    last = cl.iterations[-1]
    assert last.ub - last.lb <= 1e-3 * (1 + 1e-9)
    assert all(c <= budget * (1 + 1e-7) for c in last.corner_cost.values())
