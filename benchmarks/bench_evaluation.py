"""Benchmark: the exact evaluation of one first stage over the scenarios (issue 14, item 2).

The exact evaluation (:func:`gridrecourse.evaluation.out_of_sample.evaluate_first_stage`) is
the floor of every method's time: one recourse LP per scenario, each re-solved from the
previous scenario's basis along the warm-start chain
(:mod:`gridrecourse.evaluation.scenario_order`). This script measures, on the same scenarios:

``serial``    one full recourse model (:class:`SecondStageModel`, not the problem's reduced one:
              ``bench_reduced_recourse.py`` compares those) solving the whole chain in this
              process, once per dual simplex
              pricing (``--pricings``; the recourse model uses Devex, HiGHS's default picks
              steepest edge): seconds per scenario (wall and CPU of this process), simplex
              iterations, the cold first solve apart, and the largest relative difference of
              the objectives between pricings (must be round-off).
``parallel``  a process pool of ``--workers`` workers running the chain as the evaluation
              does (``problem.build_second_stage()``: for P1 siting the exact reduced LP),
              once per chunk layout (``--layouts``): ``lanes`` (the evaluation's
              :func:`~gridrecourse.evaluation.out_of_sample.chain_lanes`: one lane of the chain
              per worker, work stealing) and ``contiguous`` (the executor's default: four
              chunks per worker in chain order, first come first served): wall seconds per scenario
              (including worker start-up and model builds), and per worker the tasks, busy
              seconds and *chain starts* (solves that did not start from the basis of the
              previous scenario of the chain: the first solve of each worker and every break),
              and the executor's own overhead (the same map of no-op tasks on the cached
              models, default chunks).

The decision is SPAR's first stage of seed 0 from ``--units-from`` (default
``benchmarks/results/siting_ieee9500.json``); the scenarios are ``--evaluate`` of the
``--scenarios`` (evenly spaced indices, so their chain is sparser than the full one's: the
figures per scenario are an upper estimate of a full evaluation's). Figures measured on a
loaded machine are slower in wall time; the CPU seconds and iterations are less affected.

Usage::

    nice python benchmarks/bench_evaluation.py --json benchmarks/results/evaluation_ieee9500.json
    python benchmarks/bench_evaluation.py --feeder ieee13 --scenarios 48 --evaluate 48 \\
        --units-from none                                    # seconds, a smoke test
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from functools import partial
from typing import Any

import numpy as np

from gridrecourse.evaluation.out_of_sample import chain_lanes, recourse_state_factory
from gridrecourse.evaluation.scenario_order import warm_start_order
from gridrecourse.execution import ProcessPoolExecutor
from gridrecourse.problems.base import SecondStageModel
from gridrecourse.problems.siting import (
    PVSitingProblem,
    SitingObjective,
    TapSetting,
)
from gridrecourse.solvers.highs import SimplexPricing
from siting_instance import add_instance_arguments, siting_instance

LAYOUTS = ("lanes", "contiguous")


def log(msg: str) -> None:
    """Progress on stderr (stdout is kept for the table)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def decision_units(problem: PVSitingProblem, source: str) -> np.ndarray:
    """SPAR seed 0's units from a ``bench_siting.py --json`` file, or a spread decision.

    ``source == "none"``: the budget's sites at the first, middle and last candidates
    (``max_units`` each, at most ``max_sites`` sites).
    """
    if source != "none":
        with open(source, encoding="utf-8") as fh:
            tables = json.load(fh)["tables"]
        for table in tables.values():
            seeds = table.get("methods", {}).get("spar", {}).get("per_seed", [])
            if seeds and len(seeds[0]["units"]) == problem.n_sites:
                return np.asarray(seeds[0]["units"], dtype=float)
        raise SystemExit(f"{source}: no SPAR decision with {problem.n_sites} sites")
    budget = problem.config.budget
    units = np.zeros(problem.n_sites)
    sites = np.unique(np.linspace(0, problem.n_sites - 1, min(3, budget.max_sites)).astype(int))
    units[sites] = budget.max_units
    return units


def run_serial(
    problem: PVSitingProblem, x: np.ndarray, chain: np.ndarray, pricing: SimplexPricing
) -> tuple[dict[str, Any], np.ndarray]:
    """One recourse model with ``pricing`` solving ``chain`` in order (first solve cold)."""
    model = SecondStageModel(problem)
    model.model.set_simplex_pricing(pricing)
    wall, cpu, highs, its, obj = [], [], [], [], []
    for scenario in chain:
        c0, t0 = time.process_time(), time.perf_counter()
        res = model.solve(x, int(scenario))
        wall.append(time.perf_counter() - t0)
        cpu.append(time.process_time() - c0)
        highs.append(res.solve_seconds)
        its.append(res.simplex_iterations)
        obj.append(res.objective)
    w, c, i = np.array(wall), np.array(cpu), np.array(its)
    row = {
        "pricing": pricing.name.lower(),
        "cold_first_solve_seconds": float(w[0]),
        "cold_first_solve_iterations": int(i[0]),
        "warm_solves": len(chain) - 1,
        "warm_wall_seconds_per_scenario": float(w[1:].mean()),
        "warm_cpu_seconds_per_scenario": float(c[1:].mean()),
        "warm_highs_seconds_per_scenario": float(np.mean(highs[1:])),
        "warm_iterations_per_scenario": float(i[1:].mean()),
        "warm_iterations_median": float(np.median(i[1:])),
        "warm_iterations_max": int(i[1:].max()),
        "cpu_ms_per_iteration": float(1e3 * c[1:].sum() / max(1, i[1:].sum())),
        "second_solve_seconds": float(w[1]),
        "wall_seconds": float(w.sum()),
        "cpu_seconds": float(c.sum()),
    }
    log(
        f"serial {row['pricing']}: cold {w[0]:.2f} s, warm "
        f"{row['warm_wall_seconds_per_scenario']:.3f} s/scenario wall "
        f"({row['warm_cpu_seconds_per_scenario']:.3f} CPU), "
        f"{row['warm_iterations_per_scenario']:.0f} iterations/scenario"
    )
    return row, np.array(obj)


def _timed_solve(model: SecondStageModel, scenario: int, *, x: np.ndarray) -> dict[str, Any]:
    """One scenario solve in a worker, tagged with the worker and its times."""
    c0, t0 = time.process_time(), time.time()
    res = model.solve(x, scenario)
    return {
        "pid": os.getpid(),
        "start": t0,
        "stop": time.time(),
        "cpu": time.process_time() - c0,
        "scenario": scenario,
        "objective": res.objective,
        "iterations": res.simplex_iterations,
    }


def _noop(model: SecondStageModel, scenario: int) -> int:
    """A task that only receives the cached model (measures the executor's own overhead)."""
    return scenario


def run_parallel(
    problem: PVSitingProblem, x: np.ndarray, chain: np.ndarray, workers: int, layout: str
) -> tuple[dict[str, Any], np.ndarray]:
    """The chain on a fresh process pool, chunked as ``layout``; per-worker chain starts."""
    lanes = chain_lanes(len(chain), workers) if layout == "lanes" else None
    t0 = time.perf_counter()
    with ProcessPoolExecutor(workers) as ex:
        out = ex.map(
            partial(_timed_solve, x=x),
            [int(s) for s in chain],
            state_factory=recourse_state_factory(problem),
            lanes=lanes,
        )
        wall = time.perf_counter() - t0
        t1 = time.perf_counter()  # the same map without solves, on the cached models
        ex.map(_noop, [int(s) for s in chain], state_factory=recourse_state_factory(problem))
        overhead = time.perf_counter() - t1
    per_worker = []
    for pid in sorted({r["pid"] for r in out}):
        positions = sorted(
            (r["start"], k) for k, r in enumerate(out) if r["pid"] == pid
        )  # this worker's solves in time order, as chain positions
        pos = np.array([k for _, k in positions])
        mine = [out[k] for k in pos]
        per_worker.append(
            {
                "tasks": len(pos),
                "chain_starts": int(1 + np.count_nonzero(np.diff(pos) != 1)),
                "busy_seconds": float(sum(r["stop"] - r["start"] for r in mine)),
                "cpu_seconds": float(sum(r["cpu"] for r in mine)),
                "iterations": int(sum(r["iterations"] for r in mine)),
            }
        )
    row = {
        "layout": layout,
        "workers": workers,
        "wall_seconds": wall,
        "wall_seconds_per_scenario": wall / len(chain),
        "map_overhead_seconds": overhead,
        "chain_starts": sum(w["chain_starts"] for w in per_worker),
        "iterations": sum(w["iterations"] for w in per_worker),
        "per_worker": per_worker,
    }
    log(
        f"parallel {layout}: {wall:.1f} s wall ({row['wall_seconds_per_scenario']:.3f} "
        f"s/scenario), map overhead {overhead:.2f} s, chain starts per worker "
        f"{[w['chain_starts'] for w in per_worker]}, "
        f"busy {[round(w['busy_seconds'], 1) for w in per_worker]} s"
    )
    return row, np.array([r["objective"] for r in out])


def max_rel_diff(a: np.ndarray, b: np.ndarray) -> float:
    """Largest ``|a − b| / max(|b|, 1e-12)``."""
    return float(np.max(np.abs(a - b) / np.maximum(np.abs(b), 1e-12)))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_instance_arguments(p, feeder="ieee9500", taps=TapSetting.OPENDSS)
    p.add_argument("--evaluate", type=int, default=96, help="evenly spaced scenarios solved")
    p.add_argument(
        "--objective",
        choices=[o.value for o in SitingObjective],
        default=SitingObjective.VOLTAGE_DEVIATION.value,
    )
    p.add_argument(
        "--units-from",
        default="benchmarks/results/siting_ieee9500.json",
        help="bench_siting JSON with the SPAR decision (or 'none': a spread decision)",
    )
    p.add_argument("--pricings", default="steepest_edge,devex")
    p.add_argument("--layouts", default=",".join(LAYOUTS))
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", default=None, help="write the results to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    t_start = time.perf_counter()
    problem = siting_instance(args, SitingObjective(args.objective))
    x = problem.first_stage_vector(decision_units(problem, args.units_from))
    n_eval = min(args.evaluate, args.scenarios)
    idx = np.unique(np.linspace(0, args.scenarios - 1, n_eval).round().astype(int))
    chain = idx[warm_start_order(problem, idx)]
    spec = problem.second_stage
    log(
        f"{args.feeder}: {spec.n_rows} rows, {spec.n_cols} columns, {problem.n_sites} sites, "
        f"{len(chain)} of {args.scenarios} scenarios"
    )
    serial, objectives = [], {}
    for name in filter(None, args.pricings.split(",")):
        row, obj = run_serial(problem, x, chain, SimplexPricing[name.upper()])
        serial.append(row)
        objectives[row["pricing"]] = obj
    parallel = []
    for layout in filter(None, args.layouts.split(",")):
        if layout not in LAYOUTS:
            raise SystemExit(f"--layouts: unknown layout {layout!r}; expected {LAYOUTS}")
        row, obj = run_parallel(problem, x, chain, args.workers, layout)
        parallel.append(row)
        objectives[f"parallel_{layout}"] = obj
    reference = next(iter(objectives.values()))
    agreement = {k: max_rel_diff(v, reference) for k, v in objectives.items()}
    result: dict[str, Any] = {
        "argv": sys.argv[1:] if argv is None else argv,
        "feeder": args.feeder,
        "taps": args.taps,
        "objective": args.objective,
        "n_scenarios": args.scenarios,
        "evaluated_scenarios": len(chain),
        "rows": spec.n_rows,
        "columns": spec.n_cols,
        "sited": int(np.count_nonzero(x[: problem.n_sites])),
        "serial": serial,
        "parallel": parallel,
        "objective_max_rel_diff_vs_first": agreement,
        "expected_objective": float(
            problem.probability[chain] @ reference / problem.probability[chain].sum()
        ),
        "load_average_at_end": os.getloadavg()[0],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "total_seconds": time.perf_counter() - t_start,
    }
    print(f"\n{args.feeder}, {len(chain)} of {args.scenarios} scenarios, one worker:")
    for row in serial:
        print(
            f"  {row['pricing']:14s} cold {row['cold_first_solve_seconds']:6.2f} s   warm "
            f"{row['warm_wall_seconds_per_scenario']:6.3f} s/scenario wall "
            f"{row['warm_cpu_seconds_per_scenario']:6.3f} CPU  "
            f"{row['warm_iterations_per_scenario']:7.0f} iterations/scenario  "
            f"{row['cpu_ms_per_iteration']:.2f} ms/iteration"
        )
    if parallel:
        print(f"{args.workers} workers (wall including start-up and builds):")
    for row in parallel:
        starts = [w["chain_starts"] for w in row["per_worker"]]
        busy = [round(w["busy_seconds"], 1) for w in row["per_worker"]]
        print(
            f"  {row['layout']:14s} {row['wall_seconds_per_scenario']:6.3f} s/scenario  "
            f"chain starts per worker {starts}  busy {busy} s"
        )
    print(f"objectives, largest relative difference to the first run: {agreement}")
    if any(not math.isfinite(v) or v > 1e-9 for v in agreement.values()):
        print("WARNING: objectives differ by more than 1e-9 relative", file=sys.stderr)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
