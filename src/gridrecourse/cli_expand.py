"""``gridrecourse expand FEEDER``: paper A's battery capacity expansion, ETO vs end-to-end.

Builds the storage-expansion LP (paper A eq 19) on FEEDER, maps the bundled real data onto its
load buses (:mod:`gridrecourse.learning.feeder_data`: Californian homes, German prices aligned
by hour of year), trains the LSTM box predictor with the chosen method
(:mod:`gridrecourse.methods.end_to_end`), calibrates it conformally at α and sizes batteries on
the test windows. Writes a run folder:

* ``config.json`` — every setting (data, predictor, LP) and the data provenance;
* ``result.json`` / ``report.md`` — test metrics (task loss, prediction MSE, total, coverage,
  realized cost, capacity) and the capacity decision;
* ``capacities.csv`` — decision per candidate bus (kWh) and its spread over test windows;
* ``test_windows.csv`` — per test window: LP value at the box, realized and oracle cost,
  covered or not;
* ``training_curves.png`` / ``training_curves.csv`` — per-epoch losses (and q̂, L_task);
* ``coverage.png`` — like paper A Fig. 3: the calibrated box of the substation demand
  (Σ bus loads, lossless) vs the truth on test windows at two α (default 0.05 and 0.3);
* with ``--table1``: ``table1.csv``/``table1.md`` (ETO vs E2E at λ over ``--seeds``);
  with ``--table2``: ``table2.csv``/``table2.md`` (E2E at λ ∈ {0.9, 0.8, 0.7, 0.6}).

``--method ef|ph|spar`` solves the same sizing as a two-stage stochastic program
(:class:`~gridrecourse.problems.storage_scenarios.StorageScenarioProblem`, METHODS §2) whose
scenarios are ``--scenarios N`` training days of the same data set (evenly spaced over the
training period, equally likely): capacities in whole units of ``--unit-kwh`` (or continuous
with ``--continuous-capacity``, which SPAR refuses with its requirement error), dispatch per day
against that day's prices and loads. The chosen capacities are scored on the same held-out test
days with the same evaluator as ETO/E2E (``realized_cost``; ``oracle_cost`` as well). The run
folder holds ``config.json``, ``result.json``, ``report.md``, ``capacities.csv`` and
``test_windows.csv``; the JSON keeps every key of the learning methods (``null`` where a key
has no meaning, e.g. ``task_loss``) and adds ``n_scenarios``, ``in_sample_objective`` (exact
expected cost over the scenario days), ``held_out_objective`` (= ``realized_cost``),
``installation_cost``, times (``solve_seconds``, ``in_sample_evaluation_seconds``,
``held_out_seconds``) and ``method_details``. Options of one family (e.g. ``--lambda`` for
ef/ph/spar, ``--scenarios`` for e2e/eto, ``--rho`` for anything but ph) are an error
(:data:`OPTION_METHODS`).

``--json`` prints one JSON object on stdout; progress goes to stderr (``--quiet`` silences it).
The lead's ``cli.py`` wires :func:`add_expand_parser` and :func:`run_expand`; ``python -m
gridrecourse.cli_expand`` runs the command stand-alone.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from gridrecourse.cli_common import (
    DATA_OPTIONS,
    Progress,
    SeriesKind,
    active_run,
    add_data_options,
    check_data_files,
    emit,
    open_run,
    read_data_option,
    resolved_config,
)
from gridrecourse.cli_common import check_method_options as _check_method_options
from gridrecourse.errors import GridRecourseError

#: Default feeder of ``expand`` (needs the IEEE feeder folder).
DEFAULT_EXPAND_FEEDER = "ieee13"
#: α values of the coverage plot (paper A Fig. 3).
FIG3_ALPHAS = (0.05, 0.3)
#: λ values of Table II.
TABLE2_LAMBDAS = (0.9, 0.8, 0.7, 0.6)
#: Test windows shown in the coverage plot.
COVERAGE_PLOT_WINDOWS = 7
#: Metrics every JSON summary carries.
SUMMARY_KEYS = (
    "method",
    "task_loss",
    "prediction_mse",
    "total_loss",
    "test_coverage",
    "realized_cost",
    "capacity_kwh_total",
    "wall_seconds",
)
#: Methods that learn a box predictor and solve the robust LP (paper A).
LEARNING_METHODS = ("e2e", "eto")
#: Two-stage stochastic methods over training days (METHODS §2).
SCENARIO_METHODS = ("ef", "ph", "spar")
#: Default number of training days used as scenarios by ef/ph/spar (our choice).
DEFAULT_SCENARIOS = 24
#: Default battery unit (kWh) of ef/ph/spar (= StorageScenarioConfig's default).
DEFAULT_UNIT_KWH = 100.0
#: Default PH proximal penalty for the battery expansion (EUR per unit²; see run_expand).
DEFAULT_PH_RHO = 0.1
#: Default relative MIP gap of ef/ph/spar solves.
DEFAULT_MIP_GAP = 1e-6
#: Options that apply only to some methods (``dest`` → methods); the rest apply to all.
OPTION_METHODS: dict[str, tuple[str, ...]] = {
    **{
        dest: LEARNING_METHODS
        for dest in (
            "lam",
            "alpha",
            "epochs",
            "warmup_epochs",
            "loss",
            "in_loop",
            "hidden_size",
            "lr",
            "threads",
            "table1",
            "table2",
            "fig3_alphas",
            "seeds",
        )
    },
    "seed": (*LEARNING_METHODS, "spar"),
    "scenarios": SCENARIO_METHODS,
    "unit_kwh": SCENARIO_METHODS,
    "mip_gap": SCENARIO_METHODS,
    "continuous_capacity": SCENARIO_METHODS,
    "time_limit": ("ef",),
    "max_iterations": ("ph", "spar"),
    "rho": ("ph",),
    "rho_growth": ("ph",),
    "step_rule": ("spar",),
}
_TABLE_COLUMNS = (
    "method",
    "lam",
    "seed",
    "task_loss",
    "prediction_mse",
    "total_loss",
    "realized_cost",
    "oracle_cost",
    "test_coverage",
    "capacity_kwh_total",
    "q_hat",
    "wall_seconds",
)


class ExpandInputError(GridRecourseError, ValueError):
    """Command-line settings of ``expand`` that cannot work together."""


# ------------------------------------------------------------------------------- parser
class _Given(argparse.Action):
    """Store an option's value and record that it was given on the command line.

    ``args.given_options`` (a frozenset of ``dest`` names) lets :func:`check_method_options`
    reject options that do not apply to the chosen method, even when given at their default.
    """

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        setattr(namespace, self.dest, self.const if self.nargs == 0 else values)
        given = getattr(namespace, "given_options", frozenset())
        namespace.given_options = frozenset(given) | {self.dest}


def _add(parser: argparse.ArgumentParser, *names: str, **kwargs: Any) -> None:
    """``parser.add_argument`` recording the option in ``given_options`` (flags too)."""
    if kwargs.pop("action", None) == "store_true":
        kwargs.update(nargs=0, const=True, default=False)
    parser.add_argument(*names, action=_Given, **kwargs)


def add_expand_parser(subparsers) -> argparse.ArgumentParser:
    """Add the ``expand`` sub-command to ``subparsers`` (from ``add_subparsers``).

    Returns the sub-parser; its default ``func`` is :func:`run_expand`.
    """
    help_text = "paper A battery capacity expansion: LSTM + conformal boxes, ETO or end-to-end"
    p = subparsers.add_parser("expand", help=help_text, description=help_text)
    p.add_argument(
        "feeder",
        nargs="?",
        default=DEFAULT_EXPAND_FEEDER,
        help=f"built-in name, OpenDSS master or JSON (default {DEFAULT_EXPAND_FEEDER})",
    )
    _add(
        p,
        "--method",
        choices=[*LEARNING_METHODS, *SCENARIO_METHODS],
        default="e2e",
        help="e2e/eto: LSTM + conformal box and the robust LP; ef/ph/spar: two-stage "
        "stochastic program over --scenarios training days (default e2e)",
    )
    _add(
        p,
        "--lambda",
        dest="lam",
        type=float,
        default=0.8,
        help="weight λ of L_pred in L = λ L_pred + (1-λ) L_task (eq 25; default 0.8)",
    )
    _add(p, "--alpha", type=float, default=0.1, help="miscoverage level (default 0.1)")
    _add(p, "--epochs", type=int, default=30, help="total epochs (default 30)")
    _add(
        p,
        "--warmup-epochs",
        type=int,
        default=None,
        help="E2E: leading epochs on L_pred only (default: 2/3 of --epochs)",
    )
    _add(p, "--history", type=int, default=24, help="M, input hours (default 24)")
    _add(p, "--horizon", type=int, default=24, help="τ, predicted and optimized hours (default 24)")
    _add(
        p,
        "--stride",
        type=int,
        default=24,
        help="hours between window starts (default 24: one day-ahead window per day)",
    )
    _add(p, "--seed", type=int, default=0, help="seed of the main run (default 0)")
    _add(
        p,
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="seeds of --table1/--table2 (default 0 1 2)",
    )
    _add(p, "--loss", choices=["pinball", "gaussian_nll"], default="pinball")
    _add(
        p,
        "--in-loop",
        choices=["batch_split", "epoch_constant"],
        default="batch_split",
        help="how q̂ enters E2E training: differentiable mini-batch split (default) or the "
        "paper's per-epoch constant q̂ (drifts wider for strong task weights); see "
        "methods.end_to_end",
    )
    _add(p, "--hidden-size", type=int, default=32, help="LSTM units (default 32)")
    _add(p, "--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    _add(
        p,
        "--pv-penetration",
        type=float,
        default=0.0,
        help="PV kW per kW of bus nominal load (default 0: no PV)",
    )
    _add(
        p,
        "--split",
        choices=["blocks", "contiguous"],
        default="blocks",
        help="train/calibration/test split (default blocks of 4 days, interleaved)",
    )
    _add(p, "--workers", type=int, default=1, help="LP worker processes (default 1)")
    _add(
        p,
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the LSTM is small, and one thread does not fight the "
        "LP solver or other processes for the cores)",
    )
    _add(
        p,
        "--scenarios",
        type=int,
        default=None,
        help=f"ef/ph/spar: training days used as equally likely scenarios, evenly spaced over "
        f"the training period (default {DEFAULT_SCENARIOS})",
    )
    _add(
        p,
        "--unit-kwh",
        type=float,
        default=None,
        help="ef/ph/spar: battery unit size (kWh); capacities are whole units (default "
        f"{DEFAULT_UNIT_KWH:g})",
    )
    _add(
        p,
        "--continuous-capacity",
        action="store_true",
        help="ef/ph/spar: capacities any value up to the bound instead of whole units (SPAR "
        "needs whole units and refuses this problem with its requirement error)",
    )
    _add(p, "--mip-gap", type=float, default=None, help="ef/ph/spar: relative MIP gap (1e-6)")
    _add(p, "--time-limit", type=float, default=None, help="ef: solver time limit (s)")
    _add(p, "--max-iterations", type=int, default=None, help="ph/spar: iteration cap")
    _add(
        p,
        "--rho",
        type=float,
        default=None,
        help=f"ph: proximal penalty ρ (EUR per unit²; default {DEFAULT_PH_RHO:g})",
    )
    _add(p, "--rho-growth", type=float, default=None, help="ph: growth of ρ per iteration (1)")
    _add(
        p,
        "--step-rule",
        choices=["rule_1", "rule_2", "rule_3"],
        default=None,
        help="spar: step-size rule (paper C; default rule_1)",
    )
    _add(p, "--table1", action="store_true", help="ETO vs E2E at λ over --seeds")
    _add(p, "--table2", action="store_true", help="E2E at λ ∈ {0.9,0.8,0.7,0.6}")
    _add(
        p,
        "--fig3-alphas",
        type=float,
        nargs=2,
        default=list(FIG3_ALPHAS),
        help="the two α of the coverage plot (default 0.05 0.3)",
    )
    add_data_options(
        p,
        tuple(SeriesKind),
        {
            SeriesKind.LOAD: "the same profile at every load bus, scaled to its nominal kW, "
            "instead of the bundled homes",
            SeriesKind.PV: "PV at every bus, rated --pv-penetration x its nominal kW",
            SeriesKind.PRICE: "instead of the bundled German prices",
        },
    )
    _add(p, "--out", help="run folder (default runs/expand-<feeder>-<time>); must be new")
    _add(p, "--resume", metavar="DIR", help="continue the run in DIR (same options)")
    _add(p, "--overwrite", action="store_true", help="replace the run already in --out")
    _add(p, "--json", action="store_true", help="print one JSON summary on stdout")
    _add(p, "--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_expand, given_options=frozenset())
    return p


# ------------------------------------------------------------------------------- helpers
class _Progress(Progress):
    """Progress lines on stderr in the shared style (:class:`gridrecourse.cli_common.Progress`)."""

    def __init__(self, quiet: bool):
        super().__init__(None, quiet=quiet)


def _save_figure(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    try:
        fig.savefig(tmp, dpi=130, bbox_inches="tight")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        Path(tmp).unlink(missing_ok=True)
    return path


def _check_args(args: argparse.Namespace) -> None:
    from gridrecourse.uncertainty.conformal import check_alpha

    check_alpha(args.alpha)
    for a in args.fig3_alphas:
        check_alpha(a)
    if not 0.0 <= args.lam <= 1.0:
        raise ExpandInputError(f"--lambda must be in [0, 1], got {args.lam}")
    if args.epochs < 1:
        raise ExpandInputError(f"--epochs must be ≥ 1, got {args.epochs}")
    if args.warmup_epochs is not None and not 0 <= args.warmup_epochs <= args.epochs:
        raise ExpandInputError(
            f"--warmup-epochs must be in [0, --epochs={args.epochs}], got {args.warmup_epochs}"
        )
    if args.workers < 1:
        raise ExpandInputError(f"--workers must be ≥ 1, got {args.workers}")
    if args.threads < 1:
        raise ExpandInputError(f"--threads must be ≥ 1, got {args.threads}")
    if not args.seeds:
        raise ExpandInputError("--seeds needs at least one seed")


def _arguments(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed options for ``config.json`` (JSON-friendly: given options as a sorted list)."""
    return {
        k: sorted(v) if isinstance(v, frozenset) else v
        for k, v in vars(args).items()
        if k != "func"
    }


def _flag(dest: str) -> str:
    return "--lambda" if dest == "lam" else "--" + dest.replace("_", "-")


def check_method_options(args: argparse.Namespace) -> None:
    """Reject options that do not apply to ``args.method`` (see :data:`OPTION_METHODS`).

    Only options given on the command line count (``args.given_options``), so defaults never
    conflict; an option given at its default value still does.

    Raises
    ------
    ExpandInputError
        Names each offending option and the methods it applies to.
    """
    _check_method_options(args, OPTION_METHODS, args.method, error=ExpandInputError, flag=_flag)
    if args.method not in SCENARIO_METHODS:
        return
    checks = [
        (args.scenarios is None or args.scenarios >= 1, "--scenarios must be >= 1"),
        (args.unit_kwh is None or args.unit_kwh > 0, "--unit-kwh must be > 0"),
        (args.mip_gap is None or args.mip_gap >= 0, "--mip-gap must be >= 0"),
        (args.time_limit is None or args.time_limit > 0, "--time-limit must be > 0"),
        (args.max_iterations is None or args.max_iterations >= 1, "--max-iterations must be >= 1"),
        (args.rho is None or args.rho > 0, "--rho must be > 0"),
        (args.rho_growth is None or args.rho_growth >= 1, "--rho-growth must be >= 1"),
    ]
    for ok, message in checks:
        if not ok:
            raise ExpandInputError(message)


def _data_config(args: argparse.Namespace, n_hours: int | None = None) -> FeederDataConfig:  # noqa: F821
    """The dataset settings every expand method shares (same days for ETO/E2E and EF/PH/SPAR)."""
    from gridrecourse.learning.feeder_data import FeederDataConfig, SplitKind

    return FeederDataConfig(
        history=args.history,
        horizon=args.horizon,
        stride=args.stride,
        split=SplitKind(args.split),
        pv_kw_per_kw_load=args.pv_penetration,
        n_hours=n_hours,
    )


def _dataset(args: argparse.Namespace, sites, nominal_kw):
    """``(data config, dataset)``: the bundled year, or ``--load-data/--pv-data/--price-data``.

    A data file's row r is hour of year r (the bundled weather features, and the bundled
    prices or PV when not given, are aligned by hour of year); with files the hours used are
    the first ``min(lengths)`` (at most one year). The load file gives every load bus the same
    profile scaled to the bus's nominal kW; the PV file the output per kW of rating.
    """
    from dataclasses import replace

    from gridrecourse.data.bundled_data import load_household_data
    from gridrecourse.learning.feeder_data import HOURS_PER_YEAR, build_feeder_dataset

    series = {dest: read_data_option(args, dest) for dest in DATA_OPTIONS}
    given = {dest: v for dest, v in series.items() if v is not None}
    if series["pv_data"] is not None and not args.pv_penetration > 0:
        raise ExpandInputError(
            f"--pv-data {args.pv_data}: needs --pv-penetration > 0 (PV kW per kW of bus load)"
        )
    for dest, values in given.items():
        if len(values) > HOURS_PER_YEAR:
            raise ExpandInputError(
                f"{_flag(dest)} {getattr(args, dest)}: {len(values)} hourly values, expected at "
                f"most {HOURS_PER_YEAR} (one year, aligned with the bundled weather)"
            )
    n_hours = min((len(v) for v in given.values()), default=None)
    config = _data_config(args, n_hours)
    households = None
    if series["load_data"] is not None or series["pv_data"] is not None:
        hd = load_household_data()
        n_homes = hd.load_kw.shape[1]
        load, pv = series["load_data"], series["pv_data"]
        households = replace(
            hd,
            load_kw=hd.load_kw[:n_hours]
            if load is None
            else np.repeat(load[:n_hours, None], n_homes, axis=1),
            pv_w_per_kw=hd.pv_w_per_kw[:n_hours]
            if pv is None
            else np.repeat(1000.0 * pv[:n_hours, None], n_homes, axis=1),
            hour_of_year=hd.hour_of_year[:n_hours],
        )
    dataset = build_feeder_dataset(sites, nominal_kw, config, households, series["price_data"])
    return config, dataset


def _load_problem(feeder_spec: str, horizon: int):
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.network.prepare import prepare_math_feeder
    from gridrecourse.problems.storage_expansion import (
        StorageExpansionConfig,
        StorageExpansionProblem,
    )

    feeder = resolve_feeder_spec(feeder_spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # default operating point: OpenDSS taps, normal switches, snapshot root voltages
        math = prepare_math_feeder(feeder)
    problem = StorageExpansionProblem(math, StorageExpansionConfig(n_hours=horizon))
    return feeder, problem


def _summary_row(metrics) -> dict[str, Any]:
    d = asdict(metrics)
    return {k: d[k] for k in _TABLE_COLUMNS}


def _markdown_table(frame: pd.DataFrame, floatfmt: str = ".4g") -> str:
    cols = list(frame.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for _, row in frame.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            cells.append(format(v, floatfmt) if isinstance(v, (float, np.floating)) else str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _aggregate(rows: list[dict], by: Sequence[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows)
    metrics = [c for c in _TABLE_COLUMNS if c not in ("method", "lam", "seed")]
    grouped = frame.groupby(list(by), sort=False)[metrics]
    mean = grouped.mean()
    std = grouped.std(ddof=1).fillna(0.0)
    out = mean.copy()
    for c in metrics:
        out[f"{c}_std"] = std[c]
    out["n_seeds"] = grouped.size()
    return out.reset_index()


# ------------------------------------------------------------------------------- plots
def training_curves_plot(log, path: Path, title: str) -> Path:
    """Per-epoch L_pred (train, calibration) and, for E2E epochs, L_task and q̂."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    epochs = log.column("epoch")
    fig, (ax1, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    ax1.plot(epochs, log.column("train_pred_loss"), label="L_pred train")
    ax1.plot(epochs, log.column("val_pred_loss"), label="L_pred calibration windows")
    ax1.set_ylabel("L_pred (standardized units)")
    ax1.set_title(title)
    ax1.legend(fontsize=8)
    task = log.column("train_task_loss")
    if np.isfinite(task).any():
        ax2.plot(epochs, task, color="tab:red", marker=".", label="L_task train (EUR/window)")
        ax2.set_ylabel("L_task (EUR per window)")
        ax2b = ax2.twinx()
        ax2b.plot(epochs, log.column("q_hat"), color="tab:gray", ls="--", label="in-loop q̂")
        ax2b.set_ylabel("q̂ (standardized)")
        ax2b.legend(fontsize=8, loc="upper right")
        ax2.legend(fontsize=8, loc="upper left")
    else:
        ax2.text(0.5, 0.5, "ETO: no LP in training", ha="center", transform=ax2.transAxes)
    ax2.set_xlabel("epoch")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    return _save_figure(fig, path)


def coverage_plot(panels: list[dict], path: Path, title: str) -> Path:
    """Paper A Fig. 3: calibrated box of the substation demand vs truth, one panel per α.

    Each panel dict holds ``alpha``, ``lower``, ``upper``, ``truth`` (n, τ) in kW,
    ``coverage`` (joint, all outputs) and ``q_hat``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(10, 3.2 * len(panels)), sharex=True)
    axes = np.atleast_1d(axes)
    for ax, panel in zip(axes, panels, strict=True):
        lo, hi, y = panel["lower"], panel["upper"], panel["truth"]
        n, tau = y.shape
        hours = np.arange(n * tau)
        ax.fill_between(
            hours, lo.ravel(), hi.ravel(), step="mid", alpha=0.3, label="calibrated box"
        )
        ax.plot(hours, y.ravel(), color="k", lw=1.0, label="truth")
        for w in range(1, n):
            ax.axvline(w * tau - 0.5, color="grey", lw=0.5, ls=":")
        inside = np.mean((y >= lo) & (y <= hi))
        ax.set_title(
            f"α = {panel['alpha']:g}: q̂ = {panel['q_hat']:.2f} (std units); hours inside "
            f"{100 * inside:.0f} %, joint window coverage (all outputs) "
            f"{100 * panel['coverage']:.0f} %",
            fontsize=9,
        )
        ax.set_ylabel("substation demand (kW)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper right")
    axes[-1].set_xlabel(
        f"test hours ({len(panels[0]['truth'])} windows of τ h, dotted = new window)"
    )
    fig.suptitle(title, fontsize=10)
    return _save_figure(fig, path)


# ------------------------------------------------------------------------------- command
def run_expand(args: argparse.Namespace) -> dict:
    """Run ``gridrecourse expand`` (see the module docstring); returns the JSON summary.

    Prints the summary (one JSON object with ``--json``, else a few readable lines) on stdout.
    Sets torch's thread count to ``--threads`` for the run (restored afterwards).

    Raises
    ------
    GridRecourseError
        Unknown feeder, bad settings (α ∉ (0, 1), too small calibration set, windows longer
        than the data, …), solver failures.
    """
    _check_args(args)
    check_method_options(args)
    check_data_files(args)
    # the run folder before any work: --out checked, config/status written, solver log there
    open_run(args, "expand", str(args.feeder), resolved_config(args))
    if args.method in SCENARIO_METHODS:
        return _run_scenario_method(args)
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run_expand(args)
    finally:
        torch.set_num_threads(previous)


def _run_expand(args: argparse.Namespace) -> dict:
    from gridrecourse.learning.feeder_data import (
        DATA_PROVENANCE,
        Split,
    )
    from gridrecourse.methods.end_to_end import (
        EndToEndConfig,
        InLoopCalibration,
        Method,
        calibrate_model,
        calibrated_box,
        check_calibration_size,
        run_method,
        substation_box,
    )
    from gridrecourse.report.run_folder import RunFolder, to_jsonable
    from gridrecourse.uncertainty.conformal import empirical_coverage

    _check_args(args)
    say = _Progress(args.quiet)
    t0 = time.perf_counter()
    say(f"loading {args.feeder} and building the storage-expansion LP (τ = {args.horizon} h)")
    feeder, problem = _load_problem(args.feeder, args.horizon)
    own = [f"{_flag(d)} {getattr(args, d)}" for d in DATA_OPTIONS if getattr(args, d, None)]
    source = ", ".join(own) if own else f"the bundled homes; {DATA_PROVENANCE}"
    say(f"mapping {source} onto {problem.n_sites} load buses")
    data_config, dataset = _dataset(args, problem.load_sites, problem.nominal_load_kw)
    check_calibration_size(len(dataset.calibration), args.alpha)
    fig3_alphas = [a for a in args.fig3_alphas]
    skipped_alphas = []
    for a in list(fig3_alphas):
        try:
            check_calibration_size(len(dataset.calibration), a)
        except GridRecourseError:
            fig3_alphas.remove(a)
            skipped_alphas.append(a)
    warmup = args.warmup_epochs if args.warmup_epochs is not None else (2 * args.epochs) // 3
    base = EndToEndConfig(
        method=Method(args.method),
        alpha=args.alpha,
        lam=args.lam,
        epochs=args.epochs,
        warmup_epochs=warmup,
        loss=args.loss,
        hidden_size=args.hidden_size,
        lr=args.lr,
        seed=args.seed,
        in_loop_calibration=InLoopCalibration(args.in_loop),
    )
    out = Path(args.out) if args.out else RunFolder.default_path("expand", feeder.name)
    folder = active_run() or RunFolder(out, "expand")
    folder.write_config(
        {
            "feeder": str(args.feeder),
            "arguments": _arguments(args),
            "data": asdict(data_config),
            "dataset": dataset.describe(),
            "method": asdict(base),
            "storage_expansion": asdict(problem.config),
            "candidate_buses": list(problem.candidate_buses),
            "installation_cost_per_kwh": np.asarray(problem.installation_cost_per_kwh),
            "units": {
                "price": "EUR/MWh (German day-ahead 2018; the LP reads it as currency/MWh)",
                "load": "kW",
                "costs": "EUR per window of τ hours",
                "q_hat_and_prediction_mse": "standardized (train mean/std per series)",
            },
        }
    )
    executor = None
    if args.workers > 1:
        from gridrecourse.execution import make_executor

        executor = make_executor("process", n_workers=args.workers)
    runs: dict[tuple[str, float, int], Any] = {}

    def train(method: Method, lam: float, seed: int):
        key = (method.value, 1.0 if method is Method.ETO else float(lam), int(seed))
        if key in runs:
            return runs[key]
        config = replace(base, method=method, lam=lam, seed=seed)
        tag = f"{method.value} λ={config.effective_lam:g} seed {seed}"
        say(
            f"training {tag}: {len(dataset.train)} train / {len(dataset.calibration)} "
            f"calibration / {len(dataset.test)} test windows"
        )

        def progress(r) -> None:
            extra = (
                f", L_task {r.train_task_loss:.1f} EUR, q̂ {r.q_hat:.2f}"
                if np.isfinite(r.train_task_loss)
                else ""
            )
            say(
                f"{tag} epoch {r.epoch}/{r.n_epochs} ({r.phase.value}): L_pred "
                f"{r.train_pred_loss:.4f}, calibration {r.val_pred_loss:.4f}{extra} "
                f"[{r.seconds:.1f} s]"
            )

        ckpt = folder.path / "checkpoints" / f"{method.value}-lam{config.effective_lam:g}-s{seed}"
        run = run_method(
            problem, dataset, config, executor=executor, checkpoint_dir=ckpt, progress=progress
        )
        m = run.metrics
        say(
            f"{tag}: task loss {m.task_loss:.1f} EUR, MSE {m.prediction_mse:.3f}, coverage "
            f"{m.test_coverage:.3f}, realized cost {m.realized_cost:.1f} EUR, capacity "
            f"{m.capacity_kwh_total:.0f} kWh"
        )
        runs[key] = run
        return run

    try:
        main_run = train(base.method, args.lam, args.seed)
        tables: dict[str, Any] = {}
        if args.table1:
            rows = [
                _summary_row(train(m, args.lam, s).metrics)
                for s in args.seeds
                for m in (Method.ETO, Method.E2E)
            ]
            frame = pd.DataFrame(rows)
            agg = _aggregate(rows, ["method"])
            folder.write_table("table1", frame)
            folder.write_table("table1_mean", agg)
            md = (
                f"# Table I: ETO vs E2E (λ = {args.lam:g}, α = {args.alpha:g}, seeds "
                f"{args.seeds}) on {feeder.name}\n\n"
                "Costs in EUR per τ-hour window; prediction MSE in standardized units; "
                "total = task + MSE (as paper A).\n\n"
                + _markdown_table(
                    agg[
                        [
                            "method",
                            "task_loss",
                            "task_loss_std",
                            "prediction_mse",
                            "prediction_mse_std",
                            "total_loss",
                            "realized_cost",
                            "realized_cost_std",
                            "test_coverage",
                            "capacity_kwh_total",
                            "wall_seconds",
                        ]
                    ]
                )
                + "\nPer seed:\n\n"
                + _markdown_table(frame)
            )
            (folder.path / "table1.md").write_text(md, encoding="utf-8")
            folder.add_report(md)
            tables["table1"] = {"rows": rows, "mean": agg.to_dict(orient="records")}
        if args.table2:
            rows = [
                _summary_row(train(Method.E2E, lam, s).metrics)
                for lam in TABLE2_LAMBDAS
                for s in args.seeds
            ]
            frame = pd.DataFrame(rows)
            agg = _aggregate(rows, ["lam"])
            folder.write_table("table2", frame)
            folder.write_table("table2_mean", agg)
            md = (
                f"# Table II: E2E at λ ∈ {list(TABLE2_LAMBDAS)} (α = {args.alpha:g}, seeds "
                f"{args.seeds}) on {feeder.name}\n\n"
                + _markdown_table(
                    agg[
                        [
                            "lam",
                            "task_loss",
                            "prediction_mse",
                            "total_loss",
                            "realized_cost",
                            "test_coverage",
                            "capacity_kwh_total",
                        ]
                    ]
                )
            )
            (folder.path / "table2.md").write_text(md, encoding="utf-8")
            folder.add_report(md)
            tables["table2"] = {"rows": rows, "mean": agg.to_dict(orient="records")}
    finally:
        if executor is not None:
            executor.close()

    say("writing capacities, per-window results, training curves and the coverage plot")
    run = main_run
    m = run.metrics
    caps = pd.DataFrame(
        {
            "bus": list(problem.candidate_buses),
            "capacity_kwh": [run.capacity_kwh[b] for b in problem.candidate_buses],
            "window_mean_kwh": run.window_capacity_kwh.mean(axis=0),
            "window_min_kwh": run.window_capacity_kwh.min(axis=0),
            "window_max_kwh": run.window_capacity_kwh.max(axis=0),
            "installation_cost_per_kwh": np.asarray(problem.installation_cost_per_kwh),
        }
    )
    folder.write_table("capacities", caps)
    test = dataset.test
    test_std = dataset.standardized(Split.TEST)
    std_box, _ = calibrated_box(run.model, dataset, run.calibration, Split.TEST)
    covered = np.all((std_box.lower <= test_std.y) & (test_std.y <= std_box.upper), axis=(1, 2))
    first_target = dataset.target_hour_of_year(Split.TEST)[:, 0]
    folder.write_table(
        "test_windows",
        pd.DataFrame(
            {
                "first_target_hour_of_year": first_target,
                "lp_value_at_box_eur": run.test_values,
                "realized_cost_eur": run.realized_costs,
                "oracle_cost_eur": run.oracle_costs,
                "window_capacity_kwh_total": run.window_capacity_kwh.sum(axis=1),
                "covered": covered,
            }
        ),
    )
    curves = pd.DataFrame([{**asdict(r), "phase": r.phase.value} for r in run.log.records])
    folder.write_table("training_curves", curves)
    training_curves_plot(
        run.log,
        folder.path / "training_curves.png",
        f"{feeder.name}: {m.method} (λ = {m.lam:g}, α = {m.alpha:g}, seed {m.seed})",
    )
    panels = []
    n_show = min(COVERAGE_PLOT_WINDOWS, len(test))
    for a in fig3_alphas:
        cal = calibrate_model(run.model, dataset, a)
        sb, phys = calibrated_box(run.model, dataset, cal, Split.TEST)
        lo, hi, truth = substation_box(phys, test.y)
        panels.append(
            {
                "alpha": a,
                "lower": lo[:n_show],
                "upper": hi[:n_show],
                "truth": truth[:n_show],
                "coverage": empirical_coverage(sb.lower, sb.upper, test_std.y),
                "q_hat": cal.q_hat,
            }
        )
    if panels:
        coverage_plot(
            panels,
            folder.path / "coverage.png",
            f"{feeder.name}, {m.method}: substation demand (Σ bus loads, lossless) — box "
            "[Σ lower, Σ upper] of the calibrated bus boxes vs truth, first test windows",
        )
    summary: dict[str, Any] = {
        **{k: getattr(m, k) for k in SUMMARY_KEYS},
        "feeder": feeder.name,
        "lam": m.lam,
        "alpha": m.alpha,
        "seed": m.seed,
        "q_hat": m.q_hat,
        "oracle_cost": m.oracle_cost,
        "price_mse": m.price_mse,
        "load_mse": m.load_mse,
        "n_train": m.n_train,
        "n_calibration": m.n_calibration,
        "n_test": m.n_test,
        "capacity_kwh": run.capacity_kwh,
        "task_scale": run.log.task_scale,
        "fig3_coverage": {str(p["alpha"]): p["coverage"] for p in panels},
        "fig3_skipped_alphas": skipped_alphas,
        "units": "costs EUR per window of τ hours; prediction_mse standardized",
        "data_note": DATA_PROVENANCE,
        "command_seconds": time.perf_counter() - t0,
        "run_folder": str(folder.path),
    }
    if tables:
        summary["tables"] = {
            name: [
                {k: r[k] for k in ("method", "lam", *SUMMARY_KEYS[1:]) if k in r} for r in t["mean"]
            ]
            for name, t in tables.items()
        }
    folder.add_report(
        f"# Battery capacity expansion on {feeder.name}: {m.method}\n\n"
        f"**Data.** {DATA_PROVENANCE}.\n\n"
        f"- windows: M = {args.history} h → τ = {args.horizon} h, stride {args.stride} h; "
        f"{m.n_train} train / {m.n_calibration} calibration / {m.n_test} test\n"
        f"- λ = {m.lam:g}, α = {m.alpha:g}, seed {m.seed}, q̂ = {m.q_hat:.3f} (standardized)\n"
        f"- task loss (mean LP value at the calibrated box): {m.task_loss:.2f} EUR/window\n"
        f"- prediction MSE (box midpoint, standardized): {m.prediction_mse:.4f}\n"
        f"- total (task + MSE, as paper A): {m.total_loss:.2f}\n"
        f"- test coverage (joint): {m.test_coverage:.3f} (target ≥ {1 - m.alpha:.2f})\n"
        f"- realized cost of the window-averaged decision: {m.realized_cost:.2f} EUR/window "
        f"(perfect information: {m.oracle_cost:.2f})\n"
        f"- capacity: {m.capacity_kwh_total:.1f} kWh total\n\n"
        + _markdown_table(caps)
        + "\n![training curves](training_curves.png)\n\n"
        + ("![coverage](coverage.png)\n" if panels else "")
        + (
            f"\nCoverage plot skipped for α = {skipped_alphas}: calibration set too small.\n"
            if skipped_alphas
            else ""
        )
    )
    say("AC certificate: the capacities dispatched on the first held-out window, in OpenDSS")
    summary.update(_ac_certificate(feeder, problem, run.capacity_kwh, dataset, folder))
    folder.write_result(summary)
    say(f"done: run folder {folder.path}")
    if args.json:
        emit(to_jsonable(summary), True, print)
    else:
        print(
            f"{feeder.name} {m.method} (λ={m.lam:g}, α={m.alpha:g}): task loss "
            f"{m.task_loss:.1f} EUR, prediction MSE {m.prediction_mse:.3f}, coverage "
            f"{m.test_coverage:.3f}, realized cost {m.realized_cost:.1f} EUR, capacity "
            f"{m.capacity_kwh_total:.0f} kWh\nrun folder: {folder.path}"
        )
    return summary


# ------------------------------------------------------------------------------- ef/ph/spar
def _ac_certificate(feeder, problem, capacity, dataset, folder) -> dict:
    """The capacities' optimal dispatch on the first held-out window, certified in OpenDSS.

    New ``Storage`` elements for the batteries, new ``PVSystem`` elements for the site PV, loads
    scaled to the window's realized loads (:func:`gridrecourse.evaluation.certificate.certify`).
    """
    from gridrecourse.evaluation.certificate import certify, expansion_schedule
    from gridrecourse.learning.feeder_data import Split
    from gridrecourse.report.ac_certificate import write_certificate

    y = dataset.test.y[0]
    pv_all = dataset.pv_kw(Split.TEST)
    pv = None if pv_all is None else pv_all[0]
    solution = problem.evaluate(capacity, y[:, 0], y[:, 1:], pv)
    run = certify(feeder, expansion_schedule(problem, solution, y[:, 1:], pv))
    title = f"{feeder.name}: batteries on the first held-out window"
    return write_certificate(folder, run, title) | {"ac_window": "first held-out (test) window"}


def _held_out_task(problem, item: tuple) -> tuple[float, float]:
    """Executor task: (realized cost of a fixed capacity, perfect-information cost) of a day.

    The realized cost is ``StorageExpansionProblem.realized_cost``, the evaluator ETO/E2E use.
    """
    capacity, price, load, pv = item
    realized = float(problem.realized_cost(capacity, price, load, pv))
    oracle = float(problem.solve(price, price, load, pv).objective)
    return realized, oracle


def _solve_scenario_method(args: argparse.Namespace, problem, executor, say: _Progress) -> dict:
    """Run EF, PH or SPAR on the two-stage problem; returns x, objectives, times, details."""
    from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
    from gridrecourse.solvers.options import SolverOptions

    options = SolverOptions(
        mip_gap=DEFAULT_MIP_GAP if args.mip_gap is None else args.mip_gap,
        time_limit=args.time_limit,
    )
    t0 = time.perf_counter()
    if args.method == "ef":
        from gridrecourse.methods.extensive_form import solve_extensive_form

        res = solve_extensive_form(problem, options)
        solve_seconds = time.perf_counter() - t0
        say(f"EF: objective {res.objective:.4f} EUR, bound {res.bound:.4f} ({res.status.value})")
        t1 = time.perf_counter()
        evaluation = evaluate_first_stage(
            problem,
            res.x,
            executor=executor,
            options=options,
            desc=None if say.quiet else "in-sample evaluation",
        )
        details = {
            "ef_objective": res.objective,
            "ef_bound": res.bound,
            "ef_gap": res.gap,
            "ef_status": res.status.value,
            "ef_rows": res.n_rows,
            "ef_cols": res.n_cols,
        }
        return {
            "x": res.x,
            "in_sample_objective": evaluation.expected_objective,
            "method_objective": res.objective,
            "solve_seconds": solve_seconds,
            "in_sample_evaluation_seconds": time.perf_counter() - t1,
            "details": details,
        }
    if args.method == "ph":
        from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging

        config = PHConfig(
            rho=DEFAULT_PH_RHO if args.rho is None else args.rho,
            max_iterations=100 if args.max_iterations is None else args.max_iterations,
            rho_growth=1.0 if args.rho_growth is None else args.rho_growth,
        )
        res = solve_progressive_hedging(
            problem,
            config,
            executor=executor,
            options=options,
            progress=lambda k, metric: say(f"PH iteration {k}: metric {metric:.3g}"),
        )
        details = {
            "ph_rho": config.rho,
            "ph_rho_growth": config.rho_growth,
            "ph_iterations": res.iterations,
            "ph_converged": res.converged,
            "ph_status": res.status.value,
            "ph_lower_bound": res.lower_bound,
            "ph_repaired": res.repaired,
        }
        return {
            "x": res.x,
            "in_sample_objective": res.objective,
            "method_objective": res.objective,
            "solve_seconds": res.wall_seconds - res.evaluation.wall_seconds,
            "in_sample_evaluation_seconds": res.evaluation.wall_seconds,
            "details": details,
        }
    from gridrecourse.methods.spar import SPARConfig, solve_spar
    from gridrecourse.methods.spar_value_function import StepRule

    spar_config = SPARConfig(
        seed=args.seed,
        mip_gap=options.mip_gap,
        **({} if args.max_iterations is None else {"max_iterations": args.max_iterations}),
        **({} if args.step_rule is None else {"step_rule": StepRule[args.step_rule.upper()]}),
    )
    res = solve_spar(problem, spar_config, executor=executor, options=options)
    details = {
        "spar_iterations": res.iterations,
        "spar_stop_reason": res.stop_reason.value,
        "spar_step_rule": spar_config.step_rule.name.lower(),
        "spar_estimated_objective": res.estimated_objective,
        "spar_polish_objectives": list(res.polish_objectives),
    }
    return {
        "x": res.x,
        "in_sample_objective": res.objective,
        "method_objective": res.objective,
        "solve_seconds": res.wall_seconds - res.evaluation_seconds,  # learning + polish rounds
        "in_sample_evaluation_seconds": res.evaluation_seconds,
        "details": details,
    }


def _run_scenario_method(args: argparse.Namespace) -> dict:
    """``expand --method ef|ph|spar``: two-stage program over training days (METHODS §2).

    The scenarios are ``--scenarios`` training days of the same data set ETO/E2E train on
    (:func:`~gridrecourse.problems.storage_scenarios.evenly_spaced`), equally likely; the
    chosen capacities are scored on the same held-out test days with the same evaluator
    (``StorageExpansionProblem.realized_cost``) as ETO/E2E (``realized_cost``).
    """
    from gridrecourse.learning.feeder_data import (
        DATA_PROVENANCE,
        Split,
    )
    from gridrecourse.problems.storage_scenarios import (
        CapacityDomain,
        StorageScenarioConfig,
        StorageScenarioProblem,
        evenly_spaced,
    )
    from gridrecourse.report.run_folder import RunFolder, to_jsonable

    say = _Progress(args.quiet)
    t0 = time.perf_counter()
    say(f"loading {args.feeder} (τ = {args.horizon} h)")
    feeder, expansion = _load_problem(args.feeder, args.horizon)
    data_config, dataset = _dataset(args, expansion.load_sites, expansion.nominal_load_kw)
    n_train = len(dataset.train)
    # default: DEFAULT_SCENARIOS days (all when fewer); an explicit count above n_train is an error
    days = evenly_spaced(
        n_train, min(DEFAULT_SCENARIOS, n_train) if args.scenarios is None else args.scenarios
    )
    y_train = dataset.train.y[days]
    pv_train = dataset.pv_kw(Split.TRAIN)
    scenario_config = StorageScenarioConfig(
        capacity_unit_kwh=DEFAULT_UNIT_KWH if args.unit_kwh is None else args.unit_kwh,
        domain=CapacityDomain.CONTINUOUS
        if args.continuous_capacity
        else CapacityDomain.INTEGER_UNITS,
    )
    problem = StorageScenarioProblem(
        expansion,
        y_train[:, :, 0],
        y_train[:, :, 1:],
        None if pv_train is None else pv_train[days],
        scenario_config,
    )
    say(
        f"{args.method}: {len(days)} training days as scenarios ({problem.second_stage.n_rows} "
        f"rows × {problem.second_stage.n_cols} columns each), {len(problem.candidate_buses)} "
        f"candidates, units of {scenario_config.capacity_unit_kwh:g} kWh "
        f"({scenario_config.domain.value})"
    )
    executor = None
    if args.workers > 1:
        from gridrecourse.execution import make_executor

        executor = make_executor("process", n_workers=args.workers)
    try:
        t_method = time.perf_counter()
        solved = _solve_scenario_method(args, problem, executor, say)
        method_seconds = time.perf_counter() - t_method
        decision = problem.decode(solved["x"])
        capacity = decision.capacity_vector_kwh
        say(
            f"{args.method}: in-sample objective {solved['in_sample_objective']:.4f} EUR/day, "
            f"capacity {decision.total_capacity_kwh:.0f} kWh; scoring on {len(dataset.test)} "
            "held-out days"
        )
        t_held = time.perf_counter()
        y_test = dataset.test.y
        pv_test = dataset.pv_kw(Split.TEST)
        items = [
            (capacity, y_test[i, :, 0], y_test[i, :, 1:], None if pv_test is None else pv_test[i])
            for i in range(len(y_test))
        ]
        if executor is None:
            scored = [_held_out_task(expansion, item) for item in items]
        else:
            scored = executor.map(_held_out_task, items, state_factory=expansion.factory)
        held_out_seconds = time.perf_counter() - t_held
    finally:
        if executor is not None:
            executor.close()
    realized = np.array([r for r, _ in scored])
    oracle = np.array([o for _, o in scored])
    installation = float(problem.first_stage.cost @ solved["x"])
    out = Path(args.out) if args.out else RunFolder.default_path("expand", feeder.name)
    folder = active_run() or RunFolder(out, "expand")
    folder.write_config(
        {
            "feeder": str(args.feeder),
            "arguments": _arguments(args),
            "data": asdict(data_config),
            "dataset": dataset.describe(),
            "scenario_days": days,
            "scenario_first_target_hour_of_year": dataset.target_hour_of_year(Split.TRAIN)[days, 0],
            "storage_expansion": asdict(expansion.config),
            "storage_scenarios": asdict(scenario_config),
            "candidate_buses": list(expansion.candidate_buses),
            "installation_cost_per_kwh": np.asarray(expansion.installation_cost_per_kwh),
            "units": {
                "price": "EUR/MWh (German day-ahead 2018; the LP reads it as currency/MWh)",
                "load": "kW",
                "costs": "EUR per day of τ hours",
            },
        }
    )
    caps = pd.DataFrame(
        {
            "bus": list(problem.candidate_buses),
            "capacity_kwh": capacity,
            "units": decision.units,
            "max_units": problem.max_units,
            "installation_cost_per_kwh": problem.installation_cost_per_kwh,
        }
    )
    folder.write_table("capacities", caps)
    folder.write_table(
        "test_windows",
        pd.DataFrame(
            {
                "first_target_hour_of_year": dataset.target_hour_of_year(Split.TEST)[:, 0],
                "realized_cost_eur": realized,
                "oracle_cost_eur": oracle,
            }
        ),
    )
    wall = method_seconds + held_out_seconds
    summary: dict[str, Any] = {
        "method": args.method,
        "task_loss": None,
        "prediction_mse": None,
        "total_loss": None,
        "test_coverage": None,
        "realized_cost": float(realized.mean()),
        "capacity_kwh_total": decision.total_capacity_kwh,
        "wall_seconds": wall,
        "feeder": feeder.name,
        "lam": None,
        "alpha": None,
        "seed": args.seed if args.method == "spar" else None,
        "q_hat": None,
        "oracle_cost": float(oracle.mean()),
        "price_mse": None,
        "load_mse": None,
        "n_train": len(dataset.train),
        "n_calibration": len(dataset.calibration),
        "n_test": len(dataset.test),
        "capacity_kwh": decision.capacity_kwh,
        "task_scale": None,
        "fig3_coverage": {},
        "fig3_skipped_alphas": [],
        "n_scenarios": len(days),
        "in_sample_objective": solved["in_sample_objective"],
        "held_out_objective": float(realized.mean()),
        "method_objective": solved["method_objective"],
        "installation_cost": installation,
        "capacity_unit_kwh": scenario_config.capacity_unit_kwh,
        "capacity_domain": scenario_config.domain.value,
        "solve_seconds": solved["solve_seconds"],
        "in_sample_evaluation_seconds": solved["in_sample_evaluation_seconds"],
        "held_out_seconds": held_out_seconds,
        "method_details": solved["details"],
        "units": "costs EUR per day of τ hours (in-sample: mean over the scenario days; "
        "held-out: mean over the test days)",
        "data_note": DATA_PROVENANCE,
        "command_seconds": time.perf_counter() - t0,
        "run_folder": str(folder.path),
    }
    folder.add_report(
        f"# Battery capacity expansion on {feeder.name}: {args.method} over {len(days)} "
        f"training days\n\n**Data.** {DATA_PROVENANCE}.\n\n"
        f"- scenarios: {len(days)} training days (of {len(dataset.train)}), equally likely; "
        f"held-out: {len(dataset.test)} test days (the days ETO/E2E are scored on)\n"
        f"- battery unit {scenario_config.capacity_unit_kwh:g} kWh "
        f"({scenario_config.domain.value})\n"
        f"- in-sample objective (installation + mean dispatch cost over the scenario days): "
        f"{solved['in_sample_objective']:.4f} EUR/day\n"
        f"- held-out realized cost: {realized.mean():.4f} EUR/day (perfect information: "
        f"{oracle.mean():.4f})\n"
        f"- capacity: {decision.total_capacity_kwh:.1f} kWh total, installation "
        f"{installation:.4f} EUR/day\n"
        f"- times: method {solved['solve_seconds']:.2f} s, in-sample evaluation "
        f"{solved['in_sample_evaluation_seconds']:.2f} s, held-out evaluation "
        f"{held_out_seconds:.2f} s\n\n" + _markdown_table(caps)
    )
    say("AC certificate: the capacities dispatched on the first held-out day, in OpenDSS")
    summary.update(_ac_certificate(feeder, expansion, capacity, dataset, folder))
    folder.write_result(summary)
    say(f"done: run folder {folder.path}")
    if args.json:
        emit(to_jsonable(summary), True, print)
    else:
        print(
            f"{feeder.name} {args.method} ({len(days)} scenario days): in-sample "
            f"{solved['in_sample_objective']:.2f} EUR/day, held-out realized cost "
            f"{realized.mean():.2f} EUR/day, capacity {decision.total_capacity_kwh:.0f} kWh, "
            f"{solved['solve_seconds']:.1f} s\nrun folder: {folder.path}"
        )
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """Stand-alone entry point (``python -m gridrecourse.cli_expand``); exit code 0 or 1."""
    parser = argparse.ArgumentParser(prog="gridrecourse")
    sub = parser.add_subparsers(dest="command", required=True)
    add_expand_parser(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "expand":
        argv = ["expand", *argv]
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings():
            if args.json:
                warnings.simplefilter("ignore")
            args.func(args)
    except GridRecourseError as exc:
        if args.json:
            print(json.dumps({"error": type(exc).__name__, "message": str(exc)}))
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
