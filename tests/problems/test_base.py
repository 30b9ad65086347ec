"""Second-stage recovery when HiGHS's QP solver fails (problems.base)."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError, SolverError, SolverTimeLimitError
from gridrecourse.problems import base
from gridrecourse.problems.siting import SitingObjective
from gridrecourse.solvers.highs import LinearModel
from siting_cases import tiny_problem


def test_failed_warm_qp_is_retried_cold_then_by_cutting_planes(monkeypatch):
    prob = tiny_problem(SitingObjective.LOSSES)
    x = prob.first_stage_vector(np.array([1, 0, 1]))
    reference = prob.build_second_stage().solve(x, 2)
    original = LinearModel.solve
    failures = {"left": 1}

    def flaky(self, options=None):
        if self.is_quadratic and failures["left"] > 0:
            failures["left"] -= 1
            raise SolverError("simulated QP failure")
        return original(self, options)

    monkeypatch.setattr(LinearModel, "solve", flaky)
    model = prob.build_second_stage()
    cold = model.solve(x, 2)  # warm attempt fails, the cold retry succeeds
    assert cold.objective == pytest.approx(reference.objective, rel=1e-9)
    assert cold.subgradient == pytest.approx(reference.subgradient, rel=1e-6, abs=1e-9)
    failures["left"] = 2  # warm and cold fail: Kelley's cutting planes on the tangent LP
    planes = model.solve(x, 2)
    assert planes.objective == pytest.approx(reference.objective, rel=1e-5)


def test_cutting_planes_stop_at_the_lp_tolerance_floor(monkeypatch):
    """With an unattainable gap target the fallback stops once its bound stalls (not an error)."""
    prob = tiny_problem(SitingObjective.LOSSES)
    x = prob.first_stage_vector(np.array([1, 0, 1]))
    model = prob.build_second_stage()
    reference = model.solve(x, 2)
    lb, ub, _ = model._bounds(x, 2)
    monkeypatch.setattr(base, "_QP_FALLBACK_TOLERANCE", -1.0)  # the gap test can never pass
    planes = model._qp_by_cutting_planes(lb, ub, None)
    assert planes.objective + model.spec.objective_offset == pytest.approx(
        reference.objective, rel=1e-6
    )
    monkeypatch.setattr(base, "_QP_FALLBACK_STALL_TOLERANCE", -1.0)  # nor the stalled one
    with pytest.raises(SolverError, match="did not converge"):
        model._qp_by_cutting_planes(lb, ub, None)


class _FlakyRelaxation:
    """A stand-in for the feasibility relaxation: its solves raise the given errors in turn."""

    def __init__(self, *outcomes: Exception | None):
        self.outcomes = list(outcomes)
        self.resets = 0

    def solve(self, options):
        outcome = self.outcomes.pop(0)
        if outcome is not None:
            raise outcome

    def reset(self):
        self.resets += 1


@pytest.mark.parametrize(
    ("outcomes", "has_ray_model", "resets"),
    [
        ((None,), True, 0),  # solved: its ray (if any) is read
        ((InfeasibleModelError("infeasible"),), True, 0),  # the expected case: a ray
        ((SolverError("status Unknown"), None), True, 1),  # warm start failed: cold retry
        ((SolverError("status Unknown"), SolverError("status Unknown")), False, 1),  # no cut
        ((SolverTimeLimitError("time"),), False, 0),
    ],
)
def test_a_failed_feasibility_relaxation_loses_the_cut_not_the_evaluation(
    outcomes, has_ray_model, resets
):
    """IEEE 123 Volt-VAR: the MILP proved a scenario infeasible and HiGHS then ended the LP
    relaxation (for a feasibility cut) with status "Unknown": the whole exact evaluation
    failed. Now only the cut is lost: the scenario is reported infeasible."""
    model = _FlakyRelaxation(*outcomes)
    got = base._solve_for_ray(model, None)
    assert (got is model) == has_ray_model and (got is None) == (not has_ray_model)
    assert model.resets == resets
