"""Lagrangian (scenario-decomposition) lower bounds of a two-stage program (METHODS §2).

Relaxing nonanticipativity ``x_ω = x`` with multipliers ``w_ω`` that satisfy
``Σ_ω π_ω w_ω = 0`` gives, for ANY such ``w`` (Carøe & Schultz 1999; mpi-sppy's Lagrangian
spoke)::

    L(w) = Σ_ω π_ω min_x { cᵀx + Q_ω(x) + w_ωᵀx : first-stage rows, bounds, integrality }
         ≤ min_x { cᵀx + Σ_ω π_ω Q_ω(x) } = z*                                         (L1)

because at a common ``x`` the terms ``Σ_ω π_ω w_ωᵀx = 0`` vanish. Each term is the one-scenario
extensive form (PH's subproblem without the proximal term); we add **HiGHS's MIP dual bound** of
every term, never its incumbent, so ``L(w)`` is a valid bound also when a subproblem stops at its
gap or time limit. Quadratic recourse uses the EF's tangent planes, which only lower ``L``.
``w = 0`` is the wait-and-see bound.

Multipliers (our choices):

* from **progressive hedging** (``PHConfig.lagrangian``): the ``w`` of each PH iteration;
* from **subgradients at a first stage** ``x̂`` (e.g. a SPAR decision), one round of solves:
  ``w_ω = ḡ − g_ω`` with ``g_ω = ∂Q_ω(x̂)`` (the linking duals of the exact evaluation) and
  ``ḡ = Σ π_ω g_ω``. Then every scenario sees ``Q_ω(x) + w_ωᵀx ≈ Q_ω(x̂) + ḡᵀ(x − x̂)``
  near ``x̂``: the slope of the expected recourse, as in the full problem, so the scenario
  optima stay near ``x̂`` instead of each scenario's perfect-information siting.

The multipliers are re-centred (``w ← w − Σ π w``) before use, so (L1) holds to round-off.

References
----------
C. C. Carøe and R. Schultz, "Dual decomposition in stochastic integer programming", Oper. Res.
Lett. 24, 37–45, 1999. Gade et al., "Obtaining lower bounds from the progressive hedging
algorithm for stochastic mixed-integer programs", Math. Program. 157, 47–67, 2016.
"""

from __future__ import annotations

from gridrecourse.methods.progressive_hedging import (
    LagrangianBound,
    LagrangianError,
    lagrangian_bound,
    subgradient_multipliers,
)

__all__ = [
    "LagrangianBound",
    "LagrangianError",
    "lagrangian_bound",
    "subgradient_multipliers",
]
