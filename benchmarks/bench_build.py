"""Build cost of the 24-period LinDist3Flow OPF: ieee123 vs ieee9500, time per node.

Build = math model (per-unit arrays) + formulation blocks + LP/MILP assembly + hand-over to
HiGHS (``passModel``), i.e. everything before the first simplex iteration. The claim is linear
growth: the ratio of build time per node (ieee9500 / ieee123) must stay at or below 2, for the
plain OPF (taps and switches fixed) and for the model with every regulator tap and every switch
state a decision per period (``--decisions``: :mod:`gridrecourse.formulation.taps`,
:mod:`gridrecourse.formulation.switches`; the feeders are built with ``keep_switches=True``).

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
from gridrecourse.formulation.switches import SwitchingOptions
from gridrecourse.formulation.taps import TapOptions
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.problems.opf import OPFConfig, build_opf
from gridrecourse.problems.profiles import bundled_day
from gridrecourse.solvers.options import SolverOptions

FEEDERS = ("ieee123", "ieee9500")
MAX_RATIO = 2.0
VARIANTS = ("fixed", "taps+switches")


def build_seconds(name: str, variant: str, repeat: int) -> dict:
    """Median build time (s), node count and model size of the 24-period OPF."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        feeder = prepare_for_linear_model(resolve_feeder_spec(name))
    day = bundled_day()
    config = OPFConfig(load_profile=day.load, pv_profile=day.pv, price_per_mwh=day.price_per_mwh)
    decisions = variant != "fixed"
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        math = build_math_feeder(feeder, keep_switches=decisions)
        opf = build_opf(
            math,
            config,
            taps=TapOptions() if decisions and math.regulators.n_regulators else None,
            switching=SwitchingOptions() if decisions and math.switches is not None else None,
        )
        opf.model._highs = opf.model._build(SolverOptions())  # hand-over to HiGHS
        times.append(time.perf_counter() - t0)
    seconds = float(np.median(times))
    n_switches = 0 if math.switches is None else math.switches.n_switches
    return {
        "build_seconds": seconds,
        "n_nodes": math.n_nodes,
        "n_rows": opf.model.n_rows,
        "n_cols": opf.model.n_cols,
        "n_regulators": math.regulators.n_regulators if decisions else 0,
        "n_switches": n_switches if decisions else 0,
        "us_per_node": 1e6 * seconds / math.n_nodes,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    summary: dict = {"max_ratio": MAX_RATIO, "variants": {}}
    ok = True
    for variant in VARIANTS:
        rows = {name: build_seconds(name, variant, args.repeat) for name in FEEDERS}
        ratio = rows["ieee9500"]["us_per_node"] / rows["ieee123"]["us_per_node"]
        ok &= ratio <= MAX_RATIO
        summary["variants"][variant] = {
            "feeders": rows,
            "time_per_node_ratio_9500_over_123": ratio,
            "linear": ratio <= MAX_RATIO,
        }
    if args.json:
        print(json.dumps(summary))
    else:
        print(
            f"{'variant':<14} {'feeder':<10} {'nodes':>7} {'rows':>9} {'cols':>9} "
            f"{'regs':>5} {'sw':>4} {'build s':>9} {'us/node':>9}"
        )
        for variant, block in summary["variants"].items():
            for name, r in block["feeders"].items():
                print(
                    f"{variant:<14} {name:<10} {r['n_nodes']:>7} {r['n_rows']:>9} "
                    f"{r['n_cols']:>9} {r['n_regulators']:>5} {r['n_switches']:>4} "
                    f"{r['build_seconds']:>9.3f} {r['us_per_node']:>9.1f}"
                )
            ratio = block["time_per_node_ratio_9500_over_123"]
            print(f"{variant}: time-per-node ratio ieee9500/ieee123 = {ratio:.2f} (<= {MAX_RATIO})")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
