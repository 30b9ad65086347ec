"""spec_blocks: a LinearModel's blocks as two-stage spec blocks, field by field."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gridrecourse.problems.base import ProblemSpecError
from gridrecourse.problems.spec_blocks import spec_blocks
from gridrecourse.solvers.highs import LinearModel


def _model() -> LinearModel:
    m = LinearModel("toy")
    y = m.add_variables("y", 2, lb=[-1.0, 0.0], ub=[3.0, np.inf], cost=[1.0, 2.0])
    z = m.add_variables("z", 3, ub=1.0, integer=True)
    s = m.add_variables("slack", 2, cost=50.0)
    m.add_quadratic_cost(y, [0.5, 0.0])
    m.add_constraints("rows", [(y, sp.identity(2)), (s, -sp.identity(2))], ub=[4.0, 5.0])
    m.add_constraints("pick", [(z, np.ones((1, 3)))], lb=1.0, ub=1.0)
    m.set_row_bounds(m.constraints["rows"], -np.inf, [6.0, 7.0])  # bounds as last set
    return m


def test_every_field_is_carried_over_in_model_order():
    m = _model()
    blocks = spec_blocks(
        m, penalty=(m.variables["slack"], None), quadratic_range={"y": (-np.ones(2), np.ones(2))}
    )
    y, z, slack = blocks.variables
    assert [v.name for v in blocks.variables] == ["y", "z", "slack"]
    np.testing.assert_array_equal(y.lb, [-1.0, 0.0])
    np.testing.assert_array_equal(y.ub, [3.0, np.inf])
    np.testing.assert_array_equal(y.cost, [1.0, 2.0])
    np.testing.assert_array_equal(y.quadratic, [0.5, 0.0])
    np.testing.assert_array_equal(y.quadratic_range[1], [1.0, 1.0])
    assert z.integer and not y.integer and z.quadratic is None
    assert slack.penalty and not y.penalty
    rows, pick = blocks.constraints
    assert [name for name, _ in rows.terms] == ["y", "slack"]
    np.testing.assert_array_equal(rows.terms[1][1].toarray(), -np.eye(2))
    np.testing.assert_array_equal(rows.ub, [6.0, 7.0])
    np.testing.assert_array_equal(pick.lb, [1.0])


def test_unknown_marks_are_rejected():
    other = LinearModel("other").add_variables("elsewhere", 1)
    with pytest.raises(ProblemSpecError, match="elsewhere"):
        spec_blocks(_model(), penalty=(other,))
    with pytest.raises(ProblemSpecError, match="nope"):
        spec_blocks(_model(), quadratic_range={"nope": (np.zeros(1), np.ones(1))})
