"""Sliding windows over hourly series for sequence predictors (paper A, METHODS §5).

Paper A's predictor reads the last M hours of [price, 4 weather variables, N bus loads] and
predicts price and loads for the next τ hours. :func:`make_windows` cuts an hourly table into
such (input, target) pairs, :func:`split_by_time` splits them into train / calibration / test
blocks that share no hour, and :class:`Standardizer` rescales with statistics of the training
block only. Everything here is numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from gridrecourse.errors import GridRecourseError, InvalidSeriesError

_FRACTION_TOLERANCE = 1e-6


class WindowError(GridRecourseError, ValueError):
    """Window lengths or split fractions do not fit the data."""


@dataclass(frozen=True, eq=False)
class WindowedData:
    """Input/target windows cut from hourly series.

    Attributes
    ----------
    x : ndarray, shape (N, M, F)
        Inputs: sample i holds hours ``[s_i, s_i + M)`` of the F feature series.
    y : ndarray, shape (N, τ, K)
        Targets: sample i holds hours ``[s_i + M, s_i + M + τ)`` of the K target series.
    start_hour : ndarray of int, shape (N,)
        ``s_i``, the index (hours from the start of the series) of the first input hour.
    history : int
        M, input length in hours.
    horizon : int
        τ, target length in hours.
    """

    x: np.ndarray
    y: np.ndarray
    start_hour: np.ndarray
    history: int
    horizon: int

    def __len__(self) -> int:
        return int(self.x.shape[0])

    @property
    def n_features(self) -> int:
        """F, number of input series."""
        return int(self.x.shape[2])

    @property
    def n_targets(self) -> int:
        """K, number of target series."""
        return int(self.y.shape[2])

    @property
    def target_start_hour(self) -> np.ndarray:
        """Index of the first target hour of every sample, ``start_hour + M``."""
        return self.start_hour + self.history

    def hours_used(self) -> np.ndarray:
        """Sorted indices of every hour (input or target) used by some sample."""
        if len(self) == 0:
            return np.empty(0, dtype=int)
        span = self.history + self.horizon
        return np.unique(self.start_hour[:, None] + np.arange(span)[None, :])

    def subset(self, index: slice | np.ndarray) -> WindowedData:
        """Samples selected by ``index`` (a slice or an index/boolean array), same M and τ."""
        return WindowedData(
            x=self.x[index],
            y=self.y[index],
            start_hour=self.start_hour[index],
            history=self.history,
            horizon=self.horizon,
        )

    def with_arrays(self, x: np.ndarray, y: np.ndarray) -> WindowedData:
        """Same windows with new (e.g. standardized) ``x``/``y`` of the same shapes."""
        if x.shape != self.x.shape or y.shape != self.y.shape:
            raise WindowError(
                f"new arrays must keep the shapes x{self.x.shape}, y{self.y.shape}; "
                f"got x{x.shape}, y{y.shape}"
            )
        return WindowedData(x, y, self.start_hour, self.history, self.horizon)


def _as_series(values: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=float)
    if a.ndim == 1:
        a = a[:, None]
    if a.ndim != 2:
        raise WindowError(f"{name} must be a 2-D array (hours, series), got shape {a.shape}")
    bad = ~np.isfinite(a)
    if bad.any():
        hours, cols = np.nonzero(bad)
        raise InvalidSeriesError(
            f"{name} has {int(bad.sum())} NaN or infinite value(s), first at hour "
            f"{int(hours[0])}, column {int(cols[0])}; fill or drop them before windowing"
        )
    return a


def make_windows(
    features: np.ndarray, targets: np.ndarray, history: int, horizon: int
) -> WindowedData:
    """Cut hourly series into (last M hours of features, next τ hours of targets) samples.

    Sample i uses hours ``[i, i+M)`` of ``features`` as input and hours ``[i+M, i+M+τ)`` of
    ``targets`` as target, for ``i = 0 … H − M − τ`` (so ``N = H − M − τ + 1`` samples). To
    feed past targets to the predictor (paper A feeds past price and loads), include them as
    columns of ``features``.

    Parameters
    ----------
    features : ndarray, shape (H, F)
        Hourly input series (a 1-D array is one series).
    targets : ndarray, shape (H, K)
        Hourly target series aligned with ``features`` (same H).
    history : int
        M ≥ 1, number of input hours.
    horizon : int
        τ ≥ 1, number of predicted hours.

    Returns
    -------
    WindowedData
        ``x`` (N, M, F), ``y`` (N, τ, K), ``start_hour`` (N,) — copies, not views.

    Raises
    ------
    WindowError
        M or τ not a positive integer, 2-D shapes wrong, H differs, or ``M + τ > H``.
    InvalidSeriesError
        NaN or infinite values in ``features`` or ``targets`` (the message gives the first).
    """
    for name, value in (("history M", history), ("horizon tau", horizon)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise WindowError(f"{name} must be a positive integer (hours), got {value!r}")
    m, tau = int(history), int(horizon)
    f = _as_series(features, "features")
    t = _as_series(targets, "targets")
    if f.shape[0] != t.shape[0]:
        raise WindowError(
            f"features and targets must cover the same hours: features has H={f.shape[0]} "
            f"rows, targets has H={t.shape[0]}"
        )
    n_hours = f.shape[0]
    if m + tau > n_hours:
        raise WindowError(
            f"window M+tau = {m}+{tau} = {m + tau} hours is longer than the data (H={n_hours} "
            "hours); shorten history/horizon or give more data"
        )
    n = n_hours - m - tau + 1
    # sliding_window_view puts the window axis last: (n_windows, F, length) -> (n, length, F)
    x = sliding_window_view(f[: n + m - 1], m, axis=0).transpose(0, 2, 1)
    y = sliding_window_view(t[m:], tau, axis=0).transpose(0, 2, 1)
    return WindowedData(
        x=np.ascontiguousarray(x),
        y=np.ascontiguousarray(y),
        start_hour=np.arange(n),
        history=m,
        horizon=tau,
    )


@dataclass(frozen=True, eq=False)
class TimeSplit:
    """Train / calibration / test blocks from :func:`split_by_time` (unpacks as a 3-tuple)."""

    train: WindowedData
    calibration: WindowedData
    test: WindowedData
    gap: int

    def __iter__(self):
        return iter((self.train, self.calibration, self.test))


def split_by_time(data: WindowedData, fractions: Sequence[float] = (0.6, 0.2, 0.2)) -> TimeSplit:
    """Split windows into contiguous train, calibration and test blocks with no shared hour.

    The blocks are consecutive in time (train first). Between two blocks ``gap = M + τ − 1``
    samples are dropped: sample i spans hours ``[i, i+M+τ)``, so the first sample after the
    gap starts exactly at the first hour after the last hour of the previous block. No hour —
    input or target — appears in two blocks, hence no target hour of the calibration/test
    blocks was seen (as input or target) in training. The fractions apply to the
    ``N − 2·gap`` samples left after removing the gaps (floors for train and calibration, the
    rest to test).

    Parameters
    ----------
    data : WindowedData
        Windows from :func:`make_windows` with consecutive ``start_hour``.
    fractions : sequence of 3 floats
        Shares of train, calibration, test; each > 0, summing to 1 (±1e-6).

    Returns
    -------
    TimeSplit
        ``train, calibration, test = split_by_time(data)`` works.

    Raises
    ------
    WindowError
        Not three fractions, a fraction ≤ 0, a sum ≠ 1, or too few samples for every block to
        get at least one after the gaps.
    """
    fr = [float(v) for v in fractions]
    if len(fr) != 3:
        raise WindowError(f"fractions must be 3 numbers (train, calibration, test), got {fr}")
    if any(not math.isfinite(v) or v <= 0.0 for v in fr):
        raise WindowError(f"every fraction must be > 0, got {fr}")
    if abs(sum(fr) - 1.0) > _FRACTION_TOLERANCE:
        raise WindowError(f"fractions must sum to 1, got {fr} (sum {sum(fr):.6g})")
    gap = data.history + data.horizon - 1
    n = len(data)
    available = n - 2 * gap
    n_train = math.floor(fr[0] * available)
    n_cal = math.floor(fr[1] * available)
    n_test = available - n_train - n_cal
    if min(n_train, n_cal, n_test) < 1:
        raise WindowError(
            f"{n} windows are too few to split with fractions {fr}: removing 2 gaps of "
            f"M+tau-1 = {gap} samples leaves {available}, giving train/calibration/test = "
            f"{n_train}/{n_cal}/{n_test}; give more data or shorter windows"
        )
    cal_start = n_train + gap
    test_start = cal_start + n_cal + gap
    return TimeSplit(
        train=data.subset(slice(0, n_train)),
        calibration=data.subset(slice(cal_start, cal_start + n_cal)),
        test=data.subset(slice(test_start, test_start + n_test)),
        gap=gap,
    )


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-series affine scaling ``z = (v − mean) / std`` over the last axis.

    Fit on the training block only (:meth:`fit`), then apply to every block, so no statistic of
    calibration/test data leaks into training.

    Attributes
    ----------
    mean, std : ndarray, shape (F,)
        Per-series mean and standard deviation (population, ddof=0) in the series' units; a
        constant series gets ``std = 1``.
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        """Fit on ``values`` of shape (..., F): statistics over every axis but the last."""
        v = np.asarray(values, dtype=float)
        if v.ndim == 0 or v.size == 0:
            raise WindowError(f"cannot fit a Standardizer on an empty array (shape {v.shape})")
        if not np.all(np.isfinite(v)):
            raise InvalidSeriesError("cannot fit a Standardizer on NaN or infinite values")
        flat = v.reshape(-1, v.shape[-1])
        mean = flat.mean(axis=0)
        std = flat.std(axis=0)
        std = np.where(std > 1e-12 * np.maximum(1.0, np.abs(mean)), std, 1.0)
        return cls(mean=mean, std=std)

    def _check(self, values: np.ndarray) -> np.ndarray:
        v = np.asarray(values, dtype=float)
        if v.ndim == 0 or v.shape[-1] != self.mean.shape[0]:
            raise WindowError(
                f"Standardizer was fitted on {self.mean.shape[0]} series; got last axis of "
                f"shape {v.shape}"
            )
        return v

    def transform(self, values: np.ndarray) -> np.ndarray:
        """Standardize: ``(values − mean) / std`` (dimensionless)."""
        return (self._check(values) - self.mean) / self.std

    def inverse(self, values: np.ndarray) -> np.ndarray:
        """Back to the original units: ``values · std + mean`` (keeps ``lower ≤ upper``)."""
        return self._check(values) * self.std + self.mean

    def inverse_scale(self, values: np.ndarray) -> np.ndarray:
        """Scale only, for widths/differences: ``values · std``."""
        return self._check(values) * self.std


@dataclass(frozen=True, eq=False)
class WindowScalers:
    """A feature and a target :class:`Standardizer`, fitted together on the training block."""

    x: Standardizer
    y: Standardizer

    @classmethod
    def fit(cls, train: WindowedData) -> WindowScalers:
        """Fit both scalers on the training windows only."""
        return cls(x=Standardizer.fit(train.x), y=Standardizer.fit(train.y))

    def transform(self, data: WindowedData) -> WindowedData:
        """Standardized copy of ``data`` (same windows and hours)."""
        return data.with_arrays(self.x.transform(data.x), self.y.transform(data.y))
