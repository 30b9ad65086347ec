"""SPAR's iteration checkpoints: a run interrupted after iteration k and resumed from its
checkpoint gives exactly the uninterrupted run's decision, objective, slopes and history.

Reference: the same run without interruption (same seed, same checkpoint interval). The tiny
feeder with hard voltage limits exercises feasibility cuts across a checkpoint; case33bw (a real
feeder, degenerate recourse LPs) the rebuild of the models at every checkpoint.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from checkpoint_cases import Interrupt, InterruptAfterSaves
from gridrecourse.checkpointing import MemoryCheckpoint
from gridrecourse.execution import TaskFailedError
from gridrecourse.formulation.limits import LimitMode
from gridrecourse.methods.spar import (
    SPARConfig,
    SPARConfigError,
    SPARState,
    solve_spar,
    spar_statistical_bounds,
)
from siting_cases import tiny_problem

#: SPARIteration fields that are wall times (differ between any two runs).
TIMES = ("first_stage_seconds", "second_stage_seconds", "update_seconds")


def interrupt_after(k: int):
    def hook(record):
        if record.iteration == k:
            raise Interrupt(f"after iteration {k}")

    return hook


def history_rows(result) -> list[tuple]:
    rows = []
    for h in result.history:
        values = []
        for name, value in vars(h).items():
            if name in TIMES:
                continue
            if isinstance(value, np.ndarray):
                value = tuple(value.tolist())
            elif isinstance(value, float) and math.isnan(value):
                value = "nan"
            values.append((name, value))
        rows.append(tuple(values))
    return rows


def assert_same_run(resumed, reference) -> None:
    assert tuple(resumed.decision.units) == tuple(reference.decision.units)
    assert resumed.objective == reference.objective  # exact, not approx
    assert resumed.estimated_objective == reference.estimated_objective
    assert resumed.stop_reason is reference.stop_reason
    assert resumed.iterations == reference.iterations
    assert history_rows(resumed) == history_rows(reference)
    np.testing.assert_array_equal(resumed.slopes, reference.slopes)
    np.testing.assert_array_equal(resumed.visits, reference.visits)
    assert len(resumed.cuts) == len(reference.cuts)
    for a, b in zip(resumed.cuts, reference.cuts, strict=True):
        np.testing.assert_array_equal(a.coefficients, b.coefficients)
        assert a.rhs == b.rhs
    assert resumed.polish_objectives == reference.polish_objectives


def run_interrupted_then_resumed(problem, config, k: int, every: int):
    store = MemoryCheckpoint()
    with pytest.raises(Interrupt):
        solve_spar(
            problem,
            config,
            checkpoint=store,
            checkpoint_every=every,
            on_iteration=interrupt_after(k),
        )
    state = store.load()
    assert isinstance(state, SPARState) and not state.finished
    assert state.iteration == (k - 1) // every * every  # the last checkpoint before k
    return solve_spar(problem, config, checkpoint=store, checkpoint_every=every), state


def test_resumed_run_equals_uninterrupted_with_feasibility_cuts():
    prob = tiny_problem(load_scale=1.46, voltage_limits=LimitMode.HARD)
    config = SPARConfig(seed=0, max_iterations=40, exploration_iterations=6, polish_rounds=2)
    reference = solve_spar(prob, config, checkpoint=MemoryCheckpoint(), checkpoint_every=4)
    assert reference.n_cuts >= 1 and reference.resumed_at == 0
    first_cut = next(h.iteration for h in reference.history if h.cuts_added)
    k = first_cut + 5  # interrupt after a cut was added: the cut must survive the resume
    assert k < reference.iterations
    resumed, state = run_interrupted_then_resumed(prob, config, k, every=4)
    assert resumed.resumed_at == state.iteration >= first_cut
    assert_same_run(resumed, reference)


@pytest.mark.slow
def test_resumed_run_equals_uninterrupted_on_case33bw():
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, TapSetting

    feeder = resolve_feeder_spec("case33bw")
    prob = PVSitingProblem.from_feeder(feeder, 48, SitingConfig(), seed=1, taps=TapSetting.NEUTRAL)
    config = SPARConfig(seed=3, max_iterations=45, tolerance=0.0, polish_rounds=3)
    reference = solve_spar(prob, config, checkpoint=MemoryCheckpoint(), checkpoint_every=10)
    assert reference.iterations == 45  # tolerance 0: the loop runs to the cap
    resumed, state = run_interrupted_then_resumed(prob, config, 27, every=10)
    assert resumed.resumed_at == state.iteration == 20
    assert_same_run(resumed, reference)


def test_resume_after_the_loop_skips_the_iterations(monkeypatch):
    prob = tiny_problem()
    config = SPARConfig(seed=1, max_iterations=12, polish_rounds=1)
    store = MemoryCheckpoint()
    reference = solve_spar(prob, config, checkpoint=store, checkpoint_every=5)
    state = store.load()
    assert state.finished and state.iteration == reference.iterations
    assert store.saves == 2 + 1  # before iterations 6 and 11, and at the end
    calls = []
    resumed = solve_spar(
        prob, config, checkpoint=store, checkpoint_every=5, on_iteration=calls.append
    )
    assert calls == []  # no iteration ran again
    assert resumed.resumed_at == reference.iterations
    assert_same_run(resumed, reference)


def test_checkpoint_of_other_settings_is_refused():
    prob = tiny_problem()
    store = MemoryCheckpoint()
    config = SPARConfig(seed=1, max_iterations=6)
    solve_spar(prob, config, checkpoint=store, checkpoint_every=2)
    with pytest.raises(SPARConfigError, match="other settings"):
        solve_spar(prob, replace(config, seed=2), checkpoint=store)
    with pytest.raises(SPARConfigError, match="scenario selection"):
        solve_spar(prob, config, checkpoint=store, scenarios=[0, 1, 2])
    with pytest.raises(SPARConfigError, match="checkpoint_every"):
        solve_spar(prob, config, checkpoint=MemoryCheckpoint(), checkpoint_every=0)


def test_bounds_resume_reuses_finished_replications():
    """Interrupted as the 3rd of the 2K = 6 replication tasks ends (before it is saved): the
    resumed bounds reuse the 2 saved SPAR runs and equal the uninterrupted bounds."""
    prob = tiny_problem()
    config = SPARConfig(seed=4, max_iterations=15, polish_rounds=1)
    settings = dict(batch_size=4, n_replications=3, lagrangian=False)
    reference = spar_statistical_bounds(prob, config, **settings)

    def interrupt_at_third(done, total):
        if done == 3:
            raise Interrupt("during replication task 3")

    store = MemoryCheckpoint()
    with pytest.raises(Interrupt):
        spar_statistical_bounds(
            prob, config, **settings, checkpoint=store, progress=interrupt_at_third
        )
    assert store.load().n_finished == 2
    resumed = spar_statistical_bounds(prob, config, **settings, checkpoint=store)
    assert resumed.reused_replications == 2 and reference.reused_replications == 0
    assert store.load().n_finished == 6
    np.testing.assert_array_equal(resumed.upper_samples, reference.upper_samples)
    np.testing.assert_array_equal(resumed.lower_samples, reference.lower_samples)
    np.testing.assert_array_equal(resumed.units, reference.units)
    assert resumed.gap == reference.gap
    with pytest.raises(SPARConfigError, match="other settings"):
        spar_statistical_bounds(prob, replace(config, seed=5), **settings, checkpoint=store)


class _InterruptInLShaped(MemoryCheckpoint):
    """Bounds checkpoint whose replication ``part`` stops right after its first L-shaped
    checkpoint was written (Ctrl-C inside the replication)."""

    def __init__(self, part: str):
        super().__init__()
        self._children[part] = InterruptAfterSaves(1)


@pytest.mark.slow
def test_bounds_resume_inside_an_l_shaped_loop_equals_uninterrupted():
    """case33bw: the first replication's L-shaped loop is interrupted after its first
    checkpoint; the resumed bounds run finds that loop's state, resumes it, and its samples
    equal those of an uninterrupted run with the same checkpoints."""
    from gridrecourse.methods.l_shaped import LShapedConfig, LShapedState
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, TapSetting

    feeder = resolve_feeder_spec("case33bw")
    prob = PVSitingProblem.from_feeder(feeder, 24, SitingConfig(), seed=1, taps=TapSetting.NEUTRAL)
    config = SPARConfig(seed=2, max_iterations=4, polish_rounds=0)
    settings = dict(
        batch_size=12,
        n_replications=2,
        lagrangian=False,
        batch_ef=False,
        l_shaped_config=LShapedConfig(adaptive_gap=0.0, checkpoint_every=1),
    )
    reference = spar_statistical_bounds(prob, config, **settings, checkpoint=MemoryCheckpoint())
    store = _InterruptInLShaped("l-shaped-0")
    with pytest.raises(TaskFailedError) as failed:  # the executor names the failed task
        spar_statistical_bounds(prob, config, **settings, checkpoint=store)
    assert isinstance(failed.value.__cause__, Interrupt)
    inner = store.child("l-shaped-0")
    state = inner.load()
    assert isinstance(state, LShapedState) and len(state.history) == 1
    assert store.load().n_finished == 2  # the SPAR replications, no lower bound yet
    resumed = spar_statistical_bounds(prob, config, **settings, checkpoint=store)
    assert inner.saves > 1  # the resumed loop went on from its checkpoint and saved again
    np.testing.assert_array_equal(resumed.lower_samples, reference.lower_samples)
    np.testing.assert_array_equal(resumed.upper_samples, reference.upper_samples)
    iterations = [[p.iterations for p in rep] for rep in reference.lower_provenance]
    assert iterations[0][0] > 1  # the interrupted loop had more to do
    assert [[p.iterations for p in rep] for rep in resumed.lower_provenance] == iterations
