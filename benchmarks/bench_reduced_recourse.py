"""Benchmark: the full recourse LP against the exact reduced one (issue 14, item 2).

:mod:`gridrecourse.problems.reduced_recourse` solves the P1 siting recourse as a small LP in the
sited PV and the few penalty epigraphs that may switch. This script solves the same scenarios
along their warm-start chain with both, **interleaved in one process** (full scenario k, then
reduced scenario k), so that CPU-second ratios are load-robust: the full model warm-started
from the previous scenario's basis (Devex, as the evaluation runs it), the reduced one cold.
It reports CPU seconds and simplex iterations per scenario, the reduced LP's size, and the
largest differences of the objectives (relative), penalties, linking duals and subgradients
(absolute) between the two.

Usage::

    nice python benchmarks/bench_reduced_recourse.py --evaluate 96 \\
        --json benchmarks/results/reduced_recourse_ieee9500.json
    python benchmarks/bench_reduced_recourse.py --feeder ieee13 --scenarios 48 \\
        --evaluate 48 --units-from none                          # seconds, a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from typing import Any

import numpy as np

from bench_evaluation import decision_units, log
from gridrecourse.evaluation.scenario_order import warm_start_order
from gridrecourse.problems.base import SecondStageModel
from gridrecourse.problems.reduced_recourse import ReducedSecondStageModel
from gridrecourse.problems.siting import (
    TapSetting,
)
from siting_instance import add_instance_arguments, siting_instance


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_instance_arguments(p, feeder="ieee9500", taps=TapSetting.OPENDSS)
    p.add_argument("--evaluate", type=int, default=96, help="evenly spaced scenarios solved")
    p.add_argument(
        "--units-from",
        default="benchmarks/results/siting_ieee9500.json",
        help="bench_siting JSON with the SPAR decision (or 'none': a spread decision)",
    )
    p.add_argument("--json", default=None, help="write the results to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    problem = siting_instance(args)
    x = problem.first_stage_vector(decision_units(problem, args.units_from))
    n_eval = min(args.evaluate, args.scenarios)
    idx = np.unique(np.linspace(0, args.scenarios - 1, n_eval).round().astype(int))
    chain = idx[warm_start_order(problem, idx)]
    c0 = time.process_time()
    full = SecondStageModel(problem)
    full_build = time.process_time() - c0
    c0 = time.process_time()
    reduced = problem.build_second_stage()
    reduced_build = time.process_time() - c0
    if not isinstance(reduced, ReducedSecondStageModel):
        raise SystemExit(f"{args.feeder}: the recourse has no reduced model")
    spec = problem.second_stage
    log(f"{args.feeder}: {spec.n_rows} rows, {spec.n_cols} columns, {len(chain)} scenarios")
    rows: dict[str, list[Any]] = {k: [] for k in ("full", "reduced")}
    diff = {"objective_rel": 0.0, "penalty": 0.0, "linking_duals": 0.0, "subgradient": 0.0}
    for k, scenario in enumerate(chain):
        out = {}
        for name, model in (("full", full), ("reduced", reduced)):
            c0 = time.process_time()
            res = model.solve(x, int(scenario))
            cpu = time.process_time() - c0
            rows[name].append((cpu, res.simplex_iterations))
            out[name] = res
        f, r = out["full"], out["reduced"]
        diff["objective_rel"] = max(
            diff["objective_rel"], abs(r.objective - f.objective) / max(1.0, abs(f.objective))
        )
        diff["penalty"] = max(diff["penalty"], abs(r.penalty - f.penalty))
        diff["linking_duals"] = max(
            diff["linking_duals"], float(np.max(np.abs(r.linking_duals - f.linking_duals)))
        )
        diff["subgradient"] = max(
            diff["subgradient"], float(np.max(np.abs(r.subgradient - f.subgradient)))
        )
        if k % 10 == 0:
            log(
                f"{k}/{len(chain)}: full {rows['full'][-1][0]:.2f} s {f.simplex_iterations} it, "
                f"reduced {rows['reduced'][-1][0]:.3f} s {r.simplex_iterations} it; {diff}"
            )
    summary = {}
    for name, data in rows.items():
        arr = np.array(data[1:])  # warm solves (the full model's first is cold)
        summary[name] = {
            "first_solve_cpu_seconds": data[0][0],
            "first_solve_iterations": int(data[0][1]),
            "cpu_seconds_per_scenario": float(arr[:, 0].mean()),
            "iterations_per_scenario": float(arr[:, 1].mean()),
            "cpu_seconds_total": float(sum(c for c, _ in data)),
        }
    summary["full"]["build_cpu_seconds"] = full_build
    summary["reduced"]["build_cpu_seconds"] = reduced_build
    ratio = (
        summary["full"]["cpu_seconds_per_scenario"] / summary["reduced"]["cpu_seconds_per_scenario"]
    )
    result: dict[str, Any] = {
        "argv": sys.argv[1:] if argv is None else argv,
        "feeder": args.feeder,
        "taps": args.taps,
        "n_scenarios": args.scenarios,
        "evaluated_scenarios": len(chain),
        "rows": spec.n_rows,
        "columns": spec.n_cols,
        "sited": int(np.count_nonzero(x[: problem.n_sites])),
        "models": summary,
        "cpu_ratio_full_over_reduced": ratio,
        "reduced_fallbacks": reduced.fallbacks,
        "max_differences": diff,
        "load_average_at_end": os.getloadavg(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "total_seconds": time.perf_counter() - t_start,
    }
    print(
        json.dumps(
            {
                k: result[k]
                for k in (
                    "models",
                    "cpu_ratio_full_over_reduced",
                    "reduced_fallbacks",
                    "max_differences",
                )
            },
            indent=1,
        )
    )
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
