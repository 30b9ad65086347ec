"""SPAR's declaration of a separable integer first stage (problems.separable)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gridrecourse.problems.base import (
    ConstraintBlockSpec,
    FeasibilityCut,
    FirstStageSpec,
    ProblemSpecError,
    SecondStageSpec,
    VariableBlockSpec,
)
from gridrecourse.problems.separable import SeparableFirstStage

M = 3


def first_stage(extra: bool = False) -> FirstStageSpec:
    variables = [
        VariableBlockSpec("n", M, ub=np.array([4.0, 2.0, 4.0]), integer=True),
        VariableBlockSpec("s", M, ub=1.0, integer=True),
    ]
    if extra:
        variables.append(VariableBlockSpec("z", 1))
    ones = sp.csr_matrix(np.ones((1, M)))
    return FirstStageSpec(tuple(variables), (ConstraintBlockSpec("cap", (("n", ones),), ub=5.0),))


def test_embed_restrict_and_slopes_follow_the_block_positions():
    decl = SeparableFirstStage(first_stage(), "n", "s")
    assert decl.n_elements == M and decl.levels == 4
    np.testing.assert_array_equal(decl.upper, [4, 2, 4])
    x = decl.embed(np.array([2, 0, 1]))
    np.testing.assert_array_equal(x, [2, 0, 1, 1, 0, 1])
    np.testing.assert_array_equal(decl.embed([1, 1, 0], [1, 1, 1]), [1, 1, 0, 1, 1, 1])
    g = np.arange(12.0).reshape(2, 6)
    np.testing.assert_array_equal(decl.argument_slopes(g), g[:, :M])
    cut = decl.restrict_cut(FeasibilityCut(4, np.array([1.0, 2.0, 3.0, 0.0, 0.0, 0.0]), 2.0))
    np.testing.assert_array_equal(cut.coefficients, [1.0, 2.0, 3.0])
    assert (cut.scenario, cut.rhs) == (4, 2.0)
    a_n, a_s, _, ub = decl.row_matrices()  # default: the first stage's rows
    assert a_n.toarray().tolist() == [[1.0, 1.0, 1.0]] and a_s.nnz == 0 and ub[0] == 5.0


def test_declaration_is_validated():
    with pytest.raises(ProblemSpecError, match="neither the argument"):
        SeparableFirstStage(first_stage(extra=True), "n", "s")
    with pytest.raises(ProblemSpecError, match="no first-stage block"):
        SeparableFirstStage(first_stage(), "units", "s")
    continuous = FirstStageSpec((VariableBlockSpec("n", M, ub=4.0),), ())
    with pytest.raises(ProblemSpecError, match="must be integer"):
        SeparableFirstStage(continuous, "n")
    other = ConstraintBlockSpec("other", (("q", sp.csr_matrix(np.ones((1, M)))),), ub=1.0)
    with pytest.raises(ProblemSpecError, match="refers to"):
        SeparableFirstStage(first_stage(), "n", "s", rows=(other,))
    wide = FirstStageSpec(
        (
            VariableBlockSpec("n", M, ub=4.0, integer=True),
            VariableBlockSpec("s", M, ub=2.0, integer=True),
        ),
        (),
    )
    with pytest.raises(ProblemSpecError, match="binary"):
        SeparableFirstStage(wide, "n", "s")


def test_recourse_on_the_indicator_is_rejected():
    decl = SeparableFirstStage(first_stage(), "n", "s")
    y = (VariableBlockSpec("y", 1),)
    c = (ConstraintBlockSpec("link", (("y", sp.csr_matrix([[1.0]])),), ub=0.0),)
    fine = SecondStageSpec(y, c, "link", sp.csr_matrix([[1.0, 0, 0, 0, 0, 0]]))
    decl.check(fine)
    bad = SecondStageSpec(y, c, "link", sp.csr_matrix([[1.0, 0, 0, 0, 2.0, 0]]))
    with pytest.raises(ProblemSpecError, match="indicator block 's'"):
        decl.check(bad)
