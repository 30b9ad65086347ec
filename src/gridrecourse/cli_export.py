"""``gridrecourse export FEEDER --problem siting|expand|voltvar --scenarios N --out DIR``.

Writes the two-stage instance in mpi-sppy's MPS-reader format
(:mod:`gridrecourse.problems.export`): ``scen<k>.mps`` and ``scen<k>_nonants.json`` (with
``scenProb``) per scenario, plus ``instance.json`` (problem, feeder, our scenario index of every
file, the command line), so that mpi-sppy's EF and PH (``--module-name
mpisppy.problem_io.mps_module --mps-files-directory DIR``) run on exactly our instances.

Each problem is built by its own command's builder with that command's defaults (the same
instance ``gridrecourse siting|expand|voltvar`` solves). Siting scenarios come in blocks of 24
hours (stratified sampling): ``--scenarios N`` builds ``24·⌈N/24⌉`` and exports ``N`` of them,
evenly spaced (``round(linspace)``), with probabilities renormalized; our extensive form over
the same indices (``solve_extensive_form(problem, scenarios=...)``) is the reference.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path
from typing import Any

from gridrecourse.cli_common import emit

PROBLEMS = ("siting", "expand", "voltvar")


def add_export_parser(subparsers) -> argparse.ArgumentParser:
    """Register ``export`` on the CLI's sub-parsers."""
    text = "write a two-stage instance as MPS files for mpi-sppy (one per scenario)"
    p = subparsers.add_parser("export", help=text, description=__doc__.splitlines()[0])
    p.add_argument("feeder", help="feeder name or path")
    p.add_argument("--problem", choices=PROBLEMS, default="siting")
    p.add_argument("--scenarios", type=int, default=24, help="scenarios to export (>= 1)")
    p.add_argument("--seed", type=int, default=0, help="scenario seed (as the command's)")
    p.add_argument("--out", required=True, help="output directory (new, or with --overwrite)")
    p.add_argument("--overwrite", action="store_true", help="write into an existing --out")
    p.add_argument(
        "--options",
        default="",
        help='further options of the problem\'s own command, quoted (e.g. "--monitor fm" '
        'for voltvar, "--objective losses" is refused: quadratic)',
    )
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.add_argument("--quiet", action="store_true", help="no progress on stderr")
    p.set_defaults(func=run_export)
    return p


def _command_args(command: str, adder, argv: list[str]) -> argparse.Namespace:
    """The namespace the command's own parser gives ``argv`` (all its defaults)."""
    parser = argparse.ArgumentParser(prog="gridrecourse")
    sub = parser.add_subparsers(dest="command")
    adder(sub)
    return parser.parse_args([command, *argv])


def _extra(args: argparse.Namespace) -> list[str]:
    import shlex

    return shlex.split(args.options or "")


def _evenly(n_built: int, n: int):
    import numpy as np

    return np.unique(np.round(np.linspace(0, n_built - 1, n)).astype(int))


def build_export_problem(args: argparse.Namespace):
    """``(problem, scenario indices)`` of ``--problem`` built by its command's builder."""
    from gridrecourse.errors import GridRecourseError

    if args.scenarios < 1:
        raise GridRecourseError(f"--scenarios must be >= 1, got {args.scenarios}")
    if args.problem == "siting":
        from gridrecourse.cli_siting import add_siting_parser
        from gridrecourse.cli_siting import build_problem as build_siting

        n_built = 24 * math.ceil(args.scenarios / 24)
        ns = _command_args(
            "siting",
            add_siting_parser,
            [args.feeder, "--scenarios", str(n_built), "--seed", str(args.seed), *_extra(args)],
        )
        _, problem = build_siting(ns)
        return problem, _evenly(n_built, args.scenarios)
    if args.problem == "voltvar":
        from gridrecourse.cli_voltvar import add_voltvar_parser
        from gridrecourse.cli_voltvar import build_problem as build_voltvar

        ns = _command_args(
            "voltvar",
            add_voltvar_parser,
            [
                args.feeder,
                "--scenarios",
                str(args.scenarios),
                "--seed",
                str(args.seed),
                *_extra(args),
            ],
        )
        problem = build_voltvar(ns)
        return problem, _evenly(problem.n_scenarios, args.scenarios)
    return _expand_problem(args)


def _expand_problem(args: argparse.Namespace):
    """``expand --method ef``'s instance: ``--scenarios`` training days as scenarios."""
    from gridrecourse.cli_expand import (
        DEFAULT_UNIT_KWH,
        _load_problem,
        add_expand_parser,
    )
    from gridrecourse.learning.feeder_data import (
        FeederDataConfig,
        Split,
        SplitKind,
        build_feeder_dataset,
    )
    from gridrecourse.problems.storage_scenarios import (
        CapacityDomain,
        StorageScenarioConfig,
        StorageScenarioProblem,
        evenly_spaced,
    )

    ns = _command_args(
        "expand",
        add_expand_parser,
        [args.feeder, "--method", "ef", "--scenarios", str(args.scenarios), *_extra(args)],
    )
    _, expansion = _load_problem(ns.feeder, ns.horizon)
    data = build_feeder_dataset(
        expansion.load_sites,
        expansion.nominal_load_kw,
        FeederDataConfig(
            history=ns.history,
            horizon=ns.horizon,
            stride=ns.stride,
            split=SplitKind(ns.split),
            pv_kw_per_kw_load=ns.pv_penetration,
        ),
    )
    days = evenly_spaced(len(data.train), args.scenarios)
    y = data.train.y[days]
    pv = data.pv_kw(Split.TRAIN)
    problem = StorageScenarioProblem(
        expansion,
        y[:, :, 0],
        y[:, :, 1:],
        None if pv is None else pv[days],
        StorageScenarioConfig(
            capacity_unit_kwh=DEFAULT_UNIT_KWH if ns.unit_kwh is None else ns.unit_kwh,
            domain=CapacityDomain.CONTINUOUS
            if ns.continuous_capacity
            else CapacityDomain.INTEGER_UNITS,
        ),
    )
    import numpy as np

    return problem, np.arange(problem.n_scenarios)


def run_export(args: argparse.Namespace) -> dict[str, Any]:
    """Build the problem and write the files; emits the summary."""
    import json

    from gridrecourse.problems.export import export_mps_instance

    t0 = time.perf_counter()
    out = Path(args.out)
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        from gridrecourse.errors import GridRecourseError

        raise GridRecourseError(f"--out {out} exists and is not empty (use --overwrite)")
    if not args.quiet:
        print(f"building {args.problem} on {args.feeder}", file=sys.stderr)
    problem, indices = build_export_problem(args)
    if not args.quiet:
        print(f"writing {len(indices)} scenarios to {out}", file=sys.stderr)
    exported = export_mps_instance(problem, out, scenarios=indices)
    summary = {
        "command": "export",
        "problem": args.problem,
        "feeder": args.feeder,
        "directory": str(out),
        "n_scenarios": len(exported.scenario_names),
        "scenario_indices": [int(i) for i in exported.scenario_indices],
        "probabilities": [float(p) for p in exported.probabilities],
        "n_nonants": len(exported.nonants),
        "files": [f"{n}.mps" for n in exported.scenario_names],
        "mpi_sppy": f"--module-name mpisppy.problem_io.mps_module --mps-files-directory {out}",
        "argv": sys.argv[1:],
        "seconds": time.perf_counter() - t0,
    }
    (out / "instance.json").write_text(json.dumps(summary, indent=1))

    def human() -> None:
        print(
            f"{summary['n_scenarios']} scenarios ({summary['n_nonants']} nonanticipative "
            f"columns) written to {out} in {summary['seconds']:.1f} s"
        )

    emit(summary, bool(args.json), human)
    return summary
