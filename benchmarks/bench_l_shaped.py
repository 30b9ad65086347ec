"""Benchmark: the integer L-shaped loop on one SAA batch, master by master.

Draws the i.i.d. batches exactly as ``bench_bounds.py --batch-sampling iid`` does (seed
``--bounds-seed``), runs SPAR on batch ``--batch`` (the replication's seed), then
:func:`gridrecourse.methods.l_shaped.l_shaped_bound` seeded at SPAR's decision with its exact
batch values (no new solve), and prints per master: its MIP dual bound (the lower bound), the
exact batch value of its point, the best value (upper bound) and the seconds of the master
solve and of the evaluation of the batch. One process, in-process evaluations.

Usage::

    nice python benchmarks/bench_l_shaped.py --scenarios 96 --batch-size 24
    nice python benchmarks/bench_l_shaped.py --scenarios 1200 --batch-size 200
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace

import numpy as np

from gridrecourse.evaluation.batch_sampling import draw_batches
from gridrecourse.methods.l_shaped import LShapedConfig, SeedPoint, l_shaped_bound
from gridrecourse.methods.spar import SPARConfig, solve_spar
from siting_instance import add_instance_arguments, siting_instance


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_instance_arguments(p, scenarios=96)
    p.add_argument("--batch-size", type=int, default=24)
    p.add_argument("--replications", type=int, default=3, help="K of the draw (as bench_bounds)")
    p.add_argument("--batch", type=int, default=0, help="which of the K batches")
    p.add_argument("--bounds-seed", type=int, default=0)
    p.add_argument("--iterations", type=int, default=60)
    p.add_argument("--time-limit", type=float, default=None, help="s")
    args = p.parse_args(argv)
    problem = siting_instance(args)
    # the batches and run seeds of spar_statistical_bounds(config=SPARConfig(seed=bounds_seed),
    # sampling=BatchSampling.IID), i.e. bench_bounds --batch-sampling iid
    draw_seq, *run_seqs = np.random.SeedSequence(args.bounds_seed).spawn(args.replications + 1)
    draws = draw_batches(
        problem.probability, args.replications, args.batch_size, np.random.default_rng(draw_seq)
    )
    batch = draws.indices[args.batch]
    seed = int(run_seqs[args.batch].generate_state(1)[0])
    t0 = time.perf_counter()
    spar = solve_spar(
        problem, replace(SPARConfig(seed=args.bounds_seed), seed=seed), scenarios=batch
    )
    ev = spar.evaluation
    assert ev is not None
    row = {int(s): k for k, s in enumerate(ev.scenario_indices)}
    rows = [row[int(s)] for s in batch]
    print(
        f"{args.feeder}, {args.scenarios} scenarios, batch {args.batch} of N = {args.batch_size}: "
        f"SPAR {time.perf_counter() - t0:.1f} s, batch value of its decision "
        f"{float(np.mean(ev.objectives[rows])):.6f}"
    )
    res = l_shaped_bound(
        problem,
        batch,
        seeds=[SeedPoint(ev.x, ev.objectives[rows], ev.subgradients[rows])],
        config=LShapedConfig(max_iterations=args.iterations, time_limit=args.time_limit),
    )
    print(
        f"L-shaped: stop {res.stop.value}, LB {res.lower_bound:.7f}, UB {res.upper_bound:.7f}, "
        f"gap {res.gap:.2e}, {len(res.history)} masters, {res.n_optimality_cuts} cuts, "
        f"{res.seconds:.1f} s"
    )
    for h in res.history:
        print(
            f"{h.iteration:3d} LB {h.lower_bound:.6f} value {h.value:.6f} UB {h.upper_bound:.6f} "
            f"master {h.master_seconds:.2f} s eval {h.evaluation_seconds:.2f} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
