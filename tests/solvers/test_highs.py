"""Tests of the HiGHS wrapper on hand-solvable models."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.solvers.highs import LinearModel
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
