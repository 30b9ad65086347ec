"""One scenario's recourse built with the formulation blocks, as two-stage spec blocks.

The formulation layer writes into a :class:`~gridrecourse.solvers.highs.LinearModel`; the
two-stage contract (:mod:`gridrecourse.problems.base`) declares the recourse as
:class:`VariableBlockSpec`/:class:`ConstraintBlockSpec` tuples so that methods can stack it over
scenarios (``kron(I_S, W)``), move ``S_ω T x`` into the linking rows and tangent-plane the
quadratic costs. :func:`spec_blocks` turns the first into the second, block by block and in
model order, so a problem builds its network rows once, with the same blocks as every other
problem, and the contract stays declarative.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from gridrecourse.problems.base import ConstraintBlockSpec, ProblemSpecError, VariableBlockSpec
from gridrecourse.solvers.highs import LinearModel, VariableBlock

__all__ = ["SpecBlocks", "spec_blocks"]


@dataclass(frozen=True, eq=False)
class SpecBlocks:
    """Variable and constraint specs of one model, in model order."""

    variables: tuple[VariableBlockSpec, ...]
    constraints: tuple[ConstraintBlockSpec, ...]


def spec_blocks(
    model: LinearModel,
    *,
    penalty: Iterable[VariableBlock | None] = (),
    quadratic_range: Mapping[str, tuple[np.ndarray, np.ndarray]] | None = None,
) -> SpecBlocks:
    """Every block of ``model`` as a spec: bounds, costs, integrality, quadratic diagonal, rows.

    Parameters
    ----------
    model : LinearModel
        One scenario's recourse at nominal data (row bounds become the specs' nominal bounds).
    penalty : iterable of VariableBlock or None
        Blocks whose linear cost is a soft-limit penalty (``VariableBlockSpec.penalty``), e.g.
        the ``over``/``under`` slacks of a voltage band and the thermal ``overload``; ``None``
        entries (limits that are hard or off) are skipped.
    quadratic_range : mapping of str to (ndarray, ndarray), optional
        ``(lo, hi)`` per column of blocks with a quadratic cost (the range the extensive
        form's tangent planes cover).

    Returns
    -------
    SpecBlocks

    Raises
    ------
    ProblemSpecError
        A block with mixed integer and continuous columns, or a penalty/range for a block the
        model does not have.
    """
    ranges = dict(quadratic_range or {})
    marked = {block.name for block in penalty if block is not None}
    unknown = (marked | set(ranges)) - set(model.variables)
    if unknown:
        raise ProblemSpecError(
            f"spec_blocks: blocks {sorted(unknown)} are not in model {model.name!r}"
        )
    variables = []
    for name, block in model.variables.items():
        cols = model.columns(block)
        if cols.integer.any() and not cols.integer.all():
            raise ProblemSpecError(
                f"spec_blocks: block {name!r} mixes integer and continuous columns"
            )
        quadratic = cols.quadratic if np.any(cols.quadratic > 0) else None
        variables.append(
            VariableBlockSpec(
                name,
                block.size,
                lb=cols.lb,
                ub=cols.ub,
                cost=cols.cost,
                quadratic=quadratic,
                quadratic_range=ranges.get(name),
                integer=bool(cols.integer.all()) and block.size > 0,
                penalty=name in marked,
            )
        )
    constraints = []
    for name, block in model.constraints.items():
        rows = model.rows(block)
        terms = tuple((var.name, matrix) for var, matrix in rows.terms)
        constraints.append(ConstraintBlockSpec(name, terms, lb=rows.lb, ub=rows.ub))
    return SpecBlocks(tuple(variables), tuple(constraints))
