"""Every lower bound is below the enumerated optimum and every upper bound above it (issue 14).

On the tiny 5-bus siting instance with random scenarios (50 seeds: random loads, PV and
probabilities), the optimum is found by enumerating every first stage that D1 admits and
solving every scenario's recourse exactly. Then, for each seed:

* lower bounds ≤ optimum: the EF's MIP dual bound; PH's wait-and-see bound and the Lagrangian
  bound (L1) of every PH iteration; the Lagrangian bound at the subgradients of a random
  feasible first stage and of the EF's; every SAA lower-bound sample ≤ the optimum of ITS
  batch (enumerated with the batch weights; i.i.d. batches for odd seeds, stratified ones with
  the EF decision's values as key for even seeds), and every candidate behind it (batch EF,
  Lagrangian, integer L-shaped); the paired gap samples of the EF decision ≥ its batch value −
  the batch optimum;
* upper bounds ≥ optimum: the exact value of the EF, PH and SPAR decisions and every SAA
  upper-bound sample.

A bound that is not one is the worst bug a certificate can have: the tolerance is the solver's
(1e-7 relative), not loosened.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.evaluation.batch_sampling import BatchSampling
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.methods.lagrangian import lagrangian_bound, subgradient_multipliers
from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging
from gridrecourse.methods.spar import SPARConfig, spar_statistical_bounds
from siting_cases import EXACT, enumerate_first_stages, tiny_problem, tiny_scenarios

SEEDS = range(50)
#: Solver tolerance of a comparison against the enumerated optimum (relative, plus absolute).
TOL = 1e-7


def _random_problem(seed: int):
    rng = np.random.default_rng(seed)
    s = 4
    load = rng.uniform(0.3, 1.2, size=(s, 3))
    pv = rng.uniform(0.0, 1.0, size=(s, 3)) * (rng.uniform(size=(s, 1)) < 0.8)
    prob = rng.dirichlet(np.ones(s))
    return tiny_problem(scenarios=tiny_scenarios(load, pv, prob)), rng


def _below(bound: float, optimum: float) -> bool:
    return bound <= optimum + TOL * (1.0 + abs(optimum))


def _above(value: float, optimum: float) -> bool:
    return value >= optimum - TOL * (1.0 + abs(optimum))


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_bounds_bracket_the_enumerated_optimum(seed: int) -> None:
    problem, rng = _random_problem(seed)
    xs, values = enumerate_first_stages(problem)
    prob = problem.probability
    optimum = float((values @ prob).min())

    ef = solve_extensive_form(problem, EXACT)
    assert _below(ef.bound, optimum), (ef.bound, optimum)
    ef_exact = evaluate_first_stage(problem, ef.x, desc=None)
    assert _above(ef_exact.expected_objective, optimum)

    rho = float(rng.choice([1e-3, 1e-2, 1.0]))
    ph = solve_progressive_hedging(
        problem, PHConfig(rho=rho, max_iterations=3, lagrangian=True), options=EXACT
    )
    assert _above(ph.objective, optimum), (ph.objective, optimum)
    for it in ph.history:
        assert _below(it.lagrangian_bound, optimum), (it.iteration, it.lagrangian_bound, optimum)
    assert _below(ph.lower_bound, optimum)
    assert ph.bound_provenance is not None and ph.bound_provenance.value == ph.lower_bound

    for x in (xs[rng.integers(len(xs))], ef.x):
        ev = evaluate_first_stage(problem, x, desc=None)
        w = subgradient_multipliers(ev.subgradients, ev.probability)
        lb = lagrangian_bound(problem, w, options=EXACT, origin="subgradients")
        assert _below(lb.value, optimum), (lb.value, optimum)
        assert lb.value <= ev.expected_objective + TOL * (1 + abs(optimum))

    b = spar_statistical_bounds(
        problem,
        SPARConfig(seed=seed, max_iterations=15),
        batch_size=3,
        n_replications=2,
        ef_options=EXACT,
        candidate=ef_exact,
        sampling=BatchSampling.STRATIFIED if seed % 2 == 0 else BatchSampling.IID,
    )
    assert b.paired is not None
    for upper in b.upper_samples:
        assert _above(upper, optimum), (upper, optimum)
    batches = zip(b.draws, b.weights, b.lower_samples, b.lower_provenance, strict=True)
    for draw, w, lower, provenance in batches:
        weights = np.bincount(draw, weights=w, minlength=len(prob))
        batch_optimum = float((values @ (weights / weights.sum())).min())
        assert _below(lower, batch_optimum), (lower, batch_optimum)
        for candidate in provenance:  # every candidate, not only the chosen one
            assert _below(candidate.value, batch_optimum), (candidate, batch_optimum)
    # paired gap of the EF decision: G_k ≥ its batch value − the batch optimum
    for k, (draw, w) in enumerate(zip(b.draws, b.weights, strict=True)):
        weights = np.bincount(draw, weights=w, minlength=len(prob))
        batch_optimum = float((values @ (weights / weights.sum())).min())
        ef_value = ef_exact.objectives @ (weights / weights.sum()) + problem.first_stage.cost @ ef.x
        gap_k = ef_value - batch_optimum
        assert b.paired.samples[k] >= gap_k - TOL * (1.0 + abs(batch_optimum))
