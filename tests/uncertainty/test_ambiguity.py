"""IDM bands and confidence-level sets (paper D eqs 13, 15–26) against independent references."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.stats import beta

from gridrecourse.uncertainty.ambiguity import AmbiguityInputError, idm_band, idm_levels


def test_levels_match_scipy_beta_quantiles_on_hand_counts():
    """n = 5 samples [1, 2, 2, 3, 7]: cumulative counts 1, 3, 3, 4, 5 (by hand)."""
    gamma, s = 0.95, 1.0
    band = idm_band(np.array([[2.0, 7.0, 1.0, 3.0, 2.0]]), gamma, s)
    assert band.values[0].tolist() == [1.0, 2.0, 2.0, 3.0, 7.0]
    assert band.count_le[0].tolist() == [1, 3, 3, 4, 5]
    assert band.count_lt[0].tolist() == [0, 1, 1, 3, 4]
    n = 5
    lower = [beta(m, s + n - m).ppf(0.025) for m in (1, 3, 3, 4, 5)]
    upper = [beta(s + m, n - m).ppf(0.975) for m in (1, 3, 3, 4)] + [1.0]
    assert band.lower_at_samples[0] == pytest.approx(lower, rel=1e-12)
    assert band.upper_at_samples[0] == pytest.approx(upper, rel=1e-12)
    lo, up = idm_levels(n, gamma, s)
    assert lo[0] == 0.0 and up[-1] == 1.0  # eq 20 first and last lines
    assert up[0] == pytest.approx(beta(s, n).ppf(0.975), rel=1e-12)


def test_band_contains_empirical_cdf_and_narrows_with_more_samples():
    rng = np.random.default_rng(3)
    widths = []
    for n in (20, 80, 320, 1280):
        x = rng.gamma(2.0, 1.0, size=(4, n))
        band = idm_band(x)
        ecdf = band.count_le / n
        assert np.all(band.lower_at_samples <= ecdf + 1e-12)
        assert np.all(band.upper_at_samples >= ecdf - 1e-12)
        # width of the band at the sample median count
        lo, up = band.level_lower, band.level_upper
        widths.append(up[n // 2] - lo[n // 2])
    assert all(b < a for a, b in itertools.pairwise(widths))
    assert widths[-1] < 0.25 * widths[0]


def test_cdf_bounds_step_interpolation_eq21():
    band = idm_band(np.array([[1.0, 2.0, 4.0]]))
    lo, up = band.level_lower, band.level_upper
    got_lo, got_up = band.cdf_bounds(np.array([[0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 9.0]]))
    # lower: value of the sample on the left; upper: value of the next sample
    assert got_lo[0].tolist() == pytest.approx([0, lo[1], lo[1], lo[2], lo[2], lo[3], lo[3]])
    assert got_up[0].tolist() == pytest.approx([up[1], up[1], up[2], up[2], up[3], up[3], 1.0])


def _brute_force(values: np.ndarray, alpha: float, gamma: float, s: float):
    """Shortest [a, b] over all pairs of sample points with θ̲(n*(b)) − θ̄(n*(a⁻)) >= α."""
    n = len(values)
    lo, up = idm_levels(n, gamma, s)
    best = (np.inf, -np.inf, None)
    for a in np.unique(values):
        for b in np.unique(values):
            if b < a:
                continue
            p = lo[np.sum(values <= b)] - up[np.sum(values < a)]
            if p >= alpha - 1e-12:
                key = (b - a, -p)
                if key < (best[0], -best[1]):
                    best = (b - a, p, (a, b))
    return best


@pytest.mark.parametrize("seed", range(12))
def test_shortest_interval_equals_brute_force_over_all_pairs(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(8, 60))
    kind = seed % 3
    if kind == 0:
        x = rng.gamma(1.5, 1.0, size=(3, n))
    elif kind == 1:  # heavy ties (rounded) and a point mass at 0, like PV
        x = np.round(rng.exponential(1.0, size=(3, n)), 1)
        x[:, : n // 3] = 0.0
    else:
        x = rng.normal(size=(3, n))
    gamma = float(rng.choice([0.8, 0.9, 0.95]))
    s = float(rng.choice([0.5, 1.0, 2.0]))
    band = idm_band(x, gamma, s)
    for alpha in (0.1, 0.35, 0.6):
        if np.any(band.max_alpha < alpha):
            continue
        cs = band.interval(alpha)
        for r in range(3):
            length, prob, _ = _brute_force(x[r], alpha, gamma, s)
            assert cs.length[r] == pytest.approx(length, abs=1e-12)
            assert cs.probability[r] == pytest.approx(prob, abs=1e-12)
            assert cs.probability[r] >= alpha
        # the reported probability is the band's worst case of the returned interval
        wc = band.worst_case_probability(cs.lower[:, None], cs.upper[:, None])[:, 0]
        assert wc == pytest.approx(cs.probability, abs=1e-12)


def test_point_mass_gets_the_point_as_its_set():
    """PV at night: all samples 0 -> U(α) = {0} with θ̲(n) − θ̄(0)."""
    n = 300
    band = idm_band(np.zeros((2, n)))
    cs = band.interval(0.9)
    assert cs.lower.tolist() == [0.0, 0.0] and cs.upper.tolist() == [0.0, 0.0]
    lo, up = idm_levels(n)
    assert cs.probability == pytest.approx([lo[n] - up[0]] * 2)
    assert lo[n] - up[0] > 0.97


def test_intervals_grow_with_alpha():
    rng = np.random.default_rng(0)
    band = idm_band(rng.lognormal(size=(5, 200)))
    lengths = [band.interval(a).length for a in (0.2, 0.5, 0.8, 0.9)]
    for a, b in itertools.pairwise(lengths):
        assert np.all(b >= a - 1e-12)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda: idm_band(np.ones((2, 1))), "at least 2 samples"),
        (lambda: idm_band(np.ones((2, 10)), gamma=1.0), "gamma"),
        (lambda: idm_band(np.ones((2, 10)), gamma=0.0), "gamma"),
        (lambda: idm_band(np.ones((2, 10)), prior_strength=0.0), "prior strength"),
        (lambda: idm_band(np.array([[1.0, np.nan, 2.0]])), "finite"),
        (lambda: idm_band(np.arange(20.0)[None]).interval(1.0), "alpha"),
        (lambda: idm_band(np.arange(20.0)[None]).interval(0.0), "alpha"),
        (lambda: idm_band(np.arange(20.0)[None]).interval(0.9), "exceeds the largest"),
    ],
)
def test_bad_input_is_rejected(call, match):
    with pytest.raises(AmbiguityInputError, match=match):
        call()
