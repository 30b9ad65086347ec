"""Build cost of the 24-period LinDist3Flow OPF: ieee123 vs ieee9500, time per node.

Build = math model (per-unit arrays) + LinDist3Flow blocks + LP assembly + hand-over to HiGHS
(``passModel``), i.e. everything before the first simplex iteration. The claim is linear growth:
the ratio of build time per node (ieee9500 / ieee123) must stay at or below 2.

Usage::

    python benchmarks/bench_build.py [--repeat 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

from gridrecourse.evaluation.validation import prepare_for_linear_model
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.problems.opf import OPFConfig, build_opf
from gridrecourse.problems.profiles import bundled_day
from gridrecourse.solvers.options import SolverOptions

FEEDERS = ("ieee123", "ieee9500")
MAX_RATIO = 2.0


def build_seconds(name: str, repeat: int) -> tuple[float, int, int]:
    """Median build time (s), node count and LP size (rows) of the 24-period OPF."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feeder = prepare_for_linear_model(resolve_feeder_spec(name))
    day = bundled_day()
    config = OPFConfig(load_profile=day.load, pv_profile=day.pv, price_per_mwh=day.price_per_mwh)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        math = build_math_feeder(feeder)
        opf = build_opf(math, config)
        opf.model._highs = opf.model._build(SolverOptions())  # hand-over to HiGHS
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), math.n_nodes, opf.model.n_rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = {}
    for name in FEEDERS:
        seconds, nodes, n_rows = build_seconds(name, args.repeat)
        rows[name] = {
            "build_seconds": seconds,
            "n_nodes": nodes,
            "n_rows": n_rows,
            "us_per_node": 1e6 * seconds / nodes,
        }
    ratio = rows["ieee9500"]["us_per_node"] / rows["ieee123"]["us_per_node"]
    summary = {
        "feeders": rows,
        "time_per_node_ratio_9500_over_123": ratio,
        "max_ratio": MAX_RATIO,
        "linear": ratio <= MAX_RATIO,
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{'feeder':<10} {'nodes':>7} {'LP rows':>9} {'build s':>9} {'us/node':>9}")
        for name, r in rows.items():
            print(
                f"{name:<10} {r['n_nodes']:>7} {r['n_rows']:>9} {r['build_seconds']:>9.3f} "
                f"{r['us_per_node']:>9.1f}"
            )
        print(f"time-per-node ratio ieee9500/ieee123 = {ratio:.2f} (must be <= {MAX_RATIO})")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    sys.exit(main())
