"""Imprecise-Dirichlet ambiguity sets and confidence-level uncertainty sets (paper D, METHODS §6).

**IDM band** (paper D eqs 15–22). For one uncertain quantity with ``n`` samples, let ``n*(x)``
be the number of samples ``≤ x`` (the cumulative count). With credibility ``γ`` and total prior
strength ``s`` the imprecise Dirichlet model bounds the cumulative probability ``F(x)`` by
(eq 20)::

    θ̲(m) = V⁻¹((1 − γ)/2),  V = Beta(m, s + n − m)      (θ̲(0) = 0)
    θ̄(m) = W⁻¹((1 + γ)/2),  W = Beta(s + m, n − m)      (θ̄(n) = 1)

at ``m = n*(x)``. Between samples the band is a step function (eq 21): the lower bound keeps the
value of the sample on its left, ``F̲(x) = θ̲(n*(x))``; the upper bound takes the value of the
next sample, so that any mass of that sample may lie anywhere in the gap. The ambiguity set
(eq 22) is every CDF between the two steps.

**Confidence-level set** (eqs 13, 23–26). ``U(α)`` is the shortest interval ``[a, b]`` whose
worst-case probability over the band is at least ``α``. The CVaR argument of eqs 23–25 picks the
worst-case distribution as the *upper* CDF below the interval (the most mass that can fall short
of ``a``: downside risk) and the *lower* CDF at its top (the most mass that can exceed ``b``:
upside risk), so the worst-case probability is::

    P_wc([a, b]) = F̲(b) − F̄(a⁻) = θ̲(n*(b)) − θ̄(n*(a⁻)),

``n*(a⁻)`` the count of samples strictly below ``a``: the probability of falling short of ``a``
is bounded by eq 20 at the count below ``a``. (Eq 21's smoothing of the upper step, used for the
band itself, would charge the whole mass of the sample at ``a`` to the region below it; then a
quantity that is always 0 — PV at night — would get no set at all, since ``{0}`` would have
worst-case probability ``θ̲(n) − 1 < 0``. With the count below ``a``, ``{0}`` has
``θ̲(n) − θ̄(0) ≈ 1 − 7.4/n`` at γ = 0.95, s = 1.) Both steps only change at sample points, so
the shortest interval has sample points at both ends.

**How the set is computed: exact search over the step CDF, not the paper's PLA-MILP.** Paper D
linearizes the CDFs with breakpoints (eqs 27–28) and solves a MILP per ``α``. The band is a
step function with ``n + 1`` levels, so the exact optimum is found by enumeration: for each
candidate lower end (a sample point) the smallest upper end with ``θ̲(n*(b)) ≥ α + θ̄(n*(a⁻))``
is one binary search on the nondecreasing ``θ̲``; the shortest of these ``n`` intervals is
``U(α)``. That is ``O(n log n)`` per series, exact (no breakpoint error, no MIP gap), vectorized
over all series (hours × sources) at once, and cross-checked against brute force over all pairs
of sample points in ``tests/uncertainty/test_ambiguity.py``. Ties in length go to the larger
worst-case probability, then the lower interval.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from gridrecourse.errors import GridRecourseError

__all__ = [
    "MIN_SAMPLES",
    "AmbiguityInputError",
    "ConfidenceSet",
    "IDMBand",
    "idm_band",
    "idm_levels",
]

#: Fewest samples per series for which a band is built.
MIN_SAMPLES = 2


class AmbiguityInputError(GridRecourseError, ValueError):
    """Samples, γ, s or α outside their domain, or α beyond what the samples can support."""


def _check_unit(name: str, value: float) -> float:
    v = float(value)
    if not 0.0 < v < 1.0:
        raise AmbiguityInputError(f"{name} must lie in (0, 1), got {value}")
    return v


def idm_levels(
    n: int, gamma: float = 0.95, prior_strength: float = 1.0
) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper IDM bounds of ``F`` for every cumulative count ``m = 0..n`` (eq 20).

    Parameters
    ----------
    n : int
        Number of samples (>= :data:`MIN_SAMPLES`).
    gamma : float
        Credibility γ in (0, 1).
    prior_strength : float
        Total prior strength s > 0 (paper D: 1).

    Returns
    -------
    lower, upper : ndarray, shape (n + 1,)
        ``θ̲(m)`` and ``θ̄(m)``, dimensionless probabilities, nondecreasing in ``m``.
    """
    gamma = _check_unit("gamma (credibility)", gamma)
    s = float(prior_strength)
    if not (np.isfinite(s) and s > 0):
        raise AmbiguityInputError(f"prior strength s must be > 0, got {prior_strength}")
    n = int(n)
    if n < MIN_SAMPLES:
        raise AmbiguityInputError(
            f"an IDM band needs at least {MIN_SAMPLES} samples per series, got {n}"
        )
    m = np.arange(n + 1, dtype=float)
    lower = np.zeros(n + 1)
    upper = np.ones(n + 1)
    lower[1:] = beta.ppf((1.0 - gamma) / 2.0, m[1:], s + n - m[1:])
    upper[:-1] = beta.ppf((1.0 + gamma) / 2.0, s + m[:-1], n - m[:-1])
    return lower, upper


@dataclass(frozen=True, eq=False)
class ConfidenceSet:
    """``U(α)`` of every series (eq 26).

    Attributes
    ----------
    alpha : float
        Required worst-case probability α.
    lower, upper : ndarray, shape (R,)
        Interval ends (units of the samples).
    probability : ndarray, shape (R,)
        Worst-case probability ``θ̲(n*(b)) − θ̄(n*(a⁻))`` of each interval (>= α).
    """

    alpha: float
    lower: np.ndarray
    upper: np.ndarray
    probability: np.ndarray

    @property
    def length(self) -> np.ndarray:
        """``upper − lower`` per series."""
        return self.upper - self.lower


@dataclass(frozen=True, eq=False)
class IDMBand:
    """IDM cumulative-probability band of ``R`` series with ``n`` samples each (eqs 20–22).

    Attributes
    ----------
    values : ndarray, shape (R, n)
        Samples of each series, sorted ascending.
    count_le, count_lt : ndarray of int, shape (R, n)
        Samples ``≤`` / ``<`` each sorted value (equal values share their counts).
    level_lower, level_upper : ndarray, shape (n + 1,)
        ``θ̲(m)``, ``θ̄(m)`` for ``m = 0..n`` (:func:`idm_levels`).
    gamma, prior_strength : float
    """

    values: np.ndarray
    count_le: np.ndarray
    count_lt: np.ndarray
    level_lower: np.ndarray
    level_upper: np.ndarray
    gamma: float
    prior_strength: float

    @property
    def n_samples(self) -> int:
        """Samples per series n."""
        return self.values.shape[1]

    @property
    def lower_at_samples(self) -> np.ndarray:
        """``θ̲(n*_k)`` at each sorted sample, shape (R, n)."""
        return self.level_lower[self.count_le]

    @property
    def upper_at_samples(self) -> np.ndarray:
        """``θ̄(n*_k)`` at each sorted sample, shape (R, n)."""
        return self.level_upper[self.count_le]

    def cdf_bounds(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Lower and upper cumulative probability at points ``x`` (eq 21 interpolation).

        Parameters
        ----------
        x : ndarray, shape (R, P)
            Points per series (units of the samples).

        Returns
        -------
        lower, upper : ndarray, shape (R, P)
            ``F̲(x) = θ̲(n*(x))``; ``F̄(x) = θ̄(n*(x))`` at sample points and the value of the
            next sample between samples and below the smallest (eq 21), 1 above the largest.
        """
        x = np.asarray(x, dtype=float)
        le = _count(self.values, x, "right")
        lt = _count(self.values, x, "left")
        # between samples (no sample at x) the upper step takes the next sample's value
        at_sample = le > lt
        nxt = np.where(at_sample, le, _next_count(self.values, x, lt))
        return self.level_lower[le], self.level_upper[nxt]

    def worst_case_probability(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """``θ̲(n*(b)) − θ̄(n*(a⁻))`` for intervals ``[a, b]`` per series, shape (R, P)."""
        le_b = _count(self.values, np.asarray(b, dtype=float), "right")
        lt_a = _count(self.values, np.asarray(a, dtype=float), "left")
        return self.level_lower[le_b] - self.level_upper[lt_a]

    @property
    def max_alpha(self) -> np.ndarray:
        """Largest worst-case probability any interval reaches, per series (R,)."""
        return self.level_lower[-1] - self.level_upper[self.count_lt[:, 0]]

    def interval(self, alpha: float) -> ConfidenceSet:
        """Shortest interval with worst-case probability ``>= alpha`` per series (eq 26).

        Exact search over the step CDF (module docstring), vectorized over the series.

        Raises
        ------
        AmbiguityInputError
            ``alpha`` not in (0, 1), or larger than :attr:`max_alpha` of some series (the
            message gives the largest reachable value and the sample count).
        """
        alpha = _check_unit("alpha (confidence level)", alpha)
        reach = self.max_alpha
        if np.any(reach < alpha - 1e-12):
            raise AmbiguityInputError(
                f"alpha = {alpha} exceeds the largest worst-case probability "
                f"{float(reach.min()):.4f} that {self.n_samples} samples support "
                f"(γ = {self.gamma}, s = {self.prior_strength}); use more samples or a smaller α"
            )
        r, n = self.values.shape
        need = alpha + self.level_upper[self.count_lt] - 1e-12  # (R, n): θ̲ needed at b
        lower_b = self.level_lower[self.count_le]  # (R, n), nondecreasing along a row
        # one global searchsorted: offset every row by 2·row so rows do not mix
        offset = 2.0 * np.arange(r)[:, None]
        flat = (lower_b + offset).ravel()
        pos = np.searchsorted(flat, (need + offset).ravel(), side="left").reshape(r, n)
        j = pos - n * np.arange(r)[:, None]
        ok = j < n
        j_safe = np.minimum(j, n - 1)
        rows = np.arange(r)[:, None]
        length = np.where(ok, self.values[rows, j_safe] - self.values, np.inf)
        prob = np.where(ok, lower_b[rows, j_safe] - self.level_upper[self.count_lt], -np.inf)
        # shortest; ties: larger probability, then lower interval (lexsort: last key first)
        order = np.lexsort((np.arange(n)[None, :].repeat(r, 0), -prob, length), axis=1)
        best = order[:, 0]
        idx = np.arange(r)
        jb = j_safe[idx, best]
        return ConfidenceSet(
            alpha=alpha,
            lower=self.values[idx, best].copy(),
            upper=self.values[idx, jb].copy(),
            probability=prob[idx, best].copy(),
        )


def _count(values: np.ndarray, x: np.ndarray, side: str) -> np.ndarray:
    """Samples ``≤ x`` (side='right') or ``< x`` (side='left') per row, shape (R, P).

    One global ``searchsorted`` over all rows: row ``i`` is shifted by ``i`` times a span
    larger than the range of the data and the points, so rows never mix.
    """
    r, n = values.shape
    x2 = np.asarray(x, dtype=float).reshape(r, -1)
    lo = min(float(values.min()), float(x2.min()))
    hi = max(float(values.max()), float(x2.max()))
    span = 2.0 * (hi - lo) + 1.0
    offset = span * np.arange(r)[:, None]
    flat = (values - lo + offset).ravel()
    pos = np.searchsorted(flat, (x2 - lo + offset).ravel(), side=side).reshape(x2.shape)
    return pos - n * np.arange(r)[:, None]


def _next_count(values: np.ndarray, x: np.ndarray, lt: np.ndarray) -> np.ndarray:
    """Cumulative count at the first sample above ``x`` (``n`` above the largest sample)."""
    r, n = values.shape
    rows = np.arange(r)[:, None]
    nxt_value = values[rows, np.minimum(lt, n - 1)]
    return np.where(lt < n, _count(values, nxt_value, "right"), n)


def idm_band(samples: np.ndarray, gamma: float = 0.95, prior_strength: float = 1.0) -> IDMBand:
    """Build the IDM band of every series (eqs 20–22).

    Parameters
    ----------
    samples : ndarray, shape (R, n)
        ``n`` samples of each of ``R`` series (e.g. one series per hour and source).
    gamma : float
        Credibility γ in (0, 1) (paper D: 0.95).
    prior_strength : float
        Total prior strength s > 0 (paper D: 1).

    Raises
    ------
    AmbiguityInputError
        Fewer than :data:`MIN_SAMPLES` samples, non-finite samples, γ or s out of range.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim != 2:
        raise AmbiguityInputError(f"samples must have shape (series, samples), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise AmbiguityInputError("samples must be finite (found NaN or inf)")
    lower, upper = idm_levels(x.shape[1], gamma, prior_strength)
    values = np.sort(x, axis=1)
    r, n = values.shape
    ranks = np.broadcast_to(np.arange(n), (r, n))
    new = np.ones((r, n), dtype=bool)
    new[:, 1:] = values[:, 1:] != values[:, :-1]
    count_lt = np.maximum.accumulate(np.where(new, ranks, 0), axis=1)
    last = np.ones((r, n), dtype=bool)
    last[:, :-1] = values[:, 1:] != values[:, :-1]
    count_le = np.minimum.accumulate(np.where(last, ranks + 1, n)[:, ::-1], axis=1)[:, ::-1]
    return IDMBand(
        values=values,
        count_le=count_le,
        count_lt=count_lt,
        level_lower=lower,
        level_upper=upper,
        gamma=float(gamma),
        prior_strength=float(prior_strength),
    )
