"""Tests of gridrecourse.uncertainty.scenarios: the ScenarioSet contract and paper C
("SPAR-OPF") Algorithm 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gridrecourse.errors import GridRecourseError, InvalidSeriesError
from gridrecourse.uncertainty.scenarios import (
    HOURS_PER_DAY,
    InvalidScenarioError,
    ScenarioMethod,
    ScenarioSet,
    sampled_scenarios,
    stratified_scenarios,
)

SITES = ("b1", "b2.1", "b3")


def hand_series(n_days: int) -> tuple[np.ndarray, np.ndarray]:
    """load[24 d + h] = 10 d + h / 24 and pv[24 d + h] = d / 10 + (h == 12)."""
    d, h = np.divmod(np.arange(n_days * HOURS_PER_DAY), HOURS_PER_DAY)
    return 10.0 * d + h / 24.0, d / 10.0 + (h == 12)


def small_set(**overrides) -> ScenarioSet:
    rng = np.random.default_rng(1)
    fields = {
        "load_multiplier": rng.uniform(0.5, 1.5, size=(4, 3)),
        "pv_multiplier": rng.uniform(0.0, 1.0, size=(4, 3)),
        "probability": np.array([0.1, 0.2, 0.3, 0.4]),
        "site_names": SITES,
        "seed": 7,
        "method": ScenarioMethod.GIVEN,
        "hour_of_year": np.array([5, 100, 2000, 8000]),
    }
    fields.update(overrides)
    return ScenarioSet(**fields)


# ----------------------------------------------------------------------------------------------
# Algorithm 2
# ----------------------------------------------------------------------------------------------
def test_algorithm2_hand_computed_averages():
    # 7 days, S = 48 -> 2 strata of consecutive days: days 0-3 (4 days) and days 4-6 (3 days).
    load, pv = hand_series(7)
    sset = stratified_scenarios(load, pv, 48, SITES, noise_std=0.0, seed=3)
    h = np.arange(24)
    # stratum means of d: (0+1+2+3)/4 = 1.5 and (4+5+6)/3 = 5
    expected_load = np.concatenate([15.0 + h / 24.0, 50.0 + h / 24.0])
    expected_pv = np.concatenate([0.15 + (h == 12), 0.5 + (h == 12)])
    assert sset.load_multiplier.shape == (48, 3)
    for site in range(3):  # no noise: every site gets the stratum average
        np.testing.assert_allclose(sset.load_multiplier[:, site], expected_load, rtol=1e-14)
        np.testing.assert_allclose(sset.pv_multiplier[:, site], expected_pv, rtol=1e-14)
    # probability proportional to the stratum's day count
    np.testing.assert_allclose(sset.probability[:24], 4 / (24 * 7))
    np.testing.assert_allclose(sset.probability[24:], 3 / (24 * 7))
    assert sset.probability.sum() == pytest.approx(1.0, abs=1e-12)
    # representative hour: first day of the stratum x 24 + hour of day
    np.testing.assert_array_equal(sset.hour_of_year, np.concatenate([h, 4 * 24 + h]))
    assert sset.method is ScenarioMethod.STRATIFIED and sset.method == "stratified"
    assert sset.seed == 3 and sset.site_names == SITES and sset.n_scenarios == 48


def test_full_year_equal_strata_equal_probabilities():
    load, pv = hand_series(365)
    sset = stratified_scenarios(load, pv, 24 * 5, SITES, seed=0)  # 5 strata of 73 days
    np.testing.assert_allclose(sset.probability, 1 / 120, rtol=1e-14)
    assert sset.hour_of_year[24] == 73 * 24


@pytest.mark.parametrize("n_scenarios", [100, 25, 12])
def test_n_scenarios_not_multiple_of_24(n_scenarios):
    load, pv = hand_series(10)
    with pytest.raises(InvalidScenarioError, match=rf"n_scenarios: is {n_scenarios}, not a mul"):
        stratified_scenarios(load, pv, n_scenarios, SITES)


def test_more_strata_than_days():
    load, pv = hand_series(2)
    with pytest.raises(InvalidScenarioError, match="only 2 days"):
        stratified_scenarios(load, pv, 72, SITES)


def test_reproducible_by_seed():
    load, pv = hand_series(30)
    for generate, n in ((stratified_scenarios, 48), (sampled_scenarios, 40)):
        a = generate(load, pv, n, SITES, seed=11)
        b = generate(load, pv, n, SITES, seed=11)
        c = generate(load, pv, n, SITES, seed=12)
        np.testing.assert_array_equal(a.load_multiplier, b.load_multiplier)
        np.testing.assert_array_equal(a.pv_multiplier, b.pv_multiplier)
        np.testing.assert_array_equal(a.hour_of_year, b.hour_of_year)
        assert not np.array_equal(a.load_multiplier, c.load_multiplier)
        assert not np.array_equal(a.pv_multiplier, c.pv_multiplier)


def test_noise_statistics():
    # One stratum (S = 24) x 20 000 sites: N = 480 000 relative deviations per quantity.
    # For N(0, s^2) samples the sample std has standard error s / sqrt(2N) = 1.0e-4 and the mean
    # s / sqrt(N) = 1.4e-4; the correlation of independent samples has std 1 / sqrt(N) = 1.4e-3.
    # Tolerances are 5 standard errors (false-failure probability < 1e-6 each).
    n_sites, std = 20_000, 0.1
    load, pv = hand_series(5)
    pv = pv + 0.2  # strictly positive base, so that multiplier / base is defined everywhere
    sites = [f"s{i}" for i in range(n_sites)]
    noisy = stratified_scenarios(load[24:], pv[24:], 24, sites, noise_std=std, seed=5)
    base = stratified_scenarios(load[24:], pv[24:], 24, sites[:1], noise_std=0.0)
    n = 24 * n_sites
    rel_load = (noisy.load_multiplier / base.load_multiplier - 1.0).ravel()
    rel_pv = (noisy.pv_multiplier / base.pv_multiplier - 1.0).ravel()
    for rel in (rel_load, rel_pv):
        assert abs(rel.std() - std) < 5 * std / np.sqrt(2 * n)
        assert abs(rel.mean()) < 5 * std / np.sqrt(n)
    assert abs(np.corrcoef(rel_load, rel_pv)[0, 1]) < 5 / np.sqrt(n)
    assert (noisy.load_multiplier >= 0).all() and (noisy.pv_multiplier >= 0).all()


def test_noise_clipped_at_zero():
    load, pv = hand_series(3)
    sset = stratified_scenarios(load + 1, pv + 1, 24, SITES, noise_std=5.0, seed=0)
    assert (sset.load_multiplier == 0).any()  # large noise: some clipped values
    assert (sset.load_multiplier >= 0).all() and (sset.pv_multiplier >= 0).all()


def test_sampled_scenarios():
    load, pv = hand_series(30)
    sset = sampled_scenarios(load, pv, 37, SITES, noise_std=0.0, seed=4)
    assert sset.n_scenarios == 37 and sset.method is ScenarioMethod.SAMPLED
    np.testing.assert_allclose(sset.probability, 1 / 37)
    hours = sset.hour_of_year
    assert hours.min() >= 0 and hours.max() < load.size
    np.testing.assert_array_equal(sset.load_multiplier, np.repeat(load[hours, None], 3, axis=1))
    np.testing.assert_array_equal(sset.pv_multiplier, np.repeat(pv[hours, None], 3, axis=1))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"load_series": np.r_[np.nan, np.ones(47)]}, "load_series"),
        ({"pv_series": np.r_[-0.1, np.ones(47)]}, "pv_series"),
        ({"load_series": np.ones(50), "pv_series": np.ones(50)}, "load_series"),
        ({"pv_series": np.ones(72)}, "pv_series"),
        ({"load_series": np.ones((2, 24))}, "load_series"),
        ({"noise_std": -0.1}, "noise_std"),
        ({"noise_std": float("nan")}, "noise_std"),
        ({"seed": -1}, "seed"),
        ({"site_names": "b1"}, "site_names"),
        ({"n_scenarios": 0}, "n_scenarios"),
    ],
)
def test_bad_generator_inputs(kwargs, field):
    args = {
        "load_series": np.ones(48),
        "pv_series": np.ones(48),
        "n_scenarios": 24,
        "site_names": SITES,
    }
    args.update(kwargs)
    for generate in (stratified_scenarios, sampled_scenarios):
        with pytest.raises(InvalidScenarioError, match=rf"^{field}:"):
            generate(**args)


@settings(max_examples=40, deadline=None)
@given(
    n_days=st.integers(1, 40),
    data=st.data(),
    n_sites=st.integers(1, 3),
    series_seed=st.integers(0, 2**32 - 1),
)
def test_weighted_mean_equals_series_mean(n_days, data, n_sites, series_seed):
    """Noise-free stratified scenarios reproduce the series mean (the strata partition the
    series and each scenario weighs its stratum's share of the days)."""
    n_strata = data.draw(st.integers(1, n_days))
    rng = np.random.default_rng(series_seed)
    load = rng.uniform(0.0, 3.0, n_days * 24)
    pv = rng.uniform(0.0, 1.0, n_days * 24)
    sites = [f"n{i}" for i in range(n_sites)]
    sset = stratified_scenarios(load, pv, 24 * n_strata, sites, noise_std=0.0)
    assert sset.load_multiplier.shape == (24 * n_strata, n_sites)
    assert sset.probability.sum() == pytest.approx(1.0, abs=1e-12)
    np.testing.assert_allclose(sset.probability @ sset.load_multiplier, load.mean(), rtol=1e-12)
    np.testing.assert_allclose(sset.probability @ sset.pv_multiplier, pv.mean(), rtol=1e-12)
    if n_days % n_strata == 0:
        np.testing.assert_allclose(sset.probability, 1 / (24 * n_strata), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# ScenarioSet validation
# ----------------------------------------------------------------------------------------------
def _with_nan(shape=(4, 3)):
    a = np.ones(shape)
    a[2, 1] = np.nan
    return a


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"load_multiplier": _with_nan()}, "load_multiplier"),
        ({"load_multiplier": np.full((4, 3), np.inf)}, "load_multiplier"),
        ({"load_multiplier": -np.ones((4, 3))}, "load_multiplier"),
        ({"load_multiplier": np.ones(4)}, "load_multiplier"),
        ({"load_multiplier": np.ones((4, 2))}, "load_multiplier"),
        ({"pv_multiplier": _with_nan()}, "pv_multiplier"),
        ({"pv_multiplier": -np.ones((4, 3))}, "pv_multiplier"),
        ({"pv_multiplier": np.ones((4, 3, 2))}, "pv_multiplier"),
        ({"probability": np.array([0.1, 0.2, 0.3, 0.3])}, "probability"),
        ({"probability": np.array([-0.1, 0.4, 0.3, 0.4])}, "probability"),
        ({"probability": np.array([0.5, 0.5])}, "probability"),
        ({"probability": np.array([np.nan, 0.5, 0.25, 0.25])}, "probability"),
        ({"site_names": ("a", "a", "b")}, "site_names"),
        ({"site_names": "abc"}, "site_names"),
        ({"site_names": ("a", 2, "b")}, "site_names"),
        ({"method": "kmeans"}, "method"),
        ({"seed": 1.5}, "seed"),
        ({"hour_of_year": np.array([1, 2, 3])}, "hour_of_year"),
        ({"hour_of_year": np.array([1.5, 2, 3, 4])}, "hour_of_year"),
    ],
)
def test_invalid_set_names_field(overrides, field):
    with pytest.raises(InvalidScenarioError, match=rf"^{field}:") as info:
        small_set(**overrides)
    assert isinstance(info.value, InvalidSeriesError) and isinstance(info.value, GridRecourseError)


def test_probability_tolerance():
    p = np.array([0.1, 0.2, 0.3, 0.4 + 5e-10])
    assert small_set(probability=p).n_scenarios == 4
    with pytest.raises(InvalidScenarioError, match="probability"):
        small_set(probability=np.array([0.1, 0.2, 0.3, 0.4 + 2e-9]))


def test_arrays_are_readonly_copies():
    load = np.ones((4, 3))
    sset = small_set(load_multiplier=load)
    load[0, 0] = 5.0
    assert sset.load_multiplier[0, 0] == 1.0
    with pytest.raises(ValueError):
        sset.load_multiplier[0, 0] = 2.0
    assert sset.method == ScenarioMethod.GIVEN.value
    assert "S=4" in repr(sset)


def test_multi_period_shapes():
    rng = np.random.default_rng(0)
    sset = small_set(
        load_multiplier=rng.uniform(size=(4, 3, 6)),
        pv_multiplier=rng.uniform(size=(4, 3, 6)),
        hour_of_year=np.arange(24).reshape(4, 6),
    )
    assert (sset.n_scenarios, sset.n_sites, sset.n_periods) == (4, 3, 6)
    assert small_set().n_periods is None


# ----------------------------------------------------------------------------------------------
# subset / batches
# ----------------------------------------------------------------------------------------------
def test_subset_renormalizes():
    sset = small_set()
    sub = sset.subset([3, 1])
    np.testing.assert_allclose(sub.probability, [0.4 / 0.6, 0.2 / 0.6])
    np.testing.assert_array_equal(sub.load_multiplier, sset.load_multiplier[[3, 1]])
    np.testing.assert_array_equal(sub.hour_of_year, [8000, 100])
    assert sub.site_names == sset.site_names and sub.seed == sset.seed
    mask = sset.subset(np.array([True, False, True, False]))
    np.testing.assert_allclose(mask.probability, [0.25, 0.75])
    for bad in ([], [4], [-1], [0.5]):
        with pytest.raises(InvalidScenarioError, match="indices"):
            sset.subset(bad)
    zero = small_set(probability=np.array([0.0, 0.5, 0.5, 0.0]))
    with pytest.raises(InvalidScenarioError, match="probability 0"):
        zero.subset([0, 3])


def test_batches_sample_proportionally():
    sset = small_set(probability=np.array([0.7, 0.2, 0.1, 0.0]))
    batches = sset.batches(2000, 50, rng=42)
    assert len(batches) == 2000
    for batch in batches[:5]:
        assert batch.n_scenarios == 50 and batch.method is ScenarioMethod.SAMPLED
        np.testing.assert_allclose(batch.probability, 1 / 50)
    # identify each drawn scenario by its (unique) hour_of_year
    index_of = {h: i for i, h in enumerate(sset.hour_of_year)}
    drawn = np.array([index_of[h] for b in batches for h in b.hour_of_year])
    first = batches[0]
    np.testing.assert_array_equal(
        first.load_multiplier, sset.load_multiplier[[index_of[h] for h in first.hour_of_year]]
    )
    # 100 000 draws: the frequency of p has std sqrt(p(1-p)/N) <= 1.6e-3; tolerance 5 std
    freq = np.bincount(drawn, minlength=4) / drawn.size
    np.testing.assert_allclose(freq, [0.7, 0.2, 0.1, 0.0], atol=5 * np.sqrt(0.25 / drawn.size))
    assert freq[3] == 0.0  # probability-0 scenarios are never drawn
    # independent batches differ; same rng seed reproduces them
    assert not np.array_equal(batches[0].hour_of_year, batches[1].hour_of_year)
    again = sset.batches(3, 50, rng=42)
    np.testing.assert_array_equal(again[2].hour_of_year, batches[2].hour_of_year)
    with pytest.raises(InvalidScenarioError, match="batch_size"):
        sset.batches(2, 0)


# ----------------------------------------------------------------------------------------------
# save / load
# ----------------------------------------------------------------------------------------------
def _assert_same(a: ScenarioSet, b: ScenarioSet) -> None:
    np.testing.assert_array_equal(a.load_multiplier, b.load_multiplier)
    np.testing.assert_array_equal(a.pv_multiplier, b.pv_multiplier)
    np.testing.assert_array_equal(a.probability, b.probability)
    if a.hour_of_year is None:
        assert b.hour_of_year is None
    else:
        np.testing.assert_array_equal(a.hour_of_year, b.hour_of_year)
    assert (a.site_names, a.seed, a.method) == (b.site_names, b.seed, b.method)


def test_save_load_round_trip(tmp_path):
    load, pv = hand_series(20)
    sset = stratified_scenarios(load, pv, 48, SITES, seed=9)
    path = sset.save(tmp_path / "scen.npz")
    _assert_same(sset, ScenarioSet.load(path))
    # overwrite in place with a different set (no hour_of_year, seed None, 3-D)
    other = small_set(
        load_multiplier=np.ones((4, 3, 2)),
        pv_multiplier=np.zeros((4, 3, 2)),
        hour_of_year=None,
        seed=None,
    )
    other.save(str(path))
    _assert_same(other, ScenarioSet.load(str(path)))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scen.npz"]  # no temp file left


def test_load_missing_array_names_file(tmp_path):
    path = tmp_path / "partial.npz"
    np.savez(path, load_multiplier=np.ones((2, 1)), metadata=np.array(json.dumps({})))
    with pytest.raises(InvalidScenarioError, match=r"partial\.npz.*pv_multiplier"):
        ScenarioSet.load(path)


def test_load_bad_files(tmp_path):
    with pytest.raises(InvalidScenarioError, match=r"missing\.npz.*not found"):
        ScenarioSet.load(tmp_path / "missing.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"not a zip file at all")
    with pytest.raises(InvalidScenarioError, match=r"garbage\.npz"):
        ScenarioSet.load(garbage)
    npy = tmp_path / "plain.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(InvalidScenarioError, match=r"plain\.npy"):
        ScenarioSet.load(npy)
    # valid arrays but invalid content: the error names the file and the field
    sset = small_set()
    path = sset.save(tmp_path / "bad.npz")
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["probability"] = np.array([0.5, 0.5, 0.5, 0.5])
    np.savez(path, **arrays)
    with pytest.raises(InvalidScenarioError, match=r"bad\.npz: probability"):
        ScenarioSet.load(path)
