"""Split conformal calibration (paper A eqs 21–23): scores, q̂, coverage, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridrecourse.errors import GridRecourseError
from gridrecourse.uncertainty.conformal import (
    Box,
    BoxShapeError,
    CalibrationError,
    ConformalCalibration,
    CoverageLevelError,
    calibrate,
    conformal_quantile,
    conformal_rank,
    conformity_scores,
    empirical_coverage,
)

NINE_SCORES = np.array([0.3, -0.1, 0.7, 0.2, 0.5, 0.9, 0.0, 0.4, 0.6])
# sorted: -0.1, 0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.9


# ---------------------------------------------------------------- scores and q̂ by hand (b)
def test_conformity_scores_hand_example_max_over_all_outputs():
    # 2 samples x (tau=2, K=2) outputs
    lower = np.zeros((2, 2, 2))
    upper = np.ones((2, 2, 2))
    y = np.array(
        [
            [[0.5, 0.5], [0.5, 0.5]],  # inside everywhere: max(lo-y, y-hi) = -0.5
            [[0.5, 1.3], [-0.2, 0.9]],  # worst output exceeds the upper bound by 0.3
        ]
    )
    np.testing.assert_allclose(conformity_scores(lower, upper, y), [-0.5, 0.3])


@pytest.mark.parametrize(
    ("alpha", "rank", "expected"),
    [
        (0.2, 8, 0.7),  # ceil(10 * 0.8) = 8
        (0.1, 9, 0.9),  # ceil(10 * 0.9) = 9 = M
        (0.5, 5, 0.4),  # ceil(10 * 0.5) = 5
        (0.25, 8, 0.7),  # ceil(7.5) = 8 (the paper's floor would give rank 7 -> 0.6)
        (0.95, 1, -0.1),  # ceil(0.5) = 1, the smallest score
    ],
)
def test_conformal_quantile_hand_computed_on_nine_scores(alpha, rank, expected):
    assert conformal_rank(9, alpha) == rank
    assert conformal_quantile(NINE_SCORES, alpha) == pytest.approx(expected)


def test_rank_is_robust_to_float_round_off():
    # (9 + 1) * (1 - 0.7) evaluates to 3.0000000000000004 in floating point; the rank is 3
    assert conformal_rank(9, 0.7) == 3
    assert conformal_quantile(NINE_SCORES, 0.7) == pytest.approx(0.2)


def test_calibrate_and_apply_hand_example():
    lower = np.array([[0.0], [0.0], [0.0], [0.0]])
    upper = np.array([[1.0], [1.0], [1.0], [1.0]])
    y = np.array([[1.2], [0.5], [-0.4], [1.1]])  # scores 0.2, -0.5, 0.4, 0.1
    cal = calibrate(lower, upper, y, alpha=0.2)  # rank ceil(5 * 0.8) = 4 -> 0.4
    assert isinstance(cal, ConformalCalibration)
    assert cal.q_hat == pytest.approx(0.4)
    assert (cal.n_calibration, cal.rank, cal.alpha) == (4, 4, 0.2)
    assert cal.coverage_upper_bound == pytest.approx(0.8 + 1 / 5)
    box = cal.apply(lower, upper)
    assert isinstance(box, Box)
    np.testing.assert_allclose(box.lower, -0.4)
    np.testing.assert_allclose(box.upper, 1.4)
    assert empirical_coverage(*box, y) == 1.0


def test_empirical_coverage_is_joint_over_outputs():
    lower = np.zeros((4, 3))
    upper = np.ones((4, 3))
    y = np.full((4, 3), 0.5)
    y[1, 2] = 1.5  # one output of sample 1 outside
    y[3, 0] = -0.1  # one output of sample 3 outside
    assert empirical_coverage(lower, upper, y) == pytest.approx(0.5)  # marginal would be 10/12
    # consistent with the max score: covered iff score <= 0
    scores = conformity_scores(lower, upper, y)
    assert empirical_coverage(lower, upper, y) == np.mean(scores <= 0)


def test_negative_q_hat_shrinks_and_empty_boxes_count_as_misses():
    cal = ConformalCalibration(q_hat=-0.3, alpha=0.1, n_calibration=100, rank=91)
    box = cal.apply(np.array([[0.0], [0.0]]), np.array([[1.0], [0.4]]))
    np.testing.assert_allclose(box.lower[:, 0], [0.3, 0.3])
    np.testing.assert_allclose(box.upper[:, 0], [0.7, 0.1])  # second box is empty
    assert empirical_coverage(*box, np.array([[0.5], [0.2]])) == 0.5


# ---------------------------------------------------------------------------- errors (c)
@pytest.mark.parametrize("alpha", [0.0, 1.0, 1.2, -0.1, float("nan"), "a"])
def test_alpha_outside_open_unit_interval_is_rejected(alpha):
    with pytest.raises(CoverageLevelError, match="alpha") as info:
        conformal_quantile(NINE_SCORES, alpha)
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, GridRecourseError)
    with pytest.raises(CoverageLevelError):
        calibrate(np.zeros((20, 1)), np.ones((20, 1)), np.zeros((20, 1)), alpha)


def test_calibration_set_too_small_names_m_and_alpha():
    with pytest.raises(CalibrationError, match=r"M=5.*alpha=0\.1") as info:
        conformal_quantile(np.arange(5.0), 0.1)
    assert "at least M=9" in str(info.value)
    with pytest.raises(CalibrationError, match="M=5"):
        calibrate(np.zeros((5, 2)), np.ones((5, 2)), np.zeros((5, 2)), 0.1)
    # the boundary: M = 9 works for alpha = 0.1, M = 8 does not
    assert conformal_quantile(np.arange(9.0), 0.1) == 8.0
    with pytest.raises(CalibrationError):
        conformal_quantile(np.arange(8.0), 0.1)


def test_bad_inputs_are_rejected():
    with pytest.raises(BoxShapeError, match="same shape"):
        conformity_scores(np.zeros((3, 2)), np.ones((3, 2)), np.zeros((3, 3)))
    with pytest.raises(BoxShapeError, match="NaN"):
        conformity_scores(np.zeros(3), np.ones(3), np.array([0.0, np.nan, 0.0]))
    with pytest.raises(BoxShapeError):
        conformity_scores(np.zeros((0, 2)), np.ones((0, 2)), np.zeros((0, 2)))
    with pytest.raises(CalibrationError, match="NaN"):
        conformal_quantile(np.array([0.1, np.nan] * 10), 0.1)
    with pytest.raises(CalibrationError, match="M=0"):
        conformal_quantile(np.array([]), 0.1)
    with pytest.raises(BoxShapeError):
        ConformalCalibration(0.1, 0.1, 10, 10).apply(np.zeros(3), np.zeros(4))


# -------------------------------------------------------------- coverage on synthetic data (a)
def _synthetic(rng: np.random.Generator, n: int, tau: int = 3, k: int = 2):
    """y = sin features + heteroscedastic noise; the noise scale varies 10x with x."""
    x = rng.uniform(0.0, 2.0 * np.pi, size=(n, 1, 1))
    phase = np.arange(tau)[None, :, None] * 0.3 + np.arange(k)[None, None, :]
    mean = np.sin(x + phase)
    sd = 0.05 + 0.45 * (1.0 + np.cos(x + phase)) / 2.0
    return mean, mean + sd * rng.standard_normal((n, tau, k))


def _miscalibrated(mean: np.ndarray, kind: str):
    if kind == "narrow":  # constant +-0.05 box around a biased mean: far too narrow
        return mean + 0.1 - 0.05, mean + 0.1 + 0.05
    return mean - 2.0, mean + 2.5  # far too wide


@pytest.mark.parametrize("alpha", [0.1, 0.3])
@pytest.mark.parametrize("kind", ["narrow", "wide"])
def test_coverage_on_synthetic_heteroscedastic_data(alpha, kind):
    rng = np.random.default_rng(20240 + int(alpha * 100))
    mean_cal, y_cal = _synthetic(rng, 500)
    mean_test, y_test = _synthetic(rng, 5000)
    lo_cal, hi_cal = _miscalibrated(mean_cal, kind)
    lo_test, hi_test = _miscalibrated(mean_test, kind)
    raw = empirical_coverage(lo_test, hi_test, y_test)
    assert (raw < 0.5) if kind == "narrow" else (raw > 0.99)  # really mis-calibrated

    cal = calibrate(lo_cal, hi_cal, y_cal, alpha)
    assert (cal.q_hat > 0) if kind == "narrow" else (cal.q_hat < 0)
    coverage = empirical_coverage(*cal.apply(lo_test, hi_test), y_test)
    assert 1 - alpha - 0.02 <= coverage <= 1 - alpha + 0.05


@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_mean_coverage_over_repetitions_matches_the_guarantee(alpha):
    """E[coverage] lies in [1-α, 1-α+1/(M+1)] (Prop. 3); check the mean of 300 repetitions."""
    rng = np.random.default_rng(7)
    m, n_test, reps = 50, 500, 300
    coverages = []
    for _ in range(reps):
        mean_cal, y_cal = _synthetic(rng, m)
        mean_test, y_test = _synthetic(rng, n_test)
        cal = calibrate(*_miscalibrated(mean_cal, "narrow"), y_cal, alpha)
        coverages.append(
            empirical_coverage(*cal.apply(*_miscalibrated(mean_test, "narrow")), y_test)
        )
    mean = float(np.mean(coverages))
    # coverage given the calibration set is Beta(k, M+1-k): sd ~ sqrt(α(1-α)/M)
    se = np.sqrt(alpha * (1 - alpha) / m) / np.sqrt(reps)
    assert 1 - alpha - 3 * se <= mean <= 1 - alpha + 1 / (m + 1) + 3 * se


@settings(max_examples=60, deadline=None)
@given(
    scores=st.lists(st.floats(-10, 10, allow_nan=False), min_size=1, max_size=60),
    alpha=st.floats(0.01, 0.99),
)
def test_q_hat_covers_at_least_k_calibration_scores(scores, alpha):
    s = np.array(scores)
    try:
        k = conformal_rank(s.size, alpha)
    except CalibrationError:
        assert np.ceil((s.size + 1) * (1 - alpha) - 1e-9) > s.size
        return
    q = conformal_quantile(s, alpha)
    assert q in s
    assert np.count_nonzero(s <= q) >= k >= (s.size + 1) * (1 - alpha) - 1e-9
    assert np.count_nonzero(s < q) < k
