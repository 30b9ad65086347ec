"""Audit HiGHS's MIP dual bound on single-scenario Volt-VAR extensive forms.

    python benchmarks/voltvar_bound_audit.py --monitor mm --scenarios 10 [--seed 0] [--only 9] \
        [--mip-feasibility-tolerance 1e-9]

For every scenario ω: solve the EF over ω alone (HiGHS, 0.01 % gap, neutral MIP start), then
fix its first stage x̂ in a fresh copy of the same EF and solve again. The fixed solve is a
feasible point of the same model, so its value is an upper bound on the optimum; a reported
dual bound above it is not a bound. Prints one JSON line per scenario.
"""

from __future__ import annotations

import argparse
import json
import os

from gridrecourse.methods.extensive_form import build_extensive_form, solve_extensive_form
from gridrecourse.problems.volt_var import Monitor, VoltVarConfig, VoltVarProblem
from gridrecourse.solvers.options import SolverOptions

FEEDER = "ieee123/IEEE123Switches.dss"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--monitor", default="mm")
    ap.add_argument("--scenarios", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--only", type=int, help="audit this scenario only")
    ap.add_argument("--mip-feasibility-tolerance", type=float, help="default: HiGHS's (1e-6)")
    args = ap.parse_args()
    base = os.environ.get("GRIDRECOURSE_FEEDER_DIR", "../shared/feeders")
    problem = VoltVarProblem.from_feeder(
        os.path.join(base, FEEDER), args.scenarios, VoltVarConfig(monitor=Monitor(args.monitor)),
        seed=args.seed,
    )  # fmt: skip
    options = SolverOptions(
        mip_gap=1e-4, time_limit=300.0, threads=1,
        mip_feasibility_tolerance=args.mip_feasibility_tolerance,
    )  # fmt: skip
    fs = problem.first_stage
    offset = problem.second_stage.objective_offset
    for w in [args.only] if args.only is not None else range(args.scenarios):
        free = solve_extensive_form(problem, options, scenarios=[w], start=problem.neutral_start())
        fixed = build_extensive_form(problem, scenarios=[w])
        for v in fs.variables:
            x_v = free.x[fs.slice(v.name)]
            fixed.model.set_col_bounds(fixed.first_stage[v.name], x_v, x_v)
        value = fixed.model.solve(options).objective + offset
        print(json.dumps({
            "monitor": args.monitor, "scenario": w,
            "mip_feasibility_tolerance": args.mip_feasibility_tolerance,
            "ef_objective": free.objective,
            "ef_bound": free.bound, "status": free.status.value, "fixed_x_value": value,
            "bound_exceeds_a_feasible_value": free.bound > value + 1e-9 * abs(value),
        }), flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
