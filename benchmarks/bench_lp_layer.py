"""Benchmark: one training epoch's LP work, our envelope-theorem layer vs cvxpylayers.

An "epoch" is ``--batches`` mini-batches of ``--batch-size`` storage-expansion LPs (paper A
eq 19) on one feeder: forward (optimal values) and backward (gradients w.r.t. upper/lower prices
and upper loads) for every mini-batch. The same boxes go through

* ``ours``: :class:`gridrecourse.learning.lp_layer.StorageExpansionLayer` solving in the
  calling process (HiGHS, warm-started re-solves of one built model);
* ``ours+process``: the same layer with a process executor (``--workers`` workers, one built
  model per worker, warm-started across mini-batches);
* ``cvxpylayers``: the same LP written in CVXPY (:func:`cvxpylayers_reference`), solved and
  differentiated by cvxpylayers/diffcp (``--solve-method``, default Clarabel).

Set-up (model build, process start, CVXPY canonicalization) is timed separately from the epoch.
The script prints a table; ``--json`` prints one JSON object instead.

Usage::

    python benchmarks/bench_lp_layer.py                      # ieee13, τ = 24, 32 × 8 LPs
    python benchmarks/bench_lp_layer.py --feeder ieee123 --hours 12 --json
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
import warnings
from dataclasses import asdict, dataclass

import numpy as np
import torch

from gridrecourse.evaluation.validation import prepare_for_linear_model
from gridrecourse.execution import ExecutorKind, make_executor
from gridrecourse.learning.lp_layer import StorageExpansionLayer, cvxpylayers_reference
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.problems.storage_expansion import StorageExpansionConfig, StorageExpansionProblem


@dataclass
class MethodTiming:
    """Timing of one method (seconds)."""

    method: str
    setup_seconds: float
    epoch_seconds: float
    per_lp_ms: float
    max_value_rel_diff: float | None = None
    max_grad_rel_diff: float | None = None


def make_boxes(problem: StorageExpansionProblem, n: int, seed: int):
    """``n`` random boxes around a daily price shape and the nominal loads (float64 tensors)."""
    rng = np.random.default_rng(seed)
    tau = problem.n_hours
    hours = np.arange(tau)
    shape = 45 + 20 * np.sin(2 * np.pi * (hours - 9) / 24)
    mid = shape * (1 + 0.15 * rng.standard_normal((n, tau)))
    half = 3 + 8 * rng.random((n, tau))
    profile = 0.75 + 0.25 * np.sin(2 * np.pi * (hours - 14) / 24)
    load = (
        profile[None, :, None]
        * problem.nominal_load_kw[None, None, :]
        * (1 + 0.1 * rng.random((n, tau, problem.n_sites)))
    )
    return (
        torch.tensor(mid + half),
        torch.tensor(mid - half),
        torch.tensor(load),
    )


def run_epoch(fn, boxes, batches: int, batch_size: int):
    """Forward + backward over all mini-batches; returns seconds, values and gradients."""
    upper, lower, load = boxes
    values, grads = [], []
    t0 = time.perf_counter()
    for k in range(batches):
        sl = slice(k * batch_size, (k + 1) * batch_size)
        pu = upper[sl].clone().requires_grad_()
        pl = lower[sl].clone().requires_grad_()
        ld = load[sl].clone().requires_grad_()
        value = fn(pu, pl, ld)
        value.sum().backward()
        values.append(value.detach())
        grads.append(torch.cat([pu.grad.ravel(), pl.grad.ravel(), ld.grad.ravel()]))
    seconds = time.perf_counter() - t0
    return seconds, torch.cat(values).numpy(), torch.stack(grads).numpy()


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--feeder", default="ieee13")
    parser.add_argument("--hours", type=int, default=24)
    parser.add_argument("--batches", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--solve-method", default="Clarabel")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-cvxpylayers", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    warnings.simplefilter("ignore", DeprecationWarning)  # numpy-2 notes from diffcp

    t0 = time.perf_counter()
    math = build_math_feeder(prepare_for_linear_model(resolve_feeder_spec(args.feeder)))
    problem = StorageExpansionProblem(math, StorageExpansionConfig(n_hours=args.hours))
    n_lp = args.batches * args.batch_size
    boxes = make_boxes(problem, n_lp, args.seed)
    layer = StorageExpansionLayer(problem)
    layer(boxes[0][:1], boxes[1][:1], boxes[2][:1])  # builds the HiGHS model
    setup = time.perf_counter() - t0
    timings: list[MethodTiming] = []
    seconds, ref_values, ref_grads = run_epoch(layer, boxes, args.batches, args.batch_size)
    timings.append(MethodTiming("ours", setup, seconds, 1000 * seconds / n_lp))

    t0 = time.perf_counter()
    with make_executor(ExecutorKind.PROCESS, n_workers=args.workers) as ex:
        parallel = StorageExpansionLayer(problem, executor=ex)
        warm = [b[: args.workers] for b in boxes]
        parallel(*warm)  # start the workers and build their models
        setup = time.perf_counter() - t0
        seconds, values, grads = run_epoch(parallel, boxes, args.batches, args.batch_size)
    timings.append(
        MethodTiming(
            f"ours+process({args.workers})",
            setup,
            seconds,
            1000 * seconds / n_lp,
            _rel(values, ref_values),
            _rel(grads, ref_grads),
        )
    )

    cvx_error = None
    if not args.skip_cvxpylayers:
        try:
            t0 = time.perf_counter()
            reference = cvxpylayers_reference(problem, solve_method=args.solve_method)
            setup = time.perf_counter() - t0
            seconds, values, grads = run_epoch(reference, boxes, args.batches, args.batch_size)
            timings.append(
                MethodTiming(
                    f"cvxpylayers({args.solve_method})",
                    setup,
                    seconds,
                    1000 * seconds / n_lp,
                    _rel(values, ref_values),
                    _rel(grads, ref_grads),
                )
            )
        except ImportError as exc:
            cvx_error = f"cvxpylayers unavailable: {exc}"

    cvx = next((t for t in timings if t.method.startswith("cvxpylayers")), None)
    ratios = {}
    if cvx is not None:
        ratios = {
            f"cvxpylayers/{t.method}": cvx.epoch_seconds / t.epoch_seconds
            for t in timings
            if t is not cvx
        }
    result = {
        "feeder": args.feeder,
        "hours": args.hours,
        "batches": args.batches,
        "batch_size": args.batch_size,
        "n_lps": n_lp,
        "lp_columns": problem.lp_shape[1],
        "lp_rows": problem.lp_shape[0],
        "timings": [asdict(t) for t in timings],
        "ratios": ratios,
        "cvxpylayers_error": cvx_error,
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    if args.json:
        print(json.dumps(result))
        return result
    print(
        f"One epoch: {args.batches} mini-batches x {args.batch_size} LPs on {args.feeder}, "
        f"tau = {args.hours} h ({result['lp_columns']} columns x {result['lp_rows']} rows)"
    )
    header = (
        f"{'method':<24}{'setup s':>10}{'epoch s':>10}{'ms/LP':>9}{'value dev':>11}{'grad dev':>11}"
    )
    print(header)
    print("-" * len(header))
    for t in timings:
        dv = "-" if t.max_value_rel_diff is None else f"{t.max_value_rel_diff:.1e}"
        dg = "-" if t.max_grad_rel_diff is None else f"{t.max_grad_rel_diff:.1e}"
        print(
            f"{t.method:<24}{t.setup_seconds:>10.2f}{t.epoch_seconds:>10.2f}"
            f"{t.per_lp_ms:>9.1f}{dv:>11}{dg:>11}"
        )
    for name, ratio in ratios.items():
        print(f"ratio {name}: {ratio:.1f}x")
    if cvx_error:
        print(cvx_error)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
