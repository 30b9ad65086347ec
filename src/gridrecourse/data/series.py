"""Bring-your-own time series: load and validate CSV or Parquet load/PV/price series.

A series file holds one timestamp column and one or more numeric value columns, one row per
time step. :func:`load_series` reads a file (``.csv``, ``.csv.gz`` or ``.parquet``) and hands it
to :func:`validate_series`, which is also the entry point for data already in memory: both go
through the same checks. A series is rejected with :class:`~gridrecourse.errors.InvalidSeriesError`
when

* the timestamp column is missing, holds numbers instead of dates, or a value that cannot be
  parsed as a timestamp,
* timestamps are duplicated, not increasing, or not evenly spaced at the frequency (given, or
  inferred as the most common step),
* a value column is missing, not numeric, NaN/empty, infinite, or negative (unless the column is
  listed in ``allow_negative``: loads must not be negative, prices may be).

Every message names the source (file), the column and the first offending row, with its
timestamp when known. Rows are counted from 1 over the data rows, the header not counted (in a
CSV file, data row ``n`` is on line ``n + 1``).
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from gridrecourse.errors import FeederInputError, InvalidSeriesError

#: Default name of the timestamp column.
TIMESTAMP_COLUMN = "timestamp"
#: File suffixes read as CSV (compared in lower case).
CSV_SUFFIXES: tuple[str, ...] = (".csv", ".csv.gz")
#: File suffixes read as Parquet (compared in lower case).
PARQUET_SUFFIXES: tuple[str, ...] = (".parquet", ".pq")


def _row(position: int) -> str:
    """Human row label of a 0-based data position (1-based, header not counted)."""
    return f"row {position + 1}"


def _at(position: int, timestamps: pd.Series | pd.Index | None) -> str:
    """``row N (timestamp T)`` for a 0-based position, the timestamp only if known."""
    if timestamps is None:
        return _row(position)
    return f"{_row(position)} (timestamp {timestamps[position]})"


def _duration(step: pd.Timedelta) -> str:
    """A time step as text, e.g. ``01:00:00`` or ``2 days 00:00:00``."""
    return str(pd.Timedelta(step)).removeprefix("0 days ")


def _fail(source: str, column: str, problem: str) -> InvalidSeriesError:
    """An :class:`InvalidSeriesError` naming the source and column."""
    return InvalidSeriesError(f"{source}: column {column!r}: {problem}")


def _series_format(path: Path) -> str:
    """``"csv"`` or ``"parquet"`` from the file name, else raise naming the accepted suffixes."""
    name = path.name.lower()
    if name.endswith(CSV_SUFFIXES):
        return "csv"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    accepted = ", ".join((*CSV_SUFFIXES, *PARQUET_SUFFIXES))
    raise InvalidSeriesError(
        f"{path}: unsupported series file type {''.join(path.suffixes) or '(no suffix)'!r}; "
        f"expected one of {accepted}"
    )


def load_series(
    path: str | os.PathLike[str],
    timestamp_column: str = TIMESTAMP_COLUMN,
    columns: Sequence[str] | None = None,
    freq: str | pd.Timedelta | None = None,
    allow_negative: Sequence[str] = (),
) -> pd.DataFrame:
    """Read and validate a time series from a CSV or Parquet file.

    Parameters
    ----------
    path : str or os.PathLike
        File ending in ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq``.
    timestamp_column : str, default ``"timestamp"``
        Column with the timestamps (any format :func:`pandas.to_datetime` parses consistently,
        e.g. ISO 8601; time-zone aware values are kept aware). In a Parquet file it may also be
        the stored index.
    columns : sequence of str, optional
        Value columns to keep, in this order. Default: every column but the timestamps.
    freq : str or pandas.Timedelta, optional
        Required fixed step (``"1h"``, ``"15min"``, ...). Default: the most common step between
        consecutive timestamps.
    allow_negative : sequence of str, default ``()``
        Value columns that may hold negative numbers (e.g. prices). All others must be >= 0.

    Returns
    -------
    pandas.DataFrame
        Float64 value columns (units as in the file), indexed by a
        :class:`pandas.DatetimeIndex` named ``timestamp_column`` whose ``freq`` is the step.

    Raises
    ------
    FeederInputError
        If ``path`` does not exist or is not a file.
    InvalidSeriesError
        If the suffix is not supported, the file cannot be parsed, or any check of
        :func:`validate_series` fails.
    """
    file = Path(path)
    if not file.is_file():
        raise FeederInputError(f"{file}: series file not found")
    kind = _series_format(file)
    try:
        if kind == "csv":
            frame = pd.read_csv(file, dtype={timestamp_column: str})
        else:
            frame = pd.read_parquet(file)
    except (ValueError, OSError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise InvalidSeriesError(f"{file}: cannot read as {kind}: {error}") from error
    return validate_series(
        frame,
        source=str(file),
        timestamp_column=timestamp_column,
        columns=columns,
        freq=freq,
        allow_negative=allow_negative,
    )


def validate_series(
    df: pd.DataFrame,
    source: str,
    timestamp_column: str = TIMESTAMP_COLUMN,
    columns: Sequence[str] | None = None,
    freq: str | pd.Timedelta | None = None,
    allow_negative: Sequence[str] = (),
) -> pd.DataFrame:
    """Validate an in-memory time series with the checks of :func:`load_series`.

    Parameters
    ----------
    df : pandas.DataFrame
        Data with a timestamp column named ``timestamp_column``, or a
        :class:`pandas.DatetimeIndex` (or an index named ``timestamp_column``) holding them.
        Not modified.
    source : str
        Where the data came from (file name, ``"user profile"``, ...), quoted in every error.
    timestamp_column, columns, freq, allow_negative
        As in :func:`load_series`.

    Returns
    -------
    pandas.DataFrame
        A new frame: float64 value columns indexed by a :class:`pandas.DatetimeIndex` named
        ``timestamp_column`` whose ``freq`` is the step.

    Raises
    ------
    InvalidSeriesError
        Naming ``source``, the column and the first offending row (1-based over data rows) and
        its timestamp, if any check fails.
    """
    raw_timestamps = _timestamp_values(df, source, timestamp_column)
    value_columns = _value_columns(df, source, timestamp_column, columns, allow_negative)
    timestamps = _parse_timestamps(raw_timestamps, source, timestamp_column)
    step = _check_spacing(timestamps, source, timestamp_column, freq)
    values = {
        name: _check_values(
            df[name].reset_index(drop=True), source, name, timestamps, name in allow_negative
        )
        for name in value_columns
    }
    offset = None if step is None else pd.tseries.frequencies.to_offset(step)
    index = pd.DatetimeIndex(timestamps, name=timestamp_column, freq=offset)
    return pd.DataFrame(values, index=index)


def _timestamp_values(df: pd.DataFrame, source: str, timestamp_column: str) -> pd.Series:
    """The raw timestamp values, from the column or the index, positionally indexed."""
    if timestamp_column in df.columns:
        return df[timestamp_column].reset_index(drop=True)
    if df.index.name == timestamp_column or isinstance(df.index, pd.DatetimeIndex):
        return pd.Series(df.index, name=timestamp_column)
    raise _fail(
        source,
        timestamp_column,
        f"timestamp column missing; columns present: {[str(c) for c in df.columns]}",
    )


def _value_columns(
    df: pd.DataFrame,
    source: str,
    timestamp_column: str,
    columns: Sequence[str] | None,
    allow_negative: Sequence[str],
) -> list[str]:
    """Names of the value columns to check, raising for missing ones."""
    names = (
        [str(c) for c in df.columns if c != timestamp_column] if columns is None else list(columns)
    )
    if not names:
        raise _fail(source, timestamp_column, "no value column besides the timestamps")
    for name in names:
        if name not in df.columns:
            raise _fail(source, name, f"value column missing; columns present: {list(df.columns)}")
    for name in allow_negative:
        if name not in names:
            raise _fail(source, name, f"listed in allow_negative but not a value column ({names})")
    return names


def _to_datetime(raw: pd.Series, iso8601: bool) -> pd.Series:
    """Parse strings to datetimes, unparseable values to NaT; mixed UTC offsets go to UTC."""
    options: dict[str, object] = {"errors": "coerce"}
    if iso8601:
        options["format"] = "ISO8601"
    with warnings.catch_warnings():
        # pandas 2.x warns on mixed UTC offsets and when it cannot infer a format.
        warnings.simplefilter("ignore", FutureWarning)
        warnings.simplefilter("ignore", UserWarning)
        try:
            parsed = pd.to_datetime(raw, **options)
        except (ValueError, TypeError):
            parsed = None
        if parsed is None or not _is_datetime(parsed):
            parsed = pd.to_datetime(raw, utc=True, **options)
    return parsed


def _is_datetime(values: pd.Series) -> bool:
    """Whether ``values`` has a (naive or time-zone aware) datetime64 dtype."""
    return isinstance(values.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(values)


def _parse_timestamps(raw: pd.Series, source: str, column: str) -> pd.Series:
    """Parse ``raw`` to datetimes, raising at the first value that does not parse.

    Strings are parsed as ISO 8601 first, else with the format pandas infers from the first
    value, whichever parses more rows; values given with different UTC offsets are converted
    to UTC.
    """
    if len(raw) == 0:
        raise _fail(source, column, "the series has no rows")
    if _is_datetime(raw):
        parsed = raw
    elif pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        raise _fail(
            source,
            column,
            f"timestamps must be dates or date strings, not {raw.dtype} numbers "
            f"(first value {raw.iloc[0]!r})",
        )
    else:
        candidates = [_to_datetime(raw, iso8601=True), _to_datetime(raw, iso8601=False)]
        parsed = min(candidates, key=lambda candidate: int(candidate.isna().sum()))
    bad = np.flatnonzero(parsed.isna().to_numpy())
    if bad.size:
        first = int(bad[0])
        raise _fail(
            source,
            column,
            f"unparseable or missing timestamp {raw.iloc[first]!r} at {_row(first)}",
        )
    return parsed.reset_index(drop=True)


def _check_spacing(
    timestamps: pd.Series, source: str, column: str, freq: str | pd.Timedelta | None
) -> pd.Timedelta | None:
    """Check for duplicates, order and even spacing; return the step (None for one row)."""
    duplicated = np.flatnonzero(timestamps.duplicated().to_numpy())
    if duplicated.size:
        first = int(duplicated[0])
        raise _fail(source, column, f"duplicated timestamp {timestamps[first]} at {_row(first)}")
    steps = timestamps.diff().iloc[1:]
    backwards = np.flatnonzero((steps <= pd.Timedelta(0)).to_numpy())
    if backwards.size:
        first = int(backwards[0]) + 1
        raise _fail(
            source,
            column,
            f"timestamps not increasing: {_at(first, timestamps)} comes after "
            f"{timestamps[first - 1]}",
        )
    if freq is not None:
        try:
            step = pd.Timedelta(pd.tseries.frequencies.to_offset(freq))
        except (ValueError, TypeError) as error:
            raise _fail(
                source, column, f"freq {freq!r} is not a fixed step such as '1h' or '15min'"
            ) from error
        origin = "given"
    elif len(steps) == 0:
        return None
    else:
        counts = steps.value_counts()
        step = min(counts.index[counts == counts.max()])  # most common step, ties -> smallest
        origin = "inferred"
    uneven = np.flatnonzero((steps != step).to_numpy())
    if uneven.size:
        first = int(uneven[0]) + 1
        raise _fail(
            source,
            column,
            f"timestamps not evenly spaced at the {origin} step {_duration(step)}: step from "
            f"{timestamps[first - 1]} to {_at(first, timestamps)} is "
            f"{_duration(steps.iloc[first - 1])}"
            + (" (gap)" if steps.iloc[first - 1] > step else ""),
        )
    return step


def _check_values(
    raw: pd.Series, source: str, column: str, timestamps: pd.Series, allow_negative: bool
) -> np.ndarray:
    """The column as float64, raising at the first non-numeric, NaN, infinite or negative."""
    if pd.api.types.is_bool_dtype(raw):
        raise _fail(source, column, "values must be numbers, not booleans")
    numbers = pd.to_numeric(raw, errors="coerce")
    not_numeric = np.flatnonzero((numbers.isna() & raw.notna()).to_numpy())
    if not_numeric.size:
        first = int(not_numeric[0])
        raise _fail(
            source,
            column,
            f"value {raw.iloc[first]!r} at {_at(first, timestamps)} is not a number",
        )
    values = numbers.to_numpy(dtype=np.float64, na_value=np.nan)
    for mask, problem in (
        (np.isnan(values), "NaN or empty value"),
        (np.isinf(values), "infinite value"),
    ):
        hits = np.flatnonzero(mask)
        if hits.size:
            first = int(hits[0])
            raise _fail(source, column, f"{problem} {values[first]} at {_at(first, timestamps)}")
    if not allow_negative:
        negative = np.flatnonzero(values < 0)
        if negative.size:
            first = int(negative[0])
            raise _fail(
                source,
                column,
                f"negative value {values[first]} at {_at(first, timestamps)}; this column must "
                "be >= 0 (pass it in allow_negative if negative values are valid, e.g. prices)",
            )
    return values
