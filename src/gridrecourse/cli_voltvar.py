"""``gridrecourse voltvar``: two-stage stochastic Volt-VAR with taps and switches (paper B).

Solves :class:`~gridrecourse.problems.volt_var.VoltVarProblem` (METHODS §4) with the extensive
form (``ef``), scenario addition (``sa``: exact, restricted extensive forms over a growing
scenario subset with a proven gap) or progressive hedging with MILP subproblems (``ph``), or
the neural surrogate (``nn``), evaluates the chosen taps
and switch states exactly (one recourse MILP per scenario), replays them in OpenDSS (AC
certificate) and writes a run folder: tap and switch schedules, voltage envelopes of the
monitored buses, curtailment per PV system. The folder is opened before any work
(:func:`gridrecourse.cli_common.open_run`: status, config, HiGHS log); the method's solve and
the exact evaluation are checkpointed phases, so ``--resume DIR`` after an interrupt reuses
the finished ones.

Methods are registered in :data:`METHODS` (name → solver function returning the first-stage
vector and method-specific figures); the neural method (``nn``) plugs in there.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from gridrecourse.cli_common import (
    Progress,
    active_run,
    add_run_options,
    emit,
    open_run,
    resolved_config,
    solver_output_to_stderr,
)
from gridrecourse.errors import GridRecourseError
from gridrecourse.evaluation.out_of_sample import OutOfSampleResult, evaluate_first_stage
from gridrecourse.execution import Executor, make_executor
from gridrecourse.problems.volt_var import (
    PRIMARY_BLOCKS,
    Monitor,
    VoltVarConfig,
    VoltVarProblem,
    VoltVarRecourse,
)
from gridrecourse.report.run_folder import RunFolder
from gridrecourse.solvers.options import SolverOptions

#: Default feeder: the IEEE 123 with its switches (relative to ``$GRIDRECOURSE_FEEDER_DIR``).
DEFAULT_VOLTVAR_FEEDER = "ieee123/IEEE123Switches.dss"


class VoltVarInputError(GridRecourseError, ValueError):
    """Invalid ``voltvar`` options."""


@dataclass(frozen=True)
class MethodOutcome:
    """What a method returns to the command: the first stage and its own figures."""

    x: np.ndarray
    status: str
    extra: dict = field(default_factory=dict)
    #: The method's own exact evaluation of ``x`` with recourse values (reused, not redone).
    evaluation: OutOfSampleResult | None = None


#: ``solve(problem, args, options, executor, progress) -> MethodOutcome`` per ``--method``
#: value (``progress``: the command's stderr progress, silent under ``--json``/``--quiet``).
MethodFn = Callable[
    [VoltVarProblem, argparse.Namespace, SolverOptions, Executor, Progress], MethodOutcome
]


def _start(problem: VoltVarProblem, args: argparse.Namespace) -> np.ndarray | None:
    """The MIP start of ``--start`` (neutral taps, LP-relaxation taps, or none)."""
    kind = getattr(args, "start", "neutral")
    if kind == "neutral":
        return problem.neutral_start()
    if kind == "relaxation":
        return problem.relaxation_start()
    return None


def _options(args: argparse.Namespace) -> SolverOptions:
    """Options of the method's MILPs (``--time-limit``, ``--mip-gap``,
    ``--mip-feasibility-tolerance``)."""
    return SolverOptions(
        time_limit=args.time_limit,
        mip_gap=args.mip_gap,
        mip_feasibility_tolerance=args.mip_feasibility_tolerance,
    )


def _eval_options(args: argparse.Namespace) -> SolverOptions:
    """Options of every exact recourse solve: the method's, with ``--eval-time-limit``."""
    return replace(_options(args), time_limit=args.eval_time_limit)


def _solve_ef(
    problem: VoltVarProblem,
    args: argparse.Namespace,
    options: SolverOptions,
    _executor: Executor,
    _progress: Progress,
):
    from gridrecourse.methods.extensive_form import solve_extensive_form

    ef = solve_extensive_form(problem, options, start=_start(problem, args))
    return MethodOutcome(
        ef.x,
        ef.status.value,
        {
            "ef_objective": ef.objective,
            "ef_bound": ef.bound,
            "ef_mip_gap_pct": 100.0 * ef.gap,
            "n_rows": ef.n_rows,
            "n_cols": ef.n_cols,
        },
    )


def _solve_sa(
    problem: VoltVarProblem,
    args: argparse.Namespace,
    options: SolverOptions,
    executor: Executor,
    progress: Progress,
):
    """Scenario addition: restricted extensive forms over a growing scenario subset, each
    solution evaluated exactly; stops at the proven gap (methods/scenario_addition.py)."""
    from gridrecourse.methods.scenario_addition import solve_scenario_addition

    sa = solve_scenario_addition(
        problem, options, start=_start(problem, args), time_limit=args.time_limit,
        eval_options=_eval_options(args), executor=executor, log=progress.note,
        scenario_kernels=args.sa_kernels,
    )  # fmt: skip
    return MethodOutcome(
        sa.x,
        sa.status.value,
        {
            "ef_objective": sa.objective,
            "ef_bound": sa.bound,
            "ef_mip_gap_pct": 100.0 * sa.gap,
            "sa_rounds": len(sa.rounds),
            "sa_scenarios": list(sa.rounds[-1].scenarios),
            "sa_kernels": [k.scenarios[0] for k in sa.kernels],
        },
    )


def _solve_ph(
    problem: VoltVarProblem,
    args: argparse.Namespace,
    options: SolverOptions,
    executor: Executor,
    progress: Progress,
):
    """Progressive hedging with MILP subproblems (in parallel through ``executor``); its state
    is checkpointed in the run folder after every iteration (each one solves every scenario's
    MILP), so ``--resume`` continues from the last one."""
    from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging

    config = PHConfig(
        rho=args.rho,
        rho_growth=args.rho_growth,
        max_iterations=args.max_iterations,
        integer_recourse=True,
        consensus_blocks=PRIMARY_BLOCKS,
    )
    sub = replace(options, time_limit=args.ph_time_limit)
    folder = active_run()
    ph = solve_progressive_hedging(
        problem,
        config,
        options=sub,
        start=_start(problem, args),
        executor=executor,
        checkpoint=None if folder is None else folder.checkpoint("ph-iterations"),
        checkpoint_every=1,
        progress=lambda k, metric: progress.note(f"PH iteration {k}: metric {metric:.3g}"),
        subproblem_progress=_ph_ticks(progress),
    )
    return MethodOutcome(
        ph.x,
        ph.status.value,
        {
            "iterations": ph.iterations,
            "converged": ph.converged,
            "ph_lower_bound": ph.lower_bound,
            "repaired": ph.repaired,
            "resumed_at_iteration": ph.resumed_at,
        },
    )


def _ph_ticks(progress: Progress) -> Callable[[int, int, int], None]:
    """PH's ``subproblem_progress``: one tick line per pass, the clock restarted per iteration."""
    current = [-1]

    def tick(iteration: int, done: int, total: int) -> None:
        if iteration != current[0]:
            current[0] = iteration
            progress.lap()
        progress.tick(done, total, f"PH iteration {iteration}: subproblems")

    return tick


def _solve_nn(
    problem: VoltVarProblem,
    args: argparse.Namespace,
    options: SolverOptions,
    executor: Executor,
    _progress: Progress,
):
    """Neural surrogate MILP (paper B eq 22): shipped network for the feeder, or --network."""
    from gridrecourse.learning.voltvar_net import load_surrogate, shipped_surrogate
    from gridrecourse.methods.neural_voltvar import solve_neural_voltvar

    network = getattr(args, "network", None)
    surrogate = load_surrogate(network) if network else shipped_surrogate(problem)
    sub = replace(options, time_limit=getattr(args, "nn_time_limit", 60.0))
    rounds = getattr(args, "nn_feasibility_rounds", 0)
    if rounds < 0:
        raise VoltVarInputError(f"--nn-feasibility-rounds must be >= 0, got {rounds}")
    nn = solve_neural_voltvar(
        problem, surrogate, sub, mode=getattr(args, "nn_bounds", "ibp"), evaluate=rounds > 0,
        executor=executor, eval_options=_eval_options(args), feasibility_rounds=rounds,
        keep_values=True,
    )  # fmt: skip
    info = surrogate.info
    return MethodOutcome(
        nn.x,
        nn.status,
        {
            "surrogate_objective": nn.surrogate_objective,
            "surrogate_recourse": nn.predicted_recourse,
            "nn_binaries": nn.n_binaries,
            "nn_stable_neurons": list(nn.stable_neurons),
            "nn_bounds": nn.mode.value,
            "nn_milp_seconds": nn.solve_seconds,
            "nn_encode_seconds": nn.encode_seconds,
            "nn_training_samples": info.get("n_samples"),
            "nn_data_hash": info.get("data_hash"),
            "nn_rounds": nn.rounds,
            "nn_feasibility_scenarios": list(nn.feasibility_scenarios),
            "nn_evaluate_seconds": nn.evaluate_seconds,
        },
        evaluation=nn.evaluation,
    )


#: Methods of ``gridrecourse voltvar`` (``--method``). Each gets the command's executor; the
#: EF is a single solve and leaves it to the exact evaluation.
METHODS: dict[str, MethodFn] = {
    "ef": _solve_ef,
    "sa": _solve_sa,
    "ph": _solve_ph,
    "nn": _solve_nn,
}


def add_voltvar_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``voltvar`` on the CLI's sub-parsers."""
    p = subparsers.add_parser(
        "voltvar",
        help="two-stage stochastic Volt-VAR with taps and switches (paper B; EF, SA, PH, NN)",
        description=__doc__.splitlines()[0],
    )
    p.add_argument(
        "feeder",
        nargs="?",
        default=DEFAULT_VOLTVAR_FEEDER,
        help=f"feeder name or path (default {DEFAULT_VOLTVAR_FEEDER} under "
        "$GRIDRECOURSE_FEEDER_DIR)",
    )
    p.add_argument("--method", choices=sorted(METHODS), default="ef")
    p.add_argument("--scenarios", type=int, default=10, help="number of scenarios (default 10)")
    p.add_argument("--monitor", choices=[m.value for m in Monitor], default="lm")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--perturbation", type=float, default=0.1, help="scenario noise r (0.1)")
    p.add_argument("--hours", type=int, default=24, help="periods T (default 24)")
    p.add_argument("--start-hour", type=int, default=0)
    p.add_argument("--pv-buses", help="comma list of PV buses (default: the study case's)")
    p.add_argument("--pv-kva", type=float, default=50.0)
    p.add_argument("--monitored-buses", help="comma list overriding --monitor's buses")
    p.add_argument("--switchable", help="comma list of switchable switches (default: on loops)")
    p.add_argument("--max-tap-changes", type=int, default=4)
    p.add_argument(
        "--initial-taps",
        default="current",
        help="taps before the first hour: 'current' (the feeder's), 'none' (free) or a comma "
        "list of taps in p.u. per regulator",
    )
    p.add_argument("--max-switch-operations", type=int, default=8)
    p.add_argument("--max-violation-hours", type=int, default=8, help="Range A, total (8)")
    p.add_argument(
        "--max-consecutive-violations", type=int, default=4, help="Range A, consecutive (4)"
    )
    p.add_argument(
        "--imbalance", type=float, default=0.02, help="phase imbalance bound (p.u.; 0 = off)"
    )
    p.add_argument("--time-limit", type=float, default=600.0,
                   help="EF time limit; sa: of each master and of the whole loop (s)")  # fmt: skip
    p.add_argument("--mip-gap", type=float, default=1e-4, help="relative MIP gap (0.01 %%)")
    p.add_argument(
        "--mip-feasibility-tolerance",
        type=float,
        default=1e-9,
        help="HiGHS mip_feasibility_tolerance of every MILP (1e-9; at HiGHS's default 1e-6 an "
        "ieee123 EF reported a bound above a feasible point: benchmarks/voltvar_bound_audit.py)",
    )
    p.add_argument(
        "--start",
        choices=("neutral", "relaxation", "none"),
        default="neutral",
        help="ef/ph MIP start: taps nearest 1.0 all day with the initial switches (default), "
        "LP-relaxation taps, or none",
    )
    p.add_argument("--eval-time-limit", type=float, default=120.0, help="per recourse MILP (s)")
    p.add_argument(
        "--sa-kernels", action="store_true",
        help="sa: solve and evaluate each scenario's own master before it joins the subset; "
        "the grown master starts from the best first stage feasible in its subset",
    )  # fmt: skip
    p.add_argument("--rho", type=float, default=100.0, help="PH proximal weight ($ per unit²)")
    p.add_argument("--rho-growth", type=float, default=1.0, help="PH proximal growth (1)")
    p.add_argument("--max-iterations", type=int, default=20, help="PH iterations (20)")
    p.add_argument("--ph-time-limit", type=float, default=60.0, help="PH subproblem limit (s)")
    p.add_argument(
        "--ef-objective", type=float, default=None, help="known EF value: gap_pct against it"
    )
    p.add_argument("--no-ac", action="store_true", help="skip the OpenDSS AC certificate")
    p.add_argument(
        "--ac-scenarios", type=int, default=3, help="scenarios replayed in OpenDSS (default 3)"
    )
    p.add_argument("--executor", choices=("inprocess", "process", "dask"), default="inprocess",
                   help="where the scenario MILPs run (exact evaluation, sa, ph)")  # fmt: skip
    p.add_argument("--workers", type=int, default=None)
    add_run_options(p, "voltvar")
    p.add_argument("--network", help="nn: trained network file (default: the shipped one)")
    p.add_argument("--nn-bounds", choices=["ibp", "big-m"], default="ibp",
                   help="nn: ReLU neuron bounds (IBP, or a uniform big-M baseline)")  # fmt: skip
    p.add_argument(
        "--nn-feasibility-rounds", type=int, default=0,
        help="nn: rounds that add the recourse rows of the scenarios the decision is "
        "infeasible in to the surrogate MILP and solve again (0: paper B's method)",
    )  # fmt: skip
    p.add_argument("--nn-time-limit", type=float, default=60.0,
                   help="nn: wall budget of encoding, model build and MILP (s)")  # fmt: skip
    p.set_defaults(func=run_voltvar)
    if "voltvar-train" not in subparsers.choices:
        add_voltvar_train_parser(subparsers)
    return p


def add_voltvar_train_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``voltvar-train`` (data generation and training of the neural surrogate)."""
    if "voltvar-train" in subparsers.choices:
        return subparsers.choices["voltvar-train"]
    p = subparsers.add_parser(
        "voltvar-train",
        help="generate data and train the neural Volt-VAR surrogate (paper B; resumable)",
        description="Data (perturbed kernel solutions, eq 36 repair, recourse MILPs through "
        "the executor) and training of the scenario encoder + ReLU MLP; reruns resume.",
    )
    p.add_argument("feeder", nargs="?", default=DEFAULT_VOLTVAR_FEEDER)
    p.add_argument("--monitor", choices=[m.value for m in Monitor], default="lm")
    for flag, kind, default in (
        ("--hours", int, 24), ("--start-hour", int, 0), ("--pv-buses", str, None),
        ("--pv-kva", float, 50.0), ("--monitored-buses", str, None), ("--switchable", str, None),
        ("--max-tap-changes", int, 4), ("--initial-taps", str, "current"),
        ("--max-switch-operations", int, 8), ("--max-violation-hours", int, 8),
        ("--max-consecutive-violations", int, 4), ("--imbalance", float, 0.02),
    ):  # fmt: skip
        p.add_argument(flag, type=kind, default=default, help=f"as for voltvar ({default})")
    p.add_argument("--samples", type=int, default=200, help="instances of 10 scenarios (200)")
    p.add_argument("--scenarios-per-instance", type=int, default=10)
    p.add_argument("--kernels", type=int, default=4, help="kernel solutions (4)")
    p.add_argument("--kernel-time-limit", type=float, default=60.0)
    p.add_argument(
        "--kernel-selection",
        choices=["random", "covering", "nested"],
        default="random",
        help="kernels on random scenarios; covering: each on the scenario of --kernel-pool that "
        "the kernels so far serve worst (infeasible first); nested: each on the scenarios of the "
        "previous kernel and the pool scenario that kernel serves worst",
    )
    p.add_argument(
        "--kernel-pool",
        type=int,
        default=200,
        help="scenarios for covering and nested (200; each kernel is evaluated on all, and the "
        "pool must be large enough to hold the rare scenarios a kernel fails in)",
    )
    p.add_argument(
        "--initial-kernel", action="store_true", help="also perturb the do-nothing first stage"
    )
    p.add_argument("--radius", type=float, default=0.2, help="perturbation radius (0.2)")
    p.add_argument(
        "--first-stage-perturbation",
        choices=["redraw", "steps"],
        default="redraw",
        help="redraw a share radius of the tap/switch entries (paper B), or one-position steps "
        "and switch toggles with probability radius each (the cheap neighbourhood)",
    )
    p.add_argument("--chunk-size", type=int, default=8, help="samples per chunk file (8)")
    p.add_argument("--data-seed", type=int, default=0)
    p.add_argument("--recourse-time-limit", type=float, default=30.0, help="per MILP (s)")
    p.add_argument(
        "--mip-feasibility-tolerance",
        type=float,
        default=1e-9,
        help="HiGHS mip_feasibility_tolerance of every kernel and recourse MILP (1e-9; data "
        "generated before this option used HiGHS's default 1e-6)",
    )
    p.add_argument("--executor", choices=["inprocess", "process", "dask"], default="process")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--epochs", type=int, default=400)
    p.add_argument("--hidden", default="128,64,32", help="main ReLU MLP widths (128,64,32)")
    p.add_argument(
        "--infeasible-penalty",
        type=float,
        default=10000.0,
        help="recourse label ($) of a scenario whose recourse is infeasible; keep it above any "
        "curtailment cost in the data (10000)",
    )
    p.add_argument("--no-train", action="store_true", help="generate data only")
    p.add_argument("--data-dir", help="data directory (default <dir>/data)")
    p.add_argument(
        "--dir",
        help="training folder; a rerun with the same folder resumes (default "
        "runs/voltvar-train-<feeder>-<monitor>)",
    )
    p.add_argument("--json", action="store_true", help="print one JSON summary on stdout")
    p.set_defaults(func=run_voltvar_train, scenarios=1, seed=0, perturbation=0.1)
    return p


def run_voltvar_train(args: argparse.Namespace) -> dict:
    """Generate (resume) the data and train (resume) the surrogate; write ``network.pt``."""
    if args.json:
        with solver_output_to_stderr():
            summary = _train(args)
    else:
        summary = _train(args)
    emit(summary, args.json, lambda: print(f"network: {summary['network']}"))
    return summary


def _train(args: argparse.Namespace) -> dict:
    from gridrecourse.learning.voltvar_data import DataConfig, generate_data
    from gridrecourse.learning.voltvar_net import SurrogateConfig, train_surrogate

    t0 = time.perf_counter()
    problem = build_problem(args)
    out = Path(args.dir or f"runs/voltvar-train-{Path(args.feeder).stem}-{args.monitor}")
    out.mkdir(parents=True, exist_ok=True)
    data_dir = Path(args.data_dir) if args.data_dir else out / "data"
    dcfg = DataConfig(
        n_samples=args.samples,
        scenarios_per_instance=args.scenarios_per_instance,
        radius=args.radius,
        perturbation=args.first_stage_perturbation,
        n_kernels=args.kernels,
        kernel_selection=args.kernel_selection,
        kernel_pool=args.kernel_pool,
        initial_kernel=args.initial_kernel,
        chunk_size=args.chunk_size,
        seed=args.data_seed,
        scenario_perturbation=args.perturbation,
        time_limit=args.recourse_time_limit,
        kernel_time_limit=args.kernel_time_limit,
        mip_feasibility_tolerance=args.mip_feasibility_tolerance,
    )
    workers = 1 if args.executor == "inprocess" else args.workers
    with make_executor(args.executor, n_workers=workers) as ex:
        data = generate_data(problem, dcfg, data_dir, executor=ex)
    t_data = time.perf_counter() - t0
    summary = {
        "feeder": str(args.feeder),
        "monitor": args.monitor,
        "n_samples": len(data.target),
        "n_infeasible_samples": int(data.infeasible.sum()),
        "n_unresolved_samples": int(data.unresolved.sum()),
        "data_dir": str(data_dir),
        "data_hash": data.meta["hash"],
        "data_seconds_per_sample": float(data.seconds.sum() / max(len(data.target), 1)),
        "data_wall_seconds": t_data,
    }
    if not args.no_train:
        surrogate, curve = train_surrogate(
            problem,
            data,
            SurrogateConfig(
                epochs=args.epochs,
                main=tuple(int(w) for w in args.hidden.split(",")),
                infeasible_penalty=args.infeasible_penalty,
            ),
            checkpoint=out / "checkpoint.pt",
        )
        surrogate.save(out / "network.pt")
        pd.DataFrame(
            {
                "epoch": np.arange(1, len(curve.train) + 1),
                "train_mse": curve.train,
                "val_mse": curve.val,
                "val_mae": curve.val_mae,
            }
        ).to_csv(out / "training_curve.csv", index=False)
        summary |= {
            "network": str(out / "network.pt"),
            "epochs": len(curve.train),
            "final_train_mse": float(curve.train[-1]) if len(curve.train) else None,
            "final_val_mse": float(curve.val[-1]) if len(curve.val) else None,
            "final_val_mae": float(curve.val_mae[-1]) if len(curve.val_mae) else None,
            "train_seconds": curve.seconds,
        }
    else:
        summary["network"] = None
    summary["wall_seconds"] = time.perf_counter() - t0
    return summary


def _feeder_path(name: str) -> str:
    if Path(name).exists():
        return name
    base = os.environ.get("GRIDRECOURSE_FEEDER_DIR")
    if base and (Path(base) / name).exists():
        return str(Path(base) / name)
    return name


def _names(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(s.strip() for s in text.split(",") if s.strip())


def build_problem(args: argparse.Namespace) -> VoltVarProblem:
    """The problem of the command's options (shared with other ``voltvar`` methods)."""
    if args.scenarios < 1:
        raise VoltVarInputError(f"--scenarios must be >= 1, got {args.scenarios}")
    initial: str | tuple[float, ...] | None = args.initial_taps
    if initial == "none":
        initial = None
    elif initial != "current":
        try:
            initial = tuple(float(t) for t in str(initial).split(","))
        except ValueError:
            raise VoltVarInputError(
                f"--initial-taps: 'current', 'none' or taps in p.u., got {args.initial_taps!r}"
            ) from None
    config = VoltVarConfig(
        initial_taps=initial,
        n_periods=args.hours,
        start_hour=args.start_hour,
        monitor=Monitor(args.monitor),
        monitored_buses=_names(args.monitored_buses),
        pv_buses=_names(args.pv_buses),
        pv_kva=args.pv_kva,
        switchable=_names(args.switchable),
        max_tap_changes=args.max_tap_changes,
        max_switch_operations=args.max_switch_operations,
        max_violation_hours=args.max_violation_hours,
        max_consecutive_violations=args.max_consecutive_violations,
        imbalance=args.imbalance if args.imbalance > 0 else None,
    )
    return VoltVarProblem.from_feeder(
        _feeder_path(args.feeder),
        args.scenarios,
        config,
        seed=args.seed,
        perturbation=args.perturbation,
    )


def evaluate_with_values(
    problem: VoltVarProblem,
    x: np.ndarray,
    options: SolverOptions,
    executor: Executor,
    done: OutOfSampleResult | None = None,
    *,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[OutOfSampleResult, list[VoltVarRecourse | None]]:
    """Exact evaluation (one recourse MILP per scenario, in parallel through ``executor``;
    ``done``, a method's own evaluation of ``x`` with values, is taken as it is; ``progress(done,
    total)`` as scenarios finish) and every feasible scenario's recourse (None where infeasible
    or unresolved)."""
    ev = done
    if ev is None or ev.values is None:
        ev = evaluate_first_stage(
            problem, x, executor=executor, options=options, desc=None, keep_values=True,
            farkas=False, progress=progress,
        )  # fmt: skip
    recourse = [problem.recourse(y, s) if y is not None else None for s, y in enumerate(ev.values)]
    return ev, recourse


def ac_certificate(
    problem: VoltVarProblem,
    x: np.ndarray,
    recourse: list[VoltVarRecourse | None],
    k: int,
    feeder: str,
) -> dict:
    """Replay taps, switch states, loads and PV dispatch of ``k`` scenarios hour by hour in
    OpenDSS (controls off; PV as constant-PQ generators) and compare voltages with the model.

    Returns the AC certificate keys (min/max AC voltage over the model's nodes, node-hours
    outside Range B, max |V_model − V_AC|).
    """
    import opendssdirect as dss

    from gridrecourse.evaluation.ac_check import (
        Decisions,
        apply_decisions,
        ensure_compiled,
        read_snapshot,
    )
    from gridrecourse.network.loading import resolve_feeder_spec

    math, cfg, T = problem.math, problem.config, problem.n_periods
    source = resolve_feeder_spec(_feeder_path(feeder))
    ensure_compiled(source)
    decision = problem.decode(x)
    reg = math.regulators
    keys = [(t, int(w)) for t, w in zip(reg.transformer_names, reg.winding, strict=True)]
    names = []
    existing = {n.lower() for n in dss.Generators.AllNames()}
    for i, bus in enumerate(problem.pv_buses):  # PV systems the feeder does not have
        dss.Circuit.SetActiveBus(bus)
        nodes = list(dss.Bus.Nodes())
        kv = dss.Bus.kVBase() * (np.sqrt(3.0) if len(nodes) > 1 else 1.0)
        name = f"vvpv{i}"
        verb = "Edit" if name in existing else "New"
        dss.Text.Command(
            f"{verb} Generator.{name} bus1={bus}.{'.'.join(map(str, nodes))} phases={len(nodes)} "
            f"kV={kv:.6f} kW=0 kvar=0 model=1"
        )
        names.append(name)
    scen = [s for s in range(problem.n_scenarios) if recourse[s] is not None][:k]
    mult = problem.scenarios.load_multiplier[:, problem._load_site, :]
    v_lo, v_hi, err, outside = np.inf, -np.inf, 0.0, 0
    b_lo, b_hi = cfg.range_b
    for s in scen:
        rec = recourse[s]
        for t in range(T):  # one AC power flow per scenario and hour
            apply_decisions(
                Decisions(
                    taps={kk: float(decision.tap_pu[i, t]) for i, kk in enumerate(keys)},
                    switch_closed={
                        n: bool(decision.switch_closed[j, t])
                        for j, n in enumerate(decision.switch_names)
                    },
                    load_kw=dict(zip(math.load_names, math.load_kw * mult[s, :, t], strict=True)),
                    load_kvar=dict(
                        zip(math.load_names, math.load_kvar * mult[s, :, t], strict=True)
                    ),
                )
            )
            for i, name in enumerate(names):
                dss.Generators.Name(name)
                dss.Generators.kW(float(rec.pv_kw[i, t]))
                dss.Generators.kvar(float(rec.pv_kvar[i, t]))
            dss.Text.Command("Set maxiterations=100")
            dss.Text.Command("Solve")
            snap = read_snapshot()
            idx = snap.index()
            take = np.array([idx.get(n.lower(), -1) for n in math.node_names])
            ok = (take >= 0) & ~math.is_root
            v_ac = snap.v_pu[take[ok]]
            v_model = rec.v_pu[ok, t]
            live = v_ac > 0.5  # de-energized nodes (open switches) are not compared
            v_lo = min(v_lo, float(v_ac[live].min()))
            v_hi = max(v_hi, float(v_ac[live].max()))
            err = max(err, float(np.max(np.abs(v_ac[live] - v_model[live]))))
            outside += int(np.sum((v_ac[live] < b_lo) | (v_ac[live] > b_hi)))
    return {
        "ac_min_voltage_pu": v_lo,
        "ac_max_voltage_pu": v_hi,
        "ac_voltage_violations": outside,
        "ac_max_model_error_pu": err,
        "ac_scenarios": len(scen),
    }


def run_voltvar(args: argparse.Namespace) -> dict:
    """Solve the 2S-VVO with the chosen method, evaluate exactly and write the run folder."""
    if args.json:
        with solver_output_to_stderr():
            summary, human = _run(args)
    else:
        summary, human = _run(args)
    emit(summary, args.json, human)
    return summary


def _run(args: argparse.Namespace):
    progress = Progress(5, quiet=args.json or args.quiet)
    t0 = time.perf_counter()
    folder = open_run(args, "voltvar", str(args.feeder), resolved_config(args))
    progress(f"building the Volt-VAR problem on {args.feeder} ({args.scenarios} scenarios)")
    problem = build_problem(args)
    options = _options(args)
    with make_executor(args.executor, n_workers=args.workers) as executor:
        solved = folder.load_checkpoint("solve")
        if solved is None:
            progress(f"solving with {args.method}")
            outcome = METHODS[args.method](problem, args, options, executor, progress)
            wall = time.perf_counter() - t0
            folder.save_checkpoint("solve", (outcome, wall))
        else:
            outcome, wall = solved
            progress(f"{args.method}: reused the finished solve from the checkpoint")
        evaluated = folder.load_checkpoint("evaluation")
        if evaluated is None:
            progress("evaluating the first stage exactly on every scenario")
            evaluated = evaluate_with_values(
                problem, outcome.x, _eval_options(args), executor, outcome.evaluation,
                progress=progress.callback("scenarios"),
            )  # fmt: skip
            folder.save_checkpoint("evaluation", evaluated)
        else:
            progress("exact evaluation: reused from the checkpoint")
        ev, recourse = evaluated
    objective, q = ev.expected_objective, ev.objectives
    decision = problem.decode(outcome.x)
    # gap_pct: the EF's own proven MIP gap; another method's exact objective against a known
    # EF value (--ef-objective), as in paper B Table IV
    ef_value = args.ef_objective
    gap_pct = None
    if args.method in ("ef", "sa"):  # their own proven gaps
        gap_pct = outcome.extra.get("ef_mip_gap_pct")
    elif ef_value is not None and np.isfinite(objective):
        gap_pct = 100.0 * (objective - ef_value) / max(abs(ef_value), 1e-9)
    ac = {}
    if not args.no_ac:
        progress("AC certificate in OpenDSS")
        ac = ac_certificate(problem, outcome.x, recourse, args.ac_scenarios, args.feeder)
    _tables(folder, problem, decision, q, recourse)
    summary = {
        "method": args.method,
        "status": outcome.status,
        "objective": objective,
        "objective_kind": "exact expected cost (first-stage operations + mean recourse MILPs)",
        "first_stage_cost": float(problem.first_stage.cost @ outcome.x),
        "gap_pct": gap_pct,
        "wall_seconds": wall,
        "n_scenarios": problem.n_scenarios,
        "monitor": args.monitor,
        "n_infeasible_scenarios": ev.n_infeasible - ev.n_unresolved,  # proven infeasible
        "n_unresolved_scenarios": ev.n_unresolved,  # recourse MILP timed out, no point
        "max_recourse_mip_gap": float(np.max(ev.mip_gaps, initial=0.0, where=ev.feasible)),
        "taps": decision.taps,
        "switch_states": decision.switch_states,
        **outcome.extra,
        **ac,
        "feeder": str(args.feeder),
        "reused_checkpoints": list(folder.reused),
        "run_folder": str(folder.path),
    }
    folder.add_report(
        f"# Volt-VAR on {args.feeder} with {args.method}\n\n"
        + "\n".join(f"- {k}: {v}" for k, v in summary.items() if k not in ("taps", "switch_states"))
        + "\n"
    )
    folder.write_result(summary)
    progress(f"done: run folder {folder.path}")

    def human() -> None:
        print(
            f"{args.method}: objective {objective:.6g} $ (exact, {problem.n_scenarios} "
            f"scenarios), solved in {wall:.1f} s\nrun folder: {folder.path}"
        )

    return summary, human


def _tables(folder: RunFolder, problem: VoltVarProblem, decision, q, recourse) -> None:
    """Tap and switch schedules, voltage envelopes of monitored buses, curtailment per PV."""
    T = problem.n_periods
    hours = [f"h{problem.config.start_hour + t:02d}" for t in range(T)]
    folder.write_table(
        "tap_schedule",
        pd.DataFrame(decision.tap_pu, index=list(decision.regulator_names), columns=hours)
        .rename_axis("regulator")
        .reset_index(),
    )
    folder.write_table(
        "switch_schedule",
        pd.DataFrame(decision.switch_closed, index=list(decision.switch_names), columns=hours)
        .rename_axis("switch")
        .reset_index(),
    )
    folder.write_table(
        "scenario_objectives", pd.DataFrame({"scenario": np.arange(len(q)), "objective": q})
    )
    feasible = [r for r in recourse if r is not None]
    if not feasible:
        return
    math = problem.math
    nodes = problem.monitored_nodes
    v = np.stack([r.v_pu[nodes] for r in feasible])  # (S, M, T)
    names = [math.node_names[n] for n in nodes]
    env = pd.DataFrame(
        {
            "node": np.repeat(names, T),
            "hour": np.tile(np.arange(T) + problem.config.start_hour, len(names)),
            "v_min_pu": v.min(axis=0).ravel(),
            "v_mean_pu": v.mean(axis=0).ravel(),
            "v_max_pu": v.max(axis=0).ravel(),
        }
    )
    folder.write_table("voltage_envelopes", env)
    curt = np.stack([r.curtailed_kw for r in feasible])  # (S, n_pv, T)
    avail = np.stack([r.available_kw for r in feasible])
    folder.write_table(
        "curtailment",
        pd.DataFrame(
            {
                "pv_bus": list(problem.pv_buses),
                "expected_curtailed_kwh": curt.sum(axis=2).mean(axis=0),
                "expected_available_kwh": avail.sum(axis=2).mean(axis=0),
            }
        ),
    )
