"""Warm-start order of the scenarios of an evaluation (evaluation.scenario_order)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.evaluation.scenario_order import (
    nearest_neighbour_chain,
    scenario_coordinates,
    warm_start_order,
)
from gridrecourse.problems.siting import SitingObjective
from siting_cases import tiny_problem, tiny_scenarios

RNG = np.random.default_rng(11)
LOAD = RNG.uniform(0.3, 1.2, (12, 3))
PV = RNG.uniform(0.0, 0.9, (12, 3))
PROB = np.full(12, 1.0 / 12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(-1000, 1000), min_size=1, max_size=40, unique=True))
def test_chain_on_a_line_is_the_sorted_order(values):
    """On distinct points of a line the greedy chain from the minimum walks them in order
    (integer positions: no distance ties from round-off)."""
    points = np.array(values, dtype=float)[:, None]
    np.testing.assert_array_equal(nearest_neighbour_chain(points), np.argsort(points[:, 0]))


def test_order_is_a_permutation_that_puts_copies_next_to_each_other():
    """Duplicated scenarios have identical coordinates, so the chain visits copies in a row."""
    load = np.repeat(LOAD[:4], 3, axis=0)  # scenarios 0,1,2 equal; 3,4,5 equal; ...
    pv = np.repeat(PV[:4], 3, axis=0)
    prob = tiny_problem(SitingObjective.VOLTAGE_DEVIATION, 1.0, tiny_scenarios(load, pv, PROB))
    idx = np.arange(12)
    order = warm_start_order(prob, idx)
    np.testing.assert_array_equal(np.sort(order), idx)
    groups = order // 3
    assert np.count_nonzero(np.diff(groups)) == 3  # four runs of one group each
    coords = scenario_coordinates(prob, idx)
    assert coords.shape == (12, 8)
    np.testing.assert_allclose(coords[0], coords[1])


@pytest.mark.parametrize("objective", [SitingObjective.VOLTAGE_DEVIATION, SitingObjective.LOSSES])
def test_reordered_evaluation_returns_the_same_results_in_the_callers_order(objective):
    prob = tiny_problem(objective, 1.0, tiny_scenarios(LOAD, PV, PROB))
    x = prob.first_stage_vector([2, 0, 1])
    scenarios = np.array([7, 3, 11, 0, 5])
    plain = evaluate_first_stage(prob, x, scenarios=scenarios, reorder=False, desc=None)
    ordered = evaluate_first_stage(prob, x, scenarios=scenarios, desc=None)
    assert warm_start_order(prob, scenarios).tolist() != list(range(5))  # it does reorder
    np.testing.assert_array_equal(ordered.scenario_indices, scenarios)
    assert ordered.objectives == pytest.approx(plain.objectives, rel=1e-9, abs=1e-12)
    assert ordered.subgradients == pytest.approx(plain.subgradients, rel=1e-6, abs=1e-9)
    single = [prob.build_second_stage().solve(x, int(s)).objective for s in scenarios]
    assert ordered.objectives == pytest.approx(single, rel=1e-9, abs=1e-12)
