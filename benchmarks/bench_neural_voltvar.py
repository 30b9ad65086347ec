"""Neural 2S-VVO on the IEEE 123 study case: surrogate MILP (IBP vs uniform big-M) and exact
evaluation of its decision, against a known EF value (paper B Table IV analog).

Usage::

    python benchmarks/bench_neural_voltvar.py NETWORK.pt --monitor lm --scenarios 10 \\
        [--seed 0] [--ef-objective V] [--big-m] [--workers 2] [--time-limit 60]

``--feasibility-rounds R`` adds the recourse rows of the scenarios the decision is infeasible in
and solves again, up to R times (``solve_neural_voltvar``; ``nn_wall_s`` is then the time of
all surrogate MILPs, ``eval_s`` of all evaluations).

``--neuron-bounds lp`` tightens the IBP bounds by LP over the first stage's relaxation within
``--tighten-time-limit`` seconds (default half the budget; ``bound_s``); the ``ibp_*`` keys then
describe the LP-tightened embedding (``neuron_bounds`` says which).

Prints one JSON line: NN binaries (IBP and, with --big-m, the uniform big-M baseline), MILP
seconds, surrogate objective, exact objective (one recourse MILP per scenario), gap to the EF.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace

import numpy as np

from gridrecourse.execution import make_executor
from gridrecourse.formulation.relu import BoundMode
from gridrecourse.learning.voltvar_data import initial_first_stage, neutral_first_stage
from gridrecourse.learning.voltvar_net import load_surrogate
from gridrecourse.methods.neural_voltvar import solve_neural_voltvar
from gridrecourse.problems.volt_var import Monitor, VoltVarConfig, VoltVarProblem
from gridrecourse.solvers.options import SolverOptions

FEEDER = "ieee123/IEEE123Switches.dss"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("network")
    ap.add_argument("--monitor", default="lm")
    ap.add_argument("--scenarios", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--ef-objective", type=float)
    ap.add_argument("--big-m", action="store_true")
    ap.add_argument("--no-eval", action="store_true")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--time-limit", type=float, default=60.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--mip-feasibility-tolerance", type=float, default=1e-9,
                    help="of every MILP, as the voltvar command (1e-9)")  # fmt: skip
    ap.add_argument("--no-kernel-starts", action="store_true",
                    help="MIP start candidates: neutral and do-nothing only")  # fmt: skip
    ap.add_argument("--feasibility-rounds", type=int, default=0,
                    help="rounds adding infeasible scenarios' rows (0: paper B)")  # fmt: skip
    ap.add_argument("--neuron-bounds", choices=[m.value for m in BoundMode], default="ibp",
                    help="bounds of the embedded network (lp: IBP tightened by LP)")  # fmt: skip
    ap.add_argument("--tighten-time-limit", type=float,
                    help="seconds of the LP tightening (default half the budget)")  # fmt: skip
    ap.add_argument("--save-x", help="write the decision's first-stage vector here (.npy)")
    ap.add_argument("--out", help="also append the JSON line to this file")
    args = ap.parse_args()
    base = os.environ.get("GRIDRECOURSE_FEEDER_DIR", "../shared/feeders")
    t0 = time.perf_counter()
    problem = VoltVarProblem.from_feeder(
        os.path.join(base, FEEDER), args.scenarios,
        VoltVarConfig(monitor=Monitor(args.monitor)), seed=args.seed,
    )  # fmt: skip
    build = time.perf_counter() - t0
    surrogate = load_surrogate(args.network)
    tol = args.mip_feasibility_tolerance
    options = SolverOptions(mip_gap=1e-4, time_limit=args.time_limit, threads=args.threads,
                            mip_feasibility_tolerance=tol)  # fmt: skip
    rec = {"monitor": args.monitor, "n_scenarios": args.scenarios, "seed": args.seed,
           "build_s": build, "training_samples": surrogate.info.get("n_samples"),
           "mip_feasibility_tolerance": tol}  # fmt: skip
    with make_executor("process", n_workers=args.workers) as ex:
        t1 = time.perf_counter()
        start = None  # the defaults: neutral, do-nothing and the network's kernels
        if args.no_kernel_starts:  # ablation: what the MILP finds without the kernels
            start = [neutral_first_stage(problem), initial_first_stage(problem)]
        r = solve_neural_voltvar(
            problem, surrogate, options, evaluate=not args.no_eval, executor=ex,
            eval_options=replace(options, time_limit=120.0),
            start=start, feasibility_rounds=args.feasibility_rounds,
            mode=BoundMode(args.neuron_bounds), tighten_time_limit=args.tighten_time_limit,
        )  # fmt: skip
        rec |= {
            "kernel_starts": not args.no_kernel_starts,
            "neuron_bounds": args.neuron_bounds,
            "bound_s": r.bound_seconds,
            "mip_gap": r.mip_gap,
            "nn_wall_s": r.encode_seconds + r.solve_seconds,
            "ibp_binaries": r.n_binaries,
            "ibp_stable": r.stable_neurons,
            "ibp_milp_s": r.solve_seconds,
            "ibp_status": r.status,
            "surrogate_objective": r.surrogate_objective,
            "objective": r.objective,
            "eval_s": r.evaluate_seconds,
            "feasibility_rounds": args.feasibility_rounds,
            "rounds": r.rounds,
            "feasibility_scenarios": list(r.feasibility_scenarios),
            "n_infeasible": r.n_infeasible,
            "first_stage_cost": r.first_stage_cost,
            "taps": problem.decode(r.x).taps,
            "switches": problem.decode(r.x).switch_states,
            "total_s": time.perf_counter() - t1,
        }
    if args.ef_objective is not None and r.objective is not None:
        rec["gap_pct"] = 100.0 * (r.objective - args.ef_objective) / abs(args.ef_objective)
    if args.big_m:
        b = solve_neural_voltvar(problem, surrogate, options, mode=BoundMode.BIG_M,
                                 evaluate=False)  # fmt: skip
        rec |= {
            "bigm_binaries": b.n_binaries,
            "bigm_milp_s": b.solve_seconds,
            "bigm_status": b.status,
            "bigm_surrogate_objective": b.surrogate_objective,
        }
    if args.save_x:
        np.save(args.save_x, r.x)
    rec["method"], rec["argv"] = "nn", sys.argv[1:]
    line = json.dumps(rec, default=float)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write(line + "\n")
    print(line, flush=True)


if __name__ == "__main__":
    main()
