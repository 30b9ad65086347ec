"""Box prediction losses (paper A eq 20): hand values, properness, errors."""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gridrecourse.learning.losses import (  # noqa: E402
    LossKind,
    box_loss,
    gaussian_box_nll,
    midpoint_mse,
    pinball_loss,
    quantile_loss,
)
from gridrecourse.uncertainty.conformal import BoxShapeError, CoverageLevelError  # noqa: E402


def t(values) -> torch.Tensor:
    return torch.as_tensor(np.asarray(values, dtype=float))


def test_pinball_hand_computation():
    # alpha = 0.2: quantiles 0.1 (lower) and 0.9 (upper)
    lower, upper, y = t([0.0, 1.0]), t([2.0, 3.0]), t([1.0, 4.0])
    # lower: y - lo = [1, 3] -> 0.1 * u = [0.1, 0.3], mean 0.2
    # upper: y - hi = [-1, 1] -> [max(-0.9, 0.1), max(0.9, -0.1)] = [0.1, 0.9], mean 0.5
    assert float(pinball_loss(lower, upper, y, 0.2)) == pytest.approx(0.5 * (0.2 + 0.5))
    assert float(quantile_loss(lower, y, 0.1)) == pytest.approx(0.2)
    assert float(quantile_loss(upper, y, 0.9)) == pytest.approx(0.5)
    # a box that contains y exactly at its ends: only the (small) in-box slopes remain
    assert float(pinball_loss(t([1.0]), t([1.0]), t([1.0]), 0.2)) == 0.0


@pytest.mark.parametrize("alpha", [0.1, 0.3])
def test_pinball_is_minimized_at_the_empirical_quantiles(alpha):
    """Properness: over a grid, the best constant bounds are the α/2 and 1−α/2 quantiles."""
    rng = np.random.default_rng(3)
    sample = rng.gamma(2.0, 1.5, size=1001)  # skewed; n q is never an integer here
    grid = np.union1d(sample, np.linspace(sample.min(), sample.max(), 2001))
    y = t(sample)
    fixed = t(np.full_like(sample, np.median(sample)))

    def loss_lower(c: float) -> float:
        return float(pinball_loss(t(np.full_like(sample, c)), fixed, y, alpha))

    def loss_upper(c: float) -> float:
        return float(pinball_loss(fixed, t(np.full_like(sample, c)), y, alpha))

    best_lower = grid[np.argmin([loss_lower(c) for c in grid])]
    best_upper = grid[np.argmin([loss_upper(c) for c in grid])]
    assert best_lower == np.quantile(sample, alpha / 2, method="inverted_cdf")
    assert best_upper == np.quantile(sample, 1 - alpha / 2, method="inverted_cdf")


def test_gaussian_box_nll_matches_normal_log_density():
    alpha = 0.1
    z = NormalDist().inv_cdf(1 - alpha / 2)
    # box [-z, z] is the central 90% interval of N(0, 1)
    lower, upper = t([-z, -z]), t([z, z])
    value = gaussian_box_nll(lower, upper, t([0.0, 1.0]), alpha)
    assert float(value) == pytest.approx(0.5 * math.log(2 * math.pi) + 0.25)
    # general case against torch.distributions
    rng = np.random.default_rng(0)
    lo = rng.normal(size=50)
    hi = lo + rng.uniform(0.1, 3.0, size=50)
    y = rng.normal(size=50)
    mu, sigma = (lo + hi) / 2, (hi - lo) / 2 / z
    expected = -torch.distributions.Normal(t(mu), t(sigma)).log_prob(t(y)).mean()
    assert float(gaussian_box_nll(t(lo), t(hi), t(y), alpha)) == pytest.approx(float(expected))


def test_gaussian_box_nll_best_half_width_is_z_times_rms_residual():
    alpha = 0.3
    z = NormalDist().inv_cdf(1 - alpha / 2)
    residuals = np.random.default_rng(1).normal(0.0, 0.7, size=400)
    rms = np.sqrt(np.mean(residuals**2))
    widths = np.linspace(0.2, 3.0, 1401)
    losses = [
        float(gaussian_box_nll(t(np.full(400, -w)), t(np.full(400, w)), t(residuals), alpha))
        for w in widths
    ]
    assert widths[np.argmin(losses)] == pytest.approx(z * rms, abs=2e-3)


def test_zero_width_box_gives_a_finite_nll_and_gradients_flow():
    lower = t([0.0, 1.0]).requires_grad_()
    upper = t([0.0, 1.0]).requires_grad_()
    value = gaussian_box_nll(lower, upper, t([0.0, 1.0]), 0.1)
    assert math.isfinite(float(value.detach()))
    lo2 = t([0.0, 1.0]).requires_grad_()
    hi2 = t([0.5, 2.0]).requires_grad_()
    pinball_loss(lo2, hi2, t([1.0, 0.5]), 0.1).backward()
    assert lo2.grad is not None and hi2.grad is not None


def test_midpoint_mse_and_dispatch():
    lower, upper, y = t([0.0, 2.0]), t([2.0, 4.0]), t([1.0, 5.0])
    assert float(midpoint_mse(lower, upper, y)) == pytest.approx(0.5 * (0.0 + 4.0))
    assert float(box_loss(LossKind.MIDPOINT_MSE, lower, upper, y, 0.1)) == pytest.approx(2.0)
    assert float(box_loss("pinball", lower, upper, y, 0.1)) == pytest.approx(
        float(pinball_loss(lower, upper, y, 0.1))
    )
    assert float(box_loss(LossKind.GAUSSIAN_NLL, lower, upper, y, 0.1)) == pytest.approx(
        float(gaussian_box_nll(lower, upper, y, 0.1))
    )
    with pytest.raises(ValueError, match="LossKind"):
        box_loss("mse", lower, upper, y, 0.1)


def test_errors():
    a = t([0.0, 1.0])
    with pytest.raises(BoxShapeError, match="same shape"):
        pinball_loss(a, a, t([0.0, 1.0, 2.0]), 0.1)
    with pytest.raises(BoxShapeError):
        gaussian_box_nll(a, a, t([[0.0, 1.0]]), 0.1)  # no silent broadcasting
    for alpha in (0.0, 1.0, 1.5):
        with pytest.raises(CoverageLevelError):
            pinball_loss(a, a, a, alpha)
        with pytest.raises(CoverageLevelError):
            gaussian_box_nll(a, a, a, alpha)
