"""Prediction losses of a box (interval) forecast against the truth (paper A eq 20).

Paper A trains its LSTM on ``L_pred = Σ_t NLL(y̲_t, ȳ_t, y_t)`` (eq 20) summed over price and
load. Three losses of a box ``[lower, upper]`` at miscoverage level α are offered:

* :func:`pinball_loss` — the quantile (pinball) loss of ``lower`` at level α/2 and of
  ``upper`` at level 1 − α/2. It is a *proper* scoring rule: its expectation is minimized by
  the true quantiles, so a model trained on it learns the α/2 and 1 − α/2 quantiles. Default.
* :func:`gaussian_box_nll` — the paper's "NLL" variant: a Gaussian negative log-likelihood with
  mean the box midpoint and standard deviation the half-width divided by ``z_{1−α/2}``, i.e.
  the box is read as the central (1 − α) interval of a normal distribution.
* :func:`midpoint_mse` — squared error of the midpoint (the paper's "prediction MSE" metric).

All losses are means over every element (batch × horizon × target), so their value does not
depend on the batch size or τ; they are computed in the units of their inputs (in training:
standardized units).
"""

from __future__ import annotations

import math
from enum import Enum
from statistics import NormalDist

import torch

from gridrecourse.uncertainty.conformal import BoxShapeError, check_alpha

#: Default lower bound on the Gaussian standard deviation (units of the inputs), so that a box
#: collapsing to zero width gives a large but finite loss.
DEFAULT_MIN_SIGMA = 1e-4


class LossKind(str, Enum):
    """Which prediction loss trains the box predictor."""

    PINBALL = "pinball"
    GAUSSIAN_NLL = "gaussian_nll"
    MIDPOINT_MSE = "midpoint_mse"


def _check_shapes(lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor) -> None:
    if not (lower.shape == upper.shape == y.shape):
        raise BoxShapeError(
            "lower, upper and y must have the same shape (no broadcasting), got "
            f"{tuple(lower.shape)}, {tuple(upper.shape)}, {tuple(y.shape)}"
        )


def quantile_loss(prediction: torch.Tensor, y: torch.Tensor, quantile: float) -> torch.Tensor:
    """Mean pinball loss ``ρ_q(y − f) = max(q (y − f), (q − 1)(y − f))`` of a q-quantile.

    Parameters
    ----------
    prediction, y : Tensor, same shape
        Predicted q-quantile and truth (same units).
    quantile : float
        q ∈ (0, 1).

    Returns
    -------
    Tensor
        Scalar mean over all elements, units of ``y``.
    """
    q = check_alpha(quantile)
    u = y - prediction
    return torch.maximum(q * u, (q - 1.0) * u).mean()


def pinball_loss(
    lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor, alpha: float
) -> torch.Tensor:
    """Pinball loss of a box: mean of the quantile losses at α/2 (lower) and 1 − α/2 (upper).

    ``L = ½ [ mean ρ_{α/2}(y − lower) + mean ρ_{1−α/2}(y − upper) ]`` with
    ``ρ_q(u) = max(q u, (q − 1) u)``; the proper-scoring counterpart of eq 20 of paper A.

    Parameters
    ----------
    lower, upper, y : Tensor, same shape (e.g. (batch, τ, K))
        Box bounds and truth.
    alpha : float
        Miscoverage level α ∈ (0, 1) of the box.

    Returns
    -------
    Tensor
        Scalar, units of ``y``.
    """
    a = check_alpha(alpha)
    _check_shapes(lower, upper, y)
    return 0.5 * (quantile_loss(lower, y, a / 2.0) + quantile_loss(upper, y, 1.0 - a / 2.0))


def gaussian_box_nll(
    lower: torch.Tensor,
    upper: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
    min_sigma: float = DEFAULT_MIN_SIGMA,
) -> torch.Tensor:
    """Gaussian negative log-likelihood of the truth under the box (paper A's eq 20 variant).

    The box is read as the central (1 − α) interval of ``N(μ, σ²)``::

        μ = (lower + upper) / 2,   σ = (upper − lower) / (2 z_{1−α/2}),
        NLL = ½ log(2π σ²) + (y − μ)² / (2 σ²)

    with ``z_{1−α/2}`` the standard normal quantile (1.645 for α = 0.1). σ is clamped below at
    ``min_sigma`` so a zero-width box gives a finite loss. Unlike the pinball loss this is only
    proper for Gaussian errors; it is the paper's choice, offered for comparison.

    Parameters
    ----------
    lower, upper, y : Tensor, same shape
        Box bounds and truth.
    alpha : float
        Miscoverage level α ∈ (0, 1) of the box.
    min_sigma : float
        Lower bound on σ (units of ``y``).

    Returns
    -------
    Tensor
        Scalar mean NLL (nats per element).
    """
    a = check_alpha(alpha)
    _check_shapes(lower, upper, y)
    z = NormalDist().inv_cdf(1.0 - a / 2.0)
    mu = 0.5 * (lower + upper)
    sigma = (0.5 * (upper - lower) / z).clamp_min(min_sigma)
    nll = 0.5 * math.log(2.0 * math.pi) + torch.log(sigma) + 0.5 * ((y - mu) / sigma) ** 2
    return nll.mean()


def midpoint_mse(lower: torch.Tensor, upper: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean squared error of the box midpoint ``(lower + upper)/2`` (units of ``y`` squared)."""
    _check_shapes(lower, upper, y)
    return ((0.5 * (lower + upper) - y) ** 2).mean()


def box_loss(
    kind: LossKind | str,
    lower: torch.Tensor,
    upper: torch.Tensor,
    y: torch.Tensor,
    alpha: float,
) -> torch.Tensor:
    """Dispatch to the loss named by ``kind`` (α is ignored by :func:`midpoint_mse`)."""
    kind = LossKind(kind)
    if kind is LossKind.PINBALL:
        return pinball_loss(lower, upper, y, alpha)
    if kind is LossKind.GAUSSIAN_NLL:
        return gaussian_box_nll(lower, upper, y, alpha)
    return midpoint_mse(lower, upper, y)
