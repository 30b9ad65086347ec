"""Benchmark: SAA (Mak–Morton–Wood) bounds around SPAR with the strong lower bounds of issue 14.

For every batch size ``N`` (``--batch-sizes``) it runs
:func:`gridrecourse.methods.spar.spar_statistical_bounds` with ``K = --replications`` batches:
UB samples are SPAR decisions of the batches evaluated exactly on ALL scenarios; LB samples are
the largest of the batch EF's MIP dual bound (started from the batch's SPAR decision,
``--batch-ef-time-limit``), the Lagrangian bound at the SPAR decision's subgradients (one
MILP per distinct scenario, dual bounds) and the integer L-shaped bound (``--l-shaped``,
default on; multi-cut Benders master seeded at the batch's SPAR decision, its MIP dual bound;
``--l-shaped-iterations``, ``--l-shaped-time-limit`` per batch, default
``--batch-ef-time-limit``). Every LB sample carries its
provenance (method, value, iterations, subproblem or master gaps, incumbent, time).

Paired gap (Mak–Morton–Wood's multiple replication procedure): the candidate ``x̂`` is SPAR on
ALL scenarios (seed ``--bounds-seed``, the decision ``siting --method spar`` gives), evaluated
exactly once; per batch ``G_k = Σ_j w_j f(x̂, ω_kj) − LB_k``; the output has the one-sided 95 %
bound ``gap_estimate`` (objective units) and ``bounds_gap_mrp_pct`` (% of ``f(x̂)``) next to the
interval gap ``bounds_gap_pct``. The candidate is solved once per run (not per batch size).

Batches (``--batch-sampling``, :mod:`gridrecourse.evaluation.batch_sampling`): ``stratified``
(default; needs the candidate: its per-scenario costs rank the scenarios, the far-out ones are in
every batch, one draw per equal-probability stratum of the rest) or ``iid`` (paper C).

Resumable: each batch size is written to ``--out-dir/bounds_<feeder>_S<S>_N<N>.json`` once it
finishes and skipped when that file exists; ``--summary`` collects all into one file.

Usage::

    nice python benchmarks/bench_bounds.py --feeder ieee123 --batch-sizes 50,150,200,100 \\
        --replications 3 --out-dir benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from gridrecourse.evaluation.batch_sampling import BatchSampling
from gridrecourse.execution import ExecutorKind, make_executor
from gridrecourse.methods.l_shaped import LShapedConfig
from gridrecourse.methods.spar import SPARConfig, solve_spar, spar_statistical_bounds
from gridrecourse.problems.siting import (
    PVSitingProblem,
)
from gridrecourse.solvers.options import SolverOptions
from siting_instance import add_instance_arguments, siting_instance


def log(msg: str) -> None:
    """Progress on stderr."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def run_batch(
    problem: PVSitingProblem, args: argparse.Namespace, batch: int, executor, candidate
) -> dict:
    """One batch size: intervals, gaps and the provenance of every lower-bound sample."""
    b = spar_statistical_bounds(
        problem,
        SPARConfig(seed=args.bounds_seed),
        batch_size=batch,
        n_replications=args.replications,
        executor=executor,
        ef_options=SolverOptions(mip_gap=args.ef_gap, time_limit=args.batch_ef_time_limit),
        lagrangian=not args.no_lagrangian,
        ef_start=not args.no_ef_start,
        batch_ef=not args.no_batch_ef,
        l_shaped=args.l_shaped,
        l_shaped_config=LShapedConfig(
            max_iterations=args.l_shaped_iterations,
            time_limit=args.l_shaped_time_limit or args.batch_ef_time_limit,
        ),
        candidate=candidate,
        sampling=BatchSampling(args.batch_sampling),
    )
    paired = b.paired
    return {
        "batch_size": batch,
        "replications": args.replications,
        "batch_sampling": b.sampling.value,
        "take_all": b.take_all,
        "ub_ci": [b.upper.low, b.upper.high],
        "lb_ci": [b.lower.low, b.lower.high],
        "ub_mean": b.upper.mean,
        "lb_mean": b.lower.mean,
        "bounds_gap": b.gap,
        "bounds_gap_pct": b.gap_pct,
        "gap_estimate": b.gap_estimate,
        "bounds_gap_mrp_pct": b.gap_estimate_pct,
        "gap_samples": None if paired is None else paired.samples,
        "candidate_batch_values": None if paired is None else paired.candidate_batch_values,
        "candidate_objective": None if candidate is None else candidate.expected_objective,
        "lb_incumbents": b.lower_incumbents,
        "ub_samples": b.upper_samples,
        "lb_samples": b.lower_samples,
        "lb_sources": [s.value for s in b.lower_sources],
        "lb_provenance": [[p.as_dict() for p in rep] for rep in b.lower_provenance],
        "spar_seconds": b.spar_seconds,
        "lb_seconds": b.ef_seconds,
        "wall_seconds": b.wall_seconds,
    }


def _path(out: Path, args: argparse.Namespace, batch: int) -> Path:
    """The result file of one batch size (its existence skips the batch size: resume)."""
    return out / f"bounds_{args.feeder}_S{args.scenarios}_N{batch}.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_instance_arguments(p)
    p.add_argument("--batch-sizes", default="50,100,150,200")
    p.add_argument("--replications", type=int, default=3)
    p.add_argument("--bounds-seed", type=int, default=0)
    p.add_argument(
        "--batch-sampling",
        choices=[k.value for k in BatchSampling],
        default=BatchSampling.STRATIFIED.value,
        help="i.i.d. batches (paper C) or stratified on the candidate's scenario values",
    )
    p.add_argument("--ef-gap", type=float, default=1e-4)
    p.add_argument("--batch-ef-time-limit", type=float, default=300.0)
    p.add_argument("--no-lagrangian", action="store_true")
    p.add_argument("--no-ef-start", action="store_true")
    p.add_argument("--no-batch-ef", action="store_true", help="no batch extensive forms")
    p.add_argument(
        "--l-shaped",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="integer L-shaped lower bound per batch (default on)",
    )
    p.add_argument("--l-shaped-iterations", type=int, default=50)
    p.add_argument(
        "--l-shaped-time-limit",
        type=float,
        default=None,
        help="s per batch (default: --batch-ef-time-limit)",
    )
    p.add_argument(
        "--no-candidate",
        action="store_true",
        help="skip SPAR on all scenarios (then no paired gap estimate; needs --batch-sampling iid)",
    )
    p.add_argument("--executor", choices=[k.value for k in ExecutorKind], default="process")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--out-dir", default="benchmarks/results")
    p.add_argument("--summary", default=None, help="also write all batch sizes to this file")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    batches = [int(b) for b in args.batch_sizes.split(",") if b]
    t0 = time.perf_counter()
    problem = siting_instance(args)
    log(f"built {args.feeder}: {args.scenarios} scenarios, {problem.n_sites} sites")
    meta = {
        "benchmark": "bench_bounds",
        "argv": sys.argv[1:] if argv is None else argv,
        "feeder": args.feeder,
        "n_scenarios": args.scenarios,
        "n_sites": problem.n_sites,
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
    }
    rows = []
    with make_executor(ExecutorKind(args.executor), n_workers=args.workers) as executor:
        candidate = None
        todo = [b for b in batches if not _path(out, args, b).exists()]
        if todo and not args.no_candidate:
            t_c = time.perf_counter()
            spar = solve_spar(problem, SPARConfig(seed=args.bounds_seed), executor=executor)
            candidate = spar.evaluation
            meta["candidate"] = {
                "method": "spar on all scenarios",
                "seed": args.bounds_seed,
                "units": spar.decision.units,
                "objective": spar.objective,
                "seconds": time.perf_counter() - t_c,
            }
            log(f"candidate: SPAR on all scenarios, objective {spar.objective:.6g}")
        for batch in batches:
            path = _path(out, args, batch)
            if path.exists():
                log(f"N = {batch}: {path} exists, skipped (resume)")
                rows.append(json.loads(path.read_text())["row"])
                continue
            log(f"N = {batch}, K = {args.replications}")
            row = run_batch(problem, args, batch, executor, candidate)
            log(
                f"N = {batch}: UB [{row['ub_ci'][0]:.4f}, {row['ub_ci'][1]:.4f}] LB "
                f"[{row['lb_ci'][0]:.4f}, {row['lb_ci'][1]:.4f}] BG {row['bounds_gap_pct']:.2f} % "
                f"MRP gap {row['bounds_gap_mrp_pct']:.2f} % "
                f"sources {row['lb_sources']} ({row['wall_seconds']:.0f} s)"
            )
            path.write_text(json.dumps(_jsonable({**meta, "row": row}), indent=1))
            rows.append(row)
    if args.summary:
        Path(args.summary).write_text(
            json.dumps(
                _jsonable({**meta, "rows": rows, "total_seconds": time.perf_counter() - t0}),
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
