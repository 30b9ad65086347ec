"""Interrupting a long HiGHS MIP: the exception reaches Python within the grace period, not
when HiGHS finishes (reference: the same MIP runs far longer than the test allows)."""

from __future__ import annotations

import signal
import threading
import time

import numpy as np
import pytest

import gridrecourse.solvers.highs as highs
from gridrecourse.solvers.highs import LinearModel
from gridrecourse.solvers.options import SolverOptions


class Stop(Exception):
    """Raised by the test's signal handler (stands for KeyboardInterrupt)."""


def long_ef():
    """The P1 extensive form on case33bw with 240 scenarios: a MIP whose root LP alone takes
    tens of seconds (measured 20-85 s on 2 shared cores)."""
    from gridrecourse.methods.extensive_form import build_extensive_form
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, TapSetting

    feeder = resolve_feeder_spec("case33bw")
    problem = PVSitingProblem.from_feeder(
        feeder, 240, SitingConfig(), seed=0, taps=TapSetting.NEUTRAL
    )
    return build_extensive_form(problem).model


def small_mip() -> tuple[LinearModel, float]:
    """max x + y, x + 2y <= 3.5, x, y integer in [0, 3]: optimum -3 (x = 3, y = 0)."""
    m = LinearModel("small")
    xy = m.add_variables("xy", 2, lb=0, ub=3, cost=-1.0, integer=True)
    m.add_constraints("row", [(xy, np.array([[1.0, 2.0]]))], ub=3.5)
    return m, -3.0


@pytest.mark.slow
def test_signal_during_a_long_mip_is_raised_within_the_grace_period():
    model = long_ef()

    def raise_stop(signum, frame):
        raise Stop()

    previous = signal.signal(signal.SIGUSR1, raise_stop)
    main = threading.main_thread().ident
    timer = threading.Timer(2.0, lambda: signal.pthread_kill(main, signal.SIGUSR1))
    t0 = time.perf_counter()
    try:
        timer.start()
        with pytest.raises(Stop):
            model.solve(SolverOptions(mip_gap=0.0, time_limit=3000.0))
        waited = time.perf_counter() - t0
    finally:
        timer.cancel()
        signal.signal(signal.SIGUSR1, previous)
    assert waited < 2.0 + highs.INTERRUPT_GRACE + 1.0
    assert model._highs is None  # the interrupted instance is never reused
    # the next solve runs normally (the cancel request was for the interrupted one only)
    m, optimum = small_mip()
    assert m.solve().objective == pytest.approx(optimum)


def test_small_mip_in_its_thread_gives_the_optimum():
    m, optimum = small_mip()
    sol = m.solve()
    assert sol.objective == pytest.approx(optimum)
    np.testing.assert_allclose(sol.x, [3.0, 0.0])
    assert highs.abandoned_solves() == 0
