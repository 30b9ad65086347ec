"""The first stage as SPAR sees it: integer levels with a separable value function (METHODS §3).

SPAR (paper C) learns ``V(n) ≈ c + Σ_i v_i(n_i)`` over the integer levels ``n_i ∈ {0..L_i}`` of
one first-stage block and solves ``min Σ_i v_i(n_i)`` subject to first-stage rows over ``n`` and
an optional block of binary indicators ``s`` (``s_i = 1`` when element ``i`` is active: a sited
bus, a built unit …). A problem that declares a :class:`SeparableFirstStage` (its
``separable_first_stage`` property) can be solved by SPAR, whatever the physics::

    first stage   x = [n, s]                  (no other first-stage blocks)
    rows          lb ≤ A_n n + A_s s ≤ ub     (``rows``; default: the first stage's rows)
    slopes        ĝ_ω = (∂Q/∂x)[n]            (the technology matrices touch n only)
    cuts          αᵀx ≥ β  →  α[n]ᵀ n ≥ β      (α[s] = 0 because T touches n only)

For PV siting (:class:`~gridrecourse.problems.siting.PVSitingProblem`) ``n`` are the PV units
per candidate bus, ``s`` the siting binaries and the rows paper C's (38)–(40).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gridrecourse.problems.base import (
    ConstraintBlockSpec,
    FeasibilityCut,
    FirstStageSpec,
    ProblemSpecError,
    SecondStageSpec,
)

__all__ = ["SeparableFirstStage"]

#: Relative size below which a technology or cut coefficient counts as zero.
_ZERO = 1e-12


@dataclass(frozen=True, eq=False)
class SeparableFirstStage:
    """Declaration of a first stage whose expected recourse SPAR learns as separable.

    Attributes
    ----------
    first_stage : FirstStageSpec
        The problem's first stage; its blocks must be ``argument`` and (optionally)
        ``indicator`` only.
    argument : str
        Integer block ``n`` (lower bound 0, integer upper bounds ``L_i``): the arguments of the
        separable value function.
    indicator : str, optional
        Binary block ``s`` of the same size (``None``: no indicators).
    rows : tuple of ConstraintBlockSpec, optional
        First-stage rows SPAR's MILP enforces, over ``argument`` and ``indicator`` only
        (budget, cardinality, size coupling). ``None``: all rows of ``first_stage``. A problem
        may give an equivalent, differently scaled form here (siting: the budget in $).
    """

    first_stage: FirstStageSpec
    argument: str
    indicator: str | None = None
    rows: tuple[ConstraintBlockSpec, ...] | None = None

    def __post_init__(self) -> None:
        fs = self.first_stage
        allowed = {self.argument} | ({self.indicator} if self.indicator else set())
        blocks = {v.name: v for v in fs.variables}
        if self.argument not in blocks:
            raise ProblemSpecError(
                f"separable first stage: no first-stage block {self.argument!r} "
                f"(known: {list(blocks)})"
            )
        others = [name for name in blocks if name not in allowed]
        if others:
            raise ProblemSpecError(
                f"separable first stage: blocks {others} are neither the argument "
                f"{self.argument!r} nor the indicator {self.indicator!r}"
            )
        n = blocks[self.argument]
        if not n.integer or np.any(n.lb != 0) or not np.all(np.isfinite(n.ub)):
            raise ProblemSpecError(
                f"separable first stage: argument block {self.argument!r} must be integer with "
                "lower bound 0 and finite upper bounds"
            )
        if np.any(n.ub != np.round(n.ub)) or np.any(n.ub < 1):
            raise ProblemSpecError(
                f"separable first stage: upper bounds of {self.argument!r} must be integers >= 1"
            )
        if self.indicator is not None:
            s = blocks.get(self.indicator)
            if s is None or s.size != n.size or not s.integer:
                raise ProblemSpecError(
                    f"separable first stage: indicator {self.indicator!r} must be an integer "
                    f"block of {n.size} columns"
                )
            if np.any(s.lb != 0) or np.any(s.ub != 1):
                raise ProblemSpecError(
                    f"separable first stage: indicator {self.indicator!r} must be binary"
                )
        rows = fs.constraints if self.rows is None else tuple(self.rows)
        object.__setattr__(self, "rows", rows)
        for c in rows:
            bad = [name for name, _ in c.terms if name not in allowed]
            if bad:
                raise ProblemSpecError(
                    f"separable first stage: row block {c.name!r} refers to {bad}, not to "
                    f"{sorted(allowed)}"
                )
            for _, m in c.terms:
                if m.shape[1] != n.size:
                    raise ProblemSpecError(
                        f"separable first stage: row block {c.name!r} has {m.shape[1]} columns "
                        f"per block, the argument has {n.size}"
                    )

    @property
    def n_elements(self) -> int:
        """Number of separable arguments ``m``."""
        return (
            self.first_stage.slice(self.argument).stop - self.first_stage.slice(self.argument).start
        )

    @property
    def upper(self) -> np.ndarray:
        """``L_i``, the largest level of each element (int), shape (m,)."""
        block = next(v for v in self.first_stage.variables if v.name == self.argument)
        return np.rint(block.ub).astype(np.int64)

    @property
    def levels(self) -> int:
        """``L = max_i L_i``: slopes per element of the value function."""
        return int(self.upper.max())

    def row_matrices(self) -> tuple[sp.csr_matrix, sp.csr_matrix, np.ndarray, np.ndarray]:
        """``(A_n, A_s, lb, ub)`` of :attr:`rows` (``A_s`` has no columns without indicator)."""
        m = self.n_elements
        k = int(sum(c.size for c in self.rows or ()))
        a_n = sp.csr_matrix((k, m))
        a_s = sp.csr_matrix((k, m if self.indicator else 0))
        if not self.rows:
            return a_n, a_s, np.zeros(0), np.zeros(0)
        parts_n, parts_s = [], []
        for c in self.rows:
            terms = dict(c.terms)
            parts_n.append(terms.get(self.argument, sp.csr_matrix((c.size, m))))
            if self.indicator:
                parts_s.append(terms.get(self.indicator, sp.csr_matrix((c.size, m))))
        a_n = sp.vstack(parts_n, format="csr")
        if self.indicator:
            a_s = sp.vstack(parts_s, format="csr")
        lb = np.concatenate([c.lb for c in self.rows])
        ub = np.concatenate([c.ub for c in self.rows])
        return a_n, a_s, lb, ub

    def embed(self, levels: np.ndarray, active: np.ndarray | None = None) -> np.ndarray:
        """The first-stage vector ``x`` of levels ``n`` (and indicators; default ``s = n > 0``).

        Raises
        ------
        ProblemSpecError
            ``levels`` or ``active`` of the wrong size.
        """
        n = np.asarray(levels, dtype=float).ravel()
        m = self.n_elements
        if n.shape != (m,):
            raise ProblemSpecError(f"levels must have {m} entries, got {n.shape}")
        x = np.zeros(self.first_stage.size)
        x[self.first_stage.slice(self.argument)] = n
        if self.indicator is not None:
            s = (n > 0) if active is None or np.size(active) == 0 else np.asarray(active, bool)
            if s.shape != (m,):
                raise ProblemSpecError(f"indicators must have {m} entries, got {s.shape}")
            x[self.first_stage.slice(self.indicator)] = s.astype(float)
        return x

    def argument_slopes(self, subgradient: np.ndarray) -> np.ndarray:
        """``∂Q/∂n``: the argument entries of a subgradient ``∂Q/∂x`` (last axis)."""
        return np.asarray(subgradient)[..., self.first_stage.slice(self.argument)]

    def restrict_cut(self, cut: FeasibilityCut) -> FeasibilityCut:
        """The cut ``αᵀx ≥ β`` as a cut on ``n`` (``α[s]`` must vanish, see :meth:`check`)."""
        return FeasibilityCut(cut.scenario, self.argument_slopes(cut.coefficients), cut.rhs)

    def check(self, second_stage: SecondStageSpec) -> None:
        """Check that the recourse depends on ``x`` through ``n`` only (separability premise).

        Raises
        ------
        ProblemSpecError
            A technology matrix has entries on the indicator columns.
        """
        t = second_stage.technology.tocsc()
        if self.indicator is None:
            return
        cols = t[:, self.first_stage.slice(self.indicator)]
        scale = max(float(np.abs(t.data).max(initial=0.0)), 1.0)
        if cols.nnz and float(np.abs(cols.data).max()) > _ZERO * scale:
            raise ProblemSpecError(
                f"separable first stage: the technology matrix has entries on the indicator "
                f"block {self.indicator!r}; the recourse must depend on {self.argument!r} only"
            )

    def describe(self) -> str:
        """Short text for messages: sizes and row blocks."""
        names = [c.name for c in self.rows or ()]
        return (
            f"{self.n_elements} elements of {self.argument!r} (levels 0..{self.levels}), "
            f"rows {names}"
        )
