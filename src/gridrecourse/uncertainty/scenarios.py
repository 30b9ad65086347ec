"""Scenario sets: per-site load and PV multipliers with probabilities (the two-stage contract).

A :class:`ScenarioSet` is what every method (extensive form, progressive hedging, SPAR,
evaluation) consumes: ``S`` scenarios of dimensionless multipliers for ``n_sites`` sites, with
probabilities. The **load multiplier** scales a site's nominal load; the **PV multiplier** is
the PV availability in p.u. of the site's rated PV power. Arrays are ``(S, n_sites)`` for
single-period scenarios (one hour each) or ``(S, n_sites, T)`` for multi-period ones.

Two generators build scenarios from one hourly (load, PV) multiplier series, typically 8760
hours of one year:

* :func:`stratified_scenarios` — paper C ("SPAR-OPF"), Algorithm 2: consecutive-day strata,
  hour-of-day averages within each stratum, independent multiplicative noise per site.
* :func:`sampled_scenarios` — plain Monte Carlo: hours drawn uniformly with replacement, the
  same noise.

Both are reproducible: the same ``seed`` gives identical arrays (NumPy ``default_rng``).

References
----------
Paper C, "SPAR-OPF", Algorithm 2 (stratified scenario generation from a yearly profile).
"""

from __future__ import annotations

import contextlib
import enum
import json
import math
import os
import uuid
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from gridrecourse.errors import InvalidSeriesError

__all__ = [
    "HOURS_PER_DAY",
    "PROBABILITY_TOLERANCE",
    "InvalidScenarioError",
    "ScenarioMethod",
    "ScenarioSet",
    "sampled_scenarios",
    "stratified_scenarios",
]

#: Hours in one day: scenarios of :func:`stratified_scenarios` come in blocks of this many.
HOURS_PER_DAY = 24
#: Largest accepted ``|sum(probability) - 1|``.
PROBABILITY_TOLERANCE = 1e-9

_FILE_FORMAT = "gridrecourse.ScenarioSet"
_FILE_VERSION = 1
_METADATA_KEY = "metadata"


class InvalidScenarioError(InvalidSeriesError):
    """A scenario set, its input series or its file is invalid; the message names the field."""


class ScenarioMethod(str, enum.Enum):
    """How a :class:`ScenarioSet` was generated."""

    #: paper C ("SPAR-OPF") Algorithm 2, :func:`stratified_scenarios`
    STRATIFIED = "stratified"
    #: hours sampled uniformly with replacement (:func:`sampled_scenarios`), or a
    #: probability-proportional resample of another set (:meth:`ScenarioSet.batches`)
    SAMPLED = "sampled"
    #: supplied by the user
    GIVEN = "given"


class _ArrayField(str, enum.Enum):
    """Array fields of :class:`ScenarioSet` (also the array names in the ``.npz`` file)."""

    LOAD = "load_multiplier"
    PV = "pv_multiplier"
    PROBABILITY = "probability"
    HOUR = "hour_of_year"


_REQUIRED_ARRAYS = (_ArrayField.LOAD, _ArrayField.PV, _ArrayField.PROBABILITY)


def _error(field: str, message: str) -> InvalidScenarioError:
    return InvalidScenarioError(f"{field}: {message}")


def _float_array(value: Any, field: str) -> np.ndarray:
    """``value`` as a float64 array (a copy) with only finite entries."""
    try:
        array = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise _error(field, f"cannot be read as an array of numbers ({exc})") from exc
    bad = ~np.isfinite(array)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise _error(field, f"has {int(bad.sum())} NaN/inf value(s), the first at index {first}")
    return array


def _nonnegative(array: np.ndarray, field: str) -> None:
    negative = array < 0
    if negative.any():
        first = tuple(int(i) for i in np.argwhere(negative)[0])
        raise _error(
            field,
            f"has {int(negative.sum())} negative value(s), the first {array[first]:g} at "
            f"index {first}; multipliers must be >= 0",
        )


def _readonly(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


@dataclass(frozen=True, eq=False)
class ScenarioSet:
    """``S`` scenarios of per-site load and PV multipliers with probabilities.

    Arrays are converted to float64 (``hour_of_year`` to int64) read-only copies. Instances
    compare by identity (``eq=False``).

    Attributes
    ----------
    load_multiplier : ndarray, shape (S, n_sites) or (S, n_sites, T)
        Load of each site as a multiple of its nominal load (dimensionless, >= 0).
    pv_multiplier : ndarray, same shape as ``load_multiplier``
        PV availability of each site in p.u. of its rated PV power (>= 0).
    probability : ndarray, shape (S,)
        Scenario probabilities: >= 0, summing to 1 within :data:`PROBABILITY_TOLERANCE`.
    site_names : tuple of str, length n_sites
        Unique site names (bus names or ``"bus.phase"`` names; opaque here).
    seed : int or None
        Seed of the random generator that produced the set (``None``: not reproducible).
    method : str
        A :class:`ScenarioMethod` or its value; stored as the :class:`ScenarioMethod` member
        (which is a ``str``).
    hour_of_year : ndarray of int, shape (S,) or (S, T), optional
        Hour of the source series each scenario (period) represents, for traceability.

    Raises
    ------
    InvalidScenarioError
        Inconsistent shapes, NaN/inf, negative multipliers or probabilities, probabilities not
        summing to 1, duplicate site names, unknown method; the message names the field.
    """

    load_multiplier: np.ndarray
    pv_multiplier: np.ndarray
    probability: np.ndarray
    site_names: tuple[str, ...]
    seed: int | None = None
    method: str = ScenarioMethod.GIVEN
    hour_of_year: np.ndarray | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        # site names
        names = self.site_names
        if isinstance(names, str) or not isinstance(names, Sequence):
            raise _error("site_names", f"must be a sequence of str, got {type(names).__name__}")
        names = tuple(names)
        if not names:
            raise _error("site_names", "is empty; at least one site is needed")
        not_str = [n for n in names if not isinstance(n, str)]
        if not_str:
            raise _error("site_names", f"must all be str, got {not_str[0]!r}")
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise _error("site_names", f"has duplicates {dupes}")
        set_(self, "site_names", names)

        # multipliers
        load = _float_array(self.load_multiplier, _ArrayField.LOAD.value)
        if load.ndim not in (2, 3):
            raise _error(
                _ArrayField.LOAD.value,
                f"must have shape (S, n_sites) or (S, n_sites, T), got {load.shape}",
            )
        if load.shape[0] < 1:
            raise _error(_ArrayField.LOAD.value, "has no scenario (S = 0)")
        if load.shape[1] != len(names):
            raise _error(
                _ArrayField.LOAD.value,
                f"has {load.shape[1]} sites (axis 1) but site_names has {len(names)}",
            )
        if load.ndim == 3 and load.shape[2] < 1:
            raise _error(_ArrayField.LOAD.value, "has no period (T = 0)")
        pv = _float_array(self.pv_multiplier, _ArrayField.PV.value)
        if pv.shape != load.shape:
            raise _error(
                _ArrayField.PV.value,
                f"has shape {pv.shape}, expected the shape of load_multiplier {load.shape}",
            )
        _nonnegative(load, _ArrayField.LOAD.value)
        _nonnegative(pv, _ArrayField.PV.value)
        set_(self, "load_multiplier", _readonly(load))
        set_(self, "pv_multiplier", _readonly(pv))
        n_scenarios = load.shape[0]

        # probabilities
        field = _ArrayField.PROBABILITY.value
        probability = _float_array(self.probability, field)
        if probability.shape != (n_scenarios,):
            raise _error(field, f"has shape {probability.shape}, expected ({n_scenarios},)")
        if (probability < 0).any():
            first = int(np.argmax(probability < 0))
            raise _error(field, f"is negative ({probability[first]:g}) for scenario {first}")
        total = float(probability.sum())
        if abs(total - 1.0) > PROBABILITY_TOLERANCE:
            raise _error(field, f"sums to {total!r}, not 1 (tolerance {PROBABILITY_TOLERANCE})")
        set_(self, "probability", _readonly(probability))

        # seed, method
        if self.seed is not None:
            if not _is_int(self.seed):
                raise _error("seed", f"must be an int or None, got {self.seed!r}")
            set_(self, "seed", int(self.seed))
        try:
            set_(self, "method", ScenarioMethod(self.method))
        except ValueError:
            valid = ", ".join(repr(m.value) for m in ScenarioMethod)
            raise _error("method", f"is {self.method!r}; expected one of {valid}") from None

        # traceability
        if self.hour_of_year is not None:
            field = _ArrayField.HOUR.value
            hours = _float_array(self.hour_of_year, field)
            allowed = [(n_scenarios,)] + ([(n_scenarios, load.shape[2])] if load.ndim == 3 else [])
            if hours.shape not in allowed:
                raise _error(field, f"has shape {hours.shape}, expected one of {allowed}")
            if (hours < 0).any() or (hours != np.round(hours)).any():
                raise _error(field, "must hold non-negative integers")
            set_(self, "hour_of_year", _readonly(hours.astype(np.int64)))

    # ------------------------------------------------------------------------------------------
    @property
    def n_scenarios(self) -> int:
        """Number of scenarios ``S``."""
        return int(self.load_multiplier.shape[0])

    @property
    def n_sites(self) -> int:
        """Number of sites."""
        return int(self.load_multiplier.shape[1])

    @property
    def n_periods(self) -> int | None:
        """Number of periods ``T`` of multi-period scenarios, ``None`` for single-period ones."""
        return int(self.load_multiplier.shape[2]) if self.load_multiplier.ndim == 3 else None

    def __repr__(self) -> str:
        periods = "" if self.n_periods is None else f", T={self.n_periods}"
        return (
            f"ScenarioSet(S={self.n_scenarios}, n_sites={self.n_sites}{periods}, "
            f"method={self.method.value!r}, seed={self.seed!r})"
        )

    # ------------------------------------------------------------------------------------------
    def subset(self, indices: Sequence[int] | np.ndarray) -> ScenarioSet:
        """The scenarios at ``indices`` with their probabilities renormalized to sum to 1.

        Parameters
        ----------
        indices : sequence of int or boolean mask of length S
            Scenarios to keep, in the returned order (repeats allowed).

        Raises
        ------
        InvalidScenarioError
            Empty selection, index out of range, or zero total probability.
        """
        idx = np.asarray(indices)
        if idx.dtype == np.bool_:
            if idx.shape != (self.n_scenarios,):
                raise _error(
                    "indices", f"boolean mask has shape {idx.shape}, expected ({self.n_scenarios},)"
                )
            idx = np.flatnonzero(idx)
        if idx.ndim != 1 or idx.size == 0:
            raise _error("indices", f"must be a non-empty 1-D selection, got shape {idx.shape}")
        if not np.issubdtype(idx.dtype, np.integer):
            raise _error("indices", f"must be integers, got dtype {idx.dtype}")
        if idx.min() < 0 or idx.max() >= self.n_scenarios:
            raise _error(
                "indices",
                f"out of range [0, {self.n_scenarios}): min {idx.min()}, max {idx.max()}",
            )
        probability = self.probability[idx]
        total = float(probability.sum())
        if total <= 0:
            raise _error("indices", "select only scenarios of probability 0")
        return ScenarioSet(
            load_multiplier=self.load_multiplier[idx],
            pv_multiplier=self.pv_multiplier[idx],
            probability=probability / total,
            site_names=self.site_names,
            seed=self.seed,
            method=self.method,
            hour_of_year=None if self.hour_of_year is None else self.hour_of_year[idx],
        )

    def batches(
        self,
        n_batches: int,
        batch_size: int,
        rng: np.random.Generator | int | None = None,
    ) -> list[ScenarioSet]:
        """Independent equal-probability batches for sample-average-approximation bounds.

        Each batch holds ``batch_size`` scenarios drawn i.i.d. with replacement, with
        probability proportional to :attr:`probability`, so each batch is an unbiased sample
        of the distribution the set represents; every scenario of a batch has probability
        ``1 / batch_size``. Batches have ``method = ScenarioMethod.SAMPLED``, keep
        :attr:`seed` (the seed of the source set) and the ``hour_of_year`` of the drawn
        scenarios.

        Parameters
        ----------
        n_batches, batch_size : int
            Number of batches and scenarios per batch (both >= 1).
        rng : numpy.random.Generator or int or None
            Generator (or seed for :func:`numpy.random.default_rng`) of the draws.
        """
        for name, value in (("n_batches", n_batches), ("batch_size", batch_size)):
            if not _is_int(value) or value < 1:
                raise _error(name, f"must be a positive integer, got {value!r}")
        generator = np.random.default_rng(rng)
        draws = generator.choice(
            self.n_scenarios, size=(n_batches, batch_size), replace=True, p=self.probability
        )
        equal = np.full(batch_size, 1.0 / batch_size)
        return [
            ScenarioSet(
                load_multiplier=self.load_multiplier[idx],
                pv_multiplier=self.pv_multiplier[idx],
                probability=equal,
                site_names=self.site_names,
                seed=self.seed,
                method=ScenarioMethod.SAMPLED,
                hour_of_year=None if self.hour_of_year is None else self.hour_of_year[idx],
            )
            for idx in draws
        ]

    # ------------------------------------------------------------------------------------------
    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write the set to one ``.npz`` file (arrays + a JSON ``metadata`` entry), atomically.

        The file is written to a temporary file in the same folder, flushed to disk and then
        moved over ``path`` with :func:`os.replace`, so readers never see a partial file. The
        path is used as given (no suffix is added); ``.npz`` is the conventional suffix.

        Returns
        -------
        pathlib.Path
            ``path``.
        """
        path = Path(path)
        metadata = {
            "format": _FILE_FORMAT,
            "version": _FILE_VERSION,
            "site_names": list(self.site_names),
            "seed": self.seed,
            "method": self.method.value,
        }
        arrays = {
            _ArrayField.LOAD.value: self.load_multiplier,
            _ArrayField.PV.value: self.pv_multiplier,
            _ArrayField.PROBABILITY.value: self.probability,
            _METADATA_KEY: np.array(json.dumps(metadata)),
        }
        if self.hour_of_year is not None:
            arrays[_ArrayField.HOUR.value] = self.hour_of_year
        tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
        try:
            with open(tmp, "xb") as fh:
                np.savez(fh, **arrays)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            raise
        return path

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> ScenarioSet:
        """Read a set written by :meth:`save`.

        Raises
        ------
        InvalidScenarioError
            The file does not exist, is not a scenario ``.npz``, lacks an array or a metadata
            entry, or holds an invalid set; the message names the file.
        """
        path = Path(path)
        try:
            data = np.load(path, allow_pickle=False)
        except FileNotFoundError as exc:
            raise InvalidScenarioError(f"{path}: scenario file not found") from exc
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidScenarioError(f"{path}: cannot read scenario file ({exc})") from exc
        if isinstance(data, np.ndarray):  # a plain .npy file
            raise InvalidScenarioError(f"{path}: not a scenario .npz file (a single .npy array)")
        try:
            with data:
                files = set(data.files)
                missing = [k.value for k in _REQUIRED_ARRAYS if k.value not in files]
                if _METADATA_KEY not in files:
                    missing.append(_METADATA_KEY)
                if missing:
                    raise InvalidScenarioError(
                        f"{path}: scenario file lacks array(s) {missing} (has {sorted(files)})"
                    )
                metadata = json.loads(str(data[_METADATA_KEY][()]))
                arrays = {k: np.array(data[k.value]) for k in _REQUIRED_ARRAYS}
                hours = (
                    np.array(data[_ArrayField.HOUR.value])
                    if _ArrayField.HOUR.value in files
                    else None
                )
        except InvalidScenarioError:
            raise
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
            raise InvalidScenarioError(f"{path}: cannot read scenario file ({exc})") from exc
        if not isinstance(metadata, dict) or metadata.get("format") != _FILE_FORMAT:
            raise InvalidScenarioError(f"{path}: metadata is not that of a {_FILE_FORMAT} file")
        for key in ("site_names", "seed", "method"):
            if key not in metadata:
                raise InvalidScenarioError(f"{path}: metadata lacks {key!r}")
        try:
            return cls(
                load_multiplier=arrays[_ArrayField.LOAD],
                pv_multiplier=arrays[_ArrayField.PV],
                probability=arrays[_ArrayField.PROBABILITY],
                site_names=tuple(metadata["site_names"]),
                seed=metadata["seed"],
                method=metadata["method"],
                hour_of_year=hours,
            )
        except InvalidScenarioError as exc:
            raise InvalidScenarioError(f"{path}: {exc}") from exc


# ----------------------------------------------------------------------------------------------
# Generators
# ----------------------------------------------------------------------------------------------
def _check_series(load_series: Any, pv_series: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both series as float64 1-D arrays of equal length, a positive multiple of 24 hours."""
    out = []
    for field, value in (("load_series", load_series), ("pv_series", pv_series)):
        series = _float_array(value, field)
        if series.ndim != 1:
            raise _error(field, f"must be 1-D (hourly values), got shape {series.shape}")
        if series.size == 0 or series.size % HOURS_PER_DAY:
            raise _error(
                field,
                f"has {series.size} hours; expected a positive multiple of {HOURS_PER_DAY} "
                "(whole days, e.g. 8760)",
            )
        _nonnegative(series, field)
        out.append(series)
    load, pv = out
    if load.size != pv.size:
        raise _error("pv_series", f"has {pv.size} hours but load_series has {load.size}")
    return load, pv


def _check_common(
    n_scenarios: Any, site_names: Any, noise_std: Any, seed: Any
) -> tuple[int, int, float]:
    """Validated (S, n_sites, noise_std)."""
    if not _is_int(n_scenarios) or n_scenarios < 1:
        raise _error("n_scenarios", f"must be a positive integer, got {n_scenarios!r}")
    if isinstance(site_names, str) or not isinstance(site_names, Sequence) or not site_names:
        raise _error("site_names", f"must be a non-empty sequence of str, got {site_names!r}")
    try:
        std = float(noise_std)
    except (TypeError, ValueError):
        raise _error("noise_std", f"must be a number, got {noise_std!r}") from None
    if not math.isfinite(std) or std < 0:
        raise _error("noise_std", f"must be finite and >= 0, got {noise_std!r}")
    if seed is not None and (not _is_int(seed) or seed < 0):
        raise _error("seed", f"must be a non-negative int or None, got {seed!r}")
    return int(n_scenarios), len(site_names), std


def _with_noise(
    base: np.ndarray, n_sites: int, noise_std: float, rng: np.random.Generator
) -> np.ndarray:
    """``max(0, base[s] (1 + eps[s, i]))`` with ``eps ~ N(0, noise_std^2)`` i.i.d.; (S, n_sites)."""
    eps = rng.normal(0.0, noise_std, size=(base.size, n_sites))
    return np.clip(base[:, None] * (1.0 + eps), 0.0, None)


def stratified_scenarios(
    load_series: Sequence[float] | np.ndarray,
    pv_series: Sequence[float] | np.ndarray,
    n_scenarios: int,
    site_names: Sequence[str],
    noise_std: float = 0.1,
    seed: int | None = 0,
) -> ScenarioSet:
    """Stratified single-hour scenarios from an hourly profile (paper C, Algorithm 2).

    1. The ``D = len(series) / 24`` days are split into ``K = S / 24`` strata of consecutive
       days, as equal as possible (the first ``D mod K`` strata have one day more).
    2. Within stratum ``k``, each hour of day ``h`` is averaged over the stratum's days:
       scenario ``24 k + h`` has base multipliers ``mean_d load[24 d + h]`` and
       ``mean_d pv[24 d + h]`` (stratum-major order).
    3. Per site ``i``: ``load[s, i] = max(0, base_load[s] (1 + eps_load[s, i]))`` and likewise
       for PV, with ``eps ~ N(0, noise_std^2)`` independent between load and PV, sites and
       scenarios (the load noise is drawn first, then the PV noise). The clip at 0 only
       matters when ``noise_std`` is large (for 0.1, ``P(eps < -1)`` is about 1e-23); it biases
       the mean up by the clipped mass. PV values above 1 p.u. are kept.

    **Probabilities** are proportional to the stratum's day count,
    ``p[24 k + h] = n_days_k / (24 D)``. They equal ``1 / S`` when ``K`` divides ``D`` and,
    unlike equal weights, make the probability-weighted mean of the (noise-free) scenarios
    equal to the series mean for every ``S``.

    Parameters
    ----------
    load_series, pv_series : array_like, shape (H,)
        Hourly load multiplier and PV availability (p.u. of rated power), ``H`` a multiple of
        24 (8760 for a year), finite and >= 0.
    n_scenarios : int
        ``S``: a positive multiple of 24 with ``S / 24 <= D``.
    site_names : sequence of str
        One name per site (column of the multipliers).
    noise_std : float
        Standard deviation of the relative per-site noise (dimensionless; 0 for none).
    seed : int or None
        Seed of :func:`numpy.random.default_rng`; ``None`` draws fresh entropy.

    Returns
    -------
    ScenarioSet
        ``(S, n_sites)`` multipliers, ``method = "stratified"``, ``hour_of_year[24 k + h] =
        24 (first day of stratum k) + h`` (index into the series).

    Raises
    ------
    InvalidScenarioError
        ``n_scenarios`` not a multiple of 24 or more strata than days; invalid series
        (NaN/inf, negative, not whole days, unequal lengths), noise or seed.

    References
    ----------
    Paper C, "SPAR-OPF", Algorithm 2.
    """
    load, pv = _check_series(load_series, pv_series)
    n, n_sites, std = _check_common(n_scenarios, site_names, noise_std, seed)
    if n % HOURS_PER_DAY:
        raise _error(
            "n_scenarios",
            f"is {n}, not a multiple of {HOURS_PER_DAY}: stratified scenarios come in blocks "
            f"of {HOURS_PER_DAY} hours per stratum (e.g. {HOURS_PER_DAY * max(1, n // 24)})",
        )
    n_days = load.size // HOURS_PER_DAY
    n_strata = n // HOURS_PER_DAY
    if n_strata > n_days:
        raise _error(
            "n_scenarios",
            f"is {n}: {n_strata} strata but the series has only {n_days} days "
            f"(at most {n_days * HOURS_PER_DAY} scenarios)",
        )
    strata = np.array_split(np.arange(n_days), n_strata)
    daily_load = load.reshape(n_days, HOURS_PER_DAY)
    daily_pv = pv.reshape(n_days, HOURS_PER_DAY)
    base_load = np.concatenate([daily_load[days].mean(axis=0) for days in strata])
    base_pv = np.concatenate([daily_pv[days].mean(axis=0) for days in strata])
    day_counts = np.array([days.size for days in strata], dtype=np.float64)
    probability = np.repeat(day_counts / (HOURS_PER_DAY * n_days), HOURS_PER_DAY)
    first_days = np.array([days[0] for days in strata], dtype=np.int64)
    hour_of_year = np.repeat(first_days * HOURS_PER_DAY, HOURS_PER_DAY) + np.tile(
        np.arange(HOURS_PER_DAY), n_strata
    )
    rng = np.random.default_rng(seed)
    return ScenarioSet(
        load_multiplier=_with_noise(base_load, n_sites, std, rng),
        pv_multiplier=_with_noise(base_pv, n_sites, std, rng),
        probability=probability,
        site_names=tuple(site_names),
        seed=seed,
        method=ScenarioMethod.STRATIFIED,
        hour_of_year=hour_of_year,
    )


def sampled_scenarios(
    load_series: Sequence[float] | np.ndarray,
    pv_series: Sequence[float] | np.ndarray,
    n_scenarios: int,
    site_names: Sequence[str],
    noise_std: float = 0.1,
    seed: int | None = 0,
) -> ScenarioSet:
    """Monte Carlo single-hour scenarios: hours drawn uniformly with replacement, plus noise.

    The hours are drawn first, then the load noise, then the PV noise, each from one
    :func:`numpy.random.default_rng` ``(seed)``; the noise is that of
    :func:`stratified_scenarios` (step 3). Probabilities are ``1 / S``.

    Parameters
    ----------
    load_series, pv_series : array_like, shape (H,)
        As for :func:`stratified_scenarios`.
    n_scenarios : int
        ``S`` >= 1 (any value).
    site_names : sequence of str
        One name per site.
    noise_std : float
        Standard deviation of the relative per-site noise (dimensionless).
    seed : int or None
        Seed of :func:`numpy.random.default_rng`.

    Returns
    -------
    ScenarioSet
        ``(S, n_sites)`` multipliers, ``method = "sampled"``, ``hour_of_year`` = drawn hours.
    """
    load, pv = _check_series(load_series, pv_series)
    n, n_sites, std = _check_common(n_scenarios, site_names, noise_std, seed)
    rng = np.random.default_rng(seed)
    hours = rng.integers(0, load.size, size=n)
    return ScenarioSet(
        load_multiplier=_with_noise(load[hours], n_sites, std, rng),
        pv_multiplier=_with_noise(pv[hours], n_sites, std, rng),
        probability=np.full(n, 1.0 / n),
        site_names=tuple(site_names),
        seed=seed,
        method=ScenarioMethod.SAMPLED,
        hour_of_year=hours,
    )
