"""SAA statistical bounds of Mak, Morton & Wood (1999) as used by paper C §II-E (METHODS.md §2).

Upper bound (paper C (27)–(31)): evaluate each of ``K`` candidate first-stage decisions
``x̂_k`` on the full scenario set; the values are upper-biased estimates of the optimum ``z*``;
their mean ``Ū`` and confidence interval ``Ū ± q · s_U/√K``.

Lower bound (paper C (32)–(36)): solve the sampled problem (e.g. the EF) on ``K`` independent
batches of ``N`` scenarios; the optimal values are lower-biased, ``L̄ ± q · s_L/√K``.

The critical value ``q`` is the Student-t quantile ``t_{K−1, 1−a/2}`` when ``K < 30`` and the
normal quantile ``z_{1−a/2}`` otherwise (paper C: "if the value of K is low, the t-distribution
should be used"). Bounds gap ``BG = (upper end of UB CI) − (lower end of LB CI)``; paper C
reports it also as a percentage of the objective value of the solution.

Paired gap estimator (Mak, Morton & Wood 1999, the "multiple replication procedure";
:func:`paired_gap_estimate`): for ONE candidate ``x̂`` (the decision the user gets) and the same
``K`` batches, ``G_k = Σ_j w_j f(x̂, ω_kj) − LB_k`` where ``f(x̂, ω) = cᵀx̂ + Q(x̂, ω)`` and
``LB_k`` is a valid lower bound of batch ``k``'s optimum. ``E[G_k] ≥ f(x̂) − z*`` (the optimality
gap of ``x̂``); the one-sided interval ``Ḡ + q₁ · s_G/√K`` with ``q₁ = t_{K−1, 1−a}`` is the
certificate. The same scenarios enter both terms, so their variance largely cancels.

All values are in the objective's units (e.g. p.u. voltage deviation for P1, kW for P2).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import Enum

import numpy as np
from numpy.typing import ArrayLike
from scipy import stats

from gridrecourse.errors import GridRecourseError

__all__ = [
    "DEFAULT_T_THRESHOLD",
    "BoundMethod",
    "BoundProvenance",
    "BoundsInputError",
    "ConfidenceInterval",
    "CriticalValue",
    "PairedGapEstimate",
    "StatisticalBounds",
    "best_bound",
    "bounds_gap",
    "bounds_gap_pct",
    "confidence_interval",
    "paired_gap_estimate",
    "statistical_bounds",
]

DEFAULT_T_THRESHOLD = 30
"""Sample sizes below this use the t-quantile, at or above it the normal quantile."""


class BoundsInputError(GridRecourseError, ValueError):
    """Invalid samples or confidence level for the statistical bounds."""


class CriticalValue(Enum):
    """Distribution of the critical value of a confidence interval."""

    STUDENT_T = "t"
    NORMAL = "z"


class BoundMethod(str, Enum):
    """How a deterministic lower bound on a (batch) optimum was obtained (METHODS §2)."""

    #: HiGHS's MIP dual bound of the extensive form (optimal or stopped at its time limit)
    EXTENSIVE_FORM = "extensive_form"
    #: Lagrangian (scenario-decomposition) bound ``Σ_ω π_ω min_x (cᵀx + Q_ω(x) + w_ωᵀx)`` with
    #: ``Σ_ω π_ω w_ω = 0``, each term the MIP dual bound of its one-scenario subproblem
    LAGRANGIAN = "lagrangian"
    #: the Lagrangian bound at ``w = 0``: the wait-and-see (perfect-information) value
    WAIT_AND_SEE = "wait_and_see"
    #: optimum of the extensive form's LP relaxation
    RELAXATION = "relaxation"
    #: HiGHS's MIP dual bound of the integer L-shaped (multi-cut Benders) master: cuts
    #: ``θ_ω ≥ Q_ω(x^j) + g_ωᵀ(x − x^j)`` from exact recourse solves at the points ``x^j``
    #: (:mod:`gridrecourse.methods.l_shaped`)
    L_SHAPED = "l_shaped"


@dataclass(frozen=True)
class BoundProvenance:
    """Where a lower bound comes from, so that a reader can audit it.

    Attributes
    ----------
    method : BoundMethod
    value : float
        The bound (objective units).
    multipliers : str
        Origin of the multipliers ``w`` of a Lagrangian bound (``"ph"``: progressive hedging,
        ``"subgradients"``: scenario subgradients at a first stage, ``"none"``; ``"cuts"``
        for the L-shaped bound).
    iterations : int
        PH iteration whose multipliers gave the bound (0: none / wait-and-see); L-shaped:
        master solves.
    n_subproblems : int
        Scenario subproblems (or extensive forms) solved for it (L-shaped: recourse solves of
        its evaluations, seed points given with their values not counted).
    max_subproblem_gap : float
        Largest relative MIP gap of those solves (the bound uses their dual bounds, so a gap
        weakens it but never invalidates it); L-shaped: the last master's MIP gap.
    incumbent : float
        Best feasible objective of the same solves (EF incumbent; L-shaped: best exact batch
        value of an evaluated point; ``nan`` when none).
    seconds : float
        Wall time of the solves behind the bound (s).
    """

    method: BoundMethod
    value: float
    multipliers: str = "none"
    iterations: int = 0
    n_subproblems: int = 1
    max_subproblem_gap: float = 0.0
    incumbent: float = math.nan
    seconds: float = 0.0

    def as_dict(self) -> dict[str, float | int | str]:
        """JSON-ready fields (the method by value)."""
        return {
            "method": self.method.value,
            "value": self.value,
            "multipliers": self.multipliers,
            "iterations": self.iterations,
            "n_subproblems": self.n_subproblems,
            "max_subproblem_gap": self.max_subproblem_gap,
            "incumbent": self.incumbent,
            "seconds": self.seconds,
        }


def best_bound(candidates: list[BoundProvenance]) -> BoundProvenance:
    """The largest finite lower bound of ``candidates`` (each valid, so their maximum is).

    Raises
    ------
    BoundsInputError
        No candidate has a finite value.
    """
    finite = [c for c in candidates if math.isfinite(c.value)]
    if not finite:
        raise BoundsInputError("no finite lower bound among the candidates")
    return max(finite, key=lambda c: c.value)


@dataclass(frozen=True)
class ConfidenceInterval:
    """Two-sided confidence interval of a mean, ``mean ± half_width``.

    Attributes
    ----------
    mean : float
        Sample mean (objective units).
    half_width : float
        ``q · s/√n`` (objective units); ``s`` is the sample standard deviation (``ddof = 1``).
    low, high : float
        ``mean − half_width``, ``mean + half_width``.
    n : int
        Number of samples (replications ``K``).
    confidence : float
        Confidence level ``1 − a``.
    critical : CriticalValue
        Which quantile ``q`` was used.
    critical_value : float
        ``q``.
    std : float
        Sample standard deviation ``s``.
    """

    mean: float
    half_width: float
    low: float
    high: float
    n: int
    confidence: float
    critical: CriticalValue = CriticalValue.NORMAL
    critical_value: float = math.nan
    std: float = math.nan


@dataclass(frozen=True)
class StatisticalBounds:
    """Mak–Morton–Wood upper/lower bound intervals and their gap (paper C Tables II–V).

    Attributes
    ----------
    upper : ConfidenceInterval
        Upper-bound interval (``UB CI``).
    lower : ConfidenceInterval
        Lower-bound interval (``LB CI``).
    gap : float
        ``BG = upper.high − lower.low`` (objective units).
    gap_pct : float
        ``100 · BG / |objective|`` [%], ``objective`` defaulting to ``upper.mean``.
    """

    upper: ConfidenceInterval
    lower: ConfidenceInterval
    gap: float
    gap_pct: float


def confidence_interval(
    samples: ArrayLike,
    confidence: float = 0.95,
    t_threshold: int = DEFAULT_T_THRESHOLD,
) -> ConfidenceInterval:
    """Confidence interval of the mean of i.i.d. replications (paper C (31) and (36)).

    Parameters
    ----------
    samples : array_like, shape (n,)
        Replication values (objective units), ``n ≥ 2``, all finite.
    confidence : float, default 0.95
        Two-sided level ``1 − a`` in ``(0, 1)``.
    t_threshold : int, default 30
        Use ``t_{n−1, 1−a/2}`` when ``n < t_threshold``, else ``z_{1−a/2}``.

    Returns
    -------
    ConfidenceInterval

    Raises
    ------
    BoundsInputError
        Fewer than two samples, non-finite samples or a level outside ``(0, 1)``.
    """
    x = np.asarray(samples, dtype=float)
    if x.ndim != 1:
        raise BoundsInputError(f"samples must be 1-D, got shape {x.shape}")
    n = int(x.size)
    if n < 2:
        raise BoundsInputError(f"need at least 2 samples for a confidence interval, got {n}")
    if not np.all(np.isfinite(x)):
        raise BoundsInputError("samples contain NaN or infinite values")
    if not 0.0 < confidence < 1.0:
        raise BoundsInputError(f"confidence must lie in (0, 1), got {confidence!r}")
    mean = float(x.mean())
    std = float(x.std(ddof=1))
    upper_tail = 0.5 + confidence / 2.0
    if n < t_threshold:
        kind, q = CriticalValue.STUDENT_T, float(stats.t.ppf(upper_tail, df=n - 1))
    else:
        kind, q = CriticalValue.NORMAL, float(stats.norm.ppf(upper_tail))
    half = q * std / math.sqrt(n)
    return ConfidenceInterval(
        mean=mean,
        half_width=half,
        low=mean - half,
        high=mean + half,
        n=n,
        confidence=float(confidence),
        critical=kind,
        critical_value=q,
        std=std,
    )


def bounds_gap(ub: ConfidenceInterval, lb: ConfidenceInterval) -> float:
    """Bounds gap ``BG = ub.high − lb.low`` (objective units; paper C Table II "BG")."""
    return float(ub.high - lb.low)


def bounds_gap_pct(
    ub: ConfidenceInterval, lb: ConfidenceInterval, objective: float | None = None
) -> float:
    """Bounds gap as a percentage of the objective value, ``100 · BG / |objective|`` [%].

    Parameters
    ----------
    ub, lb : ConfidenceInterval
        Upper- and lower-bound intervals.
    objective : float or None
        Reference objective (paper C: the objective of the solution); None uses ``ub.mean``.

    Raises
    ------
    BoundsInputError
        The reference objective is zero or not finite.
    """
    ref = ub.mean if objective is None else float(objective)
    if not math.isfinite(ref) or ref == 0.0:
        raise BoundsInputError(f"relative bounds gap needs a finite nonzero objective, got {ref}")
    return 100.0 * bounds_gap(ub, lb) / abs(ref)


def statistical_bounds(
    upper_samples: ArrayLike,
    lower_samples: ArrayLike,
    confidence: float = 0.95,
    objective: float | None = None,
    t_threshold: int = DEFAULT_T_THRESHOLD,
) -> StatisticalBounds:
    """Upper and lower bound intervals and their gap from the replication values.

    Parameters
    ----------
    upper_samples : array_like, shape (K,)
        Full-scenario evaluations of the ``K`` candidate solutions (paper C (27)).
    lower_samples : array_like, shape (K',)
        Optimal values of the ``K'`` sampled problems (paper C (32)).
    confidence : float, default 0.95
        Level of both intervals.
    objective : float or None
        Reference for the percentage gap (None: the upper-bound mean).
    t_threshold : int, default 30
        See :func:`confidence_interval`.

    Returns
    -------
    StatisticalBounds
    """
    ub = confidence_interval(upper_samples, confidence, t_threshold)
    lb = confidence_interval(lower_samples, confidence, t_threshold)
    return StatisticalBounds(
        upper=ub,
        lower=lb,
        gap=bounds_gap(ub, lb),
        gap_pct=bounds_gap_pct(ub, lb, objective),
    )


@dataclass(frozen=True)
class PairedGapEstimate:
    """Mak–Morton–Wood paired estimate of the optimality gap of one candidate ``x̂``.

    Attributes
    ----------
    samples : numpy.ndarray, shape (K,)
        ``G_k = Σ_j w_j f(x̂, ω_kj) − LB_k`` (objective units).
    candidate_batch_values : numpy.ndarray, shape (K,)
        ``Σ_j w_j f(x̂, ω_kj)``: the candidate's value on each batch (objective units).
    mean : float
        ``Ḡ`` (objective units).
    std : float
        ``s_G`` (``ddof = 1``).
    upper : float
        One-sided confidence bound ``Ḡ + q₁ · s_G/√K`` on the gap of ``x̂`` (objective units):
        the certificate.
    upper_pct : float
        ``100 · upper / |objective|`` [%] (``objective``: the candidate's full value).
    confidence : float
        One-sided level ``1 − a``.
    critical : CriticalValue
    critical_value : float
        ``q₁ = t_{K−1, 1−a}`` (``K <`` the t threshold) or ``z_{1−a}``.
    """

    samples: np.ndarray
    candidate_batch_values: np.ndarray
    mean: float
    std: float
    upper: float
    upper_pct: float
    confidence: float
    critical: CriticalValue
    critical_value: float


def paired_gap_estimate(
    candidate_batch_values: ArrayLike,
    lower_samples: ArrayLike,
    objective: float,
    confidence: float = 0.95,
    t_threshold: int = DEFAULT_T_THRESHOLD,
) -> PairedGapEstimate:
    r"""Paired (common-scenario) confidence bound on the optimality gap of a candidate.

    Mak, Morton & Wood (1999), multiple replication procedure: with ``K`` i.i.d. batches of
    ``N`` scenarios, the candidate's batch value ``Û_k = Σ_j w_j f(x̂, ω_kj)`` and a valid lower
    bound ``LB_k ≤ min_x Σ_j w_j f(x, ω_kj)`` of the same batch,

    .. math::

        G_k = Û_k − LB_k,\qquad E[G_k] ≥ f(x̂) − z^*,\qquad
        P\Big(f(x̂) − z^* ≤ Ḡ + t_{K−1,1−a}\,\frac{s_G}{\sqrt K}\Big) ≳ 1 − a,

    because ``E[Û_k] = f(x̂)`` (``x̂`` does not depend on the batches) and ``E[LB_k] ≤
    E[min_x …] ≤ z*``. Every ``G_k ≥ Û_k − z*_k ≥ 0`` when ``LB_k`` is valid. Unlike the
    interval gap ``UB.high − LB.low`` it pairs the two terms on the same scenarios, so the
    batch-to-batch spread of the optima (night/day mix) cancels.

    Parameters
    ----------
    candidate_batch_values : array_like, shape (K,)
        ``Û_k`` (objective units).
    lower_samples : array_like, shape (K,)
        ``LB_k`` (objective units).
    objective : float
        The candidate's full value ``f(x̂)`` (reference of :attr:`PairedGapEstimate.upper_pct`).
    confidence : float, default 0.95
        One-sided level ``1 − a`` in ``(0, 1)``.
    t_threshold : int, default 30
        ``t_{K−1, 1−a}`` when ``K < t_threshold``, else ``z_{1−a}``.

    Returns
    -------
    PairedGapEstimate

    Raises
    ------
    BoundsInputError
        Shapes differ, fewer than two batches, non-finite values, a level outside ``(0, 1)``
        or a zero / non-finite objective.
    """
    u = np.asarray(candidate_batch_values, dtype=float)
    lb = np.asarray(lower_samples, dtype=float)
    if u.ndim != 1 or u.shape != lb.shape:
        raise BoundsInputError(
            f"candidate batch values {u.shape} and lower samples {lb.shape} must be 1-D, equal"
        )
    k = int(u.size)
    if k < 2:
        raise BoundsInputError(f"need at least 2 batches for the paired estimate, got {k}")
    if not (np.all(np.isfinite(u)) and np.all(np.isfinite(lb))):
        raise BoundsInputError("candidate batch values or lower samples are NaN or infinite")
    if not 0.0 < confidence < 1.0:
        raise BoundsInputError(f"confidence must lie in (0, 1), got {confidence!r}")
    if not math.isfinite(objective) or objective == 0.0:
        raise BoundsInputError(f"relative gap needs a finite nonzero objective, got {objective}")
    g = u - lb
    mean, std = float(g.mean()), float(g.std(ddof=1))
    if k < t_threshold:
        kind, q = CriticalValue.STUDENT_T, float(stats.t.ppf(confidence, df=k - 1))
    else:
        kind, q = CriticalValue.NORMAL, float(stats.norm.ppf(confidence))
    upper = mean + q * std / math.sqrt(k)
    return PairedGapEstimate(
        samples=g,
        candidate_batch_values=u,
        mean=mean,
        std=std,
        upper=upper,
        upper_pct=100.0 * upper / abs(objective),
        confidence=float(confidence),
        critical=kind,
        critical_value=q,
    )
