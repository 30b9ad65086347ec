"""Evaluate a recorded Volt-VAR decision exactly on another ieee123 instance.

Reads the ``taps`` (OpenDSS tap numbers per hour) and ``switch_states`` of a JSON record (a
line of ``bench_voltvar.py``'s output or a ``voltvar --json`` result), rebuilds the first stage
on the instance (monitor, scenarios, seed) and solves every scenario's recourse MILP::

    python benchmarks/voltvar_evaluate_decision.py voltvar/tol9.jsonl --line -1 \\
        --monitor fm --scenarios 50 --out voltvar/fm50_with_fm100_optimum.json

Used for Table IV: the decision scenario addition proves optimal at FM x 100, evaluated on the
FM x 50 instance, whose own scenario addition ended with the bound 500.000 but no first stage
of that value. Requires ``GRIDRECOURSE_FEEDER_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.problems.volt_var import VoltVarConfig, VoltVarProblem
from gridrecourse.solvers.options import SolverOptions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("record", help="JSON or JSON-lines file holding taps and switch_states")
    ap.add_argument("--line", type=int, default=-1, help="which line of a JSON-lines file (-1)")
    ap.add_argument("--monitor", choices=("lm", "mm", "fm"), required=True)
    ap.add_argument("--scenarios", type=int, required=True)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out")
    args = ap.parse_args()
    text = Path(args.record).read_text()
    try:
        rec = json.loads(text)  # one JSON object
    except json.JSONDecodeError:  # JSON lines
        rec = json.loads(text.strip().splitlines()[args.line])
    feeder = Path(os.environ["GRIDRECOURSE_FEEDER_DIR"]) / "ieee123" / "IEEE123Switches.dss"
    p = VoltVarProblem.from_feeder(
        feeder, args.scenarios, VoltVarConfig(monitor=args.monitor), seed=args.seed
    )
    numbers = np.array(list(rec["taps"].values()))  # OpenDSS tap numbers (R, T)
    positions = p.grid.column_of(numbers, list(rec["taps"])) - p.grid.start[:, None]
    x = p.first_stage_vector(positions, np.array(list(rec["switch_states"].values())))
    d = p.decode(x)
    if d.taps != rec["taps"] or d.switch_states != rec["switch_states"]:
        raise SystemExit("the rebuilt first stage does not decode to the recorded decision")
    options = SolverOptions(mip_gap=1e-4, time_limit=120, threads=1, mip_feasibility_tolerance=1e-9)
    t0 = time.perf_counter()
    ev = evaluate_first_stage(p, x, options=options, desc=None)
    out = {
        "record": args.record,
        "line": args.line,
        "monitor": args.monitor,
        "n_scenarios": args.scenarios,
        "seed": args.seed,
        "first_stage_cost": float(p.first_stage.cost @ x),
        "objective": ev.expected_objective,
        "n_infeasible": int(ev.n_infeasible),
        "n_unresolved": int(ev.n_unresolved),
        "eval_s": time.perf_counter() - t0,
    }
    line = json.dumps(out)
    if args.out:
        Path(args.out).write_text(line + "\n")
    print(line)


if __name__ == "__main__":
    main()
