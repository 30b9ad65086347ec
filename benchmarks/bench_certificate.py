"""Cost of the AC certificate of a 24-period decision: ieee123 and ieee9500.

The decision is the feeder's own operating day (loads at the bundled day's load profile, the
feeder's PV at the PV profile, every regulator at its model tap) with the linear model's
voltages of that day; :func:`gridrecourse.evaluation.certificate.certify` compiles the master
once, adds nothing new, and solves 24 AC power flows with controls off. Timed: the whole
``certify`` call (compile, snapshot, 24 pushes and solves, tables). Goals: ieee123 <= 2 s,
ieee9500 <= 30 s on 2 cores.

Usage::

    python benchmarks/bench_certificate.py [--repeat 2] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np

from gridrecourse.evaluation.certificate import DecisionSchedule, certify
from gridrecourse.network.prepare import prepare_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.problems.profiles import bundled_day

GOALS_SECONDS = {"ieee123": 2.0, "ieee9500": 30.0}


def day_schedule(name: str) -> tuple[object, DecisionSchedule]:
    """The feeder and its 24-period operating day as a decision schedule."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_feeder(name)
    math = prepared.math
    day = bundled_day()
    T = len(day.load)
    load_kw = np.outer(math.load_kw, day.load)
    load_kvar = np.outer(math.load_kvar, day.load)
    pv_kw = np.outer(np.maximum(math.pv_kva, 0.0), day.pv)
    pv_kvar = np.zeros_like(pv_kw)
    s = math.load_map @ (load_kw + 1j * load_kvar) - math.pv_map @ (pv_kw + 1j * pv_kvar)
    s = (
        s
        - (
            math.gen_map @ (math.gen_kw + 1j * math.gen_kvar)
            + math.storage_map @ (math.storage_kw + 1j * math.storage_kvar)
        )[:, None]
    )
    v = LinDist3Flow(math).solve(np.real(s) / math.s_base_kva, np.imag(s) / math.s_base_kva)
    reg = math.regulators
    taps = {
        (str(x), int(w)): np.full(T, float(t))
        for x, w, t in zip(reg.transformer_names, reg.winding, reg.tap, strict=True)
    }
    schedule = DecisionSchedule(
        n_periods=T,
        load_names=math.load_names,
        load_kw=load_kw,
        load_kvar=load_kvar,
        pv_names=math.pv_names,
        pv_kw=pv_kw,
        pv_kvar=pv_kvar,
        taps=taps,
        model=math,
        model_v_pu=np.asarray(v.v_pu).reshape(math.n_nodes, T),
    )
    return prepared.source, schedule


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--feeders", nargs="+", default=list(GOALS_SECONDS))
    args = parser.parse_args(argv)
    rows = []
    for name in args.feeders:
        feeder, schedule = day_schedule(name)
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            run = certify(feeder, schedule)
            times.append(time.perf_counter() - t0)
        cert = run.certificate
        rows.append(
            {
                "feeder": name,
                "n_periods": schedule.n_periods,
                "n_ac_nodes": len(run.nodes),
                "n_model_nodes": schedule.model.n_nodes,
                "seconds_median": float(np.median(times)),
                "seconds_all": times,
                "goal_seconds": GOALS_SECONDS.get(name),
                "meets_goal": bool(np.median(times) <= GOALS_SECONDS.get(name, np.inf)),
                **cert.summary(),
            }
        )
        if not args.json:
            print(
                f"{name}: {np.median(times):.2f} s for {schedule.n_periods} periods "
                f"(goal {GOALS_SECONDS.get(name)} s), converged {cert.converged}, "
                f"max |dV| {cert.ac_max_model_error_pu:.4f}",
                file=sys.stderr,
            )
    if args.json:
        print(json.dumps({"argv": sys.argv, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
