"""Every method refuses a problem it cannot handle, before building anything, and says why."""

from __future__ import annotations

import numpy as np
import pytest

from contract_cases import Dispatch, Startup
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging
from gridrecourse.methods.spar import SPARConfig, solve_spar, spar_statistical_bounds
from gridrecourse.problems.capabilities import UnsupportedProblemError
from gridrecourse.solvers.options import SolverOptions

EXACT = SolverOptions(mip_gap=1e-9)


def test_spar_refuses_integer_recourse():
    with pytest.raises(UnsupportedProblemError, match=r"SPAR.*'startup-toy'.*integer recourse"):
        solve_spar(Startup(), SPARConfig(max_iterations=2))


def test_spar_refuses_a_problem_without_separable_first_stage():
    with pytest.raises(UnsupportedProblemError, match=r"SPAR.*'dispatch-toy'.*SeparableFirstStage"):
        solve_spar(Dispatch(), SPARConfig(max_iterations=2))
    with pytest.raises(UnsupportedProblemError, match=r"SPAR.*SeparableFirstStage"):
        spar_statistical_bounds(Dispatch(), batch_size=2, n_replications=2)


def test_ph_refuses_integer_recourse():
    with pytest.raises(UnsupportedProblemError, match=r"progressive hedging.*integer recourse"):
        solve_progressive_hedging(Startup(), PHConfig(max_iterations=2))


def test_evaluator_refuses_miqp_recourse_that_the_extensive_form_solves():
    prob = Startup(quadratic=True)
    with pytest.raises(UnsupportedProblemError, match=r"exact evaluator.*\(MIQP\)"):
        evaluate_first_stage(prob, np.array([1.0]), desc=None)
    with pytest.raises(UnsupportedProblemError, match="exact evaluator"):
        prob.build_second_stage()
    ef = solve_extensive_form(prob, EXACT)  # tangent planes: an MILP
    assert ef.tangents is not None and np.isfinite(ef.objective)
