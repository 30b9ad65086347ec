"""ReLU embedding: IBP neuron bounds against a uniform big-M, solved to optimality.

Paper B's surrogate MILP on the IEEE 123 case stops at its time limit with either embedding
(README, "IBP against a uniform big-M"), so solve time cannot separate them there. This
benchmark takes ReLU MLPs of the shipped architecture's depth (hidden widths 128/64/32 and
narrower ones, ``--widths``; PyTorch's default initialization: weights and biases uniform in
±1/√fan_in) and minimizes the output over binary inputs ``{0,1}^n`` with each embedding, to
optimality (MIP gap 0) or the time limit, one HiGHS thread::

    python benchmarks/bench_relu_embedding.py --widths 32 16 8 --inputs 12 --seeds 0 1 2 \\
        --time-limit 300 --out benchmarks/results/relu_embedding.jsonl

One JSON line per (inputs, seed, mode): binaries, solve time, status, optimum; the two
embeddings must reach the same optimum (checked, and against enumeration when ``2^n`` is
small).
"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import numpy as np
import scipy.sparse as sp

from gridrecourse.formulation.relu import BoundMode, ReluNetwork, add_relu_network
from gridrecourse.solvers.highs import LinearModel
from gridrecourse.solvers.options import SolverOptions


def random_network(n_inputs: int, widths: tuple[int, ...], seed: int) -> ReluNetwork:
    """A ReLU MLP with PyTorch's default ``nn.Linear`` initialization."""
    rng = np.random.default_rng(seed)
    sizes = (n_inputs, *widths, 1)
    weights, biases = [], []
    for fan_in, fan_out in itertools.pairwise(sizes):
        a = 1.0 / np.sqrt(fan_in)
        weights.append(rng.uniform(-a, a, size=(fan_out, fan_in)))
        biases.append(rng.uniform(-a, a, size=fan_out))
    return ReluNetwork(tuple(weights), tuple(biases))


def solve(net: ReluNetwork, mode: BoundMode, big_m: float, time_limit: float) -> dict:
    """Minimize the network output over ``{0,1}^n`` with one embedding."""
    n = net.n_inputs
    model = LinearModel(f"relu-{mode.value}")
    x = model.add_variables("x", n, lb=0.0, ub=1.0, integer=True)
    t0 = time.perf_counter()
    blocks = add_relu_network(
        model, net, [(x, sp.identity(n, format="csr"))], np.zeros(n), np.ones(n),
        mode=mode, big_m=big_m, output_cost=1.0,
    )  # fmt: skip
    sol = model.solve(SolverOptions(mip_gap=0.0, time_limit=time_limit, threads=1))
    return {
        "mode": mode.value,
        "binaries": blocks.n_binaries,
        "seconds": time.perf_counter() - t0,
        "status": str(sol.status),
        "objective": float(sol.objective),
        "mip_gap": float(sol.mip_gap),
        "x": np.round(sol.value(x)).astype(int).tolist(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--widths", type=int, nargs="+", default=[128, 64, 32])
    ap.add_argument("--inputs", type=int, nargs="+", default=[12])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--big-m", type=float, default=1000.0)
    ap.add_argument("--time-limit", type=float, default=600.0)
    ap.add_argument("--out")
    args = ap.parse_args()
    for n, seed in itertools.product(args.inputs, args.seeds):
        net = random_network(n, tuple(args.widths), seed)
        bound = float(np.abs(net.forward(np.ones((1, n)))).max())  # scale of the outputs
        rows = [solve(net, mode, args.big_m, args.time_limit)
                for mode in (BoundMode.IBP, BoundMode.BIG_M)]  # fmt: skip
        reference = None
        if n <= 16:  # enumeration of every binary input
            corners = ((np.arange(2**n)[:, None] >> np.arange(n)) & 1).astype(float)
            reference = float(net.forward(corners)[:, 0].min())
        for r in rows:
            r |= {"widths": args.widths, "inputs": n, "seed": seed, "big_m": args.big_m,
                  "output_scale": bound, "enumerated_optimum": reference}  # fmt: skip
            if reference is not None and r["status"] == "Optimal":
                assert abs(r["objective"] - reference) <= 1e-6, (r, reference)
            line = json.dumps(r)
            print(line, flush=True)
            if args.out:
                with open(args.out, "a") as fh:
                    fh.write(line + "\n")


if __name__ == "__main__":
    main()
