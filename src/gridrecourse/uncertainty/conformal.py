"""Split conformal calibration of box (interval) predictions (paper A, METHODS §5, eqs 21–23).

A base predictor gives, for every sample j, a lower and an upper bound ``f_lo``/``f_hi`` for
each of its outputs (all horizons × all targets: price and bus loads for the next τ hours).
Split conformal prediction widens (or shrinks) every box by one scalar ``q̂`` so that the whole
box covers the truth with probability at least ``1 − α``:

* conformity score of a sample (eq 22), a max over ALL its outputs i::

      s_j = max_i max(f_lo,i − y_i, y_i − f_hi,i)

  ``s_j ≤ q`` exactly when the box ``[f_lo − q, f_hi + q]`` contains every output of sample j.
* on a calibration set of M scores, ``q̂`` is the ``k = ⌈(M+1)(1−α)⌉``-th smallest score
  (Proposition 3 of paper A; Vovk et al.; Lei et al. 2018, Thm 2.2). The paper's text writes the
  floor ``⌊(M+1)(1−α)⌋``; the floor can pick a rank one too low (e.g. M = 10, α = 0.1:
  floor 9.9 → 9 < 10) and then the guarantee fails, so the ceiling is used here.
* calibrated box (eq 23): ``[f_lo − q̂ 1, f_hi + q̂ 1]``.

Guarantee: if calibration and test samples are exchangeable, the joint coverage
``P(f_lo − q̂ ≤ y ≤ f_hi + q̂ for all outputs) ≥ 1 − α``, and ``≤ 1 − α + 1/(M+1)`` when the
scores have no ties. Consecutive hourly windows are not exchangeable; the guarantee then holds
only approximately (use well separated splits, see :func:`gridrecourse.learning.windows.
split_by_time`).

``q̂`` may be negative when the base boxes are too wide: the calibrated boxes then shrink, and a
box narrower than ``2|q̂|`` becomes empty (``lower > upper``). Such a sample has score > q̂, so
it counts as not covered in both the guarantee and :func:`empirical_coverage`.

This module is numpy only (no torch).

References
----------
C. Yeh, N. Christianson, A. Wu, A. Wierman, Y. Yue, "End-to-end conformal calibration for
optimization under uncertainty," arXiv:2409.20534, 2024 (paper A's [11]).
J. Lei, M. G'Sell, A. Rinaldo, R. J. Tibshirani, L. Wasserman, "Distribution-free predictive
inference for regression," JASA 113(523), 2018.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from gridrecourse.errors import GridRecourseError

#: Slack subtracted before the ceiling in ``⌈(M+1)(1−α)⌉`` so that float round-off such as
#: ``20 * (1 - 0.05) = 19.000000000000004`` does not push the rank one too high.
_RANK_TOLERANCE = 1e-9


class CalibrationError(GridRecourseError, ValueError):
    """Conformal calibration is impossible with the data given (e.g. too few samples for α)."""


class CoverageLevelError(GridRecourseError, ValueError):
    """The miscoverage level α is not strictly between 0 and 1."""


class BoxShapeError(GridRecourseError, ValueError):
    """Lower bounds, upper bounds and truths do not have matching, valid shapes."""


class Box(NamedTuple):
    """A box (interval) prediction: element-wise ``lower ≤ y ≤ upper``.

    Attributes
    ----------
    lower, upper : ndarray, shape (N, ...)
        Bounds in the units of the predicted quantity (e.g. $/MWh for price, p.u. for load).
    """

    lower: np.ndarray
    upper: np.ndarray


def check_alpha(alpha: float) -> float:
    """Validate a miscoverage level α ∈ (0, 1) and return it as a float.

    Raises
    ------
    CoverageLevelError
        α is not a finite number strictly between 0 and 1.
    """
    try:
        value = float(alpha)
    except (TypeError, ValueError) as exc:
        raise CoverageLevelError(f"alpha must be a number in (0, 1), got {alpha!r}") from exc
    if not (0.0 < value < 1.0):
        raise CoverageLevelError(
            f"alpha (miscoverage level) must be strictly between 0 and 1, got {alpha!r}; "
            "e.g. alpha=0.1 asks for 90% coverage"
        )
    return value


def _as_box_arrays(
    lower: np.ndarray, upper: np.ndarray, y: np.ndarray | None = None
) -> tuple[np.ndarray, ...]:
    """Check shapes/finiteness and return float arrays reshaped to (N, n_outputs)."""
    arrays = [np.asarray(lower, dtype=float), np.asarray(upper, dtype=float)]
    names = ["lower", "upper"]
    if y is not None:
        arrays.append(np.asarray(y, dtype=float))
        names.append("y")
    shapes = {name: a.shape for name, a in zip(names, arrays, strict=True)}
    if len(set(shapes.values())) != 1:
        raise BoxShapeError(f"lower, upper and y must have the same shape, got {shapes}")
    shape = arrays[0].shape
    if len(shape) == 0 or shape[0] == 0:
        raise BoxShapeError(
            f"expected arrays of shape (N, ...) with N ≥ 1 samples on axis 0, got shape {shape}"
        )
    for name, a in zip(names, arrays, strict=True):
        if not np.all(np.isfinite(a)):
            bad = int(np.count_nonzero(~np.isfinite(a)))
            raise BoxShapeError(f"{name} has {bad} NaN or infinite value(s)")
    return tuple(a.reshape(shape[0], -1) for a in arrays)


def conformity_scores(lower: np.ndarray, upper: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Nonconformity score of each sample, the max over all its outputs (paper A eq 22).

    ``s_j = max_i max(f_lo,j,i − y_j,i, y_j,i − f_hi,j,i)`` where i runs over every output of
    sample j (all horizons × all targets). ``s_j ≤ 0`` iff the box covers the whole sample;
    ``s_j`` is the smallest uniform widening that makes it cover.

    Parameters
    ----------
    lower, upper, y : ndarray, shape (N, ...)
        Predicted bounds and the truth, same shape, samples on axis 0 (e.g. (N, τ, K)); units
        of the predicted quantity.

    Returns
    -------
    ndarray, shape (N,)
        Scores in the units of the predicted quantity. Mixing quantities with very different
        scales (price in $/MWh, load in p.u.) lets the largest scale dominate the max: calibrate
        in a common (e.g. standardized) scale or calibrate each target separately.

    Raises
    ------
    BoxShapeError
        Shapes differ, there is no sample, or a value is NaN/infinite.
    """
    lo, hi, yy = _as_box_arrays(lower, upper, y)
    return np.max(np.maximum(lo - yy, yy - hi), axis=1)


def conformal_rank(n_calibration: int, alpha: float) -> int:
    """The rank ``k = ⌈(M+1)(1−α)⌉`` (1-based) of the calibration score used as q̂.

    Parameters
    ----------
    n_calibration : int
        Number M of calibration samples.
    alpha : float
        Miscoverage level α ∈ (0, 1).

    Raises
    ------
    CoverageLevelError
        α ∉ (0, 1).
    CalibrationError
        ``k > M``: the calibration set is too small for this α (no finite q̂ gives the
        guarantee); the message names M, α and the smallest M that works, ``⌈(1−α)/α⌉``.
    """
    a = check_alpha(alpha)
    m = int(n_calibration)
    k = math.ceil((m + 1) * (1.0 - a) - _RANK_TOLERANCE)
    if k > m:
        m_min = math.ceil((1.0 - a) / a - _RANK_TOLERANCE)
        raise CalibrationError(
            f"calibration set too small: M={m} samples cannot give coverage 1-alpha="
            f"{1 - a:g} (alpha={a:g}) because the rank ceil((M+1)(1-alpha))={k} exceeds M; "
            f"use at least M={m_min} calibration samples or a larger alpha"
        )
    return max(k, 1)


def conformal_quantile(scores: np.ndarray, alpha: float) -> float:
    """Conformal quantile q̂: the ``⌈(M+1)(1−α)⌉``-th smallest score (Proposition 3, paper A).

    Parameters
    ----------
    scores : ndarray, shape (M,)
        Calibration scores from :func:`conformity_scores`.
    alpha : float
        Miscoverage level α ∈ (0, 1); target coverage 1 − α.

    Returns
    -------
    float
        q̂ in the units of the scores. The paper writes ``⌊(M+1)(1−α)⌋``; the ceiling is the
        rank that carries the ``≥ 1 − α`` guarantee (the floor may undercover by one rank).

    Raises
    ------
    CoverageLevelError
        α ∉ (0, 1).
    CalibrationError
        No scores, NaN scores, or ``⌈(M+1)(1−α)⌉ > M`` (too few scores for α).
    """
    s = np.asarray(scores, dtype=float).ravel()
    check_alpha(alpha)
    if s.size == 0:
        raise CalibrationError("no calibration scores given (M=0)")
    if not np.all(np.isfinite(s)):
        raise CalibrationError(
            f"{int(np.count_nonzero(~np.isfinite(s)))} of M={s.size} calibration scores are "
            "NaN or infinite"
        )
    k = conformal_rank(s.size, alpha)
    return float(np.partition(s, k - 1)[k - 1])


@dataclass(frozen=True)
class ConformalCalibration:
    """Result of split conformal calibration (paper A eqs 21–23).

    Attributes
    ----------
    q_hat : float
        Uniform widening added to every upper bound and subtracted from every lower bound, in
        the units of the predicted quantity (negative: the boxes shrink).
    alpha : float
        Miscoverage level α; target joint coverage 1 − α.
    n_calibration : int
        Number M of calibration samples.
    rank : int
        1-based rank ``⌈(M+1)(1−α)⌉`` of the calibration score chosen as q̂.
    """

    q_hat: float
    alpha: float
    n_calibration: int
    rank: int

    @property
    def coverage_upper_bound(self) -> float:
        """``1 − α + 1/(M+1)``: expected coverage upper bound when scores have no ties."""
        return 1.0 - self.alpha + 1.0 / (self.n_calibration + 1)

    def apply(self, lower: np.ndarray, upper: np.ndarray) -> Box:
        """Calibrated box ``[f_lo − q̂, f_hi + q̂]`` (eq 23).

        Parameters
        ----------
        lower, upper : ndarray, shape (N, ...)
            Base predictor bounds, same shape and units as at calibration.

        Returns
        -------
        Box
            ``(lower − q̂, upper + q̂)`` with the input shapes.
        """
        lo = np.asarray(lower, dtype=float)
        hi = np.asarray(upper, dtype=float)
        if lo.shape != hi.shape:
            raise BoxShapeError(
                f"lower and upper must have the same shape, got {lo.shape} and {hi.shape}"
            )
        return Box(lo - self.q_hat, hi + self.q_hat)


def calibrate(
    lower: np.ndarray, upper: np.ndarray, y: np.ndarray, alpha: float
) -> ConformalCalibration:
    """Split conformal calibration on a held-out calibration set (eqs 21–23).

    Parameters
    ----------
    lower, upper, y : ndarray, shape (M, ...)
        Base predictor bounds and truths on the M calibration samples (not used in training).
    alpha : float
        Miscoverage level α ∈ (0, 1).

    Returns
    -------
    ConformalCalibration
        Apply it to new predictions with :meth:`ConformalCalibration.apply`.

    Raises
    ------
    BoxShapeError, CoverageLevelError, CalibrationError
        See :func:`conformity_scores` and :func:`conformal_quantile`.
    """
    a = check_alpha(alpha)
    scores = conformity_scores(lower, upper, y)
    q_hat = conformal_quantile(scores, a)
    return ConformalCalibration(
        q_hat=q_hat, alpha=a, n_calibration=int(scores.size), rank=conformal_rank(scores.size, a)
    )


def empirical_coverage(lower: np.ndarray, upper: np.ndarray, y: np.ndarray) -> float:
    """Fraction of samples whose whole box covers the truth (joint over all outputs).

    A sample counts as covered iff ``lower ≤ y ≤ upper`` for every output, i.e. iff its
    score (eq 22) is ≤ 0 — the event the conformal guarantee is about.

    Parameters
    ----------
    lower, upper, y : ndarray, shape (N, ...)
        Bounds and truths, samples on axis 0.

    Returns
    -------
    float
        Coverage in [0, 1].
    """
    return float(np.mean(conformity_scores(lower, upper, y) <= 0.0))
