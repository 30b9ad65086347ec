"""Benchmark: SPAR's learning iterations on the ieee9500 P1 siting (issue 14, item 2).

Runs ``--iterations`` SPAR iterations of one seed without the exact evaluation, once per
``--variants`` entry, and records per iteration the first-stage (MILP) and second-stage
(recourse) seconds, whether it was an exploration iteration, and the decision and sampled
objective (so that the variants can be checked to follow the same path). Variants:

``after``   the current code: the reduced recourse LP, the first-stage model rebuilt when
            many slopes change.
``before``  the full recourse LP (``SitingConfig(reduced_recourse=False)``) and the
            first-stage slopes changed one coefficient at a time (``_REBUILD_CHANGES`` set
            out of reach), as before this session.

Whole runs cannot be interleaved; on a loaded machine compare CPU seconds, and read the load
average in the JSON.

Usage::

    nice python benchmarks/bench_spar_learning.py --iterations 20 \\
        --json benchmarks/results/spar_learning_ieee9500.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import numpy as np

import gridrecourse.methods.spar_first_stage as first_stage
from gridrecourse.methods.spar import SPARConfig, solve_spar
from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, TapSetting

VARIANTS = ("after", "before")


def run(variant: str, iterations: int, seed: int) -> dict[str, Any]:
    """One SPAR learning run of ``variant``."""
    rebuild = first_stage._REBUILD_CHANGES
    if variant == "before":
        first_stage._REBUILD_CHANGES = 10**12
    try:
        problem = PVSitingProblem.from_feeder(
            "ieee9500",
            1200,
            SitingConfig(reduced_recourse=variant == "after"),
            seed=0,
            taps=TapSetting.OPENDSS,
        )
        c0, t0 = time.process_time(), time.perf_counter()
        res = solve_spar(problem, SPARConfig(seed=seed, max_iterations=iterations, evaluate=False))
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    finally:
        first_stage._REBUILD_CHANGES = rebuild
    h = res.history
    return {
        "variant": variant,
        "wall_seconds": wall,
        "cpu_seconds": cpu,
        "first_stage_seconds": [r.first_stage_seconds for r in h],
        "second_stage_seconds": [r.second_stage_seconds for r in h],
        "explored": [bool(r.explored) for r in h],
        "sample_objectives": [r.sample_objective for r in h],
        "units": [int(u) for u in res.decision.units],
        "mean_second_stage_seconds": float(np.mean([r.second_stage_seconds for r in h])),
        "load_average_at_end": os.getloadavg(),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--iterations", type=int, default=20)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    runs = []
    for variant in filter(None, args.variants.split(",")):
        if variant not in VARIANTS:
            raise SystemExit(f"--variants: unknown {variant!r}; expected {VARIANTS}")
        row = run(variant, args.iterations, args.seed)
        print(
            f"{variant}: {row['wall_seconds']:.1f} s wall, {row['cpu_seconds']:.1f} s CPU, "
            f"first stage {np.round(row['first_stage_seconds'], 2).tolist()}, second stage "
            f"{row['mean_second_stage_seconds']:.3f} s per iteration",
            file=sys.stderr,
            flush=True,
        )
        runs.append(row)
    same = all(
        r["units"] == runs[0]["units"]
        and np.allclose(r["sample_objectives"], runs[0]["sample_objectives"], rtol=1e-9)
        for r in runs
    )
    result = {"argv": sys.argv[1:] if argv is None else argv, "runs": runs, "same_path": bool(same)}
    print(f"same decisions and sampled objectives (1e-9): {same}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
