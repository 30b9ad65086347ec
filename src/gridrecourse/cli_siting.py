"""``gridrecourse siting``: PV siting and sizing under uncertainty (paper C, METHODS §3).

One command, three methods on the same problem and scenarios: the extensive form (``ef``),
progressive hedging (``ph``) and SPAR (``spar``, optionally with SAA statistical bounds).
Every method's first stage is evaluated exactly on all scenarios, so their objectives compare,
and is certified in OpenDSS's AC power flow.

The run folder is created before any work (:func:`gridrecourse.cli_common.open_run`); the
method's solve, the exact evaluation and the bounds are checkpointed phases, and inside them
SPAR's and PH's iterations (every :data:`CHECKPOINT_EVERY`), every finished bounds
replication (and inside one its L-shaped loop, ``LShapedConfig.checkpoint_every``) and every
finished block of the exact evaluations (SPAR's repair, polish and final
evaluations, PH's and the EF's evaluation on all scenarios;
:mod:`gridrecourse.evaluation.resumable`), so ``--resume DIR`` after an interrupt continues
where the run stopped, says what it reused, and gives exactly the result of an uninterrupted
run.
"""

from __future__ import annotations

import argparse
import time
from enum import Enum
from pathlib import Path
from typing import Any

from gridrecourse.cli_common import (
    AT_LEAST_ONE,
    NON_NEGATIVE,
    POSITIVE,
    Bound,
    OptionError,
    Progress,
    SeriesKind,
    add_data_options,
    add_run_options,
    check_data_files,
    check_options,
    emit,
    open_run,
    option_flag,
    read_data_option,
    resolved_config,
)
from gridrecourse.evaluation.batch_sampling import BatchSampling

DEFAULT_SITING_FEEDER = "ieee123"
#: SPAR/PH iterations between checkpoints in the run folder (fixed, not timed: the models are
#: rebuilt at every checkpoint, see :mod:`gridrecourse.checkpointing`).
CHECKPOINT_EVERY = 10
#: ``--taps`` choices (= :class:`gridrecourse.problems.siting.TapSetting` values, tested).
TAP_CHOICES = ("neutral", "opendss")
#: Default ``--taps`` (= ``PVSitingProblem.from_feeder``'s default, tested).
DEFAULT_TAPS = "neutral"


class SitingMethod(str, Enum):
    """Methods of ``gridrecourse siting``."""

    SPAR = "spar"
    EF = "ef"
    PH = "ph"


#: ``--objective`` → :class:`~gridrecourse.problems.siting.SitingObjective` value.
OBJECTIVES = {"p1": "voltage_deviation", "p2": "losses"}
#: Options that apply only to some methods (``dest`` → methods); the rest apply to all.
OPTION_METHODS: dict[str, tuple[str, ...]] = {
    "time_limit": ("ef",),
    "mip_gap": ("ef", "ph", "spar"),
    "mip_feasibility_tolerance": ("ef", "ph", "spar"),
    "max_iterations": ("spar", "ph"),
    "polish_rounds": ("spar",),
    "rho": ("ph",),
    "rho_growth": ("ph",),
    "bounds": ("spar",),
    "batch_size": ("spar",),
    "replications": ("spar",),
    "batch_sampling": ("spar",),
}
#: Options of the statistical bounds: given without ``--bounds`` they would do nothing.
BOUNDS_ONLY = frozenset({"batch_size", "replications", "batch_sampling"})
#: Allowed ranges of the numeric options.
BOUNDS: dict[str, Bound] = {
    "scenarios": AT_LEAST_ONE,
    "seed": NON_NEGATIVE,
    "time_limit": POSITIVE,
    "mip_gap": Bound(0.0, 1.0),
    "mip_feasibility_tolerance": POSITIVE,
    "max_iterations": AT_LEAST_ONE,
    "polish_rounds": NON_NEGATIVE,
    "rho": POSITIVE,
    "rho_growth": AT_LEAST_ONE,
    "batch_size": AT_LEAST_ONE,
    "replications": Bound(2.0),
    "workers": AT_LEAST_ONE,
    "budget": POSITIVE,
    "min_sites": NON_NEGATIVE,
    "max_sites": AT_LEAST_ONE,
    "unit_kw": POSITIVE,
    "max_units": AT_LEAST_ONE,
    "cost_per_kw": POSITIVE,
}


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
        "ieee_european_lv and case33bw always available)",
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
        choices=TAP_CHOICES,
        default=DEFAULT_TAPS,
        help="regulator taps of the linear model (default neutral: one voltage "
        "base as in paper C; 'opendss' keeps OpenDSS's peak-load taps)",
    )
    p.add_argument("--seed", type=int, default=0, help="scenario and SPAR seed (default 0)")
    budget = p.add_argument_group("budget and site limits")
    budget.add_argument("--budget", type=float, default=1.5e6, help="budget (default 1.5e6)")
    budget.add_argument("--cost-per-kw", type=float, default=1000.0, help="PV cost per kW")
    budget.add_argument("--unit-kw", type=float, default=10.0, help="kW per PV unit (default 10)")
    budget.add_argument(
        "--max-units", type=int, default=100, help="units per site at most (default 100)"
    )
    budget.add_argument("--min-sites", type=int, default=1, help="sites at least (default 1)")
    budget.add_argument("--max-sites", type=int, default=20, help="sites at most (default 20)")
    add_data_options(
        p,
        (SeriesKind.LOAD, SeriesKind.PV),
        {
            SeriesKind.LOAD: "instead of the bundled homes (whole days)",
            SeriesKind.PV: "instead of the bundled PV (whole days)",
        },
    )
    p.add_argument("--time-limit", type=float, default=None, help="EF: solver limit (s, > 0)")
    p.add_argument("--mip-gap", type=float, default=1e-4, help="relative MIP gap in [0, 1]")
    p.add_argument(
        "--mip-feasibility-tolerance",
        type=float,
        default=None,
        help="HiGHS mip_feasibility_tolerance of the EF, PH and SPAR first-stage MILPs "
        "(default HiGHS's 1e-6)",
    )
    p.add_argument("--max-iterations", type=int, default=None, help="SPAR/PH: iteration cap (>= 1)")
    p.add_argument(
        "--polish-rounds",
        type=int,
        default=None,
        help="SPAR: full-gradient rounds after learning (default 20; 0 = paper C's plain SPAR)",
    )
    p.add_argument("--rho", type=float, default=1.0, help="PH: proximal penalty > 0 (paper C: 1)")
    p.add_argument(
        "--rho-growth",
        type=float,
        default=1.0,
        help="PH: rho factor per iteration, >= 1 (1 = constant; >1 escalates to force consensus)",
    )
    p.add_argument("--bounds", action="store_true", help="SPAR: SAA statistical bounds")
    p.add_argument("--batch-size", type=int, default=24, help="bounds: scenarios per batch")
    p.add_argument("--replications", type=int, default=5, help="bounds: replications (>= 2)")
    p.add_argument(
        "--batch-sampling",
        choices=[k.value for k in BatchSampling],
        default=BatchSampling.STRATIFIED.value,
        help="bounds: i.i.d. batches (paper C) or stratified on the decision's scenario costs "
        "with a take-all stratum for the far-out ones (valid too, far narrower intervals)",
    )
    p.add_argument("--executor", choices=("inprocess", "process", "dask"), default="inprocess")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--no-certificate", action="store_true", help="skip the OpenDSS AC certificate")
    add_run_options(p, "siting")
    p.set_defaults(func=run_siting)
    return p


def _check(args: argparse.Namespace) -> None:
    """Every option check that needs no data (before the run folder and any work)."""
    check_options(args, BOUNDS, OPTION_METHODS, args.method)
    given = getattr(args, "given_options", frozenset()) or frozenset()
    orphans = sorted(d for d in BOUNDS_ONLY & given) if not args.bounds else []
    if orphans:
        raise OptionError(
            ", ".join(option_flag(args, d) for d in orphans) + " apply only with --bounds"
        )
    if args.scenarios % 24:
        raise OptionError(f"--scenarios {args.scenarios}: expected a multiple of 24")
    if args.min_sites > args.max_sites:
        raise OptionError(
            f"--min-sites {args.min_sites} > --max-sites {args.max_sites}: expected min <= max"
        )
    check_data_files(args)


def _series(args: argparse.Namespace, dest: str):
    """Data option ``dest`` as multipliers (:func:`read_data_option`), whole days only."""
    values = read_data_option(args, dest)
    if values is not None and (len(values) < 24 or len(values) % 24):
        raise OptionError(
            f"{option_flag(args, dest)} {getattr(args, dest)}: expected whole days of hourly "
            f"values, got {len(values)}"
        )
    return values


def build_problem(args: argparse.Namespace):
    """The :class:`~gridrecourse.problems.siting.PVSitingProblem` of the options."""
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.problems.siting import (
        PVSitingProblem,
        SitingConfig,
        SitingObjective,
        TapSetting,
    )
    from gridrecourse.problems.siting_budget import SitingBudget

    budget = SitingBudget(
        unit_kw=args.unit_kw,
        max_units=args.max_units,
        cost_per_kw=args.cost_per_kw,
        budget=args.budget,
        min_sites=args.min_sites,
        max_sites=args.max_sites,
    )
    config = SitingConfig(objective=SitingObjective(OBJECTIVES[args.objective]), budget=budget)
    feeder = resolve_feeder_spec(args.feeder)
    problem = PVSitingProblem.from_feeder(
        feeder, args.scenarios, config, seed=args.seed, taps=TapSetting(args.taps)
    )
    if args.load_data or args.pv_data:
        from gridrecourse.data.bundled_data import (
            normalized_load_multiplier,
            normalized_pv_multiplier,
        )
        from gridrecourse.uncertainty.scenarios import stratified_scenarios

        load = _series(args, "load_data")
        load = normalized_load_multiplier() if load is None else load
        pv = _series(args, "pv_data")
        pv = normalized_pv_multiplier() if pv is None else pv
        n = min(len(load), len(pv))
        if n // 24 < args.scenarios // 24:
            raise OptionError(
                f"--load-data/--pv-data: {n // 24} days; --scenarios {args.scenarios} needs at "
                f"least {args.scenarios // 24}"
            )
        scenarios = stratified_scenarios(
            load[:n], pv[:n], args.scenarios, problem.scenarios.site_names, seed=args.seed
        )
        problem = PVSitingProblem(problem.math, scenarios, config)
    return feeder, problem


def run_siting(args: argparse.Namespace) -> dict:
    """Solve the siting problem with the chosen method and write the run folder."""
    _check(args)
    method = SitingMethod(args.method)
    phases = 5 + (method is SitingMethod.SPAR and args.bounds) - args.no_certificate
    progress = Progress(phases, quiet=args.json or args.quiet)
    t0 = time.perf_counter()
    folder = open_run(
        args,
        "siting",
        str(args.feeder),
        resolved_config(args),
        seed=args.seed,
        data=", ".join(x for x in (args.load_data, args.pv_data) if x)
        or "bundled (CityLearn 2022 homes, see data/bundled/DATA.md)",
    )

    import numpy as np
    import pandas as pd

    from gridrecourse.evaluation.resumable import evaluate_first_stage_resumable
    from gridrecourse.execution import ExecutorKind, make_executor
    from gridrecourse.solvers.options import SolverOptions

    progress(f"building the siting problem on {args.feeder} ({args.scenarios} scenarios)")
    feeder, problem = build_problem(args)
    options = SolverOptions(
        time_limit=args.time_limit,
        mip_gap=args.mip_gap,
        mip_feasibility_tolerance=args.mip_feasibility_tolerance,
    )
    with make_executor(ExecutorKind(args.executor), n_workers=args.workers) as executor:
        solved = folder.load_checkpoint("solve")
        if solved is None:
            progress(f"solving with {method.value}")
            solved = _solve(args, method, problem, executor, options, progress, folder)
            folder.save_checkpoint("solve", solved)
        else:
            progress(f"{method.value}: reused the finished solve from the checkpoint")
        decision, status, history, extra = (
            solved["decision"],
            solved["status"],
            solved["history"],
            dict(solved["extra"]),
        )
        evaluation = solved.get("evaluation")
        if method is SitingMethod.SPAR and args.bounds:
            bounds = folder.load_checkpoint("bounds")
            if bounds is None:
                progress(f"statistical bounds: {args.replications} x {args.batch_size} scenarios")
                bounds = _bounds(args, problem, executor, progress, folder, evaluation)
                folder.save_checkpoint("bounds", bounds)
            else:
                progress("statistical bounds: reused from the checkpoint")
            extra.update(bounds)
        if evaluation is None:
            evaluation = folder.load_checkpoint("evaluation")
        if evaluation is None:
            progress("evaluating the first stage exactly on all scenarios")
            run = evaluate_first_stage_resumable(
                problem,
                decision,
                checkpoint=_evaluation_checkpoint(folder, "evaluation-blocks"),
                executor=executor,
                options=options,
                progress=progress.callback("scenarios"),
                note=progress.note,
            )
            evaluation = run.result
            extra["evaluation_reused_scenarios"] = run.reused_scenarios
            folder.save_checkpoint("evaluation", evaluation)
        else:
            progress("exact evaluation on all scenarios: done by the method (SPAR, PH) or reused")
    wall = time.perf_counter() - t0

    units = dict(zip(decision.site_names, (int(u) for u in decision.units), strict=True))
    units_arr = np.asarray(decision.units, dtype=int)
    table = pd.DataFrame(
        {
            "bus": list(decision.site_names),
            "units": units_arr,
            "kw": np.asarray(decision.kw, dtype=float),
            "sited": units_arr > 0,
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
    slopes = extra.pop("slopes", None)
    _plots(folder.path, history, slopes, decision, method)
    from gridrecourse.report.plots import feeder_map_plot

    feeder_map_plot(
        feeder,
        dict(zip(table["bus"], table["kw"], strict=True)),
        folder.path / "decision_map.png",
        f"{feeder.name}: sited PV ({method.value})",
    )
    summary: dict[str, Any] = {
        "method": method.value,
        "status": status,
        "objective": evaluation.expected_objective,
        "objective_kind": "exact expected recourse over all scenarios",
        "wall_seconds": wall,
        "n_scenarios": problem.n_scenarios,
        "units_per_bus": {b: u for b, u in units.items() if u},
        "n_sites": int(np.sum(units_arr > 0)),
        "total_pv_kw": float(np.sum(decision.kw)),
        "n_infeasible_scenarios": int(evaluation.n_infeasible),
        "expected_penalty": evaluation.expected_penalty,
        "feeder": str(args.feeder),
        "objective_name": args.objective,
        "taps": args.taps,
        "seed": args.seed,
        **extra,
        "reused_checkpoints": list(folder.reused),
        "run_folder": str(folder.path),
    }
    _report(folder, args, method, summary, table, history)
    if not args.no_certificate:
        progress("AC certificate: the sited PV at full output in every scenario, in OpenDSS")
        summary.update(_ac_certificate(feeder, problem, decision, folder))
    summary["wall_seconds"] = time.perf_counter() - t0
    folder.write_result(summary)
    progress(f"done: run folder {folder.path}")

    def human() -> None:
        print(
            f"{method.value}: objective {evaluation.expected_objective:.6g} "
            f"(exact, {problem.n_scenarios} scenarios), {np.sum(decision.kw):.0f} kW PV at "
            f"{int(np.sum(units_arr > 0))} buses, {summary['wall_seconds']:.1f} s"
        )
        if "lb_ci" in summary:
            print(
                f"bounds (95 %): lower [{summary['lb_ci'][0]:.4g}, {summary['lb_ci'][1]:.4g}], "
                f"upper [{summary['ub_ci'][0]:.4g}, {summary['ub_ci'][1]:.4g}], gap "
                f"{summary['bounds_gap_pct']:.1f} %; optimality gap of the decision <= "
                f"{summary.get('bounds_gap_mrp_pct', float('nan')):.2f} % (paired, one-sided)"
            )
        if "ac_voltage_violations" in summary:
            print(
                f"AC certificate: voltages {summary.get('ac_min_voltage_pu', float('nan')):.4f}"
                f"-{summary.get('ac_max_voltage_pu', float('nan')):.4f} p.u., "
                f"{summary['ac_voltage_violations']} voltage violation(s)"
            )
        print(f"report: {folder.path / 'report.html'}")

    emit(summary, args.json, human)
    return summary


def _evaluation_checkpoint(folder, name: str):
    """The run folder's checkpoint of an exact evaluation's finished blocks
    (:mod:`gridrecourse.evaluation.resumable`), read once per run."""
    from gridrecourse.checkpointing import LoadOnceCheckpoint

    def reused(state) -> str:
        return f"{name}: {state.n_finished_blocks} finished evaluation block(s) stored"

    return LoadOnceCheckpoint(folder.checkpoint(name, reused))


def _note_reused_evaluations(progress: Progress, n_scenarios: int) -> None:
    if n_scenarios:
        progress.note(
            f"exact evaluations: {n_scenarios} scenario solves reused from the checkpoint"
        )


def _solve(
    args, method: SitingMethod, problem, executor, options, progress: Progress, folder
) -> dict:
    """Run the method; a picklable dict (decision, status, history, extra[, evaluation]).

    SPAR and PH checkpoint their iterations in ``folder`` (every
    :data:`CHECKPOINT_EVERY` iterations); a ``--resume`` continues from the last one.
    """
    from dataclasses import replace

    import numpy as np
    import pandas as pd

    history = pd.DataFrame()
    evaluation = None
    if method is SitingMethod.EF:
        from gridrecourse.methods.extensive_form import solve_extensive_form

        ef = solve_extensive_form(problem, options)
        decision, status = ef.decision, ef.status.value
        extra: dict[str, Any] = {
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
        cap = ph_config.max_iterations

        def ph_reused(state) -> str:
            done = " (iterations finished)" if state.finished else ""
            return f"resumed PH at iteration {state.next_iteration} of {cap}{done}"

        ph = solve_progressive_hedging(
            problem,
            ph_config,
            executor=executor,
            options=options,
            progress=lambda k, metric: progress.tick(k, cap, f"PH (metric {metric:.3g})"),
            checkpoint=folder.checkpoint("ph-iterations", ph_reused, progress.note),
            checkpoint_every=CHECKPOINT_EVERY,
            evaluation_checkpoint=_evaluation_checkpoint(folder, "ph-evaluation"),
        )
        _note_reused_evaluations(progress, ph.evaluation_reused_scenarios)
        decision = ph.decision
        evaluation = ph.evaluation  # x evaluated exactly on all scenarios
        status = ph.status.value if isinstance(ph.status, Enum) else str(ph.status)
        history = pd.DataFrame([vars(h) for h in ph.history])
        extra = {
            "iterations": ph.iterations,
            "converged": ph.converged,
            "resumed_at_iteration": ph.resumed_at,
            "evaluation_reused_scenarios": ph.evaluation_reused_scenarios,
        }
    else:
        from gridrecourse.methods.spar import solve_spar

        spar_config = _spar_config(args)
        cap = spar_config.max_iterations

        def spar_reused(state) -> str:
            done = " (learning finished)" if state.finished else ""
            return f"resumed SPAR at iteration {state.iteration} of {cap}{done}"

        spar = solve_spar(
            problem,
            spar_config,
            executor=executor,
            options=options,
            progress=progress.callback("SPAR iterations"),
            checkpoint=folder.checkpoint("spar-iterations", spar_reused, progress.note),
            checkpoint_every=CHECKPOINT_EVERY,
            evaluation_checkpoint=_evaluation_checkpoint(folder, "spar-evaluations"),
        )
        _note_reused_evaluations(progress, spar.evaluation_reused_scenarios)
        decision, status = spar.decision, spar.stop_reason.value
        evaluation = spar.evaluation  # n̂ already evaluated exactly on all scenarios
        history = _spar_history(spar.history)
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
            "resumed_at_iteration": spar.resumed_at,
            "evaluation_reused_scenarios": spar.evaluation_reused_scenarios,
            "slopes": np.asarray(spar.slopes),
        }
    return {
        "decision": decision,
        "status": status,
        "history": history,
        "extra": extra,
        "evaluation": evaluation,
    }


def _spar_config(args):
    from gridrecourse.methods.spar import SPARConfig

    settings: dict[str, int | float | None] = {
        "seed": args.seed,
        "mip_feasibility_tolerance": args.mip_feasibility_tolerance,
    }
    if args.max_iterations is not None:
        settings["max_iterations"] = args.max_iterations
    if args.polish_rounds is not None:
        settings["polish_rounds"] = args.polish_rounds
    return SPARConfig(**settings)


def _spar_history(records) -> Any:
    """SPAR's iterations as a tidy table: one row per iteration, plain numbers only.

    The per-site units of each iteration go to ``history_units.csv`` (long form) through
    :meth:`RunFolder.write_table`; the sampled scenario indices are joined with spaces.
    """
    import pandas as pd

    rows = []
    for h in records:
        row = dict(vars(h))
        row["scenarios"] = " ".join(str(int(s)) for s in row["scenarios"])
        rows.append(row)
    return pd.DataFrame(rows)


def _bounds(args, problem, executor, progress: Progress, folder, evaluation=None) -> dict:
    """Mak–Morton–Wood bounds around SPAR (95 % intervals, objective units); every finished
    replication is checkpointed in ``folder``. With ``evaluation`` (the exact evaluation of the
    decision on all scenarios) also the paired gap estimate of that decision:
    ``bounds_gap_mrp`` (one-sided 95 % bound on its optimality gap, objective units) and
    ``bounds_gap_mrp_pct`` (% of its objective)."""
    from gridrecourse.methods.spar import spar_statistical_bounds

    total = 2 * args.replications

    def reused(state) -> str:
        return f"bounds: reused {state.n_finished} of {total} finished replication tasks"

    bounds = spar_statistical_bounds(
        problem,
        _spar_config(args),
        batch_size=args.batch_size,
        n_replications=args.replications,
        executor=executor,
        progress=progress.callback("replication tasks"),
        checkpoint=folder.checkpoint("bounds-replications", reused, progress.note),
        candidate=evaluation,
        sampling=BatchSampling(args.batch_sampling),
    )
    return {
        "bounds_reused_replications": bounds.reused_replications,
        "bounds_sampling": bounds.sampling.value,
        "bounds_take_all": len(bounds.take_all),
        "lb_ci": [bounds.lower.low, bounds.lower.high],
        "ub_ci": [bounds.upper.low, bounds.upper.high],
        "bounds_gap": bounds.gap,
        "bounds_gap_pct": bounds.gap_pct,
        "bounds_gap_mrp": bounds.gap_estimate,
        "bounds_gap_mrp_pct": bounds.gap_estimate_pct,
        "lb_sources": [s.value for s in bounds.lower_sources],
    }


def _sampling_text(summary: dict) -> str:
    """How the bounds' batches were drawn, in words."""
    if summary["bounds_sampling"] == BatchSampling.IID.value:
        return "i.i.d. batches"
    return (
        f"stratified batches: {summary['bounds_take_all']} far-out scenarios in every batch, one "
        "draw per equal-probability stratum of the rest, ranked by the decision's scenario costs"
    )


def _report(folder, args, method: SitingMethod, summary: dict, table, history) -> None:
    """report.md/.html: the decision, the objective and bounds with units, the plots."""
    from gridrecourse.report.html import fmt_number, frame_table, key_value_table

    unit = "p.u. (expected Σ|v − 1| over nodes)" if args.objective == "p1" else "kW (losses)"
    headline = {
        k: summary[k]
        for k in (
            "objective",
            "n_scenarios",
            "n_sites",
            "total_pv_kw",
            "n_infeasible_scenarios",
            "expected_penalty",
            "status",
            "iterations",
            "approximation_accuracy",
            "ef_bound",
            "mip_gap",
            "wall_seconds",
        )
        if k in summary
    }
    text = [
        f"# PV siting on {args.feeder} with {method.value.upper()}\n",
        f"Objective {args.objective}: {unit}, evaluated exactly on all {summary['n_scenarios']} "
        f"scenarios; taps {args.taps}; seed {args.seed}.\n",
        "## Result\n",
        key_value_table(headline, {"objective": unit.split(" ")[0], "expected_penalty": "obj."}),
    ]
    if "lb_ci" in summary:
        lb, ub = summary["lb_ci"], summary["ub_ci"]
        text += [
            "## Statistical bounds (Mak–Morton–Wood, 95 %)\n",
            "| bound | low | high |\n|---|---|---|\n"
            f"| lower (optimum ≥) | {fmt_number(lb[0])} | {fmt_number(lb[1])} |\n"
            f"| upper (optimum ≤; batch decisions' values) | {fmt_number(ub[0])} | "
            f"{fmt_number(ub[1])} |\n",
            f"Gap {fmt_number(summary['bounds_gap_pct'], 3)} % "
            f"({args.replications} replications of {args.batch_size} scenarios; "
            f"{_sampling_text(summary)}).\n",
            "Optimality gap of this decision (paired Mak–Morton–Wood estimate, one-sided 95 %): "
            f"at most {fmt_number(summary.get('bounds_gap_mrp_pct', float('nan')), 3)} % of "
            "its objective.\n",
        ]
    sited = table[table["units"] > 0].sort_values("units", ascending=False)
    text += [
        f"## Decision: {len(sited)} sited buses, {fmt_number(summary['total_pv_kw'])} kW\n",
        frame_table(sited.rename(columns={"kw": "kW"})),
        "Buses with 0 units are not sited (all candidates in `decision.csv`).\n",
    ]
    for png, title in (
        ("decision_map.png", "The decision on the feeder"),
        ("objective_vs_iteration.png", "Progress"),
        ("learned_value_functions.png", "Learned value functions"),
    ):
        if (folder.path / png).exists():
            text.append(f"## {title}\n\n![{title}]({png})\n")
    folder.add_report("\n".join(text))


def _ac_certificate(feeder, problem, decision, folder) -> dict:
    """The siting decision certified in OpenDSS: one AC power flow per scenario.

    A new ``PVSystem`` per sited bus at its available output (the worst case for over-voltage;
    the recourse may curtail), loads at the scenario's multipliers
    (:func:`gridrecourse.evaluation.certificate.siting_schedule`).
    """
    from gridrecourse.evaluation.certificate import certify, siting_schedule
    from gridrecourse.report.ac_certificate import write_certificate

    run = certify(feeder, siting_schedule(problem, decision))
    title = f"{feeder.name}: sited PV, one AC power flow per scenario"
    return write_certificate(folder, run, title) | {"ac_pv_dispatch": "available output"}


def _plots(folder: Path, history, slopes, decision, method: SitingMethod) -> None:
    """Objective vs iteration, and learned coordinate value functions (paper C Fig. 2).

    SPAR: the sampled recourse value per iteration (dots), its moving average over the last
    10 feasible iterations (line, the same quantity, so it runs through the samples), and the
    first stage's estimated objective Σ v_i(n_i) (SPAR's stop statistic) on its own axis.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    if not history.empty and method is SitingMethod.SPAR and "sample_objective" in history:
        it = history["iteration"] if "iteration" in history else history.index + 1
        sample = history["sample_objective"].astype(float)
        ok = history.get("feasible", True) & ~history.get("explored", False)
        rolling = sample.where(ok).rolling(10, min_periods=1).mean()
        fig, (ax, ax2) = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
        ax.plot(it, sample, ".", ms=3, alpha=0.5, label="sampled recourse Q(n, ω)")
        ax.plot(it, rolling, "-", lw=2, label="moving average (10 feasible samples)")
        ax.set_ylabel("recourse value")
        ax.legend()
        ax.grid(alpha=0.3)
        ax2.plot(it, history["first_stage_objective"], color="tab:green", label="Σ v_i(n_i)")
        ax2.set_ylabel("estimated objective")
        ax2.set_xlabel("iteration")
        ax2.legend()
        ax2.grid(alpha=0.3)
        ax.set_title("SPAR: learning progress")
        fig.savefig(folder / "objective_vs_iteration.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
    elif not history.empty:
        cols = [c for c in ("expected_objective", "metric") if c in history.columns]
        if cols:
            fig, ax = plt.subplots(figsize=(8, 4))
            for col in cols:
                ax.plot(history.index + 1, history[col], label=col)
            ax.set_xlabel("iteration")
            ax.set_yscale("log" if "metric" in cols and len(cols) == 1 else "linear")
            ax.set_title(f"{method.value}: progress")
            ax.legend()
            ax.grid(alpha=0.3)
            fig.savefig(folder / "objective_vs_iteration.png", dpi=110, bbox_inches="tight")
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
        fig.savefig(folder / "learned_value_functions.png", dpi=110, bbox_inches="tight")
        plt.close(fig)
