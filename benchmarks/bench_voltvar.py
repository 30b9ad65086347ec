"""Paper B Table IV analog for the baselines: EF and PH on the IEEE 123 2S-VVO.

One run per call (append one JSON line to ``--out``)::

    python benchmarks/bench_voltvar.py lm ef --scenarios 10 --time-limit 600
    python benchmarks/bench_voltvar.py lm efk --scenarios 10 --time-limit 600   # kernel start
    python benchmarks/bench_voltvar.py lm ph --scenarios 10 --time-limit 60 --iterations 2
    python benchmarks/bench_voltvar.py lm sa --scenarios 100 --time-limit 600   # exact reference

``ef``: the extensive form from the neutral start (:meth:`VoltVarProblem.neutral_start`);
``efk``: first the EF of scenarios 0–2 (half the time limit, no start), its first stage then the
start of the full EF; ``ph``: progressive hedging with MILP subproblems (consensus on taps and
switches, ``ρ`` per unit², subproblem time limit ``--time-limit``) from the neutral start;
``sa``: scenario addition (restricted EFs over a growing subset, exact with a proven gap: the
reference optimum of the tables) from the neutral start. HiGHS runs on ``--threads`` (1) so
that two runs share the 2 cores fairly.
Every first stage is evaluated exactly (one recourse MILP per scenario, 120 s each at most).
Requires ``GRIDRECOURSE_FEEDER_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

from gridrecourse.errors import GridRecourseError
from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging
from gridrecourse.methods.scenario_addition import solve_scenario_addition
from gridrecourse.problems.volt_var import PRIMARY_BLOCKS, VoltVarConfig, VoltVarProblem
from gridrecourse.solvers.highs import solver_log_file
from gridrecourse.solvers.options import SolverOptions

#: A HiGHS MIP progress line: source letter, node counts, bounds, gap …, time (s).
_PROGRESS = re.compile(
    r"^\s*([A-Za-z])?\s+\d+\s+\d+\s+\d+\s+[\d.]+%\s+(\S+)\s+(\S+)\s+.*?([\d.]+)s\s*$"
)


def incumbent_trajectory(log: str) -> list[tuple[float, float]]:
    """``(seconds, incumbent)`` each time HiGHS's best solution improved (from its MIP log):
    Table VI's "time for the EF to reach a gap" is read off it."""
    out: list[tuple[float, float]] = []
    for line in log.splitlines():
        m = _PROGRESS.match(line)
        if not m:
            continue
        try:
            best = float(m.group(3))
        except ValueError:  # "inf" before the first incumbent parses; anything else skips
            continue
        if np.isfinite(best) and (not out or best < out[-1][1] - 1e-9):
            out.append((float(m.group(4)), best))
    return out


def main() -> None:
    """Run one (monitor, method) case and append its JSON line."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("monitor", choices=("lm", "mm", "fm"))
    ap.add_argument("method", choices=("ef", "efk", "ph", "sa"))
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--start-x", help="ef: a first-stage vector (.npy) as the MIP start")
    ap.add_argument("--scenarios", type=int, default=10)
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--rho", type=float, default=100.0)
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sa-kernels", action="store_true",
                    help="sa: each added scenario's own master first")  # fmt: skip
    ap.add_argument("--mip-feasibility-tolerance", type=float,
                    help="HiGHS's for every MILP (default: HiGHS's, 1e-6)")  # fmt: skip
    ap.add_argument("--out", default="benchmarks/results/voltvar_ieee123.jsonl")
    args = ap.parse_args()
    feeder = Path(os.environ["GRIDRECOURSE_FEEDER_DIR"]) / "ieee123" / "IEEE123Switches.dss"
    t0 = time.perf_counter()
    p = VoltVarProblem.from_feeder(feeder, args.scenarios, VoltVarConfig(monitor=args.monitor),
                                   seed=args.seed)  # fmt: skip
    rec: dict = {"monitor": args.monitor, "method": args.method, "n_scenarios": args.scenarios,
                 "seed": args.seed,
                 "time_limit_s": args.time_limit, "build_s": time.perf_counter() - t0}  # fmt: skip
    tol = args.mip_feasibility_tolerance
    rec["mip_feasibility_tolerance"] = tol
    options = SolverOptions(mip_gap=1e-4, time_limit=args.time_limit, threads=args.threads,
                            mip_feasibility_tolerance=tol)  # fmt: skip
    eval_options = SolverOptions(mip_gap=1e-4, time_limit=120, threads=args.threads,
                                 mip_feasibility_tolerance=tol)  # fmt: skip
    try:
        if args.method == "ph":
            config = PHConfig(rho=args.rho, max_iterations=args.iterations,
                              integer_recourse=True, consensus_blocks=PRIMARY_BLOCKS)  # fmt: skip
            r = solve_progressive_hedging(p, config, options=options, start=p.neutral_start())
            rec.update(status=r.status.value, iterations=r.iterations, solve_s=r.wall_seconds,
                       wait_and_see_bound=r.lower_bound)  # fmt: skip
        elif args.method == "sa":
            r = solve_scenario_addition(
                p, options, start=p.neutral_start(), time_limit=args.time_limit,
                eval_options=eval_options, log=lambda s: print(s, file=sys.stderr, flush=True),
                scenario_kernels=args.sa_kernels,
            )  # fmt: skip
            rec.update(sa_objective=r.objective, sa_bound=r.bound, sa_gap_pct=100 * r.gap,
                       status=r.status.value, solve_s=r.wall_seconds, rounds=len(r.rounds),
                       subset=list(r.rounds[-1].scenarios), sa_kernels=args.sa_kernels,
                       kernels=[{"scenario": k.scenarios[0], "objective": k.master_objective,
                                 "value": k.value, "n_infeasible": k.n_infeasible,
                                 "master_s": k.master_seconds, "eval_s": k.evaluate_seconds}
                                for k in r.kernels],
                       round_s=[[x.master_seconds, x.evaluate_seconds]
                                for x in r.rounds])  # fmt: skip
        else:
            start = p.neutral_start()
            if args.method == "efk":
                t1 = time.perf_counter()
                half = SolverOptions(mip_gap=1e-4, time_limit=args.time_limit / 2,
                                     threads=args.threads)  # fmt: skip
                kernel = solve_extensive_form(p, half, scenarios=[0, 1, 2])
                start = kernel.x
                rec.update(kernel_objective=kernel.objective, kernel_gap_pct=100 * kernel.gap,
                           kernel_s=time.perf_counter() - t1)  # fmt: skip
            if args.start_x:  # e.g. the neural method's decision (Table VI: NN-to-optimal)
                start = np.load(args.start_x)
                rec["start_x"] = args.start_x
            log = Path(args.out).with_suffix(f".{args.monitor}{args.scenarios}.highs.log")
            log.unlink(missing_ok=True)
            with solver_log_file(log):
                r = solve_extensive_form(p, options, start=start)
            rec.update(ef_objective=r.objective, ef_bound=r.bound, ef_gap_pct=100 * r.gap,
                       status=r.status.value, solve_s=r.wall_seconds, n_rows=r.n_rows,
                       n_cols=r.n_cols)  # fmt: skip
            rec["incumbents"] = incumbent_trajectory(log.read_text())
        t1 = time.perf_counter()
        ev = evaluate_first_stage(p, r.x, options=eval_options, desc=None)
        d = p.decode(r.x)
        rec.update(objective=ev.expected_objective, eval_s=time.perf_counter() - t1,
                   n_infeasible=ev.n_infeasible, n_unresolved=ev.n_unresolved,
                   max_scenario_gap=float(np.max(ev.mip_gaps, initial=0.0, where=ev.feasible)),
                   first_stage_cost=float(p.first_stage.cost @ r.x), taps=d.taps,
                   switch_states=d.switch_states)  # fmt: skip
    except GridRecourseError as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
    rec["wall_s"] = time.perf_counter() - t0
    with open(args.out, "a") as fh:
        fh.write(json.dumps(rec, default=float) + "\n")
    print(json.dumps({k: v for k, v in rec.items() if k not in ("taps", "switch_states")},
                     default=float))  # fmt: skip


if __name__ == "__main__":
    main()
