"""Paper C's siting and sizing settings D1 (eqs. 37–40; METHODS.md §3).

::

    G_min s_i ≤ g n_i ≤ G_max s_i      ∀i          (38)   [kW]
    Σ_i c_DG g n_i ≤ budget                        (39)   [$]
    N_min ≤ Σ_i s_i ≤ N_max                        (40)
    n_i ∈ {0..L} integer, s_i ∈ {0, 1}

:class:`SitingBudget` holds the numbers; :meth:`SitingBudget.rows` writes the rows over the
first-stage blocks ``pv-units`` (n) and ``pv-sited`` (s).

Note (paper C's D1 as written): with ``G_min = 0`` a site may be "sited" (``s_i = 1``) with zero
units, which satisfies ``N_min`` at no cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import InfeasibleModelError
from gridrecourse.problems.base import ConstraintBlockSpec, ProblemSpecError

__all__ = ["SITED", "UNITS", "SitingBudget", "SitingBudgetError", "SitingInfeasibleError"]

#: First-stage block of the PV units ``n`` per candidate bus.
UNITS = "pv-units"
#: First-stage block of the siting binaries ``s``.
SITED = "pv-sited"


class SitingBudgetError(ProblemSpecError):
    """Invalid siting settings (the message names the field)."""


class SitingInfeasibleError(InfeasibleModelError):
    """The siting settings alone admit no siting (too few sites, budget too small …)."""


@dataclass(frozen=True)
class SitingBudget:
    """Settings of paper C's first stage D1 (defaults: METHODS.md §3, partly our choice).

    Attributes
    ----------
    unit_kw : float, default 10
        ``g``, rating of one PV unit [kW].
    max_units : int, default 100
        ``L``, largest number of units at one site.
    cost_per_kw : float, default 1000
        ``c_DG``, installed cost [$/kW].
    budget : float, default 1.5e6
        Total investment budget [$] (paper C: $1500k).
    min_sites, max_sites : int, default 1 and 20
        ``N_min``, ``N_max``: bounds on the number of sited buses.
    min_kw : float, default 0
        ``G_min``, smallest installed size at a sited bus [kW].
    max_kw : float or None, default None
        ``G_max``, largest installed size at a sited bus [kW]; None means ``unit_kw · max_units``.
    """

    unit_kw: float = 10.0
    max_units: int = 100
    cost_per_kw: float = 1000.0
    budget: float = 1.5e6
    min_sites: int = 1
    max_sites: int = 20
    min_kw: float = 0.0
    max_kw: float | None = None

    def __post_init__(self) -> None:
        def bad(msg: str) -> SitingBudgetError:
            return SitingBudgetError(f"SitingBudget: {msg}")

        for name in ("unit_kw", "cost_per_kw", "budget", "min_kw"):
            value = getattr(self, name)
            if not math.isfinite(value) or value < 0:
                raise bad(f"{name} must be finite and nonnegative, got {value!r}")
        if self.unit_kw <= 0:
            raise bad(f"unit_kw must be positive, got {self.unit_kw!r}")
        if int(self.max_units) != self.max_units or self.max_units < 1:
            raise bad(f"max_units must be an integer >= 1, got {self.max_units!r}")
        if int(self.min_sites) != self.min_sites or int(self.max_sites) != self.max_sites:
            raise bad("min_sites and max_sites must be integers")
        if not 0 <= self.min_sites <= self.max_sites:
            raise bad(f"need 0 <= min_sites <= max_sites, got {self.min_sites}, {self.max_sites}")
        if self.max_kw is not None and (not math.isfinite(self.max_kw) or self.max_kw <= 0):
            raise bad(f"max_kw must be positive and finite, got {self.max_kw!r}")
        if self.min_kw > self.g_max_kw:
            raise bad(f"min_kw = {self.min_kw} kW exceeds the largest site size {self.g_max_kw} kW")

    @property
    def g_max_kw(self) -> float:
        """``G_max`` [kW] (``unit_kw · max_units`` when ``max_kw`` is None)."""
        return float(self.unit_kw * self.max_units if self.max_kw is None else self.max_kw)

    @property
    def unit_cost(self) -> float:
        """Cost of one unit, ``c · g`` [$]."""
        return float(self.cost_per_kw * self.unit_kw)

    def check_sites(self, n_sites: int) -> None:
        """Raise when (38)–(40) alone admit no siting over ``n_sites`` candidates.

        Raises
        ------
        SitingInfeasibleError
            Too few candidates for ``min_sites``, no integer unit count in
            ``[min_kw, max_kw]``, or a budget that cannot pay for ``min_sites`` sites of
            ``min_kw`` (the message names the setting).
        """
        if self.min_sites > n_sites:
            raise SitingInfeasibleError(
                f"min_sites = {self.min_sites} exceeds the number of candidate sites {n_sites}"
            )
        min_units = math.ceil(self.min_kw / self.unit_kw - 1e-9)
        max_units = min(self.max_units, math.floor(self.g_max_kw / self.unit_kw + 1e-9))
        if self.min_sites > 0 and min_units > max_units:
            raise SitingInfeasibleError(
                f"no integer number of {self.unit_kw} kW units lies in [min_kw, max_kw] = "
                f"[{self.min_kw}, {self.g_max_kw}] kW, but min_sites = {self.min_sites}"
            )
        need = self.min_sites * min_units * self.unit_cost
        if need > self.budget * (1 + 1e-12):
            raise SitingInfeasibleError(
                f"budget ${self.budget:,.0f} cannot pay for min_sites = {self.min_sites} sites of "
                f"min_kw = {self.min_kw} kW (needs ${need:,.0f})"
            )

    def rows(
        self, n_sites: int, *, budget_in_units: bool = True
    ) -> tuple[ConstraintBlockSpec, ...]:
        """Paper C's D1 rows (38)–(40) over blocks ``pv-units`` (n) and ``pv-sited`` (s).

        Parameters
        ----------
        n_sites : int
        budget_in_units : bool, default True
            Write (39) divided by ``c_DG g`` (``Σ n_i ≤ budget / (c_DG g)`` [units], well
            scaled; the extensive form's row) or as in paper C (``Σ c_DG g n_i ≤ budget`` [$],
            SPAR's first-stage row).
        """
        m = int(n_sites)
        eye = sp.identity(m, format="csr")
        ones = sp.csr_matrix(np.ones((1, m)))
        budget = (
            ConstraintBlockSpec("pv-budget", ((UNITS, ones),), ub=self.budget / self.unit_cost)
            if budget_in_units
            else ConstraintBlockSpec("pv-budget", ((UNITS, self.unit_cost * ones),), ub=self.budget)
        )
        return (
            ConstraintBlockSpec(
                "pv-size_min", ((UNITS, self.unit_kw * eye), (SITED, -self.min_kw * eye)), lb=0.0
            ),
            ConstraintBlockSpec(
                "pv-size_max", ((UNITS, self.unit_kw * eye), (SITED, -self.g_max_kw * eye)), ub=0.0
            ),
            budget,
            ConstraintBlockSpec(
                "pv-site_count",
                ((SITED, ones),),
                lb=float(self.min_sites),
                ub=float(self.max_sites),
            ),
        )
