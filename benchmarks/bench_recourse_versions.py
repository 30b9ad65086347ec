"""Benchmark: the full ieee9500 P1 recourse LP of two code versions on the same scenarios.

Issue 14 asked whether the line-to-line winding coupling (commit 453f66e) made each recourse
LP solve costlier. Two steps, because two versions cannot be imported in one process:

``dump``     (run with ``PYTHONPATH`` of the checkout to measure) writes the recourse LP of
             SPAR seed 0's decision (``--units-from``) and the row bounds of ``--evaluate``
             evenly spaced scenarios in warm-start-chain order to an ``.npz`` (``--chain-from``
             another dump: the same chain).
``compare``  solves the dumped LPs with highspy along the chain, **interleaved** (version A
             scenario k, version B scenario k, ...), each warm-started from its previous
             scenario with Devex pricing as the evaluation does: simplex iterations and CPU
             seconds per warm scenario, ms per iteration, the matrix sizes and coefficient
             ranges.

Usage::

    git worktree add --detach /tmp/old 43fec68
    PYTHONPATH=src python benchmarks/bench_recourse_versions.py dump /tmp/new.npz
    PYTHONPATH=/tmp/old/src python benchmarks/bench_recourse_versions.py dump /tmp/old.npz \\
        --chain-from /tmp/new.npz
    python benchmarks/bench_recourse_versions.py compare /tmp/old.npz /tmp/new.npz \\
        --scenarios 30 --json benchmarks/results/recourse_versions_ieee9500.json
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

import highspy
import numpy as np
import scipy.sparse as sp


def dump(args: argparse.Namespace) -> None:
    """Write the recourse LP and the chain's row bounds (uses the importable gridrecourse)."""
    from gridrecourse.problems.base import SecondStageModel
    from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, TapSetting

    problem = PVSitingProblem.from_feeder(
        "ieee9500", 1200, SitingConfig(), seed=0, taps=TapSetting.OPENDSS
    )
    with open(args.units_from, encoding="utf-8") as fh:
        seeds = json.load(fh)["tables"]["ieee9500"]["methods"]["spar"]["per_seed"]
    x = problem.first_stage_vector(np.asarray(seeds[0]["units"], dtype=float))
    if args.chain_from:
        chain = np.load(args.chain_from)["chain"]
    else:
        from gridrecourse.evaluation.scenario_order import warm_start_order

        idx = np.unique(np.linspace(0, 1199, args.evaluate).round().astype(int))
        chain = idx[warm_start_order(problem, idx)]
    model = SecondStageModel(problem)
    lm = model.model
    a = lm.matrix()
    a.sum_duplicates()
    bounds = [model._bounds(x, int(s))[:2] for s in chain]
    np.savez_compressed(
        args.path,
        data=a.data,
        indices=a.indices,
        indptr=a.indptr,
        shape=a.shape,
        cost=np.concatenate(lm._cost),
        col_lb=np.concatenate(lm._lb),
        col_ub=np.concatenate(lm._ub),
        row_lb=np.array([b[0] for b in bounds]),
        row_ub=np.array([b[1] for b in bounds]),
        chain=chain,
    )
    print(f"{args.path}: {a.shape[0]} rows, {a.shape[1]} columns, {a.nnz} nonzeros")


def _highs(path: str) -> tuple[highspy.Highs, Any, dict[str, Any]]:
    d = np.load(path)
    a = sp.csc_matrix((d["data"], d["indices"], d["indptr"]), shape=tuple(d["shape"]))
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = a.shape[1], a.shape[0]
    lp.col_cost_, lp.col_lower_, lp.col_upper_ = d["cost"], d["col_lb"], d["col_ub"]
    lp.row_lower_, lp.row_upper_ = d["row_lb"][0], d["row_ub"][0]
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_, lp.a_matrix_.index_, lp.a_matrix_.value_ = a.indptr, a.indices, a.data
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("simplex_dual_edge_weight_strategy", 1)  # Devex, as the recourse model
    h.passModel(lp)
    mag = np.abs(a.data[a.data != 0])
    info = {
        "rows": int(a.shape[0]),
        "columns": int(a.shape[1]),
        "nonzeros": int(a.nnz),
        "coefficient_range": [float(mag.min()), float(mag.max())],
    }
    return h, d, info


def compare(args: argparse.Namespace) -> None:
    """Solve the dumps interleaved along the first dump's chain."""
    names = args.dumps
    models = {n: _highs(n) for n in names}
    n = min(args.scenarios, len(models[names[0]][1]["chain"]))
    runs: dict[str, dict[str, list[float]]] = {k: {"it": [], "cpu": [], "obj": []} for k in names}
    for k in range(n):
        for name in names:
            h, d, _ = models[name]
            rows = np.arange(d["row_lb"].shape[1], dtype=np.int32)
            h.changeRowsBounds(len(rows), rows, d["row_lb"][k], d["row_ub"][k])
            c0 = time.process_time()
            h.run()
            runs[name]["cpu"].append(time.process_time() - c0)
            info = h.getInfo()
            runs[name]["it"].append(info.simplex_iteration_count)
            runs[name]["obj"].append(info.objective_function_value)
    out: dict[str, Any] = {"argv": sys.argv[1:], "scenarios": n, "versions": {}}
    for name in names:
        it, cpu = np.array(runs[name]["it"][1:]), np.array(runs[name]["cpu"][1:])
        out["versions"][name] = {
            **models[name][2],
            "cold_iterations": runs[name]["it"][0],
            "cold_cpu_seconds": runs[name]["cpu"][0],
            "warm_iterations_per_scenario": float(it.mean()),
            "warm_cpu_seconds_per_scenario": float(cpu.mean()),
            "cpu_ms_per_iteration": float(1e3 * cpu.sum() / max(1, it.sum())),
            "objectives": runs[name]["obj"],
            "iterations": runs[name]["it"],
        }
        v = out["versions"][name]
        print(
            f"{name}: {v['rows']} rows, warm {v['warm_iterations_per_scenario']:.0f} it "
            f"{v['warm_cpu_seconds_per_scenario']:.3f} CPU s/scenario, "
            f"{v['cpu_ms_per_iteration']:.2f} ms/it"
        )
    out["load_average_at_end"] = os.getloadavg()
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(out, fh, indent=1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dump")
    d.add_argument("path")
    d.add_argument("--evaluate", type=int, default=96)
    d.add_argument("--chain-from", default=None)
    d.add_argument("--units-from", default="benchmarks/results/siting_ieee9500.json")
    c = sub.add_parser("compare")
    c.add_argument("dumps", nargs="+")
    c.add_argument("--scenarios", type=int, default=30)
    c.add_argument("--json", default=None)
    args = p.parse_args(argv)
    (dump if args.command == "dump" else compare)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
