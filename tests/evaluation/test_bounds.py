"""Tests of the Mak–Morton–Wood SAA bounds (paper C §II-E)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from gridrecourse.evaluation.bounds import (
    BoundsInputError,
    ConfidenceInterval,
    CriticalValue,
    bounds_gap,
    bounds_gap_pct,
    confidence_interval,
    paired_gap_estimate,
    statistical_bounds,
)

DATA = np.array([20.41, 20.18, 20.57, 20.26, 20.33, 20.49, 20.12, 20.38, 20.29, 20.44])


def test_small_sample_matches_scipy_t_interval() -> None:
    ci = confidence_interval(DATA, 0.95)
    low, high = stats.t.interval(0.95, df=DATA.size - 1, loc=DATA.mean(), scale=stats.sem(DATA))
    assert ci.critical is CriticalValue.STUDENT_T
    assert (ci.low, ci.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert ci.mean == pytest.approx(DATA.mean())
    assert ci.half_width == pytest.approx((high - low) / 2, rel=1e-12)
    assert ci.n == 10 and ci.confidence == 0.95
    ci90 = confidence_interval(DATA, 0.90)
    low90, high90 = stats.t.interval(0.90, df=9, loc=DATA.mean(), scale=stats.sem(DATA))
    assert (ci90.low, ci90.high) == (pytest.approx(low90), pytest.approx(high90))


def test_hand_computed_interval() -> None:
    ci = confidence_interval([1.0, 2.0, 3.0], 0.95)
    # mean 2, s = 1; closed-form t quantile for 2 degrees of freedom:
    # t_{2, p} = (2p − 1) / sqrt(2 p (1 − p)) = 4.3026527297... at p = 0.975
    p = 0.975
    t_quantile = (2 * p - 1) / np.sqrt(2 * p * (1 - p))
    assert ci.mean == 2.0 and ci.std == pytest.approx(1.0)
    assert ci.half_width == pytest.approx(t_quantile / np.sqrt(3), rel=1e-12)


def test_large_sample_uses_normal_quantile() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=30)
    ci = confidence_interval(x, 0.95)
    low, high = stats.norm.interval(0.95, loc=x.mean(), scale=stats.sem(x))
    assert ci.critical is CriticalValue.NORMAL
    assert ci.critical_value == pytest.approx(1.959963984540054)
    assert (ci.low, ci.high) == (pytest.approx(low, rel=1e-12), pytest.approx(high, rel=1e-12))
    assert confidence_interval(x[:29]).critical is CriticalValue.STUDENT_T
    assert confidence_interval(x, t_threshold=31).critical is CriticalValue.STUDENT_T


@pytest.mark.parametrize("n", [5, 60])
def test_coverage_on_normal_samples(n: int) -> None:
    rng = np.random.default_rng(1234 + n)
    true_mean, reps = 3.7, 2000
    samples = rng.normal(loc=true_mean, scale=2.5, size=(reps, n))
    hits = 0
    for row in samples:
        ci = confidence_interval(row, 0.95)
        hits += ci.low <= true_mean <= ci.high
    assert abs(hits / reps - 0.95) <= 0.02


def test_bounds_gap_and_statistical_bounds() -> None:
    ub = ConfidenceInterval(mean=20.3, half_width=0.1, low=20.2, high=20.4, n=10, confidence=0.95)
    lb = ConfidenceInterval(mean=20.0, half_width=0.2, low=19.8, high=20.2, n=10, confidence=0.95)
    assert bounds_gap(ub, lb) == pytest.approx(0.6)
    assert bounds_gap_pct(ub, lb) == pytest.approx(100 * 0.6 / 20.3)
    assert bounds_gap_pct(ub, lb, objective=20.0) == pytest.approx(3.0)
    sb = statistical_bounds(DATA, DATA - 0.3, 0.95, objective=20.32)
    assert sb.gap == pytest.approx(sb.upper.high - sb.lower.low)
    assert sb.gap == pytest.approx(0.3 + 2 * sb.upper.half_width)
    assert sb.gap_pct == pytest.approx(100 * sb.gap / 20.32)


@pytest.mark.parametrize(
    ("samples", "confidence"),
    [([1.0], 0.95), ([1.0, np.nan], 0.95), ([1.0, 2.0], 1.0), ([[1.0, 2.0]], 0.95)],
)
def test_rejects_bad_input(samples: list[float], confidence: float) -> None:
    with pytest.raises(BoundsInputError):
        confidence_interval(samples, confidence)


def test_relative_gap_rejects_zero_objective() -> None:
    ci = confidence_interval([1.0, 2.0, 3.0])
    with pytest.raises(BoundsInputError):
        bounds_gap_pct(ci, ci, objective=0.0)


def test_paired_gap_estimate_by_hand_and_input_errors():
    u = np.array([3.1, 2.9, 3.4, 3.0])
    lb = np.array([3.0, 2.85, 3.2, 2.99])
    est = paired_gap_estimate(u, lb, objective=3.05, confidence=0.95)
    g = u - lb
    q = stats.t.ppf(0.95, df=3)  # one-sided
    assert est.upper == pytest.approx(g.mean() + q * g.std(ddof=1) / 2.0, rel=1e-12)
    assert est.upper_pct == pytest.approx(100 * est.upper / 3.05, rel=1e-12)
    np.testing.assert_allclose(est.samples, g)
    with pytest.raises(BoundsInputError, match="at least 2"):
        paired_gap_estimate(u[:1], lb[:1], objective=1.0)
    with pytest.raises(BoundsInputError, match="must be 1-D, equal"):
        paired_gap_estimate(u, lb[:3], objective=1.0)
    with pytest.raises(BoundsInputError, match="nonzero objective"):
        paired_gap_estimate(u, lb, objective=0.0)
    # K >= 30: the one-sided normal quantile
    big = paired_gap_estimate(np.tile(u, 8), np.tile(lb, 8), objective=3.05)
    assert big.critical is CriticalValue.NORMAL
    assert big.critical_value == pytest.approx(stats.norm.ppf(0.95), rel=1e-12)
