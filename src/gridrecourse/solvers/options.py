"""Solver-independent options (mapped to each solver's own names)."""

from __future__ import annotations

import math
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
    mip_abs_gap : float
        Absolute MIP gap at which to stop, in the objective's units (HiGHS ``mip_abs_gap``).
    mip_feasibility_tolerance : float or None
        Integrality and row feasibility tolerance of MIP solves (HiGHS
        ``mip_feasibility_tolerance``; None: the solver's default, 1e-6 for HiGHS). At the
        default HiGHS has ended "optimal" on a Volt-VAR EF with a bound above a feasible point
        of the same model, and a tighter tolerance removed it (the audit and its figures:
        ``benchmarks/voltvar_bound_audit.py``, ``benchmarks/results/voltvar``).
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
    mip_abs_gap: float = 1e-6
    mip_feasibility_tolerance: float | None = None
    threads: int | None = None
    verbose: bool = False
    relax_integrality: bool = False


def stopping_tolerance(incumbent: float, options: SolverOptions) -> float:
    """How far below its incumbent a MIP solve stopped by ``options`` proves nothing.

    A branch-and-bound solver prunes every node whose bound lies within ``max(mip_abs_gap,
    mip_gap·|incumbent|)`` of the incumbent, so that is the resolution of its dual bound.
    """
    return max(float(options.mip_abs_gap), float(options.mip_gap) * abs(float(incumbent)))


def relative_gap(upper: float, lower: float) -> float:
    """``(upper − lower) / |upper|``, at least 0: inf without an upper value, NaN without a
    lower one."""
    if math.isnan(lower):
        return math.nan
    if not math.isfinite(upper):
        return math.inf
    return max(0.0, upper - lower) / max(abs(upper), 1e-9)
