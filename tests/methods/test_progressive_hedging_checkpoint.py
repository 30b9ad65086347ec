"""PH's iteration checkpoints: interrupted after iteration k and resumed from its checkpoint,
PH gives exactly the uninterrupted run's multipliers, consensus, history and decision.

Reference: the same run without interruption (same settings and checkpoint interval), on the
5-bus siting problem with a ρ that makes PH cycle to the iteration limit (so many iterations
pass a checkpoint), and with the Lagrangian bound (its subproblems are rebuilt too).
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from test_extensive_form import tiny_problem

from checkpoint_cases import Interrupt
from gridrecourse.checkpointing import MemoryCheckpoint
from gridrecourse.execution import ExecutorKind, make_executor
from gridrecourse.methods.progressive_hedging import (
    PHConfig,
    PHError,
    PHState,
    PHStatus,
    solve_progressive_hedging,
)
from gridrecourse.solvers.options import SolverOptions

OPTIONS = SolverOptions(mip_gap=1e-9)


def rows(result) -> list[tuple]:
    out = []
    for h in result.history:
        bound = "nan" if math.isnan(h.lagrangian_bound) else h.lagrangian_bound
        values = (h.iteration, h.metric, h.deviation, h.expected_objective, h.expected_cost)
        out.append((*values, tuple(h.x_bar.tolist()), h.rho, bound))
    return out


def assert_same_run(resumed, reference) -> None:
    assert rows(resumed) == rows(reference)
    np.testing.assert_array_equal(resumed.x, reference.x)
    np.testing.assert_array_equal(resumed.x_bar, reference.x_bar)
    assert resumed.objective == reference.objective
    assert resumed.status is reference.status
    assert resumed.lower_bound == reference.lower_bound
    assert tuple(resumed.decision.units) == tuple(reference.decision.units)


def interrupted_then_resumed(prob, config, k, every, executor=None):
    store = MemoryCheckpoint()

    def hook(record):
        if record.iteration == k:
            raise Interrupt(f"after iteration {k}")

    with pytest.raises(Interrupt):
        solve_progressive_hedging(
            prob,
            config,
            options=OPTIONS,
            executor=executor,
            on_iteration=hook,
            checkpoint=store,
            checkpoint_every=every,
        )
    state = store.load()
    assert isinstance(state, PHState) and not state.finished
    assert state.next_iteration == k // every * every  # the last checkpoint at or before k
    resumed = solve_progressive_hedging(
        prob, config, options=OPTIONS, executor=executor, checkpoint=store, checkpoint_every=every
    )
    return resumed, state


@pytest.mark.parametrize(
    "config",
    [
        PHConfig(rho=0.003, max_iterations=24),  # cycles to the iteration limit
        PHConfig(rho=0.003, rho_growth=1.2, max_iterations=24, lagrangian=True),
    ],
    ids=["cycling", "escalating-lagrangian"],
)
def test_resumed_ph_equals_uninterrupted(config):
    prob = tiny_problem()
    reference = solve_progressive_hedging(
        prob, config, options=OPTIONS, checkpoint=MemoryCheckpoint(), checkpoint_every=5
    )
    k = min(13, reference.iterations - 1)
    assert k >= 5, "the run must pass a checkpoint before the interrupt"
    resumed, state = interrupted_then_resumed(prob, config, k, every=5)
    assert resumed.resumed_at == state.next_iteration and reference.resumed_at == 0
    assert_same_run(resumed, reference)


def test_resumed_ph_on_a_process_pool_equals_uninterrupted():
    prob = tiny_problem()
    config = PHConfig(rho=0.003, max_iterations=14)
    reference = solve_progressive_hedging(
        prob, config, options=OPTIONS, checkpoint=MemoryCheckpoint(), checkpoint_every=4
    )
    assert reference.status is PHStatus.ITERATION_LIMIT
    with make_executor(ExecutorKind.PROCESS, n_workers=2) as ex:
        resumed, _ = interrupted_then_resumed(prob, config, 9, every=4, executor=ex)
    assert_same_run(resumed, reference)


def test_resume_after_the_loop_and_refusals():
    prob = tiny_problem()
    config = PHConfig(rho=1.0)
    store = MemoryCheckpoint()
    reference = solve_progressive_hedging(prob, config, options=OPTIONS, checkpoint=store)
    assert store.load().finished
    seen = []
    resumed = solve_progressive_hedging(
        prob, config, options=OPTIONS, checkpoint=store, on_iteration=seen.append
    )
    assert seen == [] and resumed.resumed_at == reference.iterations + 1
    assert_same_run(resumed, reference)
    with pytest.raises(PHError, match="other settings"):
        solve_progressive_hedging(prob, replace(config, rho=2.0), checkpoint=store)
    with pytest.raises(PHError, match="other scenarios"):
        solve_progressive_hedging(prob, config, checkpoint=store, scenarios=[0, 1])
    with pytest.raises(PHError, match="checkpoint_every"):
        solve_progressive_hedging(prob, config, checkpoint=store, checkpoint_every=0)
