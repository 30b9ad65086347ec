"""SAA batch designs: stratified batches are unbiased for every fixed x, and narrower.

The validity of the SAA lower bound rests on ``E[Σ_j w_kj f(ω_kj)] = Σ_ω π_ω f(ω)`` for every
fixed vector ``f`` (a first stage's scenario costs). The exact expectation of a stratified
batch is computed here independently of the sampler, by integrating over each stratum's
uniform draw (the inclusion probabilities), and compared to ``π @ f`` to 1e-10 (cumulative-sum
round-off over 1200 scenarios); a Monte Carlo check of the sampler itself (200 000 batches)
must land within 5 standard errors.
"""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.evaluation.batch_sampling import (
    BatchSampling,
    BatchSamplingError,
    draw_batches,
    take_all_stratum,
)


def _heavy_tailed(rng: np.random.Generator, s: int) -> np.ndarray:
    """Scenario costs like the siting P1 ones: a bounded body and three far-out penalties."""
    f = rng.uniform(1.0, 6.0, size=s)
    f[rng.choice(s, size=3, replace=False)] = [30.0, 60.0, 65.0]
    return f


def _expected_weights(p: np.ndarray, key: np.ndarray, batch_size: int) -> np.ndarray:
    """E[Σ_j w_j 1{ω_j = ω}] per scenario, by integrating each stratum's uniform draw."""
    p = p / p.sum()
    take = take_all_stratum(key, p, batch_size)
    rest = np.setdiff1d(np.arange(p.size), take)
    rest = rest[np.argsort(key[rest], kind="stable")]
    mass = p[rest].sum()
    n = batch_size - take.size
    upper = np.cumsum(p[rest]) / mass
    lower = upper - p[rest] / mass
    expected = np.zeros(p.size)
    expected[take] = p[take]
    for h in range(n):  # P(draw h = ω) = n·|I_ω ∩ [h/n, (h+1)/n)|, each draw weighs mass/n
        overlap = np.clip(np.minimum(upper, (h + 1) / n) - np.maximum(lower, h / n), 0, None)
        expected[rest] += n * overlap * mass / n
    return expected


@pytest.mark.parametrize("equal", [True, False])
@pytest.mark.parametrize("batch_size", [1, 7, 40, 200])
def test_stratified_batches_are_unbiased_for_every_cost_vector(
    equal: bool, batch_size: int
) -> None:
    rng = np.random.default_rng(batch_size + 1000 * equal)
    s = 1200
    p = np.full(s, 1.0 / s) if equal else rng.dirichlet(np.full(s, 2.0))
    key = _heavy_tailed(rng, s)
    expected = _expected_weights(p, key, batch_size)
    assert expected.sum() == pytest.approx(1.0, abs=1e-12)
    for f in (key, rng.normal(size=s), -(key**2)):  # E[f̂(x)] = f(x) for any scenario costs
        assert expected @ f == pytest.approx(p @ f, rel=1e-10, abs=1e-12)  # summation round-off


def test_sampler_matches_its_design_expectation() -> None:
    rng = np.random.default_rng(3)
    s, n_batch, k = 300, 20, 200_000
    p = rng.dirichlet(np.full(s, 3.0))
    f = _heavy_tailed(rng, s)
    b = draw_batches(p, k, n_batch, rng, BatchSampling.STRATIFIED, key=f)
    estimates = (b.weights * f[b.indices]).sum(axis=1)
    assert np.allclose(b.weights.sum(axis=1), 1.0)
    assert np.all(b.indices[:, : b.take_all.size] == b.take_all)
    se = estimates.std(ddof=1) / np.sqrt(k)
    assert abs(estimates.mean() - p @ f) < 5 * se


def test_take_all_stratum_takes_the_far_out_penalties() -> None:
    rng = np.random.default_rng(5)
    f = _heavy_tailed(rng, 1200)
    p = np.full(1200, 1 / 1200)
    far = take_all_stratum(f, p, 200)
    assert sorted(f[far].tolist()) == [30.0, 60.0, 65.0]
    assert take_all_stratum(f, p, 4).size == 2  # at most N // 2
    p_zero = p.copy()
    p_zero[far] = 0.0
    assert take_all_stratum(f, p_zero, 200).size == 0  # never a zero-probability scenario


def test_stratified_batches_have_far_less_variance_on_heavy_tails() -> None:
    rng = np.random.default_rng(11)
    s, n_batch = 1200, 200
    p = np.full(s, 1.0 / s)
    f = _heavy_tailed(rng, s)
    iid = draw_batches(p, 2000, n_batch, np.random.default_rng(1))
    strat = draw_batches(p, 2000, n_batch, np.random.default_rng(1), "stratified", key=f)
    sd_iid = (iid.weights * f[iid.indices]).sum(axis=1).std()
    sd_strat = (strat.weights * f[strat.indices]).sum(axis=1).std()
    assert sd_strat < sd_iid / 20, (sd_strat, sd_iid)


def test_iid_batches_are_the_former_draws() -> None:
    """The i.i.d. design draws exactly what ``spar_statistical_bounds`` drew before designs
    existed (so older checkpoints and results reproduce)."""
    p = np.full(50, 0.02)
    b = draw_batches(p, 3, 7, np.random.default_rng(9))
    assert np.array_equal(b.indices, np.random.default_rng(9).integers(0, 50, size=(3, 7)))
    assert np.allclose(b.weights, 1 / 7) and b.take_all.size == 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sampling": BatchSampling.STRATIFIED}, "stratification key"),
        ({"sampling": BatchSampling.STRATIFIED, "key": np.ones(3)}, "10 finite values"),
        ({"sampling": BatchSampling.STRATIFIED, "key": np.full(10, np.nan)}, "10 non-finite"),
        ({"batch_size": 0}, "batch_size must be a positive integer"),
        ({"probability": -np.ones(10)}, "non-negative"),
    ],
)
def test_bad_designs_are_refused(kwargs: dict, match: str) -> None:
    args = {"probability": np.full(10, 0.1), "n_batches": 2, "batch_size": 3}
    args.update(kwargs)
    with pytest.raises(BatchSamplingError, match=match):
        draw_batches(rng=np.random.default_rng(0), **args)
