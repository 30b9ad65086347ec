"""Solver-independent options (mapped to each solver's own names)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class SolverOptions:
    """Options every solver backend understands.

    Attributes
    ----------
    time_limit : float or None
        Wall-clock limit in seconds.
    mip_gap : float
        Relative MIP gap at which to stop (ignored for LPs).
    threads : int or None
        Solver threads (None: solver default).
    verbose : bool
        Print the solver log.
    relax_integrality : bool
        Solve the continuous relaxation of a MIP (HiGHS ``solve_relaxation``); its optimum is
        then a lower bound of the MIP's (minimization) and is reported as the dual bound.
    """

    time_limit: float | None = None
    mip_gap: float = 1e-4
    threads: int | None = None
    verbose: bool = False
    relax_integrality: bool = False
