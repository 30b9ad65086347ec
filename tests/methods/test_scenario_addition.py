"""Scenario addition (methods/scenario_addition.py) against brute-force enumeration.

The references are the contract toys' enumerations (tests/contract_cases.py) and, on the tiny
Volt-VAR feeder, the extensive form; every round's master bound must stay below the optimum
(it is a relaxation whatever the subset), and the method must end at the optimum.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from contract_cases import Dispatch, Startup
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.methods.scenario_addition import (
    ScenarioAdditionError,
    solve_scenario_addition,
)
from gridrecourse.problems.base import (
    SolveStatus,
    VariableBlockSpec,
    recourse_floor,
)
from gridrecourse.problems.volt_var import Monitor, VoltVarConfig, VoltVarProblem
from gridrecourse.solvers.options import SolverOptions, stopping_tolerance

EXACT = SolverOptions(mip_gap=1e-9)
FEEDER = Path(__file__).resolve().parents[1] / "data" / "voltvar5" / "Master.dss"


def _tiny_volt_var() -> VoltVarProblem:
    """Paper B's problem on the tiny feeder: 2 hours, one regulator, one tie, 4 scenarios."""
    cfg = VoltVarConfig(
        n_periods=2, start_hour=18, pv_buses=("b4",), pv_kva=500.0, monitor=Monitor.FM,
        max_tap_changes=2, initial_taps=(0.95,), max_violation_hours=1,
        max_consecutive_violations=1,
    )  # fmt: skip
    return VoltVarProblem.from_feeder(FEEDER, 4, cfg, seed=1)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_dispatch_reaches_the_enumerated_optimum_with_valid_bounds_every_round(seed):
    prob = Dispatch(n_scenarios=6, seed=seed)
    best, arg = prob.enumerate()
    r = solve_scenario_addition(prob, EXACT)
    assert r.status is SolveStatus.OPTIMAL
    assert r.objective == pytest.approx(best, rel=1e-9)
    np.testing.assert_array_equal(r.x, arg)
    assert best - stopping_tolerance(best, EXACT) - 1e-12 <= r.bound <= best
    for k, rnd in enumerate(r.rounds):
        assert rnd.master_bound <= best + 1e-9  # a relaxation, whatever the subset
        assert rnd.value >= best - 1e-9  # an exact value of a feasible first stage
        assert len(rnd.scenarios) == k + 1  # one scenario added per round
    assert r.recourse == pytest.approx([prob.merit_order(arg, w) for w in range(6)], rel=1e-8)


def test_startup_milp_recourse_reaches_the_enumerated_optimum():
    prob = Startup(n_scenarios=5, seed=4)
    best, units = prob.enumerate()
    r = solve_scenario_addition(prob, EXACT, per_round=2)
    assert r.objective == pytest.approx(best, rel=1e-9)
    assert r.x[0] == units
    assert all(rnd.master_bound <= best + 1e-9 for rnd in r.rounds)
    assert [len(rnd.scenarios) for rnd in r.rounds][:2] == [1, 3]


def test_recourse_floor_is_the_box_minimum():
    prob = Dispatch(n_scenarios=3)
    assert recourse_floor(prob) == pytest.approx(np.zeros(3))  # costs >= 0 on y >= 0
    spec = prob.second_stage
    # a column paying 1 per unit without an upper bound: the recourse has no floor
    sell = VariableBlockSpec("sell", 1, cost=-1.0)
    free = replace(spec, variables=(*spec.variables, sell), technology=None)
    object.__setattr__(prob, "_second", free)
    assert np.all(recourse_floor(prob) == -np.inf)
    with pytest.raises(ScenarioAdditionError, match="no finite lower bound"):
        solve_scenario_addition(prob, EXACT)


def test_bad_settings_are_refused():
    prob = Dispatch(n_scenarios=3)
    with pytest.raises(ScenarioAdditionError, match="per_round"):
        solve_scenario_addition(prob, EXACT, per_round=0)
    with pytest.raises(ScenarioAdditionError, match=r"subset of 0\.\.2"):
        solve_scenario_addition(prob, EXACT, initial=[5])


def test_volt_var_tiny_feeder_equals_the_extensive_form():
    tiny = _tiny_volt_var()
    assert recourse_floor(tiny) == pytest.approx(np.zeros(4))
    ef = solve_extensive_form(tiny, EXACT)
    r = solve_scenario_addition(tiny, EXACT)
    assert r.objective == pytest.approx(ef.objective, abs=1e-6)
    assert r.bound <= ef.objective + 1e-6
    assert all(rnd.master_bound <= ef.objective + 1e-6 for rnd in r.rounds)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_scenario_kernels_keep_the_enumerated_optimum_and_valid_bounds(seed):
    """With ``scenario_kernels`` every scenario gets its own master before it joins the
    subset: each kernel is a relaxation (bound <= optimum) whose solution is evaluated exactly
    (value >= optimum), and the loop still ends at the enumerated optimum."""
    prob = Dispatch(n_scenarios=6, seed=seed)
    best, arg = prob.enumerate()
    plain = solve_scenario_addition(prob, EXACT)
    r = solve_scenario_addition(prob, EXACT, scenario_kernels=True)
    assert r.status is SolveStatus.OPTIMAL
    assert r.objective == pytest.approx(best, rel=1e-9)
    np.testing.assert_array_equal(r.x, arg)
    assert best - stopping_tolerance(best, EXACT) - 1e-12 <= r.bound <= best
    assert plain.kernels == ()
    for kernel in r.kernels:
        assert len(kernel.scenarios) == 1
        assert kernel.master_bound <= best + 1e-9
        assert kernel.value >= best - 1e-9
    # every scenario added after the first round had its kernel solved first
    added = [s for rnd in r.rounds[1:] for s in rnd.scenarios if s not in r.rounds[0].scenarios]
    assert set(added) <= {k.scenarios[0] for k in r.kernels}


def test_scenario_kernels_on_the_tiny_feeder_equal_the_extensive_form():
    tiny = _tiny_volt_var()
    ef = solve_extensive_form(tiny, EXACT)
    r = solve_scenario_addition(tiny, EXACT, scenario_kernels=True)
    assert r.objective == pytest.approx(ef.objective, abs=1e-6)
    assert r.bound <= ef.objective + 1e-6
    assert all(k.master_bound <= ef.objective + 1e-6 for k in (*r.rounds, *r.kernels))
