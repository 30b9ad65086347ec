"""Tests of the HiGHS wrapper on hand-solvable models."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.solvers.highs import (
    HIGHS_MIP_FEASIBILITY_TOLERANCE,
    LinearModel,
    SimplexPricing,
    WarmStartBudget,
)
from gridrecourse.solvers.options import SolverOptions


def knapsack() -> LinearModel:
    """max x + y s.t. 2x + 2y ≤ 3, x, y ∈ {0, 1, 2}: MIP optimum 1, LP optimum 1.5."""
    model = LinearModel("knapsack")
    xy = model.add_variables("xy", 2, lb=0.0, ub=2.0, cost=-1.0, integer=True)
    model.add_constraints("capacity", [(xy, np.array([[2.0, 2.0]]))], ub=3.0)
    return model


def test_mip_and_its_relaxation_on_the_same_model():
    model = knapsack()
    mip = model.solve(SolverOptions(mip_gap=0.0))
    assert mip.objective == pytest.approx(-1.0)
    assert mip.dual_bound == pytest.approx(-1.0)
    relaxed = model.solve(SolverOptions(relax_integrality=True))
    assert relaxed.objective == pytest.approx(-1.5)
    assert relaxed.dual_bound == pytest.approx(-1.5)  # the relaxation bounds the MIP from below
    again = model.solve(SolverOptions(mip_gap=0.0))  # the option does not stick to the model
    assert again.objective == pytest.approx(-1.0)


def test_partial_mip_start_and_bound_on_time_limit():
    model = knapsack()
    xy = model.variables["xy"]
    model.set_start({xy: np.array([1.0, 0.0])})
    sol = model.solve(SolverOptions(mip_gap=0.0))
    assert sol.objective == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="2 finite values"):
        model.set_start({xy: np.array([np.nan, 0.0])})
    model.set_start(None)
    assert model.solve(SolverOptions(mip_gap=0.0)).objective == pytest.approx(-1.0)


def test_simplex_pricing_reaches_highs_and_survives_a_reset():
    """min x + y s.t. x + y ≥ 1, x - y = 0.2: optimum 1 at (0.6, 0.4) under every pricing."""
    model = LinearModel("pricing")
    xy = model.add_variables("xy", 2, lb=0.0, cost=1.0)
    model.add_constraints("cover", [(xy, np.array([[1.0, 1.0]]))], lb=1.0)
    model.add_constraints("split", [(xy, np.array([[1.0, -1.0]]))], lb=0.2, ub=0.2)
    assert model.simplex_pricing is SimplexPricing.CHOOSE
    model.set_simplex_pricing(SimplexPricing.DEVEX)
    for _ in range(2):
        sol = model.solve()
        assert sol.value(xy) == pytest.approx([0.6, 0.4])
        _, option = model._highs.getOptionValue("simplex_dual_edge_weight_strategy")
        assert option == SimplexPricing.DEVEX.value
        model.reset()
    model.solve()
    model.set_simplex_pricing(SimplexPricing.DANTZIG)  # on the live instance too
    assert model._highs.getOptionValue("simplex_dual_edge_weight_strategy")[1] == 0


def test_mip_feasibility_tolerance_reaches_highs_and_is_reset_on_the_next_solve():
    model = knapsack()
    sol = model.solve(SolverOptions(mip_gap=0.0, mip_feasibility_tolerance=1e-9))
    assert sol.objective == pytest.approx(-1.0)
    assert model._highs.getOptionValue("mip_feasibility_tolerance")[1] == 1e-9
    model.solve(SolverOptions(mip_gap=0.0))
    value = model._highs.getOptionValue("mip_feasibility_tolerance")[1]
    assert value == HIGHS_MIP_FEASIBILITY_TOLERANCE == 1e-6  # HiGHS's own default


def test_time_limit_is_set_on_every_solve_and_none_removes_it():
    model = knapsack()
    model.solve(SolverOptions(mip_gap=0.0, time_limit=5.0))
    assert model._highs.getOptionValue("time_limit")[1] == 5.0
    sol = model.solve(SolverOptions(mip_gap=0.0))  # no limit: not the earlier solve's 5 s
    assert sol.objective == pytest.approx(-1.0)
    assert model._highs.getOptionValue("time_limit")[1] == float("inf")


def test_re_solved_lp_gets_its_whole_time_limit_each_time():
    """HiGHS checks an LP's time limit against the run time summed over the instance's solves:
    without the correction every re-solve after that sum passed the limit stopped at once."""
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    model = LinearModel("lp")
    x = model.add_variables("x", 400, lb=0.0, ub=10.0, cost=-rng.random(400))
    rows = model.add_constraints(
        "c", [(x, sp.random(200, 400, density=0.05, random_state=1, format="csr"))], ub=50.0
    )
    limit = 0.2
    solves = 0
    while model._highs is None or model._highs.getRunTime() < 2 * limit:
        model.set_row_bounds(rows, -np.inf, 50.0 + rng.random(200))  # a real re-solve each time
        sol = model.solve(SolverOptions(time_limit=limit))
        assert sol.status == "Optimal", (solves, model._highs.getRunTime())
        solves += 1
        assert solves < 5000
    run_time = model._highs.getRunTime()
    model.solve(SolverOptions(time_limit=limit))
    set_limit = model._highs.getOptionValue("time_limit")[1]
    assert run_time + limit <= set_limit <= model._highs.getRunTime() + limit


def test_relaxed_copy_is_the_continuous_feasible_set_and_independent():
    model = knapsack()
    copy = model.relaxed_copy()
    xy = copy.variables["xy"]
    copy.set_cost(xy, -1.0)
    assert copy.solve().objective == pytest.approx(-1.5)  # continuous: 2x + 2y ≤ 3
    copy.add_variables("extra", 1)
    assert model.n_cols == 2 and "extra" not in model.variables
    assert model.solve(SolverOptions(mip_gap=0.0)).objective == pytest.approx(-1.0)
    assert np.all(model.columns().cost == -1.0)


def test_warm_start_budget_times_cold_solves_only_and_keeps_the_optimum():
    model = knapsack().relaxed_copy()
    xy = model.variables["xy"]
    model.set_cost(xy, -1.0)
    budget = WarmStartBudget(factor=3.0, floor=0.5)
    cold = budget.solve(model)
    assert budget.longest_cold > 0 and model.is_built
    longest = budget.longest_cold
    model.set_cost(xy, [-1.0, -2.0])  # warm: same instance, another objective
    warm = budget.solve(model, SolverOptions(time_limit=10.0))
    assert budget.longest_cold == longest  # a warm solve does not change the budget
    assert (cold.objective, warm.objective) == pytest.approx((-1.5, -3.0))
