"""Windowing, time splits without leakage, and train-only standardization."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridrecourse.errors import InvalidSeriesError
from gridrecourse.learning.windows import (
    Standardizer,
    TimeSplit,
    WindowedData,
    WindowError,
    WindowScalers,
    make_windows,
    split_by_time,
)


def _series(n_hours: int, n_features: int = 3, n_targets: int = 2):
    hours = np.arange(n_hours, dtype=float)[:, None]
    features = hours * 10 + np.arange(n_features)[None, :]  # value encodes (hour, column)
    targets = -(hours * 10 + np.arange(n_targets)[None, :])
    return features, targets


def test_windows_hold_the_right_hours():
    features, targets = _series(50)
    m, tau = 6, 3
    w = make_windows(features, targets, m, tau)
    assert isinstance(w, WindowedData)
    n = 50 - m - tau + 1
    assert w.x.shape == (n, m, 3)
    assert w.y.shape == (n, tau, 2)
    assert len(w) == n
    assert (w.n_features, w.n_targets, w.history, w.horizon) == (3, 2, m, tau)
    np.testing.assert_array_equal(w.start_hour, np.arange(n))
    np.testing.assert_array_equal(w.target_start_hour, np.arange(n) + m)
    for i in (0, 7, n - 1):
        np.testing.assert_array_equal(w.x[i], features[i : i + m])
        np.testing.assert_array_equal(w.y[i], targets[i + m : i + m + tau])
    # last sample's last target hour is the last hour of the data
    assert w.y[-1, -1, 0] == targets[-1, 0]
    assert w.x.flags["C_CONTIGUOUS"]
    assert not np.shares_memory(w.x, features)


def test_one_dimensional_series_and_exact_fit():
    w = make_windows(np.arange(10.0), np.arange(10.0) * 2, history=7, horizon=3)
    assert w.x.shape == (1, 7, 1)
    assert w.y.shape == (1, 3, 1)
    np.testing.assert_array_equal(w.y[0, :, 0], [14.0, 16.0, 18.0])


def test_window_longer_than_data_names_the_values():
    features, targets = _series(20)
    with pytest.raises(WindowError, match=r"M\+tau = 18\+3 = 21 hours.*H=20"):
        make_windows(features, targets, 18, 3)


@pytest.mark.parametrize(("m", "tau"), [(0, 3), (4, 0), (-1, 2), (2.5, 1), (True, 2)])
def test_non_positive_or_non_integer_lengths_are_rejected(m, tau):
    features, targets = _series(20)
    with pytest.raises(WindowError, match="positive integer"):
        make_windows(features, targets, m, tau)


def test_nan_in_features_or_targets_is_reported_with_its_hour():
    features, targets = _series(30)
    features[12, 1] = np.nan
    with pytest.raises(InvalidSeriesError, match=r"features.*hour 12, column 1") as info:
        make_windows(features, targets, 4, 2)
    assert isinstance(info.value, ValueError)
    features, targets = _series(30)
    targets[5, 0] = np.inf
    with pytest.raises(InvalidSeriesError, match=r"targets.*hour 5"):
        make_windows(features, targets, 4, 2)


def test_mismatched_lengths_and_bad_dimensions():
    with pytest.raises(WindowError, match=r"H=30.*H=29"):
        make_windows(np.zeros((30, 2)), np.zeros((29, 1)), 4, 2)
    with pytest.raises(WindowError, match="2-D"):
        make_windows(np.zeros((30, 2, 2)), np.zeros((30, 1)), 4, 2)


# ------------------------------------------------------------------------------- time split
def test_split_is_contiguous_with_gaps_and_no_shared_hour():
    features, targets = _series(500)
    m, tau = 24, 4
    w = make_windows(features, targets, m, tau)
    split = split_by_time(w)
    assert isinstance(split, TimeSplit)
    train, cal, test = split  # unpacks
    gap = m + tau - 1
    assert split.gap == gap
    assert len(train) + len(cal) + len(test) == len(w) - 2 * gap
    available = len(w) - 2 * gap
    assert len(train) == int(0.6 * available)
    assert len(cal) == int(0.2 * available)
    # contiguous blocks, in time order, with exactly `gap` samples dropped in between
    for block in (train, cal, test):
        np.testing.assert_array_equal(np.diff(block.start_hour), 1)
    assert train.start_hour[0] == 0
    assert cal.start_hour[0] - train.start_hour[-1] == gap + 1
    assert test.start_hour[0] - cal.start_hour[-1] == gap + 1
    assert test.start_hour[-1] == w.start_hour[-1]
    # no hour (input or target) of one block appears in another...
    hours = [b.hours_used() for b in (train, cal, test)]
    assert not np.intersect1d(hours[0], hours[1]).size
    assert not np.intersect1d(hours[1], hours[2]).size
    # ...and the gap is the smallest one that achieves this (the blocks touch)
    assert hours[1][0] == hours[0][-1] + 1
    assert hours[2][0] == hours[1][-1] + 1
    # the arrays really are the corresponding windows
    np.testing.assert_array_equal(cal.x, w.x[cal.start_hour])
    np.testing.assert_array_equal(test.y, w.y[test.start_hour])


@settings(max_examples=40, deadline=None)
@given(
    n_hours=st.integers(30, 400),
    m=st.integers(1, 12),
    tau=st.integers(1, 6),
    f_train=st.floats(0.2, 0.8),
)
def test_split_never_leaks_hours(n_hours, m, tau, f_train):
    fractions = (f_train, (1 - f_train) / 2, (1 - f_train) / 2)
    features, targets = _series(n_hours, 1, 1)
    w = make_windows(features, targets, m, tau)
    try:
        train, cal, test = split_by_time(w, fractions)
    except WindowError:
        assert len(w) - 2 * (m + tau - 1) < 10  # only when really short
        return
    for a, b in ((train, cal), (cal, test), (train, test)):
        assert a.hours_used().max() < b.hours_used().min()


@pytest.mark.parametrize(
    ("fractions", "message"),
    [
        ((0.6, 0.2, 0.1), "sum to 1"),
        ((0.7, 0.2, 0.2), "sum to 1"),
        ((0.5, 0.5), "3 numbers"),
        ((1.0, 0.0, 0.0), "> 0"),
        ((1.2, -0.1, -0.1), "> 0"),
    ],
)
def test_bad_fractions_are_rejected(fractions, message):
    features, targets = _series(300)
    w = make_windows(features, targets, 4, 2)
    with pytest.raises(WindowError, match=message):
        split_by_time(w, fractions)


def test_too_few_windows_to_split_names_the_sizes():
    features, targets = _series(60)
    w = make_windows(features, targets, 24, 4)  # 33 windows, gaps of 27 each
    with pytest.raises(WindowError, match=r"33 windows.*M\+tau-1 = 27"):
        split_by_time(w)


# -------------------------------------------------------------------------- standardization
def test_standardizer_fit_transform_inverse():
    rng = np.random.default_rng(0)
    values = rng.normal([5.0, -2.0, 100.0], [2.0, 0.1, 30.0], size=(400, 3))
    values[:, 1] = 7.0  # a constant series
    s = Standardizer.fit(values)
    z = s.transform(values)
    np.testing.assert_allclose(z[:, [0, 2]].mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(z[:, [0, 2]].std(axis=0), 1.0)
    assert s.std[1] == 1.0  # constant series not divided by zero
    np.testing.assert_allclose(z[:, 1], 0.0)
    np.testing.assert_allclose(s.inverse(z), values)
    np.testing.assert_allclose(s.inverse_scale(np.ones(3)), s.std)
    with pytest.raises(WindowError, match="3 series"):
        s.transform(np.zeros((4, 2)))
    with pytest.raises(InvalidSeriesError):
        Standardizer.fit(np.array([[1.0], [np.nan]]))


def test_window_scalers_use_training_statistics_only():
    rng = np.random.default_rng(1)
    h = 600
    trend = np.linspace(0.0, 50.0, h)[:, None]  # later blocks have a higher level
    features = trend + rng.normal(size=(h, 2))
    targets = 2 * trend + rng.normal(size=(h, 1))
    train, _cal, test = split_by_time(make_windows(features, targets, 8, 2))
    scalers = WindowScalers.fit(train)
    np.testing.assert_allclose(scalers.x.mean, train.x.reshape(-1, 2).mean(axis=0))
    np.testing.assert_allclose(scalers.y.std, train.y.reshape(-1, 1).std(axis=0))
    train_z, test_z = scalers.transform(train), scalers.transform(test)
    assert abs(train_z.y.mean()) < 1e-9
    assert test_z.y.mean() > 2.0  # test statistics were not used
    np.testing.assert_array_equal(test_z.start_hour, test.start_hour)
    np.testing.assert_allclose(scalers.y.inverse(test_z.y), test.y)
    with pytest.raises(WindowError, match="keep the shapes"):
        train.with_arrays(train.x[:-1], train.y)
