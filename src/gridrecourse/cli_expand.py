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
    p.add_argument("--method", choices=["e2e", "eto"], default="e2e", help="default e2e")
    p.add_argument(
        "--lambda",
        dest="lam",
        type=float,
        default=0.8,
        help="weight λ of L_pred in L = λ L_pred + (1-λ) L_task (eq 25; default 0.8)",
    )
    p.add_argument("--alpha", type=float, default=0.1, help="miscoverage level (default 0.1)")
    p.add_argument("--epochs", type=int, default=30, help="total epochs (default 30)")
    p.add_argument(
        "--warmup-epochs",
        type=int,
        default=None,
        help="E2E: leading epochs on L_pred only (default: 2/3 of --epochs)",
    )
    p.add_argument("--history", type=int, default=24, help="M, input hours (default 24)")
    p.add_argument(
        "--horizon", type=int, default=24, help="τ, predicted and optimized hours (default 24)"
    )
    p.add_argument(
        "--stride",
        type=int,
        default=24,
        help="hours between window starts (default 24: one day-ahead window per day)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the main run (default 0)")
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        default=[0, 1, 2],
        help="seeds of --table1/--table2 (default 0 1 2)",
    )
    p.add_argument("--loss", choices=["pinball", "gaussian_nll"], default="pinball")
    p.add_argument(
        "--in-loop",
        choices=["batch_split", "epoch_constant"],
        default="batch_split",
        help="how q̂ enters E2E training: differentiable mini-batch split (default) or the "
        "paper's per-epoch constant q̂ (drifts wider for strong task weights); see "
        "methods.end_to_end",
    )
    p.add_argument("--hidden-size", type=int, default=32, help="LSTM units (default 32)")
    p.add_argument("--lr", type=float, default=3e-3, help="Adam learning rate (default 3e-3)")
    p.add_argument(
        "--pv-penetration",
        type=float,
        default=0.0,
        help="PV kW per kW of bus nominal load (default 0: no PV)",
    )
    p.add_argument(
        "--split",
        choices=["blocks", "contiguous"],
        default="blocks",
        help="train/calibration/test split (default blocks of 4 days, interleaved)",
    )
    p.add_argument("--workers", type=int, default=1, help="LP worker processes (default 1)")
    p.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: the LSTM is small, and one thread does not fight the "
        "LP solver or other processes for the cores)",
    )
    p.add_argument("--table1", action="store_true", help="ETO vs E2E at λ over --seeds")
    p.add_argument("--table2", action="store_true", help="E2E at λ ∈ {0.9,0.8,0.7,0.6}")
    p.add_argument(
        "--fig3-alphas",
        type=float,
        nargs=2,
        default=list(FIG3_ALPHAS),
        help="the two α of the coverage plot (default 0.05 0.3)",
    )
    p.add_argument("--out", help="run folder (default runs/expand-<feeder>-<time>)")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_expand)
    return p


# ------------------------------------------------------------------------------- helpers
class _Progress:
    """Progress lines on stderr."""

    def __init__(self, quiet: bool):
        self.quiet = quiet
        self.t0 = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.t0
            print(f"[expand {elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)


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
    import torch

    _check_args(args)
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return _run_expand(args)
    finally:
        torch.set_num_threads(previous)


def _run_expand(args: argparse.Namespace) -> dict:
    from gridrecourse.learning.feeder_data import (
        DATA_PROVENANCE,
        FeederDataConfig,
        Split,
        SplitKind,
        build_feeder_dataset,
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
    data_config = FeederDataConfig(
        history=args.history,
        horizon=args.horizon,
        stride=args.stride,
        split=SplitKind(args.split),
        pv_kw_per_kw_load=args.pv_penetration,
    )
    say(f"mapping the bundled homes onto {problem.n_sites} load buses; {DATA_PROVENANCE}")
    dataset = build_feeder_dataset(problem.load_sites, problem.nominal_load_kw, data_config)
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
    folder = RunFolder(out, "expand")
    folder.write_config(
        {
            "feeder": str(args.feeder),
            "arguments": {k: v for k, v in vars(args).items() if k != "func"},
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
    folder.write_result(summary)
    say(f"done: run folder {folder.path}")
    if args.json:
        print(json.dumps(to_jsonable(summary)))
    else:
        print(
            f"{feeder.name} {m.method} (λ={m.lam:g}, α={m.alpha:g}): task loss "
            f"{m.task_loss:.1f} EUR, prediction MSE {m.prediction_mse:.3f}, coverage "
            f"{m.test_coverage:.3f}, realized cost {m.realized_cost:.1f} EUR, capacity "
            f"{m.capacity_kwh_total:.0f} kWh\nrun folder: {folder.path}"
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
