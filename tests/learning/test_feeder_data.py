"""Paper A's feeder data set: homes → buses (peak = nominal), hour alignment, leak-free splits."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from gridrecourse.data.bundled_data import load_day_ahead_prices, load_household_data
from gridrecourse.learning.feeder_data import (
    FeederDataConfig,
    FeederDataError,
    HomeAssignment,
    Split,
    SplitKind,
    assign_homes,
    block_labels,
    build_feeder_dataset,
    bus_load_series,
    bus_nominal_kw,
)
from gridrecourse.learning.windows import WindowError

#: ieee13's load buses and nominal kW (as the storage-expansion problem orders them).
SITES = ("634", "645", "646", "652", "670", "671", "675", "692", "611")
NOMINAL = np.array([400.0, 170.0, 230.0, 128.0, 200.0, 1155.0, 843.0, 170.0, 170.0])


def _math(name: str):
    from gridrecourse.evaluation.validation import prepare_for_linear_model
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.network.math_model import build_math_feeder

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return build_math_feeder(prepare_for_linear_model(resolve_feeder_spec(name)))


# ------------------------------------------------------------------------------ mapping
def test_round_robin_uses_every_home_once_for_few_buses():
    groups = assign_homes(9)
    assert sorted(h for g in groups for h in g) == list(range(17))
    assert groups[0] == (0, 9) and groups[8] == (8,)
    many = assign_homes(20)
    assert [g[0] for g in many] == [j % 17 for j in range(20)]


def test_seeded_assignment_is_deterministic_and_distinct():
    a = assign_homes(30, HomeAssignment.SEEDED, homes_per_bus=3, seed=4)
    assert a == assign_homes(30, "seeded", homes_per_bus=3, seed=4)
    assert all(len(set(g)) == 3 for g in a)
    assert len(set(a)) > 20  # mixes differ between buses
    assert a != assign_homes(30, HomeAssignment.SEEDED, homes_per_bus=3, seed=5)


@pytest.mark.parametrize("kind", list(HomeAssignment))
def test_bus_annual_peak_equals_nominal_kw(kind):
    load = load_household_data().load_kw
    groups = assign_homes(len(NOMINAL), kind, homes_per_bus=4, seed=1)
    series = bus_load_series(load, groups, NOMINAL)
    assert series.shape == (8760, len(NOMINAL))
    np.testing.assert_allclose(series.max(axis=0), NOMINAL, rtol=1e-12)
    assert np.all(series >= 0)
    # the shape is the homes' aggregate: hand check of bus 0 at one hour
    raw = load[:, list(groups[0])].sum(axis=1)
    assert series[1234, 0] == pytest.approx(NOMINAL[0] * raw[1234] / raw.max())


def test_dataset_bus_peaks_are_annual_even_on_a_sub_range():
    cfg = FeederDataConfig(first_hour=5000, n_hours=2000, stride=24)
    ds = build_feeder_dataset(SITES, NOMINAL, cfg)
    assert ds.series.load_kw.shape == (2000, 9)
    full = build_feeder_dataset(SITES, NOMINAL, FeederDataConfig())
    np.testing.assert_allclose(full.series.load_kw.max(axis=0), NOMINAL, rtol=1e-12)
    np.testing.assert_array_equal(ds.series.load_kw, full.series.load_kw[5000:7000])


@pytest.mark.shared
@pytest.mark.parametrize("name", ["ieee13", "ieee123"])
def test_nominal_kw_per_bus_matches_the_problem(feeder_dir, name):
    from gridrecourse.problems.storage_expansion import (
        StorageExpansionConfig,
        StorageExpansionProblem,
    )

    math = _math(name)
    problem = StorageExpansionProblem(math, StorageExpansionConfig(n_hours=2))
    np.testing.assert_allclose(
        bus_nominal_kw(math, problem.load_sites), problem.nominal_load_kw, rtol=1e-9
    )
    if name == "ieee13":
        assert dict(zip(problem.load_sites, problem.nominal_load_kw, strict=True))["671"] == (
            pytest.approx(1155.0)
        )


@pytest.mark.shared
def test_bus_nominal_kw_errors(feeder_dir):
    math = _math("ieee13")
    with pytest.raises(FeederDataError, match="not buses"):
        bus_nominal_kw(math, ["671", "nowhere"])
    with pytest.raises(FeederDataError, match="duplicate"):
        bus_nominal_kw(math, ["671", "671"])
    with pytest.raises(FeederDataError, match="no positive nominal load"):
        bus_nominal_kw(math, ["671", "650"])  # 650: the source bus
    with pytest.raises(FeederDataError, match="no load sites"):
        bus_nominal_kw(math, [])


# ------------------------------------------------------------------------------ alignment
def test_features_and_targets_aligned_by_hour_of_year_hand_check():
    m, tau = 6, 4
    cfg = FeederDataConfig(history=m, horizon=tau, stride=1, first_hour=300, n_hours=1500)
    ds = build_feeder_dataset(SITES, NOMINAL, cfg)
    assert ds.series.feature_names[:5] == (
        "price_eur_per_mwh",
        "temperature_c",
        "relative_humidity_pct",
        "diffuse_irradiance_w_m2",
        "direct_irradiance_w_m2",
    )
    assert ds.series.target_names == ("price_eur_per_mwh", *(f"load_kw__{s}" for s in SITES))
    assert ds.series.feature_units[0] == "EUR/MWh" and ds.series.target_units[1] == "kW"
    price = load_day_ahead_prices().to_numpy()
    hd = load_household_data()
    weather = hd.weather.to_numpy()
    groups = assign_homes(len(SITES))
    raw = [hd.load_kw[:, list(g)].sum(axis=1) for g in groups]

    def bus_load(j: int, hour: int) -> float:
        return NOMINAL[j] * raw[j][hour] / raw[j].max()

    test = ds.windows(Split.TEST)
    i = len(test) // 2
    s = ds.series.first_hour + int(test.start_hour[i])  # hour of year of the first input hour
    for k in range(m):
        assert test.x[i, k, 0] == price[s + k]
        np.testing.assert_array_equal(test.x[i, k, 1:5], weather[s + k])
        assert test.x[i, k, 5 + 2] == pytest.approx(bus_load(2, s + k))
    for t in range(tau):
        assert test.y[i, t, 0] == price[s + m + t]
        assert test.y[i, t, 1 + 5] == pytest.approx(bus_load(5, s + m + t))
    assert ds.target_hour_of_year(Split.TEST)[i, 0] == s + m
    # standardized copies keep the windows, scaled with training statistics only
    z = ds.standardized(Split.TEST)
    np.testing.assert_allclose(ds.scalers.y.inverse(z.y), test.y)
    np.testing.assert_allclose(ds.scalers.y.mean, ds.train.y.reshape(-1, 10).mean(axis=0))


def test_pv_series_and_windows():
    cfg = FeederDataConfig(pv_kw_per_kw_load=0.5)
    ds = build_feeder_dataset(SITES, NOMINAL, cfg)
    pv = ds.series.pv_kw
    assert pv is not None and pv.shape == (8760, 9) and np.all(pv >= 0)
    hd = load_household_data()
    groups = assign_homes(9)
    expected = 0.5 * NOMINAL[3] * hd.pv_w_per_kw[:, list(groups[3])].mean(axis=1) / 1000.0
    np.testing.assert_allclose(pv[:, 3], expected)
    window_pv = ds.pv_kw(Split.TEST)
    rows = ds.target_hour_of_year(Split.TEST)
    np.testing.assert_array_equal(window_pv[2], pv[rows[2]])
    assert build_feeder_dataset(SITES, NOMINAL).pv_kw(Split.TEST) is None


# ------------------------------------------------------------------------------ splits
@pytest.mark.parametrize("kind", list(SplitKind))
@pytest.mark.parametrize("stride", [1, 24])
def test_splits_share_no_hour_and_respect_the_stride(kind, stride):
    cfg = FeederDataConfig(history=24, horizon=12, stride=stride, split=kind, n_hours=4000)
    ds = build_feeder_dataset(SITES, NOMINAL, cfg)
    used = [set(ds.windows(s).hours_used().tolist()) for s in Split]
    assert not (used[0] & used[1]) and not (used[0] & used[2]) and not (used[1] & used[2])
    for s in Split:
        assert len(ds.windows(s)) > 0
        assert np.all(ds.windows(s).start_hour % stride == 0)
    n = [len(ds.windows(s)) for s in Split]
    assert n[0] > n[1] and n[0] > n[2]


def test_block_labels_interleave_all_splits_in_every_cycle():
    labels = block_labels(96 * 5 * 4, 96, (0.6, 0.2, 0.2), 5, seed=3)
    per_block = labels[::96].reshape(4, 5)
    for cycle in per_block:
        assert sorted(cycle.tolist()) == [0, 0, 0, 1, 2]
    assert not np.array_equal(per_block[0], per_block[1]) or not np.array_equal(
        per_block[1], per_block[2]
    )
    np.testing.assert_array_equal(labels, block_labels(96 * 20, 96, (0.6, 0.2, 0.2), 5, seed=3))


def test_window_longer_than_data_is_a_clear_error():
    cfg = FeederDataConfig(history=24, horizon=24, n_hours=40)
    with pytest.raises(WindowError, match="longer than the data"):
        build_feeder_dataset(SITES, NOMINAL, cfg)


def test_too_few_windows_for_the_splits_is_a_clear_error():
    cfg = FeederDataConfig(history=24, horizon=24, n_hours=24 * 6)
    with pytest.raises(WindowError, match="train/calibration/test"):
        build_feeder_dataset(SITES, NOMINAL, cfg)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stride": 0}, "stride"),
        ({"stride": 24, "stride_offset": 24}, "stride_offset"),
        ({"homes_per_bus": 0}, "homes_per_bus"),
        ({"pv_kw_per_kw_load": -1.0}, "pv_kw_per_kw_load"),
        ({"first_hour": 8000, "n_hours": 1000}, "bundled year"),
        ({"split": "random"}, "random"),
    ],
)
def test_bad_settings(kwargs, match):
    with pytest.raises(ValueError, match=match):
        FeederDataConfig(**kwargs)


def test_bad_sites_or_nominal():
    with pytest.raises(FeederDataError, match="nominal"):
        build_feeder_dataset(SITES, NOMINAL[:3])
    with pytest.raises(FeederDataError, match="> 0"):
        build_feeder_dataset(SITES, np.where(np.arange(9) == 2, 0.0, NOMINAL))


def test_describe_names_units_and_provenance():
    info = build_feeder_dataset(SITES, NOMINAL).describe()
    assert info["n_train"] > info["n_calibration"] > 0
    assert "German" in info["provenance"] and "California" in info["provenance"]
    assert info["target_names"][0] == "price_eur_per_mwh"
    assert len(info["feature_names"]) == 5 + len(SITES)
