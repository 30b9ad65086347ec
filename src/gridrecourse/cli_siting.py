"""``gridrecourse siting``: PV siting and sizing under uncertainty (paper C, METHODS §3).

One command, three methods on the same problem and scenarios: the extensive form (``ef``),
progressive hedging (``ph``) and SPAR (``spar``, optionally with SAA statistical bounds).
Every method's first stage is evaluated exactly on all scenarios, so their objectives compare.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd

from gridrecourse.cli_common import Progress, emit
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.execution import ExecutorKind, make_executor
from gridrecourse.network.loading import DEFAULT_FEEDER
from gridrecourse.problems.siting import (
    PVSitingProblem,
    SitingConfig,
    SitingDecision,
    SitingObjective,
    TapSetting,
)
from gridrecourse.report.run_folder import RunFolder
from gridrecourse.solvers.options import SolverOptions

DEFAULT_SITING_FEEDER = "ieee123"


class SitingMethod(str, Enum):
    """Methods of ``gridrecourse siting``."""

    SPAR = "spar"
    EF = "ef"
    PH = "ph"


OBJECTIVES = {"p1": SitingObjective.VOLTAGE_DEVIATION, "p2": SitingObjective.LOSSES}


def add_siting_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``siting`` on the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "siting",
        help="PV siting and sizing under uncertainty (EF, PH, SPAR)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "feeder",
        nargs="?",
        default=DEFAULT_SITING_FEEDER,
        help=f"feeder name or path (default {DEFAULT_SITING_FEEDER}; "
        f"{DEFAULT_FEEDER} and case33bw always available)",
    )
    p.add_argument(
        "--scenarios",
        type=int,
        default=96,
        help="number of scenarios, a multiple of 24 (default 96)",
    )
    p.add_argument("--method", choices=[m.value for m in SitingMethod], default="spar")
    p.add_argument(
        "--objective",
        choices=sorted(OBJECTIVES),
        default="p1",
        help="p1 voltage deviation (LP), p2 losses (QP) (default p1)",
    )
    p.add_argument(
        "--taps",
        choices=[t.value for t in TapSetting],
        default="neutral",
        help="regulator taps of the linear model (default neutral: one voltage "
        "base as in paper C; 'opendss' keeps OpenDSS's peak-load taps)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=None, help="EF solver limit (s)")
    p.add_argument("--mip-gap", type=float, default=1e-4)
    p.add_argument("--max-iterations", type=int, default=None, help="SPAR/PH iteration cap")
    p.add_argument(
        "--polish-rounds",
        type=int,
        default=None,
        help="SPAR: full-gradient rounds after learning (default 20; 0 = paper C's plain SPAR)",
    )
    p.add_argument("--rho", type=float, default=1.0, help="PH: proximal penalty (paper C: 1)")
    p.add_argument(
        "--rho-growth",
        type=float,
        default=1.0,
        help="PH: rho factor per iteration (1 = constant; >1 escalates to force consensus)",
    )
    p.add_argument("--bounds", action="store_true", help="SPAR: SAA statistical bounds")
    p.add_argument("--batch-size", type=int, default=24, help="bounds: scenarios per batch")
    p.add_argument("--replications", type=int, default=5, help="bounds: replications")
    p.add_argument("--executor", choices=[k.value for k in ExecutorKind], default="inprocess")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--out", help="run folder (default runs/siting-<feeder>-<time>)")
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.set_defaults(func=run_siting)
    return p


def run_siting(args: argparse.Namespace) -> dict:
    """Solve the siting problem with the chosen method and write the run folder."""

    progress = Progress(4, quiet=args.json)
    t0 = time.perf_counter()
    progress(f"building the siting problem on {args.feeder} ({args.scenarios} scenarios)")
    config = SitingConfig(objective=OBJECTIVES[args.objective])
    problem = PVSitingProblem.from_feeder(
        args.feeder, args.scenarios, config, seed=args.seed, taps=TapSetting(args.taps)
    )
    options = SolverOptions(time_limit=args.time_limit, mip_gap=args.mip_gap)
    method = SitingMethod(args.method)
    history = pd.DataFrame()
    extra: dict = {}
    evaluation = None
    progress(f"solving with {method.value}")
    with make_executor(ExecutorKind(args.executor), n_workers=args.workers) as executor:
        if method is SitingMethod.EF:
            from gridrecourse.methods.extensive_form import solve_extensive_form

            ef = solve_extensive_form(problem, options)
            decision: SitingDecision = ef.decision
            status = ef.status.value
            extra = {
                "ef_objective": ef.objective,
                "ef_bound": ef.bound,
                "mip_gap": ef.gap,
                "n_rows": ef.n_rows,
                "n_cols": ef.n_cols,
            }
            if ef.tangents is not None:
                extra["tangent_approximation"] = ef.tangents
        elif method is SitingMethod.PH:
            from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging

            ph_config = PHConfig(rho=args.rho, rho_growth=args.rho_growth)
            if args.max_iterations is not None:
                ph_config = replace(ph_config, max_iterations=args.max_iterations)
            ph = solve_progressive_hedging(problem, ph_config, executor=executor, options=options)
            decision, status = (
                ph.decision,
                ph.status.value if isinstance(ph.status, Enum) else str(ph.status),
            )
            history = pd.DataFrame([vars(h) for h in ph.history])
            extra = {"iterations": ph.iterations, "converged": ph.converged}
        else:
            from gridrecourse.methods.spar import SPARConfig, solve_spar, spar_statistical_bounds

            settings: dict[str, int] = {"seed": args.seed}
            if args.max_iterations is not None:
                settings["max_iterations"] = args.max_iterations
            if args.polish_rounds is not None:
                settings["polish_rounds"] = args.polish_rounds
            spar_config = SPARConfig(**settings)
            spar = solve_spar(problem, spar_config, executor=executor, options=options)
            decision, status = spar.decision, spar.stop_reason.value
            evaluation = spar.evaluation  # n̂ already evaluated exactly on all scenarios
            history = pd.DataFrame([vars(h) for h in spar.history])
            extra = {
                "iterations": spar.iterations,
                "approximation_accuracy": spar.approximation_accuracy,
                "estimated_objective": spar.estimated_objective,
                "seconds_per_iteration": spar.seconds_per_iteration,
                "n_cuts": spar.n_cuts,
                "learned_objective": spar.polish_objectives[0]
                if spar.polish_objectives
                else spar.objective,
                "polish_decisions_evaluated": len(spar.polish_objectives),
            }
            if args.bounds:
                progress(f"statistical bounds: {args.replications} x {args.batch_size} scenarios")
                bounds = spar_statistical_bounds(
                    problem,
                    spar_config,
                    batch_size=args.batch_size,
                    n_replications=args.replications,
                    executor=executor,
                )
                extra.update(
                    lb_ci=[bounds.lower.low, bounds.lower.high],
                    ub_ci=[bounds.upper.low, bounds.upper.high],
                    bounds_gap=bounds.gap,
                    bounds_gap_pct=bounds.gap_pct,
                )
            extra["slopes"] = np.asarray(spar.slopes)
        progress("evaluating the first stage exactly on all scenarios")
        if evaluation is None:
            evaluation = evaluate_first_stage(
                problem,
                decision,
                executor=executor,
                options=options,
                desc=None if args.json else "exact evaluation",
            )
    wall = time.perf_counter() - t0

    out = Path(args.out) if args.out else RunFolder.default_path("siting", str(args.feeder))
    folder = RunFolder(out, "siting")
    folder.write_config({k: v for k, v in vars(args).items() if k != "func"})
    units = dict(zip(decision.site_names, (int(u) for u in decision.units), strict=True))
    table = pd.DataFrame(
        {
            "bus": decision.site_names,
            "units": decision.units,
            "kw": decision.kw,
            "sited": decision.sited,
        }
    )
    folder.write_table("decision", table)
    folder.write_table(
        "scenario_objectives",
        pd.DataFrame(
            {"scenario": np.arange(len(evaluation.objectives)), "objective": evaluation.objectives}
        ),
    )
    if not history.empty:
        folder.write_table("history", history)
    _plots(folder.path, history, extra.pop("slopes", None), decision, method)
    summary = {
        "method": method.value,
        "status": status,
        "objective": evaluation.expected_objective,
        "objective_kind": "exact expected recourse over all scenarios",
        "wall_seconds": wall,
        "n_scenarios": problem.n_scenarios,
        "units_per_bus": {b: u for b, u in units.items() if u},
        "total_pv_kw": float(np.sum(decision.kw)),
        "n_infeasible_scenarios": int(evaluation.n_infeasible),
        "expected_penalty": evaluation.expected_penalty,
        "feeder": str(args.feeder),
        "objective_name": args.objective,
        "taps": args.taps,
        **extra,
        "run_folder": str(folder.path),
    }
    folder.add_report(
        f"# PV siting on {args.feeder} with {method.value}\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in summary.items() if k != "units_per_bus")
        + "\n\nUnits per bus: "
        + ", ".join(f"{b}: {u}" for b, u in summary["units_per_bus"].items())
        + "\n"
    )
    progress("AC certificate: the sited PV at full output in every scenario, in OpenDSS")
    summary.update(_ac_certificate(args.feeder, problem, decision, folder))
    folder.write_result(summary)
    progress(f"done: run folder {folder.path}")

    def human() -> None:
        print(
            f"{method.value}: objective {evaluation.expected_objective:.6g} "
            f"(exact, {problem.n_scenarios} scenarios), {np.sum(decision.kw):.0f} kW PV at "
            f"{int(np.sum(decision.units > 0))} buses, {wall:.1f} s\nrun folder: {folder.path}"
        )

    emit(summary, args.json, human)
    return summary


def _ac_certificate(feeder_spec, problem, decision, folder: RunFolder) -> dict:
    """The siting decision certified in OpenDSS: one AC power flow per scenario.

    A new ``PVSystem`` per sited bus at its available output (the worst case for over-voltage;
    the recourse may curtail), loads at the scenario's multipliers
    (:func:`gridrecourse.evaluation.certificate.siting_schedule`).
    """
    from gridrecourse.evaluation.certificate import certify, siting_schedule
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.report.ac_certificate import write_certificate

    feeder = resolve_feeder_spec(feeder_spec)
    run = certify(feeder, siting_schedule(problem, decision))
    title = f"{feeder.name}: sited PV, one AC power flow per scenario"
    return write_certificate(folder, run, title) | {"ac_pv_dispatch": "available output"}


def _plots(folder: Path, history: pd.DataFrame, slopes, decision, method: SitingMethod) -> None:
    """Objective vs iteration, and learned coordinate value functions (paper C Fig. 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    objective_cols = [
        c
        for c in ("sample_objective", "moving_average", "expected_objective", "metric")
        if c in history.columns
    ]
    if not history.empty and objective_cols:
        fig, ax = plt.subplots(figsize=(8, 4))
        for col in objective_cols:
            ax.plot(history.index + 1, history[col], label=col)
        ax.set_xlabel("iteration")
        ax.set_ylabel("value")
        ax.set_title(f"{method.value}: progress")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.savefig(folder / "objective_vs_iteration.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
    if slopes is not None and np.size(slopes):
        slopes = np.asarray(slopes)
        values = np.concatenate([np.zeros((slopes.shape[0], 1)), np.cumsum(slopes, axis=1)], 1)
        order = np.argsort(-np.asarray(decision.units))[:6]
        fig, ax = plt.subplots(figsize=(8, 4))
        for i in order:
            ax.plot(np.arange(values.shape[1]), values[i], label=f"bus {decision.site_names[i]}")
            ax.axvline(decision.units[i], color=ax.lines[-1].get_color(), ls=":", lw=0.8)
        ax.set_xlabel("PV units n_i")
        ax.set_ylabel("learned v_i(n_i)")
        ax.set_title("learned coordinate value functions (dotted: chosen units)")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.savefig(folder / "learned_value_functions.png", dpi=120, bbox_inches="tight")
        plt.close(fig)
