"""Paper B learning curve: training-set size vs the neural method's exact gap (IEEE 123).

For every size ``n`` the surrogate is trained on the first ``n`` samples of one data set
(``gridrecourse voltvar-train --no-train`` wrote it), its surrogate MILP is solved on test
instances (problems of ``--scenarios`` scenarios drawn with ``--seeds``, not in the data), and
the decision is evaluated exactly (one recourse MILP per scenario); the gap is taken against
the exact reference optimum of each instance (``bench_voltvar.py ... sa``, read from
``--reference``)::

    python benchmarks/bench_voltvar_learning_curve.py DATA_DIR --monitor lm \\
        --sizes 50,100,200,400 --scenarios 10 --seeds 0 \\
        --reference benchmarks/results/voltvar_table4.jsonl \\
        --out benchmarks/results/voltvar_learning_curve.jsonl [--save-dir DIR]

One JSON line per (size, instance) is appended to ``--out`` (a finished pair is skipped on a
rerun: resumable). The data-generation time per sample is read from the data set itself.
Requires ``GRIDRECOURSE_FEEDER_DIR``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from gridrecourse.learning.voltvar_data import load_data
from gridrecourse.learning.voltvar_net import SurrogateConfig, train_surrogate
from gridrecourse.methods.neural_voltvar import solve_neural_voltvar
from gridrecourse.problems.volt_var import Monitor, VoltVarConfig, VoltVarProblem
from gridrecourse.solvers.options import SolverOptions

FEEDER = "ieee123/IEEE123Switches.dss"


def _reference(path: Path, monitor: str, n: int, seed: int) -> float | None:
    """The exact reference optimum (scenario addition, status optimal) of one instance."""
    if not path.exists():
        return None
    for line in path.read_text().splitlines():
        r = json.loads(line)
        if (r.get("method"), r.get("monitor"), r.get("n_scenarios"), r.get("seed", 0)) == (
            "sa", monitor, n, seed,
        ) and r.get("status") == "optimal":  # fmt: skip
            return float(r["objective"])
    return None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("data")
    ap.add_argument("--monitor", default="lm", choices=[m.value for m in Monitor])
    ap.add_argument("--sizes", default="50,100,200,400")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--infeasible-penalty", type=float, default=SurrogateConfig.infeasible_penalty,
                    help="recourse label of an infeasible scenario ($)")  # fmt: skip
    ap.add_argument("--scenarios", type=int, default=10)
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--time-limit", type=float, default=60.0, help="surrogate MILP (s)")
    ap.add_argument("--reference", default="benchmarks/results/voltvar_table4.jsonl")
    ap.add_argument("--out", default="benchmarks/results/voltvar_learning_curve.jsonl")
    ap.add_argument("--save-dir", help="keep every trained network here")
    args = ap.parse_args()
    base = Path(os.environ["GRIDRECOURSE_FEEDER_DIR"])
    data = load_data(args.data)
    out = Path(args.out)
    done = set()
    if out.exists():
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        done = {(r["n_samples_requested"], r["seed"]) for r in rows}
    config = VoltVarConfig(monitor=Monitor(args.monitor))
    train_problem = VoltVarProblem.from_feeder(base / FEEDER, 1, config, seed=0)
    per_sample = float(np.sum(data.seconds) / len(data.target))
    seeds = [int(s) for s in args.seeds.split(",")]
    for n in (int(s) for s in args.sizes.split(",")):
        if all((n, s) in done for s in seeds):
            continue
        t0 = time.perf_counter()
        cfg = replace(SurrogateConfig(), epochs=args.epochs, checkpoint_every=args.epochs,
                      infeasible_penalty=args.infeasible_penalty)  # fmt: skip
        surrogate, _ = train_surrogate(train_problem, data, cfg, max_samples=n,
                                           log=lambda s: print(s, file=sys.stderr))  # fmt: skip
        train_s = time.perf_counter() - t0
        if args.save_dir:
            surrogate.save(Path(args.save_dir) / f"{args.monitor}-n{n}.pt")
        for seed in seeds:
            if (n, seed) in done:
                continue
            problem = VoltVarProblem.from_feeder(base / FEEDER, args.scenarios, config, seed=seed)
            r = solve_neural_voltvar(
                problem, surrogate, SolverOptions(mip_gap=1e-4, time_limit=args.time_limit),
                eval_options=SolverOptions(mip_gap=1e-4, time_limit=120.0),
            )  # fmt: skip
            ref = _reference(Path(args.reference), args.monitor, args.scenarios, seed)
            gap = None
            if ref is not None and r.objective is not None and np.isfinite(r.objective):
                gap = 100.0 * (r.objective - ref) / abs(ref)
            rec = {
                "monitor": args.monitor, "n_samples_requested": n,
                "n_samples": surrogate.info["n_samples"], "seed": seed,
                "n_scenarios": args.scenarios, "epochs": args.epochs,
                "infeasible_penalty": args.infeasible_penalty,
                "final_val_mae": surrogate.info["final_val_mae"], "train_s": train_s,
                "data_seconds_per_sample": per_sample,
                "nn_s": r.encode_seconds + r.solve_seconds, "nn_status": r.status,
                "surrogate_objective": r.surrogate_objective, "objective": r.objective,
                "first_stage_cost": r.first_stage_cost, "reference": ref, "gap_pct": gap,
                "eval_s": r.evaluate_seconds, "argv": sys.argv[1:],
            }  # fmt: skip
            with out.open("a") as fh:
                fh.write(json.dumps(rec, default=float) + "\n")
            print(json.dumps(rec, default=float), flush=True)


if __name__ == "__main__":
    main()
