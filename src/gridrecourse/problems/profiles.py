"""Daily load, PV and price profiles from the bundled real data (see ``data/bundled/DATA.md``).

Loads are the aggregate of the 17 CityLearn homes (Fontana, California) normalized by their
annual peak; PV is their mean output per kW of rating; prices are SMARD 2018 German day-ahead
prices aligned by hour of year (different region: a realistic price *shape*, not a local tariff).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gridrecourse.data.bundled_data import (
    load_day_ahead_prices,
    normalized_load_multiplier,
    normalized_pv_multiplier,
)
from gridrecourse.errors import InvalidSeriesError

HOURS_PER_DAY = 24
DAYS_PER_YEAR = 365
#: Mid-July: a sunny summer weekday with a pronounced evening peak (our choice of default day).
DEFAULT_DAY_OF_YEAR = 196


@dataclass(frozen=True, eq=False)
class DayProfiles:
    """Hourly multipliers and prices for one day.

    Attributes
    ----------
    load : ndarray, shape (24,)
        Load multiplier (p.u. of annual peak; multiplies each load's nominal kW and kvar).
    pv : ndarray, shape (24,)
        PV availability (kW per kW of rating).
    price_per_mwh : ndarray, shape (24,)
        Day-ahead price (EUR/MWh).
    day_of_year : int
        0-based day of the year.
    """

    load: np.ndarray
    pv: np.ndarray
    price_per_mwh: np.ndarray
    day_of_year: int


def bundled_day(day_of_year: int = DEFAULT_DAY_OF_YEAR) -> DayProfiles:
    """Profiles of one day of the bundled year (0-based ``day_of_year``)."""
    if not 0 <= day_of_year < DAYS_PER_YEAR:
        raise InvalidSeriesError(
            f"day_of_year must be in [0, {DAYS_PER_YEAR - 1}], got {day_of_year}"
        )
    hours = slice(day_of_year * HOURS_PER_DAY, (day_of_year + 1) * HOURS_PER_DAY)
    return DayProfiles(
        load=np.asarray(normalized_load_multiplier()[hours], dtype=float),
        pv=np.asarray(normalized_pv_multiplier()[hours], dtype=float),
        price_per_mwh=np.asarray(load_day_ahead_prices().to_numpy()[hours], dtype=float),
        day_of_year=day_of_year,
    )
