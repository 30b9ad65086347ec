"""Benchmark: paper C (SPAR-OPF) Tables I–VI on our data — SPAR against EF (and PH).

Every method's first stage is evaluated EXACTLY on all scenarios of its table
(:func:`gridrecourse.evaluation.out_of_sample.evaluate_first_stage`); ``objective`` is that
value, ``gap_pct`` is ``100 (objective − reference) / reference`` with the reference the EF's
exact value when the EF was solved to its gap, else the EF's dual bound. Times are wall-clock
seconds: SPAR's ``wall_seconds`` is its learning loop up to the decision (the paper's "Time";
the exact evaluation is reported separately as ``evaluation_seconds``), the EF's is build +
solve, PH's includes its own final evaluation.

Tables (``--tables``, comma separated, or ``all``):

``p1_96``        Table I, P1 row: IEEE 123, 96 scenarios, EF (``--ef-gap``, default 0.01 %),
                 SPAR (epigraph, rule 1) over ``--seeds`` seeds (mean objective, mean wall),
                 PH with ``--ph`` once :mod:`gridrecourse.methods.progressive_hedging` exists.
``p2_96``        Table I, P2 row: losses (kW); EF with tangent planes (its approximation error
                 is reported: modelled vs exact losses at its solution, a-priori bound).
``p1_1200``      Table II: 1200 scenarios, SPAR per seed, SAA bounds (UB/LB CIs, BG) for
                 ``--batch-sizes`` with ``--replications`` replications, EF with
                 ``--ef-time-limit`` (incumbent and bound) unless ``--skip-large-ef``.
``rules``        Fig. 3 / §IV: step rules 1–3 (objective, gap, approximation accuracy).
``formulations`` Table VI: lambda vs epigraph, seconds per iteration and their ratio on the
                 same seeded trajectory (``--ratio-iterations`` iterations after the
                 exploration phase, no early stop; exploration iterations are left out).
``ieee9500``     Tables IV/V (SPAR only): 9500-node feeder, 1200 scenarios, SPAR per seed
                 (``--bounds-9500`` adds UB/LB, expensive).

Our setting (METHODS.md §3): regulators at tap 1.0 (``TapSetting.NEUTRAL``; at OpenDSS's taps PV
cannot improve P1 on the IEEE 123), bundled-data stratified scenarios (Algorithm 2), soft
voltage/thermal limits, g = 10 kW, L = 100, $1.5M, 1–20 sites. Paper C's figures (Gurobi, i9):
Table I P1 SPAR 20.32 / 53.6 s, EF 20.23 / 47.9 s, PH 21.98 / 537 s.

Usage::

    python benchmarks/bench_siting.py --quick --json                 # minutes
    python benchmarks/bench_siting.py --tables p1_96,formulations    # the default tables
    python benchmarks/bench_siting.py --tables all --ph --json > siting.json   # hours
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from gridrecourse.errors import SolverTimeLimitError
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.execution import Executor, ExecutorKind, make_executor
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.methods.spar import (
    SPARConfig,
    SPARResult,
    solve_spar,
    spar_statistical_bounds,
)
from gridrecourse.methods.spar_first_stage import Formulation
from gridrecourse.methods.spar_value_function import StepRule
from gridrecourse.problems.siting import (
    PVSitingProblem,
    SitingConfig,
    SitingObjective,
    TapSetting,
)
from gridrecourse.solvers.options import SolverOptions

TABLES = ("p1_96", "p2_96", "p1_1200", "rules", "formulations", "ieee9500")
DEFAULT_TABLES = ("p1_96", "formulations")
PAPER = {
    "p1_96": {"spar": (20.32, 53.6), "ef": (20.23, 47.94), "ph": (21.98, 537.0)},
    "p2_96": {"spar": (64.7, 58.8), "ef": (64.1, 686.0), "ph": (64.24, 6767.0)},
    "p1_1200": {"spar_seconds_per_seed": 67.8, "ef_hours": 1.86, "ph_hours": 2.89},
    "formulations": {"lambda_s_per_iter": 2.08, "epigraph_s_per_iter": 0.67},
    "ieee9500": {"spar_minutes_per_seed": 5.25},
}


def log(msg: str) -> None:
    """Progress on stderr (stdout is kept for the table or the JSON object)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


@dataclass
class MethodRun:
    """One method on one table: exact objective, time and gap to the reference."""

    method: str
    objective: float
    wall_seconds: float
    gap_pct: float = math.nan
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(out.pop("extra"))
        return out


def pct(value: float, reference: float) -> float:
    """``100 (value − reference) / |reference|`` (NaN when undefined)."""
    if not (math.isfinite(value) and math.isfinite(reference)) or reference == 0:
        return math.nan
    return 100.0 * (value - reference) / abs(reference)


def build_problem(
    feeder: str,
    n_scenarios: int,
    objective: SitingObjective,
    seed: int,
    taps: TapSetting = TapSetting.NEUTRAL,
) -> PVSitingProblem:
    t0 = time.perf_counter()
    problem = PVSitingProblem.from_feeder(
        feeder,
        n_scenarios,
        SitingConfig(objective=objective),
        seed=seed,
        taps=taps,
    )
    log(
        f"built {feeder} {objective.value} ({taps.value} taps), {n_scenarios} scenarios, "
        f"{problem.n_sites} sites in {time.perf_counter() - t0:.1f} s"
    )
    return problem


# ------------------------------------------------------------------------------ methods


def reused_ef(table: str, problem: PVSitingProblem, args: argparse.Namespace) -> MethodRun | None:
    """The EF row of ``table`` from a previous run's JSON (``--ef-from``), if it matches.

    The EF does not depend on SPAR's settings, and on the large table it takes an hour: a
    previous ``--json`` output of this script on the same table (same scenario count and
    scenario seed) is reused instead of solving it again; the row says where it came from.
    """
    if not args.ef_from:
        return None
    with open(args.ef_from, encoding="utf-8") as fh:
        previous = json.load(fh)
    row = previous.get("tables", {}).get(table, {}).get("methods", {}).get("ef")
    prev_args = parse_args(previous.get("argv", []))
    if (
        row is None
        or previous["tables"][table].get("n_scenarios") != problem.n_scenarios
        or prev_args.scenario_seed != args.scenario_seed
    ):
        log(f"--ef-from {args.ef_from}: no matching EF row for table {table}; solving the EF")
        return None
    extra = {k: v for k, v in row.items() if k not in ("method", "objective", "wall_seconds")}
    extra.pop("gap_pct", None)
    extra["reused_from"] = args.ef_from
    extra["bound"] = math.nan if extra.get("bound") is None else extra["bound"]
    log(f"EF of table {table} reused from {args.ef_from}: {row['objective']}")
    objective = math.nan if row["objective"] is None else float(row["objective"])
    return MethodRun("ef", objective, float(row["wall_seconds"]), math.nan, extra)


def run_ef(
    problem: PVSitingProblem,
    args: argparse.Namespace,
    executor: Executor,
    time_limit: float,
    table: str = "",
    start: np.ndarray | None = None,
    start_label: str = "none",
) -> MethodRun:
    """EF to ``--ef-gap`` within ``time_limit`` (optionally from a MIP start); exact
    evaluation of its first stage."""
    previous = reused_ef(table, problem, args)
    if previous is not None:
        return previous
    log(
        f"EF on {problem.n_scenarios} scenarios (gap {args.ef_gap}, limit {time_limit:.0f} s, "
        f"MIP start: {start_label})"
    )
    t0 = time.perf_counter()
    try:
        res = solve_extensive_form(
            problem, SolverOptions(mip_gap=args.ef_gap, time_limit=time_limit), start=start
        )
    except (SolverTimeLimitError, MemoryError) as exc:
        log(f"EF failed: {type(exc).__name__}: {exc}")
        return MethodRun(
            "ef",
            math.nan,
            time.perf_counter() - t0,
            math.nan,
            {
                "status": "no_incumbent",
                "bound": getattr(exc, "dual_bound", math.nan),
                "error": f"{type(exc).__name__}",
                "mip_start": start_label,
            },
        )
    ev = evaluate_first_stage(problem, res.x, executor=executor, desc=None)
    extra: dict[str, Any] = {
        "ef_model_objective": res.objective,
        "bound": res.bound,
        "mip_gap_pct": 100.0 * res.gap,
        "status": res.status.value,
        "build_seconds": res.build_seconds,
        "n_rows": res.n_rows,
        "n_cols": res.n_cols,
        "evaluation_seconds": ev.wall_seconds,
        "units_by_bus": res.decision.units_by_bus(),
        "total_kw": res.decision.total_kw,
        "n_sited": int(np.sum(res.decision.units > 0)),
        "mip_start": start_label,
    }
    if res.tangents is not None:
        t = res.tangents
        extra["tangent_approximation"] = {
            "mean_points": t.mean_points,
            "modelled_expected": t.approx_expected,
            "exact_expected": t.exact_expected,
            "abs_error": t.abs_error,
            "rel_error_pct": 100.0 * t.rel_error,
            "a_priori_bound_per_scenario": t.max_error_bound,
            "outside_range": t.outside_range,
        }
    log(f"EF: exact {ev.expected_objective:.6g}, bound {res.bound:.6g}, {res.wall_seconds:.1f} s")
    return MethodRun("ef", ev.expected_objective, res.wall_seconds, math.nan, extra)


def keep_partial(table: str, problem: PVSitingProblem, run: MethodRun) -> None:
    """Record a finished row of ``table`` so that it survives a later failure in the table.

    A table's result replaces this partial record when the table completes; when it fails,
    ``main`` keeps the finished rows next to the error (an hour-long EF stays reusable with
    ``--ef-from`` even if a later row fails).
    """
    partial = RESULTS.setdefault(table, {"n_scenarios": problem.n_scenarios, "methods": {}})
    partial["methods"][run.method] = run.as_dict()


def ef_reference(ef: MethodRun | None) -> tuple[float, str]:
    """Reference of the gaps: the EF's exact value if optimal, else its bound."""
    if ef is None:
        return math.nan, "none"
    if ef.extra["status"] == "optimal":
        return ef.objective, "ef_exact"
    if math.isfinite(ef.extra["bound"]):
        return ef.extra["bound"], "ef_bound"
    return math.nan, "none (EF found no incumbent)"


def spar_record(res: SPARResult, seed: int, reference: float) -> dict[str, Any]:
    learned = res.polish_objectives[0] if res.polish_objectives else res.objective
    return {
        "seed": seed,
        "objective": res.objective,
        "wall_seconds": res.learn_seconds,
        "gap_pct": pct(res.objective, reference),
        "estimated_objective": res.estimated_objective,
        "approximation_accuracy": res.approximation_accuracy,
        "iterations": res.iterations,
        "stop_reason": res.stop_reason.value,
        "seconds_per_iteration": res.seconds_per_iteration,
        "first_stage_seconds_per_iteration": res.first_stage_seconds_per_iteration,
        "evaluation_seconds": res.evaluation_seconds,
        "total_seconds": res.wall_seconds,
        "n_cuts": res.n_cuts,
        "expected_penalty": res.evaluation.expected_penalty if res.evaluation else math.nan,
        "n_sited": int(np.sum(res.decision.units > 0)),
        "units": [int(u) for u in res.decision.units],
        "total_kw": res.decision.total_kw,
        # plain SPAR's own decision (before polishing), valued on the polish scenarios: all of
        # them, or SPARConfig.polish_scenarios of them on large sets (then not comparable
        # with "objective", which is always over all scenarios)
        "learned_objective": learned,
        "learned_gap_pct": pct(learned, reference),
        "polish_decisions_evaluated": len(res.polish_objectives),
    }


def run_spar_seeds(
    problem: PVSitingProblem,
    config: SPARConfig,
    seeds: list[int],
    reference: float,
    executor: Executor,
    label: str = "spar",
) -> MethodRun:
    """SPAR over seeds: mean exact objective, mean wall, mean gap (paper C: mean over seeds)."""
    runs = []
    for seed in seeds:
        res = solve_spar(problem, _with_seed(config, seed), executor=executor)
        rec = spar_record(res, seed, reference)
        runs.append(rec)
        log(
            f"{label} seed {seed}: {res.objective:.6g} (gap {rec['gap_pct']:.2f} %), "
            f"{res.iterations} it, {res.learn_seconds:.1f} s, accuracy "
            f"{res.approximation_accuracy:.4f}"
        )
    objs = np.array([r["objective"] for r in runs])
    walls = np.array([r["wall_seconds"] for r in runs])
    gaps = np.array([r["gap_pct"] for r in runs])
    extra = {
        "n_seeds": len(seeds),
        "objective_std": float(objs.std(ddof=1)) if len(objs) > 1 else 0.0,
        "objective_min": float(objs.min()),
        "objective_max": float(objs.max()),
        "gap_pct_max": float(np.nanmax(gaps)) if np.isfinite(gaps).any() else math.nan,
        "approximation_accuracy": float(np.mean([r["approximation_accuracy"] for r in runs])),
        "learned_gap_pct_mean": float(np.mean([r["learned_gap_pct"] for r in runs])),
        "iterations": float(np.mean([r["iterations"] for r in runs])),
        "seconds_per_iteration": float(np.mean([r["seconds_per_iteration"] for r in runs])),
        "config": _config_dict(config),
        "per_seed": runs,
    }
    return MethodRun(label, float(objs.mean()), float(walls.mean()), float(gaps.mean()), extra)


def run_ph(
    problem: PVSitingProblem, args: argparse.Namespace, executor: Executor, reference: float
) -> MethodRun | None:
    """Progressive hedging (ρ = 1 constant in paper C) if the module exists; None otherwise."""
    try:
        from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging
    except ImportError:
        log("PH skipped: gridrecourse.methods.progressive_hedging is not available")
        return None
    config = PHConfig(
        rho=args.ph_rho, max_iterations=args.ph_max_iterations, rho_growth=args.ph_rho_growth
    )
    log(
        f"PH (rho {config.rho:g} x {config.rho_growth:g} per iteration, max "
        f"{config.max_iterations} iterations) on {problem.n_scenarios} scenarios"
    )
    res = solve_progressive_hedging(
        problem,
        config,
        executor=executor,
        progress=lambda it, metric: log(f"PH iteration {it}: metric {metric:.3g}"),
    )
    log(f"PH: {res.objective:.6g}, {res.iterations} it, {res.wall_seconds:.1f} s")
    return MethodRun(
        "ph",
        float(res.objective),
        float(res.wall_seconds),
        pct(res.objective, reference),
        {
            "iterations": res.iterations,
            "converged": res.converged,
            "status": getattr(res.status, "value", str(res.status)),
            "lower_bound": res.lower_bound,
            "n_sited": int(np.sum(np.asarray(res.decision.units) > 0)),
            "rho": config.rho,
            "rho_growth": config.rho_growth,
            "final_rho": res.history[-1].rho,
        },
    )


def spar_batch_runs(
    problem: PVSitingProblem, args: argparse.Namespace, reference: float, executor: Executor
) -> list[MethodRun]:
    """Optional SPAR rows with a scenario mini-batch per iteration (``--spar-batch``, ours)."""
    runs = []
    for batch in args.spar_batch_list:
        runs.append(
            run_spar_seeds(
                problem,
                spar_config(args, scenarios_per_iteration=batch),
                args.seed_list,
                reference,
                executor,
                label=f"spar_batch{batch}",
            )
        )
    return runs


def _with_seed(config: SPARConfig, seed: int) -> SPARConfig:
    return replace(config, seed=seed)


def spar_config(args: argparse.Namespace, **settings: Any) -> SPARConfig:
    """SPAR settings of a table: the defaults, ``--polish-rounds`` if given, then ``settings``."""
    if args.polish_rounds is not None:
        settings.setdefault("polish_rounds", args.polish_rounds)
    return SPARConfig(**settings)


def _config_dict(config: SPARConfig) -> dict[str, Any]:
    return {k: getattr(v, "value", v) for k, v in asdict(config).items()}


# ------------------------------------------------------------------------------ tables


def table_p1_96(
    args, executor, objective=SitingObjective.VOLTAGE_DEVIATION, table: str = "p1_96"
) -> dict:
    n = args.small_scenarios
    problem = build_problem("ieee123", n, objective, args.scenario_seed)
    ef = run_ef(problem, args, executor, args.ef_small_time_limit, table)
    keep_partial(table, problem, ef)
    reference, kind = ef_reference(ef)
    ef.gap_pct = pct(ef.objective, reference)
    spar = run_spar_seeds(problem, spar_config(args), args.seed_list, reference, executor)
    methods = [ef, spar, *spar_batch_runs(problem, args, reference, executor)]
    if objective is SitingObjective.LOSSES:
        for run in methods[1:]:
            run.extra["gap_to_ef_bound_pct"] = pct(run.objective, ef.extra["bound"])
    if args.ph:
        ph = run_ph(problem, args, executor, reference)
        if ph is not None:
            methods.append(ph)
    return {
        "feeder": "ieee123",
        "objective_name": "P1 voltage deviation (p.u. of v²)"
        if objective is SitingObjective.VOLTAGE_DEVIATION
        else "P2 losses (kW)",
        "n_scenarios": n,
        "n_sites": problem.n_sites,
        "gap_reference": kind,
        "reference_objective": reference,
        "methods": {m.method: m.as_dict() for m in methods},
        "ef_vs_spar_time_ratio": ef.wall_seconds / spar.wall_seconds,
    }


def table_p2_96(args, executor) -> dict:
    return table_p1_96(args, executor, SitingObjective.LOSSES, "p2_96")


def table_p1_1200(args, executor) -> dict:
    n = args.large_scenarios
    problem = build_problem("ieee123", n, SitingObjective.VOLTAGE_DEVIATION, args.scenario_seed)
    spar = run_spar_seeds(problem, spar_config(args), args.seed_list, math.nan, executor)
    keep_partial("p1_1200", problem, spar)
    ef = None
    if not args.skip_large_ef:
        start, label = None, "none"
        if args.ef_start == "spar":
            # HiGHS found no incumbent of the 1200-scenario EF in an hour from scratch
            first = spar.extra["per_seed"][0]
            start = problem.first_stage_vector(np.asarray(first["units"]))
            label = f"SPAR seed {first['seed']} decision (exact {first['objective']:.6g})"
        ef = run_ef(problem, args, executor, args.ef_time_limit, "p1_1200", start, label)
        keep_partial("p1_1200", problem, ef)
    reference, kind = ef_reference(ef)
    if ef is not None:
        ef.gap_pct = pct(ef.objective, reference)
    for row in spar.extra["per_seed"]:
        row["gap_pct"] = pct(row["objective"], reference)
        row["learned_gap_pct"] = pct(row["learned_objective"], reference)
    spar.gap_pct = float(np.mean([row["gap_pct"] for row in spar.extra["per_seed"]]))
    spar.extra["target_seconds_per_seed"] = 120.0
    if ef is not None and math.isfinite(ef.objective):
        for row in [spar.extra, *spar.extra["per_seed"]]:
            row["gap_to_ef_incumbent_pct"] = pct(row.get("objective", spar.objective), ef.objective)
    batched = spar_batch_runs(problem, args, reference, executor)
    bounds = []
    for batch in [] if args.skip_bounds else args.batch_size_list:
        log(f"bounds: N = {batch}, K = {args.replications}")
        try:
            b = spar_statistical_bounds(
                problem,
                spar_config(args, seed=args.bounds_seed),
                batch_size=batch,
                n_replications=args.replications,
                executor=executor,
                ef_options=SolverOptions(mip_gap=args.ef_gap, time_limit=args.batch_ef_time_limit),
            )
        except Exception as exc:  # keep the other batch sizes
            log(f"bounds N = {batch} failed: {type(exc).__name__}: {exc}")
            bounds.append({"batch_size": batch, "error": f"{type(exc).__name__}: {exc}"})
            continue
        row = {
            "batch_size": batch,
            "replications": args.replications,
            "spar_estimated_objective": float(b.estimated_objectives.mean()),
            "ub_ci": [b.upper.low, b.upper.high],
            "lb_ci": [b.lower.low, b.lower.high],
            "bounds_gap": b.gap,
            "bounds_gap_pct": b.gap_pct,
            "ub_mean": b.upper.mean,
            "lb_mean": b.lower.mean,
            "spar_seconds_mean": float(b.spar_seconds.mean()),
            "ef_batch_seconds_mean": float(b.ef_seconds.mean()),
            "lb_from_wait_and_see": int(sum(s.value == "wait_and_see" for s in b.lower_sources)),
            "ub_samples": b.upper_samples,
            "lb_samples": b.lower_samples,
            "wall_seconds": b.wall_seconds,
            "brackets_reference": bool(b.lower.low <= reference <= b.upper.high)
            if math.isfinite(reference)
            else None,
        }
        log(
            f"N = {batch}: UB [{b.upper.low:.4f}, {b.upper.high:.4f}], LB [{b.lower.low:.4f}, "
            f"{b.lower.high:.4f}], BG {b.gap:.4f} ({b.gap_pct:.2f} %), {b.wall_seconds:.0f} s"
        )
        bounds.append(row)
    methods = [spar, *batched] + ([ef] if ef is not None else [])
    return {
        "feeder": "ieee123",
        "n_scenarios": n,
        "n_sites": problem.n_sites,
        "gap_reference": kind,
        "reference_objective": reference,
        "methods": {m.method: m.as_dict() for m in methods},
        "bounds": bounds,
    }


def table_rules(args, executor) -> dict:
    n = args.small_scenarios
    problem = build_problem("ieee123", n, SitingObjective.VOLTAGE_DEVIATION, args.scenario_seed)
    reference = args.reference if args.reference is not None else math.nan
    kind = "given (--reference)" if args.reference is not None else "none"
    if args.reference is None and "p1_96" in RESULTS:
        reference = RESULTS["p1_96"]["reference_objective"]
        kind = RESULTS["p1_96"]["gap_reference"]
    methods = {}
    for rule in StepRule:
        run = run_spar_seeds(
            problem,
            spar_config(args, step_rule=rule),
            args.seed_list,
            reference,
            executor,
            label=f"spar_rule{rule.value}",
        )
        methods[run.method] = run.as_dict()
    return {
        "feeder": "ieee123",
        "n_scenarios": n,
        "gap_reference": kind,
        "reference_objective": reference,
        "methods": methods,
    }


def table_formulations(args, executor) -> dict:
    """Same seed, same number of iterations, no early stop: identical slopes ⇒ identical first
    stages, so the per-iteration times compare the formulations on the same MILPs."""
    n = args.small_scenarios
    problem = build_problem("ieee123", n, SitingObjective.VOLTAGE_DEVIATION, args.scenario_seed)
    m, big_l = problem.n_sites, problem.config.budget.max_units
    size = {
        # rows/columns of FirstStageModel (spar_first_stage module docstring)
        Formulation.LAMBDA: (4 * m + 2, 2 * m + m * (big_l + 1), 2 * m + m * (big_l + 1)),
        Formulation.EPIGRAPH: (2 * m + 2 + m * big_l, 3 * m, 2 * m),
    }
    rows: dict[str, Any] = {}
    trajectories = {}
    for formulation in (Formulation.EPIGRAPH, Formulation.LAMBDA):
        cfg = SPARConfig(
            formulation=formulation,
            seed=args.seed_list[0],
            max_iterations=args.ratio_iterations + SPARConfig().exploration_iterations,
            window=10**9,  # no early stop
            evaluate=False,
        )
        t0 = time.perf_counter()
        res = solve_spar(problem, cfg)
        wall = time.perf_counter() - t0
        # exploration iterations solve the same random epigraph MILP in both runs: leave
        # them out of the comparison
        learned = [h for h in res.history if not h.explored]
        fs = np.array([h.first_stage_seconds for h in learned])
        total = np.array(
            [h.first_stage_seconds + h.second_stage_seconds + h.update_seconds for h in learned]
        )
        trajectories[formulation] = [tuple(h.units) for h in res.history]
        r, c, b = size[formulation]
        rows[formulation.value] = {
            "first_stage_seconds_per_iteration": float(fs.mean()),
            "first_stage_seconds_median": float(np.median(fs)),
            "seconds_per_iteration": float(total.mean()),
            "compared_iterations": len(learned),
            "iterations": res.iterations,
            "wall_seconds": wall,
            "rows": r,
            "columns": c,
            "binary_or_integer_columns": b,
        }
        log(
            f"{formulation.value}: {fs.mean():.3f} s/iteration first stage, "
            f"{total.mean():.3f} s/iteration total ({len(learned)} learned iterations)"
        )
    lam, epi = rows["lambda"], rows["epigraph"]
    same = trajectories[Formulation.LAMBDA] == trajectories[Formulation.EPIGRAPH]
    return {
        "feeder": "ieee123",
        "n_scenarios": n,
        "n_sites": m,
        "max_units": big_l,
        "methods": rows,
        "ratio_lambda_over_epigraph_total": lam["seconds_per_iteration"]
        / epi["seconds_per_iteration"],
        "ratio_lambda_over_epigraph_first_stage": lam["first_stage_seconds_per_iteration"]
        / epi["first_stage_seconds_per_iteration"],
        "same_trajectory": same,
    }


def table_ieee9500(args, executor) -> dict:
    n = args.large_scenarios
    taps = TapSetting(args.taps_9500)
    problem = build_problem(
        "ieee9500", n, SitingObjective.VOLTAGE_DEVIATION, args.scenario_seed, taps
    )
    seeds = args.seed_list[: args.seeds_9500]
    config_9500 = spar_config(args, polish_rounds=args.polish_9500)
    spar = run_spar_seeds(problem, config_9500, seeds, math.nan, executor)
    spar.extra["target_seconds_per_seed"] = 900.0
    out: dict[str, Any] = {
        "feeder": "ieee9500",
        "n_scenarios": n,
        "n_sites": problem.n_sites,
        "taps": taps.value,
        "expected_penalty_share": float(
            np.mean(
                [
                    r["expected_penalty"] / r["objective"]
                    for r in spar.extra["per_seed"]
                    if r["objective"]
                ]
            )
        ),
        "gap_reference": "none (EF and PH intractable, as in paper C)",
        "methods": {"spar": spar.as_dict()},
    }
    if args.bounds_9500:
        rows = []
        # the batch MILPs of the 9500 are out of reach: LP-relaxation lower bounds (valid)
        relaxed = SolverOptions(
            mip_gap=args.ef_gap, time_limit=args.batch_ef_time_limit, relax_integrality=True
        )
        for batch in args.batch_sizes_9500_list:
            log(f"ieee9500 bounds: N = {batch}, K = {args.replications}")
            b = spar_statistical_bounds(
                problem,
                replace(config_9500, seed=args.bounds_seed),
                batch_size=batch,
                n_replications=args.replications,
                executor=executor,
                ef_options=relaxed,
            )
            log(
                f"N = {batch}: UB [{b.upper.low:.4f}, {b.upper.high:.4f}], LB [{b.lower.low:.4f}"
                f", {b.lower.high:.4f}], BG {b.gap:.4f} ({b.gap_pct:.2f} %), {b.wall_seconds:.0f} s"
            )
            rows.append(
                {
                    "batch_size": batch,
                    "replications": args.replications,
                    "lower_bound_source": "relaxation (LP relaxation of the batch EF)",
                    "spar_seconds_mean": float(b.spar_seconds.mean()),
                    "lb_seconds_mean": float(b.ef_seconds.mean()),
                    "ub_ci": [b.upper.low, b.upper.high],
                    "lb_ci": [b.lower.low, b.lower.high],
                    "bounds_gap": b.gap,
                    "bounds_gap_pct": b.gap_pct,
                    "wall_seconds": b.wall_seconds,
                }
            )
        out["bounds"] = rows
    return out


RUNNERS: dict[str, Callable[[argparse.Namespace, Executor], dict]] = {
    "p1_96": table_p1_96,
    "p2_96": table_p2_96,
    "p1_1200": table_p1_1200,
    "rules": table_rules,
    "formulations": table_formulations,
    "ieee9500": table_ieee9500,
}
RESULTS: dict[str, dict] = {}


# ------------------------------------------------------------------------------ output


def print_tables(results: dict[str, dict]) -> None:
    for name, table in results.items():
        print(f"\n== {name} ({table.get('feeder')}, {table.get('n_scenarios')} scenarios) ==")
        if "error" in table:
            print(f"  error: {table['error']}")
            continue
        for method, row in table.get("methods", {}).items():
            obj = row.get("objective")
            wall = row.get("wall_seconds", math.nan)
            text = (
                f"  {method:14s} objective {obj:.5g}  wall {wall:8.2f} s"
                if obj is not None
                else f"  {method:14s} "
                + ", ".join(f"{k} {v:.4g}" for k, v in row.items() if isinstance(v, float))
            )
            gap = row.get("gap_pct")
            if gap is not None and math.isfinite(gap):
                text += f"  gap {gap:+.2f} %"
            acc = row.get("approximation_accuracy")
            if acc is not None and isinstance(acc, float) and math.isfinite(acc):
                text += f"  accuracy {100 * acc:.1f} %"
            print(text)
        for row in table.get("bounds", []):
            if "error" in row:
                print(f"  N={row['batch_size']:4d}  error: {row['error']}")
                continue
            print(
                f"  N={row['batch_size']:4d}  UB [{row['ub_ci'][0]:.4f}, {row['ub_ci'][1]:.4f}]"
                f"  LB [{row['lb_ci'][0]:.4f}, {row['lb_ci'][1]:.4f}]  BG {row['bounds_gap']:.4f}"
                f" ({row['bounds_gap_pct']:.2f} %)"
            )
        if "ratio_lambda_over_epigraph_first_stage" in table:
            print(
                "  lambda/epigraph time per iteration: first stage "
                f"{table['ratio_lambda_over_epigraph_first_stage']:.2f}x, total "
                f"{table['ratio_lambda_over_epigraph_total']:.2f}x"
            )


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.floating | float):
        v = float(value)
        return v if math.isfinite(v) else None
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tables", default=",".join(DEFAULT_TABLES), help=f"{TABLES} or all")
    p.add_argument("--quick", action="store_true", help="small sizes (minutes)")
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--seeds", type=int, default=5, help="SPAR seeds per table (paper: 25)")
    p.add_argument("--seeds-9500", type=int, default=1, help="SPAR seeds on the ieee9500")
    p.add_argument("--small-scenarios", type=int, default=96)
    p.add_argument("--large-scenarios", type=int, default=1200)
    p.add_argument("--scenario-seed", type=int, default=0, help="noise seed of Algorithm 2")
    p.add_argument("--ef-gap", type=float, default=1e-4, help="EF relative MIP gap (0.01 %%)")
    p.add_argument("--ef-time-limit", type=float, default=3600.0, help="EF, large table [s]")
    p.add_argument("--ef-small-time-limit", type=float, default=3600.0, help="EF, 96 [s]")
    p.add_argument("--skip-large-ef", action="store_true", help="no EF on the large table")
    p.add_argument(
        "--ef-start",
        choices=["none", "spar"],
        default="none",
        help="MIP start of the large EF: none, or SPAR seed 0's decision",
    )
    p.add_argument(
        "--ef-from",
        default=None,
        metavar="JSON",
        help="reuse the EF rows of a previous --json output (same tables and scenario seed)",
    )
    p.add_argument("--batch-sizes", default="50,100,150,200")
    p.add_argument("--replications", type=int, default=5, help="K of the SAA bounds")
    p.add_argument("--skip-bounds", action="store_true", help="no SAA bounds (p1_1200)")
    p.add_argument("--bounds-seed", type=int, default=0)
    p.add_argument("--batch-ef-time-limit", type=float, default=900.0, help="LB EFs [s]")
    p.add_argument("--bounds-9500", action="store_true")
    p.add_argument("--batch-sizes-9500", default="20", help="SAA batch sizes on the ieee9500")
    p.add_argument(
        "--taps-9500",
        choices=[t.value for t in TapSetting],
        default=TapSetting.OPENDSS.value,
        help="ieee9500 regulator taps (default opendss: at tap 1.0 the feeder sags far below "
        "0.95 p.u. and the P1 objective is ~96 %% soft-limit penalty)",
    )
    p.add_argument(
        "--polish-rounds",
        type=int,
        default=None,
        help="SPAR polish rounds on the ieee123 tables (default: SPARConfig's; 0 = plain SPAR)",
    )
    p.add_argument(
        "--polish-9500",
        type=int,
        default=0,
        help="SPAR polish rounds on the ieee9500 (each one is an exact evaluation of all "
        "scenarios, ~5-10 min there; default 0 = paper C's plain SPAR)",
    )
    p.add_argument("--ratio-iterations", type=int, default=40)
    p.add_argument("--reference", type=float, default=None, help="gap reference for 'rules'")
    p.add_argument(
        "--spar-batch",
        default="",
        help="extra SPAR rows with this many scenarios per iteration (comma list; ours)",
    )
    p.add_argument("--ph", action="store_true", help="run PH where the paper does")
    p.add_argument("--ph-max-iterations", type=int, default=50)
    p.add_argument("--ph-rho", type=float, default=1.0, help="PH rho (paper C: 1)")
    p.add_argument(
        "--ph-rho-growth",
        type=float,
        default=1.0,
        help="PH rho factor per iteration (1 = constant, paper C)",
    )
    p.add_argument("--executor", choices=[k.value for k in ExecutorKind], default="process")
    p.add_argument("--workers", type=int, default=None)
    args = p.parse_args(argv)
    if args.quick:
        args.seeds = min(args.seeds, 2)
        args.small_scenarios = 24
        args.large_scenarios = 48
        args.batch_sizes = "12,24"
        args.replications = min(args.replications, 3)
        args.ef_time_limit = min(args.ef_time_limit, 120.0)
        args.ef_small_time_limit = min(args.ef_small_time_limit, 300.0)
        args.batch_ef_time_limit = min(args.batch_ef_time_limit, 60.0)
        args.ratio_iterations = min(args.ratio_iterations, 15)
        args.ph_max_iterations = min(args.ph_max_iterations, 10)
    names = TABLES if args.tables == "all" else tuple(t.strip() for t in args.tables.split(","))
    unknown = [t for t in names if t not in TABLES]
    if unknown:
        p.error(f"unknown table(s) {unknown}; choose from {TABLES} or 'all'")
    args.table_list = names
    args.seed_list = list(range(args.seeds))
    args.batch_size_list = [int(b) for b in args.batch_sizes.split(",") if b]
    args.batch_sizes_9500_list = [int(b) for b in args.batch_sizes_9500.split(",") if b]
    args.spar_batch_list = [int(b) for b in args.spar_batch.split(",") if b]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t0 = time.perf_counter()
    with make_executor(ExecutorKind(args.executor), n_workers=args.workers) as executor:
        for name in args.table_list:
            log(f"table {name}")
            t_table = time.perf_counter()
            try:
                RESULTS[name] = RUNNERS[name](args, executor)
            except Exception as exc:  # report the other tables
                log(f"table {name} failed: {type(exc).__name__}: {exc}")
                RESULTS[name] = {**RESULTS.get(name, {}), "error": f"{type(exc).__name__}: {exc}"}
            RESULTS[name]["table_seconds"] = time.perf_counter() - t_table
    summary = {
        "benchmark": "bench_siting",
        "paper": "C (SPAR-OPF), Tables I-VI",
        "quick": args.quick,
        "argv": sys.argv[1:] if argv is None else argv,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "paper_reference": {k: v for k, v in PAPER.items() if k in RESULTS},
        "tables": RESULTS,
        "total_seconds": time.perf_counter() - t0,
    }
    if args.json:
        print(json.dumps(_jsonable(summary), indent=1))
    else:
        print_tables(RESULTS)
        print(f"\ntotal {summary['total_seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
