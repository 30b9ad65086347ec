"""Paper A's data set on a public feeder: bundled real series mapped onto its load buses.

Paper A (METHODS §5, seed 000 §III-A, §IV-A) predicts, from the last M hours of
``[price, 4 weather variables, N bus loads]``, a box for the next τ hours of
``[price, N bus loads]``. Its data (a Southern-California utility's buses, CAISO weather and
prices) is private; this module builds the same kind of data from the series bundled with the
package (:mod:`gridrecourse.data.bundled_data`, see ``data/bundled/DATA.md``):

* **bus loads** — the 17 CityLearn 2022 homes (Fontana, California) are assigned to the
  feeder's load buses (:class:`HomeAssignment`), each bus's series is the sum of its homes'
  loads **scaled so that its annual peak (over all 8760 hours) equals the bus's nominal kW**
  (the sum of the nominal kW of the feeder loads at that bus). Unit: kW (real power).
* **price** — German 2018 day-ahead prices (SMARD), EUR/MWh, aligned to the homes **by hour of
  year only**: the prices are German, the homes are Californian (different region, market and
  year). They serve as a realistic hourly price shape with real negative hours, not as the
  price these homes paid.
* **weather** — the homes' site weather: temperature (°C), relative humidity (%), diffuse and
  direct irradiance (W/m²). The paper's four weather inputs are wind speed, temperature,
  humidity and irradiance; the bundled data has no wind speed, so irradiance enters twice
  (diffuse and direct) instead.
* **PV** (optional) — per bus, a PV rating of ``pv_kw_per_kw_load`` × the bus's nominal kW
  times the mean CityLearn output per kW of rating of the bus's homes (kW). Paper A treats PV as
  known (eq 7a: "derived from historical data"), so PV is not predicted: it is carried along
  for the target hours of every window and passed to the optimization as data.

Features per hour (F = 5 + N): ``[price, temperature, humidity, diffuse, direct, load_1 …
load_N]``; targets (K = 1 + N): ``[price, load_1 … load_N]``; the site order is the order of
``sites`` (use ``problem.load_sites`` so that the load axis matches the optimization model).

Windows (:func:`gridrecourse.learning.windows.make_windows`): sample i reads hours
``[s_i, s_i + M)`` and predicts hours ``[s_i + M, s_i + M + τ)``. Only windows with
``s_i ≡ stride_offset (mod stride)`` are kept (default: one window per day, starting at
midnight — a day-ahead forecast from the previous day).

Splits (:class:`SplitKind`), always leak-free (no hour, input or target, in two splits):

* ``BLOCKS`` (default) — the hours are cut into consecutive blocks of ``block_hours``; every
  group of ``cycle_blocks`` consecutive blocks gets the labels train/calibration/test in the
  proportions of ``fractions`` in a seeded random order; a window is kept only if every hour it
  spans lies in blocks of one label. Calibration and test blocks are thus spread evenly over the
  seasons and randomly interleaved, which keeps them close to exchangeable (what the conformal
  guarantee of eqs 21–23 needs).
* ``CONTIGUOUS`` — :func:`gridrecourse.learning.windows.split_by_time`: train, then
  calibration, then test in time, separated by gaps of M + τ − 1 windows. Simple but the three
  splits then sit in different seasons (with the defaults: calibration in late summer, test in
  autumn/winter), so the test coverage can miss 1 − α by more than sampling noise.

Standardization (:class:`gridrecourse.learning.windows.WindowScalers`) is fitted on the
training windows only.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

import numpy as np

from gridrecourse.data.bundled_data import (
    N_BUILDINGS,
    W_PER_KW,
    WEATHER_COLUMNS,
    HouseholdData,
    load_day_ahead_prices,
    load_household_data,
)
from gridrecourse.errors import GridRecourseError
from gridrecourse.learning.windows import (
    WindowedData,
    WindowError,
    WindowScalers,
    make_windows,
    split_by_time,
)

if TYPE_CHECKING:
    from gridrecourse.network.math_model import MathFeeder

HOURS_PER_YEAR = 8760
HOURS_PER_DAY = 24

#: Name of the price column (first feature and first target).
PRICE_NAME = "price_eur_per_mwh"
#: Weather feature names, in feature order (units in the names).
WEATHER_NAMES: tuple[str, ...] = tuple(WEATHER_COLUMNS)
#: Unit of the price.
PRICE_UNIT = "EUR/MWh"
#: Units of the weather features, in feature order.
WEATHER_UNITS: tuple[str, ...] = ("degC", "%", "W/m2", "W/m2")
#: Unit of the bus loads (real power).
LOAD_UNIT = "kW"

#: Statement printed with every output that uses these data.
DATA_PROVENANCE = (
    "bus loads: 17 CityLearn 2022 homes (Fontana, California, USA) scaled to the feeder's "
    "nominal bus kW; prices: German 2018 day-ahead prices (SMARD, EUR/MWh); the two regions "
    "differ and are aligned by hour of year only"
)


class FeederDataError(GridRecourseError, ValueError):
    """The feeder's load sites or the data settings cannot give a data set."""


class HomeAssignment(str, Enum):
    """How the 17 bundled homes are assigned to the feeder's load buses.

    ``ROUND_ROBIN``: with N ≤ 17 buses, home h goes to bus ``h mod N`` (every home used exactly
    once; buses get ⌊17/N⌋ or ⌈17/N⌉ homes); with N > 17, bus j gets home ``j mod 17`` (buses
    j and j + 17 then share one load shape). ``SEEDED``: every bus gets ``homes_per_bus``
    distinct homes drawn at random (seeded), so buses get distinct mixes even when N > 17.
    """

    ROUND_ROBIN = "round_robin"
    SEEDED = "seeded"


class SplitKind(str, Enum):
    """How windows are split into train / calibration / test (see the module docstring)."""

    BLOCKS = "blocks"
    CONTIGUOUS = "contiguous"


@dataclass(frozen=True)
class FeederDataConfig:
    """Settings of :func:`build_feeder_dataset`.

    Attributes
    ----------
    history : int
        M, input hours per window.
    horizon : int
        τ, predicted hours per window (must equal the optimization horizon).
    stride : int
        Keep windows whose first input hour ``s`` (counted from the first hour used) satisfies
        ``s mod stride == stride_offset``; 24 gives one window per day.
    stride_offset : int
        See ``stride``; in ``[0, stride)``.
    fractions : tuple of 3 floats
        Shares of train, calibration and test (> 0, sum 1).
    split : SplitKind
        Block-interleaved (default) or contiguous split.
    block_hours : int
        Block length of the ``BLOCKS`` split (hours); should be ≥ M + τ.
    cycle_blocks : int
        Blocks per labelling cycle of the ``BLOCKS`` split; each cycle holds
        ``round(fraction · cycle_blocks)`` blocks of every split (largest remainders, ≥ 1 each).
    split_seed : int
        Seed of the label order within each cycle.
    assignment : HomeAssignment
        Home-to-bus assignment.
    homes_per_bus : int
        Homes per bus for ``SEEDED`` (1–17).
    assignment_seed : int
        Seed of the ``SEEDED`` assignment.
    pv_kw_per_kw_load : float
        PV rating per kW of bus nominal load (kW/kW); 0 disables PV (``pv_kw`` is ``None``).
    first_hour, n_hours : int or None
        Use hours of year ``[first_hour, first_hour + n_hours)`` only (default: the whole
        year). The bus scaling always uses the annual peak of the whole year.
    """

    history: int = 24
    horizon: int = 24
    stride: int = 24
    stride_offset: int = 0
    fractions: tuple[float, float, float] = (0.6, 0.2, 0.2)
    split: SplitKind = SplitKind.BLOCKS
    block_hours: int = 96
    cycle_blocks: int = 5
    split_seed: int = 0
    assignment: HomeAssignment = HomeAssignment.ROUND_ROBIN
    homes_per_bus: int = 3
    assignment_seed: int = 0
    pv_kw_per_kw_load: float = 0.0
    first_hour: int = 0
    n_hours: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "split", SplitKind(self.split))
        object.__setattr__(self, "assignment", HomeAssignment(self.assignment))
        object.__setattr__(self, "fractions", tuple(float(f) for f in self.fractions))
        for name in ("stride", "block_hours", "cycle_blocks"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise FeederDataError(f"{name} must be a positive integer, got {value!r}")
        if not 0 <= self.stride_offset < self.stride:
            raise FeederDataError(
                f"stride_offset must be in [0, stride={self.stride}), got {self.stride_offset}"
            )
        if not 1 <= self.homes_per_bus <= N_BUILDINGS:
            raise FeederDataError(
                f"homes_per_bus must be in [1, {N_BUILDINGS}], got {self.homes_per_bus}"
            )
        if not (math.isfinite(self.pv_kw_per_kw_load) and self.pv_kw_per_kw_load >= 0.0):
            raise FeederDataError(
                f"pv_kw_per_kw_load must be a finite number ≥ 0, got {self.pv_kw_per_kw_load}"
            )
        last = self.first_hour + (self.n_hours if self.n_hours is not None else 0)
        if (
            self.first_hour < 0
            or last > HOURS_PER_YEAR
            or (self.n_hours is not None and self.n_hours < 1)
        ):
            raise FeederDataError(
                f"hours [first_hour, first_hour + n_hours) = [{self.first_hour}, {last}) must lie "
                f"in the bundled year [0, {HOURS_PER_YEAR}) and be non-empty"
            )


# ------------------------------------------------------------------------------- bus mapping
def bus_nominal_kw(math_feeder: MathFeeder, sites: Sequence[str]) -> np.ndarray:
    """Nominal real load per site bus: the sum of ``load_kw`` of the loads at that bus (kW).

    Parameters
    ----------
    math_feeder : MathFeeder
        Uses ``load_names``, ``load_kw``, ``load_map`` (nodes × loads), ``node_bus`` and
        ``bus_names``.
    sites : sequence of str
        Bus names, in the order of the load axis (e.g. ``problem.load_sites``).

    Returns
    -------
    ndarray, shape (N,)
        kW per site, all > 0.

    Raises
    ------
    FeederDataError
        No sites, a duplicate site, a site that is not a bus of the model, or a site with no
        (positive) load.
    """
    sites = [str(s) for s in sites]
    if not sites:
        raise FeederDataError("no load sites given: the feeder has no load bus to predict")
    if len(set(sites)) != len(sites):
        raise FeederDataError(f"duplicate load sites: {sites}")
    bus_index = {name: i for i, name in enumerate(math_feeder.bus_names)}
    unknown = [s for s in sites if s not in bus_index]
    if unknown:
        raise FeederDataError(f"load sites {unknown} are not buses of feeder {math_feeder.name}")
    load_map = math_feeder.load_map.tocsc()
    per_bus = np.zeros(len(math_feeder.bus_names))
    for j, kw in enumerate(np.asarray(math_feeder.load_kw, dtype=float)):
        nodes = load_map[:, j].nonzero()[0]
        if nodes.size == 0:
            continue
        weights = np.abs(load_map[nodes, j].toarray().ravel())
        buses = math_feeder.node_bus[nodes]
        for bus in np.unique(buses):
            per_bus[bus] += kw * weights[buses == bus].sum() / weights.sum()
    nominal = np.array([per_bus[bus_index[s]] for s in sites])
    empty = [s for s, kw in zip(sites, nominal, strict=True) if not kw > 0.0]
    if empty:
        raise FeederDataError(
            f"load sites {empty} carry no positive nominal load (kW) in feeder "
            f"{math_feeder.name}; cannot scale a load series to their peak"
        )
    return nominal


def assign_homes(
    n_sites: int,
    kind: HomeAssignment | str = HomeAssignment.ROUND_ROBIN,
    homes_per_bus: int = 3,
    seed: int = 0,
    n_homes: int = N_BUILDINGS,
) -> tuple[tuple[int, ...], ...]:
    """Homes (0-based column indices of the bundled data) assigned to each site.

    Parameters
    ----------
    n_sites : int
        N ≥ 1 buses.
    kind : HomeAssignment
        See :class:`HomeAssignment`.
    homes_per_bus : int
        Homes per bus for ``SEEDED``.
    seed : int
        Seed of ``SEEDED``.
    n_homes : int
        Homes available (17).

    Returns
    -------
    tuple of tuples of int
        ``result[j]`` are the homes of site j (sorted, non-empty).
    """
    kind = HomeAssignment(kind)
    if n_sites < 1:
        raise FeederDataError(f"n_sites must be ≥ 1, got {n_sites}")
    if kind is HomeAssignment.SEEDED:
        if not 1 <= homes_per_bus <= n_homes:
            raise FeederDataError(f"homes_per_bus must be in [1, {n_homes}], got {homes_per_bus}")
        rng = np.random.default_rng(seed)
        return tuple(
            tuple(sorted(int(h) for h in rng.choice(n_homes, homes_per_bus, replace=False)))
            for _ in range(n_sites)
        )
    if n_sites <= n_homes:
        return tuple(tuple(range(j, n_homes, n_sites)) for j in range(n_sites))
    return tuple((j % n_homes,) for j in range(n_sites))


def bus_load_series(
    household_load_kw: np.ndarray,
    assignment: Sequence[Sequence[int]],
    nominal_kw: np.ndarray,
) -> np.ndarray:
    """Hourly load per site: sum of its homes, scaled so the annual peak = nominal kW.

    ``load_j(h) = nominal_j · Σ_{b ∈ A_j} L_b(h) / max_h' Σ_{b ∈ A_j} L_b(h')``.

    Parameters
    ----------
    household_load_kw : ndarray, shape (H, 17)
        Household loads (kW), H = 8760 for an annual peak.
    assignment : sequence of sequences of int
        Homes of each site (:func:`assign_homes`).
    nominal_kw : ndarray, shape (N,)
        Peak per site (kW).

    Returns
    -------
    ndarray, shape (H, N)
        Bus loads (kW); column j peaks at exactly ``nominal_kw[j]``.
    """
    load = np.asarray(household_load_kw, dtype=float)
    nominal = np.asarray(nominal_kw, dtype=float)
    if len(assignment) != nominal.shape[0]:
        raise FeederDataError(
            f"{len(assignment)} home groups for {nominal.shape[0]} sites (nominal_kw)"
        )
    out = np.empty((load.shape[0], nominal.shape[0]))
    for j, homes in enumerate(assignment):
        raw = load[:, list(homes)].sum(axis=1)
        peak = raw.max()
        if not peak > 0.0:
            raise FeederDataError(f"homes {list(homes)} of site {j} have no positive load")
        out[:, j] = raw * (nominal[j] / peak)
    return out


def bus_pv_series(
    household_pv_w_per_kw: np.ndarray,
    assignment: Sequence[Sequence[int]],
    rating_kw: np.ndarray,
) -> np.ndarray:
    """Hourly PV output per site: rating × mean output per kW of rating of its homes (kW).

    Parameters
    ----------
    household_pv_w_per_kw : ndarray, shape (H, 17)
        PV output per kW of rating (W/kW).
    assignment : sequence of sequences of int
        Homes of each site.
    rating_kw : ndarray, shape (N,)
        PV rating per site (kW).

    Returns
    -------
    ndarray, shape (H, N)
        PV output (kW, ≥ 0).
    """
    pv = np.asarray(household_pv_w_per_kw, dtype=float) / W_PER_KW
    per_kw = np.column_stack([pv[:, list(homes)].mean(axis=1) for homes in assignment])
    return per_kw * np.asarray(rating_kw, dtype=float)[None, :]


# ------------------------------------------------------------------------------- hourly table
@dataclass(frozen=True, eq=False)
class FeederSeries:
    """Hourly series of one feeder, row r = hour of year ``first_hour + r``.

    Attributes
    ----------
    sites : tuple of str
        Load bus names, the order of the load axis.
    nominal_kw : ndarray, shape (N,)
        Annual peak of each bus's load = the bus's nominal kW.
    home_assignment : tuple of tuples of int
        0-based bundled home indices of each site.
    first_hour : int
        Hour of year of row 0.
    price_eur_per_mwh : ndarray, shape (H,)
        Day-ahead price (EUR/MWh, German, aligned by hour of year).
    weather : ndarray, shape (H, 4)
        Temperature (°C), relative humidity (%), diffuse and direct irradiance (W/m²).
    load_kw : ndarray, shape (H, N)
        Bus loads (kW).
    pv_kw : ndarray, shape (H, N) or None
        Bus PV output (kW), ``None`` when PV is disabled.
    """

    sites: tuple[str, ...]
    nominal_kw: np.ndarray
    home_assignment: tuple[tuple[int, ...], ...]
    first_hour: int
    price_eur_per_mwh: np.ndarray
    weather: np.ndarray
    load_kw: np.ndarray
    pv_kw: np.ndarray | None

    @property
    def n_hours(self) -> int:
        """H, number of hours."""
        return int(self.price_eur_per_mwh.shape[0])

    @property
    def n_sites(self) -> int:
        """N, number of load buses."""
        return len(self.sites)

    @property
    def hour_of_year(self) -> np.ndarray:
        """Hour of year of every row, shape (H,)."""
        return self.first_hour + np.arange(self.n_hours)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """Names of the F = 5 + N feature columns (units in the names)."""
        return (PRICE_NAME, *WEATHER_NAMES, *(f"load_kw__{s}" for s in self.sites))

    @property
    def feature_units(self) -> tuple[str, ...]:
        """Units of the feature columns."""
        return (PRICE_UNIT, *WEATHER_UNITS, *(LOAD_UNIT for _ in self.sites))

    @property
    def target_names(self) -> tuple[str, ...]:
        """Names of the K = 1 + N target columns: price, then bus loads."""
        return (PRICE_NAME, *(f"load_kw__{s}" for s in self.sites))

    @property
    def target_units(self) -> tuple[str, ...]:
        """Units of the target columns."""
        return (PRICE_UNIT, *(LOAD_UNIT for _ in self.sites))

    def features(self) -> np.ndarray:
        """Hourly features ``[price, temperature, humidity, diffuse, direct, loads]``, (H, F)."""
        return np.column_stack([self.price_eur_per_mwh, self.weather, self.load_kw])

    def targets(self) -> np.ndarray:
        """Hourly targets ``[price, loads]``, (H, K)."""
        return np.column_stack([self.price_eur_per_mwh, self.load_kw])


def build_feeder_series(
    sites: Sequence[str],
    nominal_kw: np.ndarray,
    config: FeederDataConfig | None = None,
    households: HouseholdData | None = None,
    prices: np.ndarray | None = None,
) -> FeederSeries:
    """Map the bundled homes, weather and prices onto the feeder's load buses (hourly).

    Parameters
    ----------
    sites : sequence of str
        Load bus names (order of the load axis).
    nominal_kw : ndarray, shape (N,)
        Nominal kW per site (:func:`bus_nominal_kw`); each bus's annual peak.
    config : FeederDataConfig, optional
        Assignment, PV and hour range.
    households : HouseholdData, optional
        Defaults to :func:`gridrecourse.data.bundled_data.load_household_data`.
    prices : ndarray, shape (H,), optional
        Hourly prices by hour of year (currency/MWh) instead of the bundled German ones.

    Returns
    -------
    FeederSeries
    """
    config = config or FeederDataConfig()
    sites = tuple(str(s) for s in sites)
    nominal = np.asarray(nominal_kw, dtype=float).ravel()
    if nominal.shape[0] != len(sites):
        raise FeederDataError(f"{len(sites)} sites but {nominal.shape[0]} nominal kW values")
    if not np.all(np.isfinite(nominal)) or np.any(nominal <= 0.0):
        raise FeederDataError(f"nominal kW must be finite and > 0, got {nominal.tolist()}")
    hd = households if households is not None else load_household_data()
    assignment = assign_homes(
        len(sites),
        config.assignment,
        homes_per_bus=config.homes_per_bus,
        seed=config.assignment_seed,
        n_homes=hd.load_kw.shape[1],
    )
    load = bus_load_series(hd.load_kw, assignment, nominal)
    pv = (
        bus_pv_series(hd.pv_w_per_kw, assignment, config.pv_kw_per_kw_load * nominal)
        if config.pv_kw_per_kw_load > 0.0
        else None
    )
    price = (
        load_day_ahead_prices().to_numpy(dtype=float)
        if prices is None
        else np.asarray(prices, dtype=float).ravel()
    )
    weather = hd.weather[list(WEATHER_COLUMNS)].to_numpy(dtype=float)
    stop = HOURS_PER_YEAR if config.n_hours is None else config.first_hour + config.n_hours
    if prices is not None and price.shape[0] < stop:
        raise FeederDataError(f"{price.shape[0]} hourly prices, the hours used need {stop}")
    rows = slice(config.first_hour, stop)
    return FeederSeries(
        sites=sites,
        nominal_kw=nominal,
        home_assignment=assignment,
        first_hour=config.first_hour,
        price_eur_per_mwh=price[rows].copy(),
        weather=weather[rows].copy(),
        load_kw=load[rows].copy(),
        pv_kw=None if pv is None else pv[rows].copy(),
    )


# ------------------------------------------------------------------------------- splitting
class Split(str, Enum):
    """Names of the three splits."""

    TRAIN = "train"
    CALIBRATION = "calibration"
    TEST = "test"


def _cycle_labels(fractions: Sequence[float], cycle_blocks: int) -> np.ndarray:
    """Labels 0/1/2 of one cycle, ``round(fraction · cycle_blocks)`` each (largest remainder)."""
    raw = np.asarray(fractions, dtype=float) * cycle_blocks
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: cycle_blocks - counts.sum()]:
        counts[i] += 1
    if np.any(counts < 1):
        raise FeederDataError(
            f"cycle_blocks={cycle_blocks} is too small for fractions {list(fractions)}: every "
            f"split needs at least one block per cycle (got {counts.tolist()}); raise "
            "cycle_blocks"
        )
    return np.repeat(np.arange(3), counts)


def block_labels(
    n_hours: int,
    block_hours: int,
    fractions: Sequence[float],
    cycle_blocks: int,
    seed: int,
) -> np.ndarray:
    """Split label (0 train, 1 calibration, 2 test) of every hour for the ``BLOCKS`` split.

    Blocks of ``block_hours`` consecutive hours; each run of ``cycle_blocks`` blocks receives
    the cycle's labels (:func:`_cycle_labels`) in an order drawn from ``seed``.

    Returns
    -------
    ndarray of int, shape (n_hours,)
    """
    fr = [float(v) for v in fractions]
    if len(fr) != 3 or any(not math.isfinite(v) or v <= 0 for v in fr) or abs(sum(fr) - 1) > 1e-6:
        raise WindowError(f"fractions must be 3 positive numbers summing to 1, got {fr}")
    cycle = _cycle_labels(fr, cycle_blocks)
    n_blocks = -(-n_hours // block_hours)
    n_cycles = -(-n_blocks // cycle_blocks)
    rng = np.random.default_rng(seed)
    labels = np.concatenate([rng.permutation(cycle) for _ in range(n_cycles)])[:n_blocks]
    return labels[np.arange(n_hours) // block_hours]


def _split_blocks(data: WindowedData, labels: np.ndarray) -> tuple[np.ndarray, ...]:
    """Indices of windows lying wholly in train / calibration / test hours."""
    span = data.start_hour[:, None] + np.arange(data.history + data.horizon)[None, :]
    lab = labels[span]
    pure = np.all(lab == lab[:, :1], axis=1)
    return tuple(np.nonzero(pure & (lab[:, 0] == k))[0] for k in range(3))


# ------------------------------------------------------------------------------- data set
@dataclass(frozen=True, eq=False)
class FeederDataset:
    """Windows of paper A's predictor on one feeder, split and standardized.

    ``train``/``calibration``/``test`` are in physical units (price EUR/MWh, loads kW);
    the ``*_std`` versions are standardized with ``scalers`` (fitted on ``train``), which is
    what the LSTM sees and where the conformal score (eq 22) is computed.

    Attributes
    ----------
    series : FeederSeries
        The hourly table the windows were cut from.
    config : FeederDataConfig
    train, calibration, test : WindowedData
        x (n, M, F), y (n, τ, K) in physical units; ``start_hour`` counts hours from
        ``series.first_hour``.
    scalers : WindowScalers
        Feature and target standardizers fitted on ``train``.
    """

    series: FeederSeries
    config: FeederDataConfig
    train: WindowedData
    calibration: WindowedData
    test: WindowedData
    scalers: WindowScalers
    _std: dict = field(default_factory=dict, repr=False)

    @property
    def sites(self) -> tuple[str, ...]:
        """Load bus names (order of the load axis of targets and boxes)."""
        return self.series.sites

    @property
    def n_sites(self) -> int:
        """N."""
        return self.series.n_sites

    @property
    def history(self) -> int:
        """M (hours)."""
        return self.config.history

    @property
    def horizon(self) -> int:
        """τ (hours)."""
        return self.config.horizon

    @property
    def n_features(self) -> int:
        """F = 5 + N."""
        return 5 + self.n_sites

    @property
    def n_targets(self) -> int:
        """K = 1 + N."""
        return 1 + self.n_sites

    def windows(self, split: Split | str) -> WindowedData:
        """Physical-unit windows of a split."""
        return getattr(self, Split(split).value)

    def standardized(self, split: Split | str) -> WindowedData:
        """Standardized windows of a split (cached)."""
        key = Split(split).value
        if key not in self._std:
            self._std[key] = self.scalers.transform(self.windows(key))
        return self._std[key]

    def target_hour_of_year(self, split: Split | str) -> np.ndarray:
        """Hour of year of every target hour, shape (n, τ)."""
        data = self.windows(split)
        first = self.series.first_hour + data.target_start_hour
        return first[:, None] + np.arange(self.horizon)[None, :]

    def pv_kw(self, split: Split | str) -> np.ndarray | None:
        """Known PV output of the target hours, (n, τ, N) kW, or ``None`` without PV."""
        if self.series.pv_kw is None:
            return None
        rows = self.target_hour_of_year(split) - self.series.first_hour
        return self.series.pv_kw[rows]

    def describe(self) -> dict:
        """Sizes, names and units (JSON-friendly)."""
        return {
            "sites": list(self.sites),
            "nominal_kw": self.series.nominal_kw.tolist(),
            "home_assignment": [list(a) for a in self.series.home_assignment],
            "feature_names": list(self.series.feature_names),
            "feature_units": list(self.series.feature_units),
            "target_names": list(self.series.target_names),
            "target_units": list(self.series.target_units),
            "history_hours": self.history,
            "horizon_hours": self.horizon,
            "n_train": len(self.train),
            "n_calibration": len(self.calibration),
            "n_test": len(self.test),
            "first_hour_of_year": self.series.first_hour,
            "n_hours": self.series.n_hours,
            "pv": self.series.pv_kw is not None,
            "provenance": DATA_PROVENANCE,
        }


def split_windows(
    data: WindowedData, config: FeederDataConfig
) -> tuple[WindowedData, WindowedData, WindowedData]:
    """Leak-free train / calibration / test split, then the stride filter (module docstring).

    Raises
    ------
    WindowError
        Bad fractions, or a split left without any window (message gives the sizes).
    """
    if config.split is SplitKind.CONTIGUOUS:
        parts = tuple(split_by_time(data, config.fractions))
    else:
        n_hours = int(data.start_hour.max()) + data.history + data.horizon if len(data) else 0
        labels = block_labels(
            n_hours, config.block_hours, config.fractions, config.cycle_blocks, config.split_seed
        )
        parts = tuple(data.subset(idx) for idx in _split_blocks(data, labels))
    out = tuple(
        p.subset(np.nonzero(p.start_hour % config.stride == config.stride_offset)[0]) for p in parts
    )
    sizes = [len(p) for p in out]
    if min(sizes) < 1:
        raise WindowError(
            f"the {config.split.value} split with fractions {list(config.fractions)}, stride "
            f"{config.stride} h and M+tau = {data.history + data.horizon} h leaves train/"
            f"calibration/test = {sizes[0]}/{sizes[1]}/{sizes[2]} windows; use more hours, a "
            "smaller stride, shorter windows or longer blocks (block_hours ≥ M + tau)"
        )
    return out  # type: ignore[return-value]


def build_feeder_dataset(
    sites: Sequence[str],
    nominal_kw: np.ndarray,
    config: FeederDataConfig | None = None,
    households: HouseholdData | None = None,
    prices: np.ndarray | None = None,
) -> FeederDataset:
    """Hourly series → windows (M past hours → next τ) → leak-free splits → scalers.

    Parameters
    ----------
    sites : sequence of str
        Load buses in the optimization's order (``problem.load_sites``).
    nominal_kw : ndarray, shape (N,)
        Nominal kW per site (:func:`bus_nominal_kw`).
    config : FeederDataConfig, optional
    households : HouseholdData, optional
        Bundled data by default.
    prices : ndarray, optional
        Hourly prices instead of the bundled ones (:func:`build_feeder_series`).

    Returns
    -------
    FeederDataset

    Raises
    ------
    WindowError
        M or τ not positive integers, ``M + τ`` longer than the hours used, or a split left
        empty.
    FeederDataError
        Bad sites / nominal values / settings.
    """
    config = config or FeederDataConfig()
    series = build_feeder_series(sites, nominal_kw, config, households, prices)
    data = make_windows(series.features(), series.targets(), config.history, config.horizon)
    train, calibration, test = split_windows(data, config)
    return FeederDataset(
        series=series,
        config=config,
        train=train,
        calibration=calibration,
        test=test,
        scalers=WindowScalers.fit(train),
    )


def feeder_dataset_for(
    math_feeder: MathFeeder, sites: Sequence[str], config: FeederDataConfig | None = None
) -> FeederDataset:
    """:func:`build_feeder_dataset` with nominal kW read from the feeder model."""
    return build_feeder_dataset(sites, bus_nominal_kw(math_feeder, sites), config)
