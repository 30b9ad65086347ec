"""Speed of a full CL-DIGDT solve (all refinements to ε = 1e-4) on case33bw and ieee123.

Measures, per feeder, the wall-clock and CPU seconds (``time.process_time``, all threads of
this process) of DT (Λ0), IGDT and CL-DIGDT with paper D's settings (σ = 0.3, γ = 0.95, s = 1,
10 sub-intervals), the refinements of CL-DIGDT (Table III without the post-evaluation) and the
machine's load average at the start and end. The runs share 2 cores with other work: at a load
average far above 2 the wall time is inflated by the wait for a core, while the CPU time is what
the solve itself costs. Goal: CL-DIGDT <= 10 s on case33bw and <= 60 s on ieee123.

Usage::

    python benchmarks/bench_operate.py [--feeders case33bw,ieee123] [--out results/operate.json]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from gridrecourse.methods.igdt import (
    OperationInstance,
    solve_cl_digdt,
    solve_dt,
    solve_igdt,
)
from gridrecourse.network.prepare import prepare_feeder
from gridrecourse.problems.operation import (
    bundled_operation_data,
    default_case,
    default_operating_point,
)

GOAL_SECONDS = {"case33bw": 10.0, "ieee123": 60.0}


def bench(name: str, sigma: float = 0.3) -> dict:
    """Time DT, IGDT and the full CL-DIGDT on one feeder."""
    load_start = os.getloadavg()[0]
    math = prepare_feeder(name, default_operating_point(name)).math
    inst = OperationInstance(math, default_case(name), bundled_operation_data())
    t0, c0 = time.perf_counter(), time.process_time()
    dt = solve_dt(inst)
    t_dt, c_dt = time.perf_counter() - t0, time.process_time() - c0
    budget = (1 + sigma) * dt.cost
    t0, c0 = time.perf_counter(), time.process_time()
    ig = solve_igdt(inst, dt, budget)
    t_ig, c_ig = time.perf_counter() - t0, time.process_time() - c0
    t0, c0 = time.perf_counter(), time.process_time()
    cl = solve_cl_digdt(inst, dt, budget, epsilon=1e-4)
    t_cl, c_cl = time.perf_counter() - t0, time.process_time() - c0
    return {
        "feeder": name,
        "n_nodes": int(math.n_nodes),
        "lambda0": dt.cost,
        "budget": budget,
        "dt_seconds": t_dt,
        "dt_cpu_seconds": c_dt,
        "igdt_seconds": t_ig,
        "igdt_cpu_seconds": c_ig,
        "igdt_delta": ig.delta,
        "cl_digdt_seconds": t_cl,
        "cl_digdt_cpu_seconds": c_cl,
        "cl_digdt_alpha": cl.alpha,
        "cl_digdt_refinements": [
            {"alpha": it.alpha, "lb": it.lb, "ub": it.ub, "seconds": it.seconds}
            for it in cl.iterations
        ],
        "goal_seconds": GOAL_SECONDS.get(name),
        "meets_goal_wall": t_cl <= GOAL_SECONDS.get(name, float("inf")),
        "meets_goal_cpu": c_cl <= GOAL_SECONDS.get(name, float("inf")),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeders", default="case33bw,ieee123")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "operate.json"))
    args = parser.parse_args()
    rows = [bench(name.strip()) for name in args.feeders.split(",")]
    Path(args.out).write_text(json.dumps(rows, indent=2))
    for r in rows:
        print(
            f"{r['feeder']}: DT {r['dt_seconds']:.1f} s, IGDT {r['igdt_seconds']:.1f} s "
            f"(δ = {r['igdt_delta']:.4f}), CL-DIGDT {r['cl_digdt_seconds']:.1f} s "
            f"(α = {r['cl_digdt_alpha']:.4f}, {len(r['cl_digdt_refinements'])} refinements, "
            f"CPU {r['cl_digdt_cpu_seconds']:.1f} s), "
            f"goal {r['goal_seconds']} s, load {r['load_average_start']:.1f}"
        )


if __name__ == "__main__":
    main()
