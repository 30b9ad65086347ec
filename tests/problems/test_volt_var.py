"""Paper B's 2S-VVO (problems/volt_var.py) on the tiny voltvar5 feeder.

The references are independent of the methods: every first stage of the tiny instance (tap
positions of its one regulator and the radial configuration of its loop, per hour) is
enumerated, completed by the first-stage rows alone and evaluated by the exact evaluator (one
recourse MILP per scenario); the EF and PH must reach the enumerated optimum.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging
from gridrecourse.problems.capabilities import (
    EXTENSIVE_FORM,
    Trait,
    UnsupportedProblemError,
    check_requirements,
    problem_traits,
)
from gridrecourse.problems.volt_var import (
    PRIMARY_BLOCKS,
    Monitor,
    VoltVarConfig,
    VoltVarConfigError,
    VoltVarProblem,
    loop_switches,
)
from gridrecourse.solvers.options import SolverOptions

FEEDER = Path(__file__).resolve().parents[1] / "data" / "voltvar5" / "Master.dss"
EXACT = SolverOptions(mip_gap=1e-9)
#: evening hours of heavy load, the day starting at the lowest tap: the tap must move, and
#: the one allowed Range A violation hour decides when
TINY = VoltVarConfig(
    n_periods=2,
    start_hour=18,
    pv_buses=("b4",),
    pv_kva=500.0,
    monitor=Monitor.FM,
    max_tap_changes=2,
    initial_taps=(0.95,),
    max_violation_hours=1,
    max_consecutive_violations=1,
)


@pytest.fixture(scope="module")
def tiny() -> VoltVarProblem:
    return VoltVarProblem.from_feeder(FEEDER, 3, TINY, seed=1)


@pytest.fixture(scope="module")
def enumerated(tiny) -> dict:
    """Exact expected cost of every first stage (positions per hour, configuration per hour)."""
    values = {}
    configurations = ((1, 0), (0, 1))  # (S24, T34): the two radial configurations
    for pos in itertools.product(range(5), repeat=2):
        for conf in itertools.product(configurations, repeat=2):
            z = np.array(conf).T  # (switches, hours)
            try:
                x = tiny.first_stage_vector(np.array(pos)[None, :], z)
            except InfeasibleModelError:  # beyond the tap-change limit
                continue
            ev = evaluate_first_stage(tiny, x, options=EXACT, desc=None)
            values[(pos, conf)] = ev.expected_objective
    return values


def test_structure(tiny):
    assert loop_switches(tiny.math) == ("s24", "t34") == tiny.switchable
    fs, ss = tiny.first_stage, tiny.second_stage
    assert [v.name for v in fs.variables if v.name in PRIMARY_BLOCKS] == list(PRIMARY_BLOCKS)
    assert len(tiny.primary_columns()) == 5 * 2 + 2 * 2
    links = {k.name for k in ss.links}
    assert {"tap-send", "switch-p_limit", "tie-drop_upper"} <= links
    traits = problem_traits(tiny).traits
    assert Trait.INTEGER_RECOURSE in traits and Trait.SEVERAL_LINKING_BLOCKS in traits
    check_requirements(EXTENSIVE_FORM, tiny)
    # the scenario data change only the balances and the PV availability rows
    data = tiny.scenario_data([0, 1])
    changed = np.flatnonzero(np.any(data.row_lb != ss.row_lb, axis=0))
    allowed = np.r_[
        tuple(
            np.arange(ss.row_slice(n).start, ss.row_slice(n).stop)
            for n in ("branch-p_balance", "branch-q_balance", "pv-availability")
        )
    ]
    assert set(changed) <= set(allowed) and len(changed) > 0


def test_decode_round_trip(tiny):
    z = np.array([[1, 0], [0, 1]])
    x = tiny.first_stage_vector(np.array([[1, 2]]), z)
    d = tiny.decode(x)
    assert d.tap_positions.tolist() == [[1, 2]]
    assert np.allclose(d.tap_pu, [[0.975, 1.0]])
    assert d.switch_states == {"s24": [1, 0], "t34": [0, 1]}
    # counters: 1 + 1 position changes from 0.95, two switch operations in hour 1
    assert tiny.first_stage.cost @ x == pytest.approx(2 * 300.0 + 2 * 100.0)


@pytest.mark.slow
def test_enumeration_is_not_trivial(enumerated):
    finite = np.array([v for v in enumerated.values() if np.isfinite(v)])
    assert len(finite) >= 10 and len(finite) < len(enumerated)  # some recourse is infeasible
    assert finite.min() > 0 and finite.max() > finite.min()


@pytest.mark.slow
def test_extensive_form_equals_enumeration(tiny, enumerated):
    best = min(enumerated.values())
    ef = solve_extensive_form(tiny, EXACT)
    assert ef.objective == pytest.approx(best, abs=1e-6)
    exact = evaluate_first_stage(tiny, ef.x, options=EXACT, desc=None).expected_objective
    assert exact == pytest.approx(best, abs=1e-6)
    key = (tuple(ef.decision.tap_positions[0]), tuple(map(tuple, ef.decision.switch_closed[
        [list(ef.decision.switch_names).index(s) for s in ("s24", "t34")]].T)))  # fmt: skip
    assert enumerated[key] == pytest.approx(best, abs=1e-6)


@pytest.mark.slow
def test_progressive_hedging_equals_enumeration(tiny, enumerated):
    best = min(enumerated.values())
    config = PHConfig(
        rho=100.0, max_iterations=20, integer_recourse=True, consensus_blocks=PRIMARY_BLOCKS
    )
    ph = solve_progressive_hedging(tiny, config, options=EXACT)
    assert ph.objective == pytest.approx(best, abs=1e-6)


def test_ph_needs_the_milp_opt_in(tiny):
    with pytest.raises(UnsupportedProblemError, match=r"progressive hedging.*integer recourse"):
        solve_progressive_hedging(tiny, PHConfig(max_iterations=1))


def test_monitored_bus_the_feeder_lacks():
    with pytest.raises(VoltVarConfigError, match=r"monitored bus\(es\) \['85', '114'\]"):
        VoltVarProblem.from_feeder(FEEDER, 1, VoltVarConfig(n_periods=2, pv_buses=("b4",)))
    cfg = VoltVarConfig(n_periods=2, pv_buses=("b4",), monitored_buses=("b2", "nowhere"))
    with pytest.raises(VoltVarConfigError, match="nowhere"):
        VoltVarProblem.from_feeder(FEEDER, 1, cfg)


def test_unknown_pv_bus_and_switch():
    with pytest.raises(VoltVarConfigError, match="PV bus"):
        VoltVarProblem.from_feeder(
            FEEDER, 1, VoltVarConfig(n_periods=2, pv_buses=("b9",), monitor=Monitor.FM)
        )
    with pytest.raises(VoltVarConfigError, match="unknown switch"):
        VoltVarProblem.from_feeder(
            FEEDER,
            1,
            VoltVarConfig(n_periods=2, pv_buses=("b4",), monitor=Monitor.FM, switchable=("x",)),
        )


def test_tap_range_that_the_change_limit_cannot_reach():
    # the day starts at 1.10 p.u.; the allowed taps end at 1.05: two positions beyond the end
    cfg = VoltVarConfig(
        n_periods=2, pv_buses=("b4",), monitor=Monitor.FM, initial_taps=(1.1,), max_tap_changes=1
    )
    with pytest.raises(VoltVarConfigError, match=r"tap-change limit.*creg1.*2\.00 position"):
        VoltVarProblem.from_feeder(FEEDER, 1, cfg)
    ok = VoltVarProblem.from_feeder(
        FEEDER, 1, VoltVarConfig(**{**cfg.__dict__, "max_tap_changes": 2})
    )
    assert ok.first_stage.size > 0


def test_switch_limit_that_cannot_restore_radiality():
    # the day starts with the loop closed; without an operation it stays closed
    cfg = VoltVarConfig(
        n_periods=2,
        pv_buses=("b4",),
        monitor=Monitor.FM,
        initial_switches={"T34": True},
        max_switch_operations=0,
    )
    with pytest.raises(VoltVarConfigError, match="switch-operation limit"):
        VoltVarProblem.from_feeder(FEEDER, 1, cfg)


def test_scenarios_must_fit():
    with pytest.raises(VoltVarConfigError, match="periods"):
        p = VoltVarProblem.from_feeder(FEEDER, 1, TINY)
        VoltVarProblem(p.math, p.scenarios, VoltVarConfig(**{**TINY.__dict__, "n_periods": 3}))
    with pytest.raises(VoltVarConfigError, match="one day"):
        VoltVarConfig(n_periods=4, start_hour=22)


@pytest.mark.slow
def test_mip_starts(tiny, enumerated):
    best = min(enumerated.values())
    neutral = tiny.neutral_start()
    assert tiny.first_stage.is_feasible(neutral)
    assert tiny.decode(neutral).tap_positions.tolist() == [[2, 2]]  # 1.0 p.u.
    assert tiny.decode(neutral).switch_states == {"s24": [1, 1], "t34": [0, 0]}
    relaxed = tiny.relaxation_start()
    assert tiny.first_stage.is_feasible(relaxed)
    ef = solve_extensive_form(tiny, EXACT, start=neutral)
    assert ef.objective == pytest.approx(best, abs=1e-6)
    config = PHConfig(
        rho=100.0, max_iterations=20, integer_recourse=True, consensus_blocks=PRIMARY_BLOCKS
    )
    ph = solve_progressive_hedging(tiny, config, options=EXACT, start=relaxed)
    assert ph.objective == pytest.approx(best, abs=1e-6)
