"""Helpers shared by every command module: run-folder life cycle, JSON/error output, option
checks, progress with ETA, solver-log capture.

Every ``cli_*`` module imports these from here, never from :mod:`gridrecourse.cli` (which
imports the command modules to register them), so the CLI has no import cycle. This module
imports nothing heavy at load time (``gridrecourse --help`` stays fast).

A command adopts the whole surface in four lines::

    add_run_options(p, "siting")                       # --out/--resume/--overwrite/--json/--quiet
    check_options(args, NUMERIC, OPTION_METHODS, args.method)   # before any work
    folder = open_run(args, "siting", feeder_name, config)      # before any work
    ... folder.save_checkpoint(...)/load_checkpoint(...) ...; folder.write_result(summary)

and :func:`execute` (called by :func:`gridrecourse.cli.main`) turns errors, Ctrl-C and SIGTERM
into one JSON object / one line, the exit code and the folder's status.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import signal
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gridrecourse.errors import GridRecourseError

if TYPE_CHECKING:  # pragma: no cover
    from gridrecourse.report.run_folder import RunFolder

#: Namespace keys that are plumbing, never part of a run's config.
INTERNAL_KEYS = frozenset({"func", "given_options", "option_flags", "command"})
#: Exit codes.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_SIGINT, EXIT_SIGTERM = 0, 1, 2, 130, 143


class OptionError(GridRecourseError, ValueError):
    """A command-line option has a bad value or does not apply (names the option)."""


class ErrorKind(str, Enum):
    """``kind`` of a JSON error object."""

    INPUT = "input"  #: bad option, feeder, data or run folder
    SOLVER = "solver"  #: the solver could not deliver (infeasible, time limit, ...)
    INTERRUPTED = "interrupted"  #: SIGINT/SIGTERM
    USAGE = "usage"  #: argparse could not parse the command line
    INTERNAL = "internal"  #: a bug: the traceback is in the run folder's error.log


class Terminated(BaseException):
    """Raised by the SIGTERM handler (like KeyboardInterrupt for SIGINT)."""


# ----------------------------------------------------------------------------- progress
class Progress:
    """Progress on stderr, one style for every command (silent when ``quiet``).

    ``progress(message)`` announces the next phase (``[2/4] message (12.3 s)``);
    ``progress.tick(done, total, what)`` reports a long phase's advance with its rate and ETA
    (at most once per ``interval`` seconds, and at the end).

    Parameters
    ----------
    total : int or None
        Number of phases (None: unknown, phases are numbered only).
    quiet : bool
        Print nothing.
    interval : float
        Minimum seconds between two ``tick`` lines.
    """

    def __init__(self, total: int | None = None, quiet: bool = False, interval: float = 2.0):
        self.total = total
        self.step = 0
        self.quiet = quiet
        self.interval = interval
        self.t0 = time.perf_counter()
        self._phase_t0 = self.t0
        self._last_tick = -math.inf

    def _elapsed(self) -> float:
        return time.perf_counter() - self.t0

    def __call__(self, message: str) -> None:
        self.step += 1
        self._phase_t0 = time.perf_counter()
        self._last_tick = -math.inf
        if not self.quiet:
            of = f"/{self.total}" if self.total else ""
            print(
                f"[{self.step}{of}] {message} ({self._elapsed():.1f} s)",
                file=sys.stderr,
                flush=True,
            )

    def lap(self) -> None:
        """Restart the current phase's clock (a phase of repeated passes, e.g. PH iterations:
        the rate and ETA of :meth:`tick` then describe the pass)."""
        self._phase_t0 = time.perf_counter()
        self._last_tick = -math.inf

    def note(self, message: str) -> None:
        """An indented line under the current phase (e.g. what a ``--resume`` reused)."""
        if not self.quiet:
            print(f"      {message}", file=sys.stderr, flush=True)

    def tick(self, done: int, total: int | None, what: str = "") -> None:
        """Advance of the current phase: ``done`` of ``total`` units, with rate and ETA."""
        now = time.perf_counter()
        finished = total is not None and done >= total
        if self.quiet or (now - self._last_tick < self.interval and not finished):
            return
        self._last_tick = now
        spent = now - self._phase_t0
        if total:
            eta = spent / done * (total - done) if done else math.nan
            eta_text = "" if math.isnan(eta) else f", ETA {format_seconds(eta)}"
            head = f"{done}/{total} ({100 * done / total:.0f} %)"
        else:
            eta_text, head = "", f"{done}"
        label = f"{what} " if what else ""
        print(
            f"      {label}{head}, {format_seconds(spent)} elapsed{eta_text}",
            file=sys.stderr,
            flush=True,
        )

    def callback(self, what: str) -> Callable[[int, int], None]:
        """A ``progress(done, total)`` callback for the methods (SPAR, bounds, evaluation)."""
        return lambda done, total: self.tick(int(done), int(total) if total else None, what)


def format_seconds(seconds: float) -> str:
    """``42 s``, ``3 min 05 s``, ``1 h 02 min``."""
    s = round(seconds)
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60:02d} min"


# ------------------------------------------------------------------------------ output
_STDOUT: list[TextIO | None] = [None]


def emit(summary: dict, as_json: bool, human: Callable[[], None]) -> None:
    """Print one JSON object (``--json``) or the human-readable summary on stdout."""
    from gridrecourse.report.run_folder import to_jsonable

    out = _STDOUT[0] or sys.stdout
    if as_json:
        print(json.dumps(to_jsonable(summary)), file=out, flush=True)
    else:
        saved, sys.stdout = sys.stdout, out
        try:
            human()
        finally:
            sys.stdout = saved


def error_object(exc: BaseException, kind: ErrorKind, code: int, **extra: Any) -> dict:
    """The JSON error object: ``error`` (class), ``kind``, ``message``, ``exit_code``."""
    return {
        "error": type(exc).__name__,
        "kind": kind.value,
        "message": str(exc) or type(exc).__name__,
        "exit_code": code,
        **extra,
    }


# ------------------------------------------------------------------------ option checks
@dataclass(frozen=True)
class Bound:
    """Allowed range of a numeric option (NaN and infinities are always rejected).

    Attributes
    ----------
    low, high : float or None
        Limits (None: unbounded on that side).
    low_open, high_open : bool
        Exclude the limit itself.
    """

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def describe(self) -> str:
        """``> 0``, ``in [0, 1]``, ``>= 1`` …"""
        if self.low is not None and self.high is not None:
            left = "(" if self.low_open else "["
            right = ")" if self.high_open else "]"
            return f"in {left}{self.low:g}, {self.high:g}{right}"
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low:g}"
        if self.high is not None:
            return f"{'<' if self.high_open else '<='} {self.high:g}"
        return "finite"

    def contains(self, value: float) -> bool:
        """True when ``value`` is finite and in range."""
        if not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return not (
            self.high is not None and (value > self.high or (self.high_open and value == self.high))
        )


#: Common ranges.
POSITIVE = Bound(0.0, low_open=True)
NON_NEGATIVE = Bound(0.0)
AT_LEAST_ONE = Bound(1.0)
FRACTION = Bound(0.0, 1.0)
OPEN_FRACTION = Bound(0.0, 1.0, low_open=True, high_open=True)


def option_flag(args: argparse.Namespace, dest: str) -> str:
    """The command-line spelling of option ``dest`` (``lam`` → ``--lambda``)."""
    flags = getattr(args, "option_flags", None) or {}
    return flags.get(dest, "--" + dest.replace("_", "-"))


def check_numeric(args: argparse.Namespace, bounds: Mapping[str, Bound]) -> None:
    """Reject NaN, infinite and out-of-range values of numeric options (None = not set).

    Raises
    ------
    OptionError
        Naming the option, the value and the expected range.
    """
    for dest, bound in bounds.items():
        value = getattr(args, dest, None)
        if value is None or isinstance(value, bool):
            continue
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            try:
                x = float(v)
            except (TypeError, ValueError):
                continue
            if not bound.contains(x):
                raise OptionError(
                    f"{option_flag(args, dest)} {v}: expected a number {bound.describe()}"
                )


def check_method_options(
    args: argparse.Namespace,
    option_methods: Mapping[str, Sequence[str]],
    method: str,
    method_flag: str = "--method",
    error: type[GridRecourseError] = OptionError,
    flag: Callable[[str], str] | None = None,
) -> None:
    """Options given on the command line that do not apply to ``method`` are an error.

    ``option_methods`` maps an option's ``dest`` to the methods it applies to; options not in
    it apply to every method. Only options given on the command line count
    (``args.given_options``, filled by :func:`gridrecourse.cli.main`), so defaults never
    trigger the error, and an option given at its default value does.

    Raises
    ------
    OptionError
        (or ``error``) Naming the option (spelled by ``flag(dest)`` when given), the chosen
        method and the methods it applies to.
    """
    given = getattr(args, "given_options", frozenset()) or frozenset()
    bad = [d for d in sorted(given) if d in option_methods and method not in option_methods[d]]
    if bad:
        spell = flag or (lambda d: option_flag(args, d))
        parts = [f"{spell(d)} applies to {method_flag} {'|'.join(option_methods[d])}" for d in bad]
        raise error(f"{method_flag} {method}: " + "; ".join(parts) + ", not to this method")


def check_options(
    args: argparse.Namespace,
    bounds: Mapping[str, Bound] | None = None,
    option_methods: Mapping[str, Sequence[str]] | None = None,
    method: str | None = None,
) -> None:
    """:func:`check_numeric` then :func:`check_method_options` (before any work)."""
    check_numeric(args, bounds or {})
    if option_methods and method is not None:
        check_method_options(args, option_methods, method)


def given_options(parser: argparse.ArgumentParser, argv: Sequence[str]) -> tuple[frozenset, dict]:
    """Options of ``parser`` present in ``argv`` (by ``dest``) and each ``dest``'s flag."""
    flags: dict[str, str] = {}
    given: set[str] = set()
    tokens = [t.split("=", 1)[0] for t in argv if t.startswith("-")]
    for action in parser._actions:
        if not action.option_strings:
            continue
        long = [s for s in action.option_strings if s.startswith("--")]
        flags[action.dest] = (long or action.option_strings)[0]
        if any(t in action.option_strings for t in tokens):
            given.add(action.dest)
    return frozenset(given), flags


# ------------------------------------------------------------------- bring-your-own data
class SeriesKind(str, Enum):
    """What a ``--load-data/--pv-data/--price-data`` file holds (how its values are read)."""

    LOAD = "load"  #: any unit; scaled to its peak (a multiplier <= 1)
    PV = "pv"  #: kW per kW of PV rating; scaled to its peak when above 1
    PRICE = "price"  #: currency/MWh as given (may be negative)


#: ``dest`` of each data option → its kind.
DATA_OPTIONS: dict[str, SeriesKind] = {
    "load_data": SeriesKind.LOAD,
    "pv_data": SeriesKind.PV,
    "price_data": SeriesKind.PRICE,
}
_DATA_HELP = {
    SeriesKind.LOAD: "load series (one value column; scaled to its peak)",
    SeriesKind.PV: "PV series (one value column; kW per kW, or scaled to its peak when above 1)",
    SeriesKind.PRICE: "price series (one value column; currency/MWh, may be negative)",
}


def add_data_options(
    parser: argparse.ArgumentParser,
    kinds: Sequence[SeriesKind],
    helps: Mapping[SeriesKind, str] | None = None,
) -> argparse._ArgumentGroup:
    """The ``--load-data/--pv-data/--price-data`` options of ``kinds`` (one group).

    ``helps`` adds a command-specific sentence to an option's help (what it replaces).
    """
    group = parser.add_argument_group(
        "bring-your-own data (CSV/Parquet, hourly, a 'timestamp' column and one value column)"
    )
    for dest, kind in DATA_OPTIONS.items():
        if kind in kinds:
            extra = (helps or {}).get(kind)
            text = _DATA_HELP[kind] + (f"; {extra}" if extra else "")
            group.add_argument("--" + dest.replace("_", "-"), dest=dest, metavar="FILE", help=text)
    return group


def check_data_files(args: argparse.Namespace) -> None:
    """Every data option given names an existing file (before any work).

    Raises
    ------
    OptionError
        ``--load-data FILE: no such file``.
    """
    for dest in DATA_OPTIONS:
        path = getattr(args, dest, None)
        if path is not None and not Path(path).is_file():
            raise OptionError(f"{option_flag(args, dest)} {path}: no such file")


def read_data_option(args: argparse.Namespace, dest: str) -> Any:
    """The hourly values of data option ``dest`` (None when not given), read as its kind says.

    The file is read and validated by :func:`gridrecourse.data.series.load_series` (hourly
    ``timestamp`` column; errors name the file, the column and the row). Loads come back
    scaled to their peak, PV in kW per kW (scaled to its peak when above 1), prices as given.

    Returns
    -------
    numpy.ndarray or None
        Shape (H,).

    Raises
    ------
    OptionError
        Not one value column, or a load/PV series that is 0 everywhere (names the option, the
        file and what was expected).
    """
    import numpy as np

    from gridrecourse.data.series import load_series

    path = getattr(args, dest, None)
    if path is None:
        return None
    kind = DATA_OPTIONS[dest]
    flag = option_flag(args, dest)
    allow = _value_columns(path) if kind is SeriesKind.PRICE else ()
    try:
        frame = load_series(path, freq="1h", allow_negative=allow)
    except OSError as exc:
        raise OptionError(f"{flag} {path}: {exc}") from exc
    except GridRecourseError as exc:
        raise OptionError(f"{flag} {exc}") from exc
    if frame.shape[1] != 1:
        raise OptionError(
            f"{flag} {path}: expected one value column besides 'timestamp', got "
            f"{list(frame.columns)}"
        )
    values = frame.iloc[:, 0].to_numpy(dtype=float)
    if kind is SeriesKind.PRICE:
        return values
    peak = float(np.max(values))
    if peak <= 0:
        raise OptionError(f"{flag} {path}: every value of column {frame.columns[0]!r} is 0")
    return values if (kind is SeriesKind.PV and peak <= 1.0) else values / peak


def _value_columns(path: str) -> list[str]:
    """The value columns of a CSV/Parquet file (every column but ``timestamp``)."""
    import pandas as pd

    try:
        frame = (
            pd.read_parquet(path)
            if str(path).endswith((".parquet", ".pq"))
            else pd.read_csv(path, nrows=1)
        )
    except Exception:
        return []  # load_series reports the unreadable file
    return [str(c) for c in frame.columns if c != "timestamp"]


# ------------------------------------------------------------------------- run folders
_ACTIVE: list[RunFolder] = []


def add_run_options(parser: argparse.ArgumentParser, command: str, json_flag: bool = True) -> None:
    """``--out``, ``--resume``, ``--overwrite`` (and ``--json``, ``--quiet``) of a command."""
    parser.add_argument(
        "--out", help=f"run folder (default runs/{command}-<feeder>-<UTC time>); must be new"
    )
    parser.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR (same options): finished phases, iterations and "
        "replications are reused",
    )
    parser.add_argument(
        "--overwrite", action="store_true", help="delete the run already in --out and start anew"
    )
    if json_flag:
        parser.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")


def resolved_config(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """The run's settings: every option but the plumbing, plus ``extra``."""
    config = {k: v for k, v in vars(args).items() if k not in INTERNAL_KEYS}
    config.update(extra)
    return config


def provenance(args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    """Command line, versions, machine and time (the report's provenance section)."""
    import platform
    from datetime import datetime, timezone
    from importlib.metadata import PackageNotFoundError, version

    def ver(name: str) -> str:
        try:
            return version(name)
        except PackageNotFoundError:
            return "not installed"

    info = {
        "command_line": "gridrecourse " + " ".join(getattr(args, "argv", None) or []),
        "started_utc": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "gridrecourse": ver("gridrecourse"),
        "python": platform.python_version(),
        "numpy": ver("numpy"),
        "highspy": ver("highspy"),
        "opendssdirect.py": ver("opendssdirect.py"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
    }
    info.update(extra)
    return info


def open_run(
    args: argparse.Namespace,
    command: str,
    feeder: str,
    config: Mapping[str, Any],
    **provenance_extra: Any,
) -> RunFolder:
    """Check and start the run folder before any work; HiGHS logs go to its ``solver.log``.

    ``--resume DIR`` continues DIR (its stored settings must match), ``--overwrite`` replaces
    the run in ``--out``, otherwise ``--out`` (default ``runs/<command>-<feeder>-<time>``) must
    not hold a run.

    Raises
    ------
    RunFolderError
        The folder cannot be used (names the option and why).
    """
    from gridrecourse.report.run_folder import OutMode, RunFolder, RunFolderError
    from gridrecourse.solvers.highs import set_solver_log_file

    resume = getattr(args, "resume", None)
    out = getattr(args, "out", None)
    if resume and out and Path(resume).resolve() != Path(out).resolve():
        raise RunFolderError(f"--resume {resume} and --out {out}: give one folder (or the same)")
    if resume and getattr(args, "overwrite", False):
        raise RunFolderError("--resume and --overwrite exclude each other")
    if resume:
        mode, path = OutMode.RESUME, Path(resume)
    else:
        mode = OutMode.OVERWRITE if getattr(args, "overwrite", False) else OutMode.NEW
        path = Path(out) if out else RunFolder.default_path(command, feeder)
    folder = RunFolder.open(
        path, command, dict(config), mode, provenance=provenance(args, **provenance_extra)
    )
    set_solver_log_file(folder.solver_log)
    _ACTIVE.append(folder)
    if mode is OutMode.RESUME and not getattr(args, "quiet", False) and not args.json:
        found = sorted(
            str(p.relative_to(folder.path / "checkpoints"))
            for p in (folder.path / "checkpoints").rglob("*")
            if p.is_file()
        )
        listed = f": checkpoints {', '.join(found)}" if found else " (no checkpoints yet)"
        print(f"resuming {folder.path}{listed}", file=sys.stderr)
    return folder


def check_out_early(args: argparse.Namespace) -> None:
    """Fail on an unusable ``--out``/``--resume`` before anything is imported or computed."""
    from gridrecourse.report.run_folder import OutMode, RunFolder

    if getattr(args, "resume", None):
        RunFolder.check_out(Path(args.resume), OutMode.RESUME, "--resume")
    elif getattr(args, "out", None):
        mode = OutMode.OVERWRITE if getattr(args, "overwrite", False) else OutMode.NEW
        RunFolder.check_out(Path(args.out), mode)


def active_run() -> RunFolder | None:
    """The run folder of the command being executed (None before it is opened)."""
    return _ACTIVE[-1] if _ACTIVE else None


# ----------------------------------------------------------------------------- execute
def _on_sigterm(signum, frame) -> None:
    raise Terminated()


def execute(args: argparse.Namespace) -> int:
    """Run ``args.func(args)`` with the one error/interrupt policy of every command.

    * ``--json``: stdout holds exactly one JSON object (the summary, or the error object
      ``{"error", "kind", "message", "exit_code"}``); any stray ``print`` of a library goes to
      stderr; warnings are silenced.
    * A :class:`~gridrecourse.errors.GridRecourseError` → one ``error: ...`` line, exit 1,
      status ``failed``.
    * Ctrl-C / SIGTERM → one line, exit 130 / 143, status ``interrupted`` (resume with
      ``--resume``).
    * Anything else (a bug) → one line, the traceback in the run folder's ``error.log`` (or
      on stderr without one), exit 1, status ``failed``.
    """
    from gridrecourse.report.run_folder import RunStatus

    as_json = bool(getattr(args, "json", False))
    real_stdout = sys.stdout
    _STDOUT[0] = real_stdout
    _ACTIVE.clear()
    previous = None
    try:
        previous = signal.signal(signal.SIGTERM, _on_sigterm)
    except ValueError:  # not the main thread
        previous = None
    code = EXIT_OK
    payload: dict | None = None
    try:
        with warnings.catch_warnings():
            if as_json:
                warnings.simplefilter("ignore")
            if as_json:
                sys.stdout = sys.stderr  # a library's print never lands in the JSON
            check_out_early(args)
            args.func(args)
    except (KeyboardInterrupt, Terminated) as exc:
        sigterm = isinstance(exc, Terminated)
        code = EXIT_SIGTERM if sigterm else EXIT_SIGINT
        folder = active_run()
        where = (
            f"; run folder {folder.path} (continue with --resume {folder.path})" if folder else ""
        )
        name = "SIGTERM" if sigterm else "SIGINT"
        message = f"interrupted by {name}{where}"
        if folder is not None:
            folder.set_status(RunStatus.INTERRUPTED, message)
        payload = {
            "error": "Interrupted",
            "kind": ErrorKind.INTERRUPTED.value,
            "message": message,
            "exit_code": code,
        }
        if folder is not None:
            payload["run_folder"] = str(folder.path)
    except GridRecourseError as exc:
        from gridrecourse.errors import SolverError

        code = EXIT_ERROR
        kind = ErrorKind.SOLVER if isinstance(exc, SolverError) else ErrorKind.INPUT
        folder = active_run()
        if folder is not None:
            folder.set_status(RunStatus.FAILED, str(exc))
        payload = error_object(exc, kind, code)
        message = f"error: {exc}"
    except Exception as exc:
        code = EXIT_ERROR
        folder = active_run()
        text = traceback.format_exc()
        if folder is not None:
            (folder.path / "error.log").write_text(text)
            folder.set_status(RunStatus.FAILED, f"{type(exc).__name__}: {exc}")
            where = f" (traceback in {folder.path / 'error.log'})"
        else:
            print(text, file=sys.stderr)
            where = ""
        payload = error_object(exc, ErrorKind.INTERNAL, code)
        message = f"internal error: {type(exc).__name__}: {exc}{where}"
    finally:
        sys.stdout = real_stdout
        _STDOUT[0] = None
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
        highs = sys.modules.get("gridrecourse.solvers.highs")
        if highs is not None:
            highs.set_solver_log_file(None)
    if payload is not None:
        if as_json:
            print(json.dumps(payload), file=real_stdout, flush=True)
        print(message, file=sys.stderr, flush=True)
    return code


@contextmanager
def solver_output_to_stderr() -> Iterator[None]:
    """Send everything written to file descriptor 1 (e.g. HiGHS's banner) to stderr.

    Solver libraries write to the process's stdout below Python; with ``--json`` stdout must
    hold exactly one JSON object, so long solves run inside this context.
    """
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
