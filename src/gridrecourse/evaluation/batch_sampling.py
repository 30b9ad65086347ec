"""Scenario batches of the SAA statistical bounds: i.i.d. or stratified draws.

The bounds of paper C §II-E (METHODS §2) solve ``K`` independent batches of ``N`` scenarios
drawn from the full set ``Ω`` with probabilities ``π``. A batch ``k`` is a list of draws
``ω_kj`` with weights ``w_kj`` (summing to 1); its estimator of the objective is
``f̂_k(x) = Σ_j w_kj f(x, ω_kj)``. Whatever the design, the lower bound stays valid when
``E[f̂_k(x)] = f(x)`` for EVERY fixed ``x``: then ``E[min_x f̂_k(x)] ≤ min_x E[f̂_k(x)] = z*``
(paper C (32)), and independent batches make the ``K`` optimal values i.i.d., so the interval
(36) applies unchanged. Only the variance of the samples, hence the width of the interval,
depends on the design.

* :attr:`BatchSampling.IID` (paper C): ``N`` indices uniform with replacement, weights the
  probabilities renormalized (exactly ``1/N`` for equal probabilities).
* :attr:`BatchSampling.STRATIFIED`: stratified sampling on a key that ranks the scenarios by
  cost (e.g. the candidate decision's recourse value in each scenario, fixed before any draw),
  with a take-all stratum (Cochran 1977, §5A.13; Homem-de-Mello & Bayraksan 2014, §4.2 on
  variance reduction in SAA bounds):

  - ``T``: scenarios whose key lies beyond Tukey's far-out fences ``[Q1 − 3·IQR, Q3 + 3·IQR]``
    (at most ``N // 2`` of them, the farthest from the median first). Each is in every batch
    with weight ``π_ω``: the heavy tail of the costs (a few scenarios with very large
    penalties) stops adding variance.
  - the rest ``R``, sorted by key, is cut into ``n = N − |T|`` strata of equal probability
    ``π(R)/n`` along the cumulative distribution, and one scenario is drawn in each (1-D Latin
    hypercube sampling: ``u_h = (h + U_h)/n``, ``U_h`` uniform); each draw weighs ``π(R)/n``.

  A scenario ``ω ∈ R`` is drawn in stratum ``h`` with probability ``n·|I_ω ∩ [h/n, (h+1)/n)|``
  where ``I_ω`` is its interval of length ``π_ω/π(R)``, so ``Σ_h`` of those is ``n·π_ω/π(R)``
  and ``E[f̂_k(x)] = Σ_T π_ω f(x, ω) + Σ_R π_ω f(x, ω) = f(x)`` exactly, for every ``x``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

import numpy as np

from gridrecourse.errors import GridRecourseError

#: Tukey's far-out fence multiplier of the interquartile range (take-all stratum).
FAR_OUT_FENCE = 3.0


class BatchSamplingError(GridRecourseError, ValueError):
    """Invalid batch design: sizes, probabilities or stratification key (message names it)."""


class BatchSampling(str, Enum):
    """How the SAA batches are drawn (module docstring)."""

    IID = "iid"
    STRATIFIED = "stratified"


@dataclass(frozen=True, eq=False)
class Batches:
    """``K`` batches of ``N`` draws each.

    Attributes
    ----------
    sampling : BatchSampling
    indices : numpy.ndarray of int, shape (K, N)
        Scenario indices of the draws (repeats possible: i.i.d. draws, or a stratified one whose
        probability spans more than one stratum).
    weights : numpy.ndarray of float, shape (K, N)
        Weight of each draw in its batch's objective; each row sums to 1.
    take_all : numpy.ndarray of int
        The take-all stratum (in every batch, first in each row); empty for i.i.d. batches.
    """

    sampling: BatchSampling
    indices: np.ndarray
    weights: np.ndarray
    take_all: np.ndarray

    def __post_init__(self) -> None:
        if self.indices.shape != self.weights.shape or self.indices.ndim != 2:
            raise BatchSamplingError(
                f"indices {self.indices.shape} and weights {self.weights.shape} must be "
                "two arrays of the same shape (K, N)"
            )


def _probabilities(probability: np.ndarray) -> np.ndarray:
    p = np.asarray(probability, dtype=float).ravel()
    if p.size == 0 or not np.all(np.isfinite(p)) or np.any(p < 0) or not p.sum() > 0:
        raise BatchSamplingError(
            "scenario probabilities must be finite, non-negative and not all zero"
        )
    return p / p.sum()


def take_all_stratum(key: np.ndarray, probability: np.ndarray, batch_size: int) -> np.ndarray:
    """Scenarios beyond Tukey's far-out fences of ``key`` (at most ``batch_size // 2``).

    Parameters
    ----------
    key : numpy.ndarray, shape (S,)
        Stratification key per scenario (finite).
    probability : numpy.ndarray, shape (S,)
        Scenario probabilities (zero-probability scenarios are never taken).
    batch_size : int
        ``N``; the take-all stratum keeps at least ``N − N // 2`` draws for the rest.

    Returns
    -------
    numpy.ndarray of int
        Their indices, the farthest from the median first.
    """
    q1, median, q3 = np.percentile(key, [25.0, 50.0, 75.0])
    spread = FAR_OUT_FENCE * (q3 - q1)
    far = np.flatnonzero(((key < q1 - spread) | (key > q3 + spread)) & (probability > 0))
    far = far[np.argsort(-np.abs(key[far] - median), kind="stable")]
    return far[: batch_size // 2]


def draw_batches(
    probability: np.ndarray,
    n_batches: int,
    batch_size: int,
    rng: np.random.Generator,
    sampling: BatchSampling = BatchSampling.IID,
    key: np.ndarray | None = None,
) -> Batches:
    """Draw ``K = n_batches`` independent batches of ``N = batch_size`` scenarios.

    Parameters
    ----------
    probability : numpy.ndarray, shape (S,)
        Scenario probabilities ``π`` (renormalized).
    n_batches, batch_size : int
        ``K`` and ``N`` (>= 1).
    rng : numpy.random.Generator
        The only source of randomness (batches are reproducible from its seed).
    sampling : BatchSampling, default IID
    key : numpy.ndarray, shape (S,), optional
        Stratification key (required for :attr:`BatchSampling.STRATIFIED`): a per-scenario
        cost proxy fixed before the draws, e.g. the candidate decision's recourse values.

    Returns
    -------
    Batches

    Raises
    ------
    BatchSamplingError
        Sizes below 1, bad probabilities, or a missing, mis-sized or non-finite key.
    """
    for name, value in (("n_batches", n_batches), ("batch_size", batch_size)):
        if int(value) != value or value < 1:
            raise BatchSamplingError(f"{name} must be a positive integer, got {value!r}")
    k_reps, n_batch = int(n_batches), int(batch_size)
    p = _probabilities(probability)
    sampling = BatchSampling(sampling)
    if sampling is BatchSampling.IID:
        indices = rng.integers(0, p.size, size=(k_reps, n_batch))
        weights = p[indices]
        row = weights.sum(axis=1, keepdims=True)
        if np.any(row <= 0):
            raise BatchSamplingError("a batch drew only zero-probability scenarios")
        return Batches(sampling, indices, weights / row, np.zeros(0, dtype=int))
    if key is None:
        raise BatchSamplingError(
            "stratified batches need a stratification key (e.g. the candidate's per-scenario "
            "recourse values)"
        )
    key = np.asarray(key, dtype=float).ravel()
    if key.shape != p.shape or not np.all(np.isfinite(key)):
        raise BatchSamplingError(
            f"stratification key: {p.size} finite values expected (one per scenario), got "
            f"{key.size} with {int(np.sum(~np.isfinite(key)))} non-finite"
        )
    take = take_all_stratum(key, p, n_batch)
    rest = np.setdiff1d(np.arange(p.size), take)
    rest = rest[np.argsort(key[rest], kind="stable")]
    mass_rest = float(p[rest].sum())
    n = n_batch - take.size
    if not mass_rest > 0:  # every scenario with probability is taken: the batch is exact
        n, rest, mass_rest = 0, rest[:0], 0.0
    cumulative = np.cumsum(p[rest]) / mass_rest if n else np.zeros(0)
    u = (np.arange(n)[None, :] + rng.random((k_reps, n))) / max(n, 1)
    picked = rest[np.minimum(np.searchsorted(cumulative, u, side="right"), rest.size - 1)]
    indices = np.hstack([np.broadcast_to(take, (k_reps, take.size)), picked]).astype(int)
    weights = np.hstack(
        [
            np.broadcast_to(p[take], (k_reps, take.size)),
            np.full((k_reps, n), mass_rest / max(n, 1)),
        ]
    )
    return Batches(sampling, indices, weights / weights.sum(axis=1, keepdims=True), take)
