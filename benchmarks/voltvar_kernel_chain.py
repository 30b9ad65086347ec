"""The NESTED kernel chain of ``voltvar-train`` on its own: which first stages it finds.

    python benchmarks/voltvar_kernel_chain.py --monitor mm --seeds 1,2 [--kernels 2] \\
        [--pool 40] [--kernel-time-limit 300] [--out FILE.jsonl]

For every data seed, computes the kernels ``voltvar-train --kernel-selection nested`` would
(same pool, same rule, in-process, one thread) and prints one JSON line per kernel: the pool
scenarios it was solved on, its first-stage cost, the hours each switch is open, and in how
many pool scenarios it is infeasible (the last kernel is evaluated here too). The chain's
progress files go to ``--dir`` (resumable), so the lines are those of the data generation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from gridrecourse.execution import InProcessExecutor
from gridrecourse.learning.voltvar_data import (
    DataConfig,
    _pool_kernels,
    _recourse_values,
    instance_problem,
)
from gridrecourse.problems.volt_var import Monitor, VoltVarConfig, VoltVarProblem

FEEDER = "ieee123/IEEE123Switches.dss"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--monitor", default="mm")
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--kernels", type=int, default=2)
    ap.add_argument("--pool", type=int, default=40)
    ap.add_argument("--kernel-time-limit", type=float, default=300.0)
    ap.add_argument("--recourse-time-limit", type=float, default=30.0)
    ap.add_argument("--dir", default="runs/kernel-chain")
    ap.add_argument("--out", help="also append the JSON lines to this file")
    args = ap.parse_args()
    base = os.environ.get("GRIDRECOURSE_FEEDER_DIR", "../shared/feeders")
    problem = VoltVarProblem.from_feeder(
        os.path.join(base, FEEDER), 2, VoltVarConfig(monitor=Monitor(args.monitor)), seed=0
    )
    for seed in (int(s) for s in args.seeds.split(",")):
        cfg = DataConfig(
            n_kernels=args.kernels, kernel_selection="nested", kernel_pool=args.pool,
            kernel_time_limit=args.kernel_time_limit, time_limit=args.recourse_time_limit,
            seed=seed,
        )  # fmt: skip
        folder = Path(args.dir) / f"{args.monitor}-seed{seed}"
        folder.mkdir(parents=True, exist_ok=True)
        t0 = time.perf_counter()
        with InProcessExecutor() as ex:
            say = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
            xs = _pool_kernels(problem, cfg, folder / "partial.npz", say, ex)
            z = np.load(folder / "partial.npz")
            pool = instance_problem(problem, cfg, -1, cfg.kernel_pool)
            last = _recourse_values(
                ex, pool, [(xs[-1], s) for s in range(cfg.kernel_pool)],
                cfg.solver_options(cfg.time_limit),
            )  # fmt: skip
        costs = [*z["cost"], last]
        for k, x in enumerate(xs):
            d = problem.decode(x)
            line = {
                "monitor": args.monitor, "seed": seed, "kernel": k + 1,
                "pool_scenarios": z["scenario"][: k + 1].tolist(),
                "first_stage_cost": float(problem.first_stage.cost @ x),
                "open_hours": {n: int((1 - d.switch_closed[i]).sum())
                               for i, n in enumerate(d.switch_names)
                               if not d.switch_closed[i].all()},
                "pool_infeasible": int((~np.isfinite(costs[k])).sum()),
                "chain_seconds": time.perf_counter() - t0,
            }  # fmt: skip
            print(json.dumps(line), flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(json.dumps(line) + "\n")


if __name__ == "__main__":
    main()
