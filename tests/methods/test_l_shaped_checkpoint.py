"""The integer L-shaped loop's checkpoints: a loop interrupted right after a checkpoint and
resumed from it gives exactly the uninterrupted loop's bounds, point and history.

Reference: the same loop without interruption (same checkpoint interval: both continue from a
rebuilt master and cold recourse models at every checkpoint). case33bw, 48 scenarios, a batch
of 24 draws seeded at "no PV": five master solves, checkpoints before iterations 3 and 5.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from checkpoint_cases import Interrupt, InterruptAfterSaves
from gridrecourse.checkpointing import MemoryCheckpoint
from gridrecourse.methods.l_shaped import (
    LShapedConfig,
    LShapedError,
    LShapedState,
    l_shaped_bound,
)

#: LShapedIteration fields that are wall times.
TIMES = ("master_seconds", "evaluation_seconds")
CONFIG = LShapedConfig(adaptive_gap=0.0, checkpoint_every=2)


@pytest.fixture(scope="module")
def batch():
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, TapSetting

    feeder = resolve_feeder_spec("case33bw")
    prob = PVSitingProblem.from_feeder(feeder, 48, SitingConfig(), seed=1, taps=TapSetting.NEUTRAL)
    draws = np.random.default_rng(0).integers(0, 48, size=24)
    return prob, draws, np.zeros(prob.first_stage.size)


def rows(result) -> list[tuple]:
    out = []
    for it in result.history:
        values = tuple(
            (k, "nan" if isinstance(v, float) and math.isnan(v) else v)
            for k, v in vars(it).items()
            if k not in TIMES
        )
        out.append(values)
    return out


def assert_same(a, b) -> None:
    assert a.lower_bound == b.lower_bound and a.upper_bound == b.upper_bound  # exact
    assert np.array_equal(a.x, b.x)
    assert a.stop is b.stop and a.converged == b.converged
    assert (a.n_optimality_cuts, a.n_feasibility_cuts) == (
        b.n_optimality_cuts,
        b.n_feasibility_cuts,
    )
    assert a.provenance.n_subproblems == b.provenance.n_subproblems
    assert rows(a) == rows(b)


@pytest.mark.parametrize("k", [1, 2])
def test_loop_interrupted_after_checkpoint_k_and_resumed_equals_uninterrupted(batch, k):
    prob, draws, seed = batch
    store = MemoryCheckpoint()
    reference = l_shaped_bound(prob, draws, seeds=[seed], config=CONFIG, checkpoint=store)
    assert len(reference.history) == 5 and store.saves == 2  # before iterations 3 and 5
    assert reference.converged

    cut = InterruptAfterSaves(k)
    with pytest.raises(Interrupt):
        l_shaped_bound(prob, draws, seeds=[seed], config=CONFIG, checkpoint=cut)
    state = cut.load()
    assert isinstance(state, LShapedState) and len(state.history) == 2 * k
    resumed = l_shaped_bound(prob, draws, seeds=[seed], config=CONFIG, checkpoint=cut)
    assert_same(resumed, reference)
    assert cut.saves == 2  # the resumed loop saves only the checkpoints after its start


def test_checkpoints_do_not_change_the_bound_of_a_loop(batch):
    prob, draws, seed = batch
    plain = l_shaped_bound(prob, draws, seeds=[seed], config=CONFIG)
    every = replace(CONFIG, checkpoint_every=1)
    stored = l_shaped_bound(prob, draws, seeds=[seed], config=every, checkpoint=MemoryCheckpoint())
    # rebuilt masters and cold recourse may take another path; both converge to the batch optimum
    assert plain.converged and stored.converged
    assert stored.lower_bound == pytest.approx(plain.lower_bound, rel=1e-6)
    assert stored.upper_bound == pytest.approx(plain.upper_bound, rel=1e-9)


def test_checkpoint_of_another_batch_or_setting_is_refused(batch):
    prob, draws, seed = batch
    store = MemoryCheckpoint()
    l_shaped_bound(prob, draws, seeds=[seed], config=CONFIG, checkpoint=store)
    with pytest.raises(LShapedError, match="another batch"):
        l_shaped_bound(prob, draws[::-1], seeds=[seed], config=CONFIG, checkpoint=store)
    with pytest.raises(LShapedError, match="another batch"):
        l_shaped_bound(
            prob, draws, seeds=[seed], config=replace(CONFIG, rel_gap=1e-5), checkpoint=store
        )
    with pytest.raises(LShapedError, match="checkpoint_every"):
        LShapedConfig(checkpoint_every=0)
