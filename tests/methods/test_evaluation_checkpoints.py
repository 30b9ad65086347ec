"""The exact evaluations of SPAR (repair, polish, final) and PH (final) checkpointed in blocks:
interrupted during them and resumed, the methods give exactly the uninterrupted run's result
and solve only the scenarios of the blocks that were not saved.

Reference: the same run without interruption, with the same checkpoints (so the same block
structure); the number of recourse solves of a run that only evaluates (iterations finished).
"""

from __future__ import annotations

import numpy as np
import pytest
from test_extensive_form import tiny_problem as ph_problem

from checkpoint_cases import Interrupt, InterruptAfterSaves
from gridrecourse.checkpointing import MemoryCheckpoint
from gridrecourse.evaluation.resumable import DEFAULT_BLOCKS, StoredEvaluations, block_ranges
from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging
from gridrecourse.methods.spar import SPARConfig, solve_spar
from gridrecourse.solvers.options import SolverOptions
from siting_cases import tiny_problem, tiny_scenarios

RNG = np.random.default_rng(5)
N = 20
SCENARIOS = tiny_scenarios(
    RNG.uniform(0.3, 1.4, (N, 3)), RNG.uniform(0.0, 0.9, (N, 3)), np.full(N, 1.0 / N)
)
EVALUATION_FIELDS = ("objectives", "feasible", "linking_duals", "subgradients", "penalties")


def assert_same_evaluation(a, b) -> None:
    for name in EVALUATION_FIELDS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.expected_objective == b.expected_objective


def test_spar_interrupted_in_its_evaluations_resumes_them(count_solves):
    prob = tiny_problem(scenarios=SCENARIOS)
    config = SPARConfig(seed=3, max_iterations=8, polish_rounds=3)
    run = dict(checkpoint_every=5)
    evals = MemoryCheckpoint()
    reference = solve_spar(
        prob, config, checkpoint=MemoryCheckpoint(), **run, evaluation_checkpoint=evals
    )
    assert reference.evaluation_reused_scenarios == 0
    assert len(evals.load().blocks) == 4  # the learned decision and three polish steps
    # a run that only evaluates (learning finished): the solves the evaluations need
    iterations = MemoryCheckpoint()
    with pytest.raises(Interrupt):
        solve_spar(
            prob, config, checkpoint=iterations, **run, evaluation_checkpoint=InterruptAfterSaves(1)
        )
    count_solves.clear()
    full = solve_spar(
        prob, config, checkpoint=iterations, **run, evaluation_checkpoint=MemoryCheckpoint()
    )
    n_evaluation_solves = len(count_solves)
    assert full.objective == reference.objective
    # interrupted in the middle of the evaluations, resumed
    k = evals.saves // 2 + 1
    store = InterruptAfterSaves(k)
    iterations = MemoryCheckpoint()
    with pytest.raises(Interrupt):
        solve_spar(prob, config, checkpoint=iterations, **run, evaluation_checkpoint=store)
    saved = store.load()
    assert isinstance(saved, StoredEvaluations) and saved.n_finished_blocks == k
    count_solves.clear()
    resumed = solve_spar(prob, config, checkpoint=iterations, **run, evaluation_checkpoint=store)
    # the finished evaluations and the saved blocks of the interrupted one
    blocks = block_ranges(N, DEFAULT_BLOCKS)
    done, part = divmod(k, len(blocks))
    expected = done * N + (blocks[part - 1][1] if part else 0)
    assert 0 < part and resumed.evaluation_reused_scenarios == expected
    assert len(count_solves) == n_evaluation_solves - resumed.evaluation_reused_scenarios
    assert tuple(resumed.decision.units) == tuple(reference.decision.units)
    assert resumed.objective == reference.objective
    assert resumed.polish_objectives == reference.polish_objectives
    assert resumed.estimated_objective == reference.estimated_objective
    assert_same_evaluation(resumed.evaluation, reference.evaluation)


def test_ph_interrupted_in_its_final_evaluation_resumes_it(count_solves):
    prob = ph_problem()
    config = PHConfig(rho=1.0)
    options = SolverOptions(mip_gap=1e-9)
    reference = solve_progressive_hedging(
        prob, config, options=options, evaluation_checkpoint=MemoryCheckpoint()
    )
    n = prob.n_scenarios
    assert n >= 3
    iterations, store = MemoryCheckpoint(), InterruptAfterSaves(2)
    with pytest.raises(Interrupt):
        solve_progressive_hedging(
            prob, config, options=options, checkpoint=iterations, evaluation_checkpoint=store
        )
    assert iterations.load().finished
    count_solves.clear()
    resumed = solve_progressive_hedging(
        prob, config, options=options, checkpoint=iterations, evaluation_checkpoint=store
    )
    reused = resumed.evaluation_reused_scenarios
    assert reused == 2 * (n // 16 or 1) and len(count_solves) == n - reused
    np.testing.assert_array_equal(resumed.x, reference.x)
    assert resumed.objective == reference.objective
    assert_same_evaluation(resumed.evaluation, reference.evaluation)
