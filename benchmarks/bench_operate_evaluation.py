"""Post-evaluation of a day-ahead schedule: the two-stage contract's recourse model against the
builder's fixed-schedule LP (the former per-schedule loop), on the same days.

Both recourse models are built once and warm-started day after day; their solves are
**interleaved** (day k on the fixed-schedule LP, then on the contract's model), so a busy machine
slows both alike, and timed in CPU seconds (``time.process_time``: under load the wall time
mostly measures the wait for a core). Reports the CPU seconds of the 60 solves of each, the
median warm solve and the largest difference of the recourse costs (they are the same LP).

Usage::

    python benchmarks/bench_operate_evaluation.py [--feeders case33bw,ieee123] [--out FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from gridrecourse.methods.igdt import OperationInstance, operation_problem, solve_dt
from gridrecourse.network.prepare import prepare_feeder
from gridrecourse.physics.lindistflow import LossTerms
from gridrecourse.problems.operation import (
    build_operation_model,
    bundled_operation_data,
    default_case,
    default_operating_point,
)


def bench(name: str) -> dict:
    """Interleaved recourse solves of the DT schedule on the held-out days."""
    load_start = os.getloadavg()[0]
    math = prepare_feeder(name, default_operating_point(name)).math
    data = bundled_operation_data()
    inst = OperationInstance(math, default_case(name), data)
    dt = solve_dt(inst)
    s = dt.schedule
    load, pv = data.load[data.test_days], data.pv[data.test_days]
    # the builder's recourse with the first stage fixed by column bounds
    om = build_operation_model(
        math,
        inst.case,
        data.price_per_mwh,
        n_load_sources=inst.n_load,
        n_pv_sources=inst.n_pv,
        n_copies=1,
        with_plan=False,
        fixed_schedule=s,
        physics=inst.physics,
        peak_multiplier=float(load.max()),
    )
    om.model.set_cost(om.recourse_cost, 1.0)
    ess = s.discharge_kw - s.charge_kw
    losses = om.losses_at(*om.reference_net_load(load, pv, s.dg_kw, s.dg_kvar, ess))
    # the contract: the held-out days as scenarios, losses at the schedule's injections
    problem = operation_problem(inst, dt).with_loss_reference(s)
    x = problem.first_stage_vector(s)
    model = problem.build_second_stage()
    T, n = om.n_periods, len(load)
    cpu = {"fixed_schedule_lp": np.zeros(n), "contract": np.zeros(n)}
    cost = {"fixed_schedule_lp": np.zeros(n), "contract": np.zeros(n)}
    for k in range(n):
        om.set_uncertain(load[k][None], pv[k][None])
        cols = slice(k * T, (k + 1) * T)
        om.set_losses(LossTerms(losses.flow[:, cols], losses.drop[:, cols]))
        c0 = time.process_time()
        sol = om.model.solve()
        cpu["fixed_schedule_lp"][k] = time.process_time() - c0
        cost["fixed_schedule_lp"][k] = sol.objective
        c0 = time.process_time()
        res = model.solve(x, k)
        cpu["contract"][k] = time.process_time() - c0
        cost["contract"][k] = res.objective
    return {
        "feeder": name,
        "n_days": n,
        **{f"{key}_cpu_seconds": float(v.sum()) for key, v in cpu.items()},
        **{f"{key}_median_warm_cpu_seconds": float(np.median(v[1:])) for key, v in cpu.items()},
        "max_abs_cost_difference": float(
            np.max(np.abs(cost["contract"] - cost["fixed_schedule_lp"]))
        ),
        "load_average_start": load_start,
        "load_average_end": os.getloadavg()[0],
        "cpu_count": os.cpu_count(),
    }


def main() -> None:
    """Run the comparison on the given feeders and print (or write) the JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeders", default="case33bw,ieee123")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    rows = [bench(name) for name in args.feeders.split(",")]
    text = json.dumps(rows, indent=2)
    if args.out:
        Path(args.out).write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
