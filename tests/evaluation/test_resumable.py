"""The blocked, checkpointed exact evaluation (gridrecourse.evaluation.resumable).

References: the plain evaluation (``evaluate_first_stage`` over all scenarios, one chain) for the
blocked one; the uninterrupted blocked evaluation for an interrupted and resumed one; the
number of recourse solves (counted on ``SecondStageModel.solve``) for what a resume redoes.
"""

from __future__ import annotations

import numpy as np
import pytest

from checkpoint_cases import Interrupt, InterruptAfterSaves
from gridrecourse.checkpointing import LoadOnceCheckpoint, MemoryCheckpoint
from gridrecourse.evaluation.out_of_sample import OutOfSampleError, evaluate_first_stage
from gridrecourse.evaluation.resumable import (
    EvaluationCheckpointError,
    StoredEvaluations,
    block_ranges,
    evaluate_first_stage_resumable,
)
from gridrecourse.execution import InProcessExecutor
from gridrecourse.formulation.limits import LimitMode
from siting_cases import tiny_problem, tiny_scenarios

RNG = np.random.default_rng(11)
N = 20
LOAD = RNG.uniform(0.3, 1.5, (N, 3))
PV = RNG.uniform(0.0, 0.9, (N, 3))
PROB = RNG.uniform(0.5, 1.5, N)
PROB = PROB / PROB.sum()

#: OutOfSampleResult fields that are per-scenario arrays (wall times excluded).
ARRAYS = (
    "scenario_indices",
    "probability",
    "objectives",
    "penalties",
    "feasible",
    "linking_duals",
    "subgradients",
    "mip_gaps",
    "dual_bounds",
    "simplex_iterations",  # the same pivots: each block started from the same (cold) model
)


def hard_problem():
    """20 random scenarios on the tiny feeder, hard voltage limits: some are infeasible."""
    return tiny_problem(
        load_scale=1.46, scenarios=tiny_scenarios(LOAD, PV, PROB), voltage_limits=LimitMode.HARD
    )


def feeder_problem(feeder_name: str = "case33bw"):
    """48 scenarios on a real feeder (ieee123: warm re-solves pivot, so the start matters)."""
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, TapSetting

    feeder = resolve_feeder_spec(feeder_name)
    return PVSitingProblem.from_feeder(feeder, 48, SitingConfig(), seed=1, taps=TapSetting.NEUTRAL)


def some_units(problem) -> np.ndarray:
    units = np.zeros(problem.n_sites, dtype=int)
    units[:: max(1, problem.n_sites // 3)] = 1
    return units


def assert_identical(a, b) -> None:
    for name in ARRAYS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)
    assert a.expected_objective == b.expected_objective
    assert a.n_infeasible == b.n_infeasible
    assert len(a.cuts) == len(b.cuts)


@pytest.mark.slow
def test_on_a_process_pool_the_blocked_evaluation_agrees_with_the_plain_one():
    from gridrecourse.execution import ProcessPoolExecutor

    prob = feeder_problem()
    x = prob.first_stage_vector(some_units(prob))
    plain = evaluate_first_stage(prob, x, desc=None)
    with ProcessPoolExecutor(2) as pool:
        store = InterruptAfterSaves(2)
        with pytest.raises(Interrupt):
            evaluate_first_stage_resumable(prob, x, checkpoint=store, executor=pool, n_blocks=4)
        resumed = evaluate_first_stage_resumable(
            prob, x, checkpoint=store, executor=pool, n_blocks=4
        )
    assert resumed.reused_blocks == (0, 1) and resumed.solved_blocks == (2, 3)
    got = resumed.result
    np.testing.assert_array_equal(got.scenario_indices, plain.scenario_indices)
    np.testing.assert_array_equal(got.feasible, plain.feasible)
    np.testing.assert_allclose(got.objectives, plain.objectives, rtol=1e-9, atol=0)
    assert got.expected_objective == pytest.approx(plain.expected_objective, rel=1e-9)


@pytest.mark.parametrize("which", ["tiny-hard", "case33bw"])
def test_blocked_evaluation_equals_the_plain_one(which):
    prob = hard_problem() if which == "tiny-hard" else feeder_problem()
    x = prob.first_stage_vector(some_units(prob))
    scenarios = None if which == "case33bw" else RNG.permutation(N)[:17]
    plain = evaluate_first_stage(prob, x, scenarios=scenarios, desc=None)
    blocked = evaluate_first_stage_resumable(prob, x, scenarios=scenarios, n_blocks=5)
    got = blocked.result
    assert blocked.n_blocks == 5 and blocked.solved_blocks == (0, 1, 2, 3, 4)
    assert blocked.reused_blocks == () and blocked.reused_scenarios == 0
    np.testing.assert_array_equal(got.scenario_indices, plain.scenario_indices)
    np.testing.assert_array_equal(got.probability, plain.probability)
    np.testing.assert_array_equal(got.feasible, plain.feasible)
    assert got.n_infeasible == plain.n_infeasible
    if which == "tiny-hard":
        assert 0 < plain.n_infeasible < 17  # both kinds of scenario are exercised
        assert got.expected_objective == plain.expected_objective == np.inf
        assert [c.scenario for c in got.cuts] == [c.scenario for c in plain.cuts]
    f = plain.feasible
    np.testing.assert_allclose(got.objectives[f], plain.objectives[f], rtol=1e-9, atol=0)
    np.testing.assert_allclose(got.penalties[f], plain.penalties[f], rtol=1e-9, atol=1e-12)
    assert got.expected_penalty == pytest.approx(plain.expected_penalty, rel=1e-9)
    if which == "case33bw":
        assert got.expected_objective == pytest.approx(plain.expected_objective, rel=1e-9)
    for name in ARRAYS:
        assert getattr(got, name).shape == getattr(plain, name).shape, name


@pytest.mark.parametrize("k", [1, 3])
def test_interrupted_evaluation_resumes_with_the_missing_blocks_only(k, count_solves):
    prob = feeder_problem("ieee123")  # warm re-solves pivot: their path depends on the start
    x = prob.first_stage_vector(some_units(prob))
    # one executor throughout, its cached model warm from other first stages (as in SPAR)
    ex = InProcessExecutor()
    evaluate_first_stage(prob, np.zeros_like(x), executor=ex, desc=None)
    reference = evaluate_first_stage_resumable(
        prob, x, checkpoint=MemoryCheckpoint(), n_blocks=4, executor=ex
    ).result
    store = InterruptAfterSaves(k)
    count_solves.clear()
    with pytest.raises(Interrupt):
        evaluate_first_stage_resumable(prob, x, checkpoint=store, n_blocks=4, executor=ex)
    ranges = block_ranges(prob.n_scenarios, 4)
    assert len(count_solves) == ranges[k - 1][1]  # blocks 0..k-1 solved, nothing more
    evaluate_first_stage(prob, 2.0 * x, executor=ex, desc=None)  # the model moves on
    count_solves.clear()
    notes: list[str] = []
    resumed = evaluate_first_stage_resumable(
        prob, x, checkpoint=store, n_blocks=4, note=notes.append, executor=ex
    )
    assert resumed.reused_blocks == tuple(range(k))
    assert resumed.solved_blocks == tuple(range(k, 4))
    assert resumed.reused_scenarios == ranges[k - 1][1]
    assert len(count_solves) == prob.n_scenarios - ranges[k - 1][1]
    assert notes == [
        f"exact evaluation: reused {ranges[k - 1][1]} of 48 scenarios ({k} of 4 blocks) "
        "from the checkpoint"
    ]
    assert_identical(resumed.result, reference)  # exactly, duals included


def test_checkpoint_of_another_first_stage_is_not_reused(count_solves):
    prob = hard_problem()
    units = some_units(prob)
    x1 = prob.first_stage_vector(units)
    x2 = prob.first_stage_vector(units + 1)
    store = MemoryCheckpoint()
    first = evaluate_first_stage_resumable(prob, x1, checkpoint=store, n_blocks=3)
    count_solves.clear()
    notes: list[str] = []
    other = evaluate_first_stage_resumable(
        prob, x2, checkpoint=store, n_blocks=3, note=notes.append
    )
    assert other.reused_blocks == () and len(count_solves) == N
    assert "another first stage" in notes[0]
    assert not np.array_equal(other.result.objectives, first.result.objectives)
    # both stay stored: x1 again is taken whole from the checkpoint, no solve
    count_solves.clear()
    again = evaluate_first_stage_resumable(prob, x1, checkpoint=store, n_blocks=3)
    assert again.reused_blocks == (0, 1, 2) and count_solves == []
    assert_identical(again.result, first.result)
    # another scenario selection or block count is another evaluation
    count_solves.clear()
    evaluate_first_stage_resumable(prob, x1, checkpoint=store, n_blocks=2)
    evaluate_first_stage_resumable(prob, x1, checkpoint=store, n_blocks=3, scenarios=range(10))
    assert len(count_solves) == N + 10


def test_bad_checkpoint_state_and_arguments():
    prob = hard_problem()
    x = prob.first_stage_vector(some_units(prob))
    store = MemoryCheckpoint()
    store.save({"not": "an evaluation"})
    with pytest.raises(EvaluationCheckpointError, match="not StoredEvaluations"):
        evaluate_first_stage_resumable(prob, x, checkpoint=store)
    with pytest.raises(OutOfSampleError, match="n_blocks"):
        evaluate_first_stage_resumable(prob, x, n_blocks=0)
    with pytest.raises(OutOfSampleError, match="shape"):
        evaluate_first_stage_resumable(prob, x[:-1])
    assert StoredEvaluations().n_finished_blocks == 0


def test_block_ranges_partition_the_chain():
    assert block_ranges(10, 3) == [(0, 4), (4, 7), (7, 10)]
    assert block_ranges(2, 16) == [(0, 1), (1, 2)]
    assert block_ranges(0, 4) == []


def test_load_once_checkpoint_reads_its_inner_checkpoint_once():
    loads: list[int] = []

    class Counting(MemoryCheckpoint):
        def load(self):
            loads.append(1)
            return super().load()

    inner = Counting()
    inner.save("first")
    once = LoadOnceCheckpoint(inner)
    assert once.load() == "first" and once.load() == "first" and len(loads) == 1
    once.save("second")
    assert once.load() == "second" and inner.load() == "second" and inner.saves == 2
