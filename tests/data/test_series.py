"""Tests of the bring-your-own series loader gridrecourse.data.series."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gridrecourse.data.series import TIMESTAMP_COLUMN, load_series, validate_series
from gridrecourse.errors import FeederInputError, InvalidSeriesError

LOAD = "load_kw"
PRICE = "price_eur_per_mwh"
N_ROWS = 6


def good_frame() -> pd.DataFrame:
    """Six hourly rows with a load (>= 0) and a price (one negative hour)."""
    return pd.DataFrame(
        {
            TIMESTAMP_COLUMN: pd.date_range("2024-01-01 00:00", periods=N_ROWS, freq="h"),
            LOAD: [1.5, 1.2, 0.0, 2.5, 3.0, 1.1],
            PRICE: [40.0, -5.5, 12.0, 60.0, 55.0, 48.0],
        }
    )


def write_csv(tmp_path: Path, lines: list[str], name: str = "series.csv") -> Path:
    path = tmp_path / name
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def csv_lines(frame: pd.DataFrame) -> list[str]:
    return frame.to_csv(index=False, date_format="%Y-%m-%d %H:%M").strip().splitlines()


def write_good_csv_with(tmp_path: Path, row: int, column: str, text: str) -> Path:
    """Good CSV whose data row ``row`` (0-based) has ``text`` in ``column``."""
    frame = good_frame().astype({LOAD: object, PRICE: object})
    frame[TIMESTAMP_COLUMN] = frame[TIMESTAMP_COLUMN].dt.strftime("%Y-%m-%d %H:%M")
    frame.loc[row, column] = text
    return write_csv(tmp_path, csv_lines(frame))


def rejection(path: Path, **options: object) -> str:
    with pytest.raises(InvalidSeriesError) as caught:
        load_series(path, allow_negative=(PRICE,), **options)
    return str(caught.value)


# ----------------------------------------------------------------------------- good files


def test_good_csv_round_trip(tmp_path: Path) -> None:
    expected = good_frame()
    path = write_csv(tmp_path, csv_lines(expected))
    loaded = load_series(path, allow_negative=[PRICE])
    assert list(loaded.columns) == [LOAD, PRICE]
    assert loaded.index.name == TIMESTAMP_COLUMN
    assert isinstance(loaded.index, pd.DatetimeIndex)
    assert loaded.index.freq == pd.Timedelta(hours=1)
    pd.testing.assert_index_equal(
        loaded.index,
        pd.DatetimeIndex(expected[TIMESTAMP_COLUMN], name=TIMESTAMP_COLUMN),
        check_exact=True,
        exact=False,
    )
    np.testing.assert_array_equal(loaded[LOAD], expected[LOAD])
    np.testing.assert_array_equal(loaded[PRICE], expected[PRICE])
    assert loaded.dtypes.tolist() == [np.float64, np.float64]


def test_good_parquet_round_trip(tmp_path: Path) -> None:
    expected = good_frame()
    path = tmp_path / "series.parquet"
    expected.to_parquet(path, index=False)
    loaded = load_series(path, allow_negative=[PRICE])
    np.testing.assert_array_equal(loaded.index, expected[TIMESTAMP_COLUMN].to_numpy())
    np.testing.assert_array_equal(loaded.to_numpy(), expected[[LOAD, PRICE]].to_numpy())
    assert loaded.index.freq == pd.Timedelta(hours=1)


def test_parquet_with_timestamp_index_and_column_selection(tmp_path: Path) -> None:
    expected = good_frame().set_index(TIMESTAMP_COLUMN)
    path = tmp_path / "series.parquet"
    expected.to_parquet(path)
    loaded = load_series(path, columns=[LOAD], freq="1h")
    assert list(loaded.columns) == [LOAD]
    np.testing.assert_array_equal(loaded[LOAD], expected[LOAD])


def test_gzip_csv_custom_timestamp_column_and_quarter_hours(tmp_path: Path) -> None:
    frame = pd.DataFrame(
        {
            "time": pd.date_range("2024-06-01", periods=4, freq="15min").strftime(
                "%Y-%m-%dT%H:%M:%S"
            ),
            LOAD: [1.0, 2.0, 3.0, 4.0],
        }
    )
    path = tmp_path / "series.csv.gz"
    frame.to_csv(path, index=False)
    loaded = load_series(path, timestamp_column="time")
    assert loaded.index.name == "time"
    assert loaded.index.freq == pd.Timedelta(minutes=15)
    np.testing.assert_array_equal(loaded[LOAD], [1.0, 2.0, 3.0, 4.0])


def test_mixed_utc_offsets_across_daylight_saving_become_utc(tmp_path: Path) -> None:
    # 2024-03-31 in Germany: 01:00 CET is followed by 03:00 CEST, one real hour later.
    path = write_csv(
        tmp_path,
        [
            f"{TIMESTAMP_COLUMN},{LOAD}",
            "2024-03-31T01:00:00+01:00,1.0",
            "2024-03-31T03:00:00+02:00,2.0",
            "2024-03-31T04:00:00+02:00,3.0",
        ],
    )
    loaded = load_series(path)
    assert str(loaded.index.tz) == "UTC"
    assert loaded.index[0] == pd.Timestamp("2024-03-31 00:00", tz="UTC")
    assert loaded.index.freq == pd.Timedelta(hours=1)


def test_validate_series_in_memory_with_datetime_index() -> None:
    frame = good_frame().set_index(TIMESTAMP_COLUMN)
    validated = validate_series(frame, source="user profile", allow_negative=[PRICE])
    pd.testing.assert_frame_equal(validated, frame, check_freq=False)
    assert validated.index.freq == pd.Timedelta(hours=1)
    assert validated is not frame


# ----------------------------------------------------------------------------- rejections


def test_missing_file_raises_feeder_input_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(FeederInputError, match=r"nope\.csv"):
        load_series(missing)


def test_unsupported_suffix(tmp_path: Path) -> None:
    path = tmp_path / "series.xlsx"
    path.write_bytes(b"not really excel")
    message = rejection(path)
    assert "series.xlsx" in message
    assert ".xlsx" in message
    assert ".csv" in message and ".parquet" in message


def test_empty_csv_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.csv"
    path.write_text("", encoding="utf-8")
    assert "empty.csv" in rejection(path)


def test_missing_timestamp_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, ["time,load_kw", "2024-01-01 00:00,1.0", "2024-01-01 01:00,2.0"])
    message = rejection(path)
    assert "series.csv" in message
    assert f"'{TIMESTAMP_COLUMN}'" in message
    assert "missing" in message


def test_unparseable_timestamp(tmp_path: Path) -> None:
    path = write_good_csv_with(tmp_path, 3, TIMESTAMP_COLUMN, "yesterday at noon")
    message = rejection(path)
    assert "series.csv" in message
    assert f"'{TIMESTAMP_COLUMN}'" in message
    assert "'yesterday at noon'" in message
    assert "row 4" in message


def test_numeric_timestamps_are_rejected_not_read_as_epochs() -> None:
    frame = good_frame()
    frame[TIMESTAMP_COLUMN] = np.arange(N_ROWS)
    with pytest.raises(InvalidSeriesError, match="not int64 numbers"):
        validate_series(frame, source="memory", allow_negative=[PRICE])


def test_nan_value(tmp_path: Path) -> None:
    path = write_good_csv_with(tmp_path, 2, LOAD, "")
    message = rejection(path)
    assert "series.csv" in message
    assert f"'{LOAD}'" in message
    assert "NaN" in message
    assert "row 3 (timestamp 2024-01-01 02:00:00)" in message


def test_infinite_value(tmp_path: Path) -> None:
    path = write_good_csv_with(tmp_path, 4, PRICE, "-inf")
    message = rejection(path)
    assert "series.csv" in message
    assert f"'{PRICE}'" in message
    assert "infinite" in message
    assert "row 5 (timestamp 2024-01-01 04:00:00)" in message


def test_non_numeric_value(tmp_path: Path) -> None:
    path = write_good_csv_with(tmp_path, 1, LOAD, "1.2 kW")
    message = rejection(path)
    assert f"'{LOAD}'" in message
    assert "'1.2 kW'" in message
    assert "not a number" in message
    assert "row 2 (timestamp 2024-01-01 01:00:00)" in message


def test_gap_in_timestamps(tmp_path: Path) -> None:
    frame = good_frame().drop(index=3)  # 03:00 missing
    path = write_csv(tmp_path, csv_lines(frame))
    message = rejection(path)
    assert "series.csv" in message
    assert f"'{TIMESTAMP_COLUMN}'" in message
    assert "not evenly spaced" in message and "gap" in message
    assert "from 2024-01-01 02:00:00 to row 4 (timestamp 2024-01-01 04:00:00)" in message
    assert "02:00:00" in message  # the step found


def test_step_differs_from_given_frequency(tmp_path: Path) -> None:
    path = write_csv(tmp_path, csv_lines(good_frame()))
    message = rejection(path, freq="15min")
    assert "given step 00:15:00" in message
    assert "row 2 (timestamp 2024-01-01 01:00:00)" in message


def test_duplicated_timestamp(tmp_path: Path) -> None:
    frame = good_frame()
    frame.loc[4, TIMESTAMP_COLUMN] = frame.loc[3, TIMESTAMP_COLUMN]
    path = write_csv(tmp_path, csv_lines(frame))
    message = rejection(path)
    assert "series.csv" in message
    assert f"'{TIMESTAMP_COLUMN}'" in message
    assert "duplicated timestamp 2024-01-01 03:00:00 at row 5" in message


def test_timestamps_out_of_order(tmp_path: Path) -> None:
    frame = good_frame().iloc[[0, 1, 3, 2, 4, 5]]
    path = write_csv(tmp_path, csv_lines(frame))
    message = rejection(path)
    assert "not increasing" in message
    assert "row 4 (timestamp 2024-01-01 02:00:00)" in message


def test_negative_load_rejected_but_negative_price_allowed(tmp_path: Path) -> None:
    path = write_good_csv_with(tmp_path, 5, LOAD, "-0.4")
    message = rejection(path)
    assert "series.csv" in message
    assert f"'{LOAD}'" in message
    assert "negative value -0.4" in message
    assert "row 6 (timestamp 2024-01-01 05:00:00)" in message
    # The price column has a negative hour too: rejected unless allowed.
    good = write_csv(tmp_path, csv_lines(good_frame()), name="good.csv")
    with pytest.raises(InvalidSeriesError, match=rf"'{PRICE}'.*negative value -5\.5 at row 2"):
        load_series(good)


def test_missing_value_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, csv_lines(good_frame()))
    message = rejection(path, columns=[LOAD, "pv_kw"])
    assert "'pv_kw'" in message and "missing" in message


def test_allow_negative_must_name_a_value_column(tmp_path: Path) -> None:
    path = write_csv(tmp_path, csv_lines(good_frame()))
    with pytest.raises(InvalidSeriesError, match=r"'prise'.*allow_negative"):
        load_series(path, allow_negative=["prise"])


def test_validate_series_names_the_source() -> None:
    frame = good_frame()
    frame.loc[1, LOAD] = np.nan
    with pytest.raises(InvalidSeriesError, match=r"^my profile: column 'load_kw': NaN"):
        validate_series(frame, source="my profile", allow_negative=[PRICE])
