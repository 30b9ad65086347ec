"""How a Volt-VAR surrogate ranks two first stages that differ in one switch swap.

    python benchmarks/voltvar_surrogate_ranking.py NETWORK.pt X.npy --monitor mm \\
        --open sw4 --close sw2 --scenarios 10,50,100 [--seed 0]

Loads the first stage ``X.npy`` (e.g. the neural decision, ``bench_neural_voltvar.py
--save-x``), builds its variant with switch ``--open`` opened and ``--close`` closed all day,
and prints the network's predicted expected recourse ($) of both on the study instances of
each size. Used for the MM rows of paper B's Table IV analog: the decision with Sw2 open is
infeasible at 50 and 100 scenarios, the optimum opens Sw4 instead.
"""

from __future__ import annotations

import argparse
import json
import os

import numpy as np

from gridrecourse.learning.voltvar_data import feature_map
from gridrecourse.learning.voltvar_net import load_surrogate
from gridrecourse.problems.volt_var import Monitor, VoltVarConfig, VoltVarProblem

FEEDER = "ieee123/IEEE123Switches.dss"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("network")
    ap.add_argument("x")
    ap.add_argument("--monitor", default="mm")
    ap.add_argument("--open", required=True, help="switch opened in the variant")
    ap.add_argument("--close", required=True, help="switch closed in the variant")
    ap.add_argument("--scenarios", default="10,50,100")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    base = os.environ.get("GRIDRECOURSE_FEEDER_DIR", "../shared/feeders")
    surrogate = load_surrogate(args.network)
    x = np.load(args.x)
    for n in (int(s) for s in args.scenarios.split(",")):
        problem = VoltVarProblem.from_feeder(
            os.path.join(base, FEEDER), n, VoltVarConfig(monitor=Monitor(args.monitor)),
            seed=args.seed,
        )  # fmt: skip
        decision = problem.decode(x)
        names = list(decision.switch_names)
        closed = decision.switch_closed.copy()
        closed[names.index(args.open)] = 0
        closed[names.index(args.close)] = 1
        variant = problem.first_stage_vector(decision.tap_positions, closed)
        f, _ = feature_map(problem)
        predicted = surrogate.predict((f @ np.vstack([x, variant]).T).T, surrogate.embed(problem))
        print(json.dumps({
            "n_scenarios": n, "predicted_recourse_x": float(predicted[0]),
            "predicted_recourse_variant": float(predicted[1]),
            "first_stage_cost_x": float(problem.first_stage.cost @ x),
            "first_stage_cost_variant": float(problem.first_stage.cost @ variant),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
