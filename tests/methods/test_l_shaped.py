"""Integer L-shaped bound and the Mak–Morton–Wood paired gap estimate against enumeration.

Reference: every D1-feasible first stage of the tiny 5-bus siting instance with its exact
recourse per scenario (``enumerate_first_stages``); a batch optimum is the minimum over them of
the batch-weighted values. The tolerance is the solver's (1e-7 relative), not loosened.
"""

from __future__ import annotations

import numpy as np
import pytest

from contract_cases import Startup
from gridrecourse.evaluation.bounds import BoundMethod
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.formulation.limits import LimitMode
from gridrecourse.methods.l_shaped import (
    LShapedConfig,
    LShapedError,
    LShapedStop,
    SeedPoint,
    l_shaped_bound,
)
from gridrecourse.methods.spar import LowerBoundSource, SPARConfig, spar_statistical_bounds
from gridrecourse.problems.capabilities import UnsupportedProblemError
from siting_cases import EXACT, enumerate_first_stages, tiny_problem, tiny_scenarios

TOL = 1e-7
#: Seeds of the enumeration tests: 4 in the fast suite, 36 more marked slow.
SEEDS = [*range(4), *(pytest.param(s, marks=pytest.mark.slow) for s in range(4, 40))]


def _random_problem(seed: int, n_scenarios: int = 5):
    rng = np.random.default_rng(1000 + seed)
    s = n_scenarios
    load = rng.uniform(0.3, 1.3, size=(s, 3))
    pv = rng.uniform(0.0, 1.0, size=(s, 3)) * (rng.uniform(size=(s, 1)) < 0.8)
    prob = rng.dirichlet(np.ones(s))
    return tiny_problem(scenarios=tiny_scenarios(load, pv, prob)), rng


def _batch_optimum(values: np.ndarray, problem, draws: np.ndarray) -> float:
    w = np.bincount(draws, weights=problem.probability[draws], minlength=problem.n_scenarios)
    return float((values @ (w / w.sum())).min())


def _below(bound: float, optimum: float) -> bool:
    return bound <= optimum + TOL * (1.0 + abs(optimum))


@pytest.mark.parametrize("seed", SEEDS)
def test_l_shaped_bound_is_below_and_converges_to_the_enumerated_batch_optimum(seed):
    problem, rng = _random_problem(seed)
    xs, values = enumerate_first_stages(problem)
    draws = rng.integers(0, problem.n_scenarios, size=int(rng.integers(3, 9)))
    optimum = _batch_optimum(values, problem, draws)
    start = xs[rng.integers(len(xs))]
    # stopped after one master solve: still a bound
    one = l_shaped_bound(
        problem, draws, seeds=[start], config=LShapedConfig(max_iterations=1), options=EXACT
    )
    assert _below(one.lower_bound, optimum), (one.lower_bound, optimum)
    assert one.upper_bound >= optimum - TOL * (1 + abs(optimum))
    res = l_shaped_bound(problem, draws, seeds=[start], options=EXACT)
    assert _below(res.lower_bound, optimum), (res.lower_bound, optimum)
    for it in res.history:  # every master's dual bound, not only the best
        assert _below(it.lower_bound, optimum), (it, optimum)
    assert res.converged and res.stop in (LShapedStop.GAP, LShapedStop.REPEATED_POINT)
    assert res.lower_bound == pytest.approx(optimum, rel=1e-6)
    assert res.upper_bound == pytest.approx(optimum, rel=1e-9)
    # the returned point's exact batch value is the upper bound
    ev = evaluate_first_stage(problem, res.x, scenarios=draws, desc=None)
    assert ev.expected_objective == pytest.approx(res.upper_bound, rel=1e-9)
    p = res.provenance
    assert p.method is BoundMethod.L_SHAPED and p.value == res.lower_bound
    assert p.iterations == len(res.history) and p.incumbent == res.upper_bound


def test_master_feasibility_tolerance_reaches_every_master_solve(monkeypatch):
    import gridrecourse.methods.l_shaped as module

    seen = []
    real = module.set_mip_feasibility_tolerance
    monkeypatch.setattr(
        module, "set_mip_feasibility_tolerance", lambda h, t: (seen.append(t), real(h, t))
    )
    problem, rng = _random_problem(0)
    xs, values = enumerate_first_stages(problem)
    draws = rng.integers(0, problem.n_scenarios, size=6)
    cfg = LShapedConfig(master_mip_feasibility_tolerance=1e-9)
    res = l_shaped_bound(problem, draws, seeds=[xs[0]], config=cfg, options=EXACT)
    assert seen and set(seen) == {1e-9}
    assert res.converged
    assert res.lower_bound == pytest.approx(_batch_optimum(values, problem, draws), rel=1e-6)
    with pytest.raises(LShapedError, match="master_mip_feasibility_tolerance"):
        LShapedConfig(master_mip_feasibility_tolerance=0.0)


def test_seed_point_with_its_values_costs_no_solve_and_gives_the_same_bound(count_solves):
    problem, _ = _random_problem(3)
    draws = np.array([0, 2, 2, 4, 1])
    x = problem.first_stage_vector((1, 0, 2))
    ev = evaluate_first_stage(problem, x, scenarios=draws, desc=None)
    given = SeedPoint(x, ev.objectives, ev.subgradients)
    count_solves.clear()
    cfg = LShapedConfig(max_iterations=1)
    a = l_shaped_bound(problem, draws, seeds=[given], config=cfg, options=EXACT)
    assert len(count_solves) == 4  # one evaluation of the 4 distinct scenarios, no seed solve
    b = l_shaped_bound(problem, draws, seeds=[x], config=cfg, options=EXACT)
    assert a.lower_bound == pytest.approx(b.lower_bound, rel=1e-9)
    with pytest.raises(LShapedError, match="one row per draw"):
        l_shaped_bound(problem, draws, seeds=[SeedPoint(x, ev.objectives[:2], ev.subgradients)])
    with pytest.raises(LShapedError, match="at least one seed"):
        l_shaped_bound(problem, draws)


def test_time_limit_before_the_first_master_gives_no_bound_but_the_seed_value():
    problem, _ = _random_problem(5)
    draws = np.array([0, 1, 3])
    x = problem.first_stage_vector((2, 0, 0))
    res = l_shaped_bound(
        problem, draws, seeds=[x], config=LShapedConfig(time_limit=1e-9), options=EXACT
    )
    assert res.stop is LShapedStop.TIME and not res.converged and res.history == ()
    assert res.lower_bound == -np.inf
    ev = evaluate_first_stage(problem, x, scenarios=draws, desc=None)
    assert res.upper_bound == pytest.approx(ev.expected_objective, rel=1e-12)


def test_hard_limits_feasibility_cuts_and_an_infeasible_seed():
    """Hard voltage limits: sitings infeasible in some scenario get Farkas cuts; the bound stays
    below the enumerated optimum over the feasible sitings and converges to it."""
    problem = tiny_problem(load_scale=1.46, voltage_limits=LimitMode.HARD)
    xs, values = enumerate_first_stages(problem)
    draws = np.arange(problem.n_scenarios)
    expected = values @ problem.probability
    feasible = np.isfinite(expected)
    assert 0 < feasible.sum() < len(xs)
    optimum = float(expected[feasible].min())
    start = xs[np.flatnonzero(feasible)[-1]]
    res = l_shaped_bound(problem, draws, seeds=[start], options=EXACT)
    assert _below(res.lower_bound, optimum) and res.converged
    assert res.lower_bound == pytest.approx(optimum, rel=1e-6)
    with pytest.raises(LShapedError, match="infeasible at every seed"):
        l_shaped_bound(problem, draws, seeds=[xs[np.flatnonzero(~feasible)[0]]], options=EXACT)


def test_integer_recourse_is_refused():
    with pytest.raises(UnsupportedProblemError, match=r"integer L-shaped.*integer recourse"):
        l_shaped_bound(Startup(), [0, 1], seeds=[np.array([1.0])])


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow)])
def test_paired_estimate_of_the_bounds_against_enumerated_batch_optima(seed):
    """Every LB_k ≤ the enumerated optimum z*_k of its batch, so G_k ≥ Û_k(x̂) − z*_k ≥ 0;
    Û_k is the candidate's exact value on batch k, recomputed here independently."""
    problem, rng = _random_problem(seed, n_scenarios=6)
    xs, values = enumerate_first_stages(problem)
    candidate = evaluate_first_stage(problem, xs[rng.integers(len(xs))], desc=None)
    b = spar_statistical_bounds(
        problem,
        SPARConfig(seed=seed, max_iterations=10, polish_rounds=1),
        batch_size=4,
        n_replications=3,
        ef_options=EXACT,
        lagrangian=False,
        batch_ef=False,
        candidate=candidate,
    )
    assert b.lower_sources == (LowerBoundSource.L_SHAPED,) * 3
    assert b.paired is not None
    for k, draw in enumerate(b.draws):
        z_k = _batch_optimum(values, problem, draw)
        assert _below(b.lower_samples[k], z_k), (b.lower_samples[k], z_k)
        u_k = evaluate_first_stage(problem, candidate.x, scenarios=draw, desc=None)
        assert b.paired.candidate_batch_values[k] == pytest.approx(
            u_k.expected_objective, rel=1e-12
        )
        assert b.paired.samples[k] >= u_k.expected_objective - z_k - TOL * (1 + abs(z_k))
        assert b.paired.samples[k] >= -TOL * (1 + abs(z_k))
    assert b.gap_estimate == b.paired.upper >= b.paired.mean
    assert b.gap_estimate_pct == pytest.approx(
        100 * b.gap_estimate / candidate.expected_objective, rel=1e-12
    )
    # without a candidate: no paired estimate, the interval gap as before
    plain = spar_statistical_bounds(
        problem,
        SPARConfig(seed=seed, max_iterations=10, polish_rounds=1),
        batch_size=4,
        n_replications=3,
        ef_options=EXACT,
        lagrangian=False,
        batch_ef=False,
    )
    assert plain.paired is None and np.isnan(plain.gap_estimate)
    np.testing.assert_array_equal(plain.lower_samples, b.lower_samples)
