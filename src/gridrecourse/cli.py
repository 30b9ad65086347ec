"""Command-line interface: ``gridrecourse info|validate|opf|siting|expand FEEDER``.

FEEDER is a built-in name (``ieee_european_lv`` by default, ``case33bw``; ``ieee13`` …
``ieee9500-unbal`` when the IEEE feeder folder is available), an OpenDSS master ``.dss`` or a
gridrecourse feeder ``.json``. Every command writes a run folder (except ``info``) and, with
``--json``, prints exactly one JSON object on stdout; progress goes to stderr.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict
from typing import TYPE_CHECKING

from gridrecourse.cli_common import (
    EXIT_SIGINT,
    EXIT_SIGTERM,
    EXIT_USAGE,
    NON_NEGATIVE,
    POSITIVE,
    Bound,
    OptionError,
    Progress,
    SeriesKind,
    add_data_options,
    add_run_options,
    check_options,
    emit,
    execute,
    given_options,
    open_run,
    option_flag,
    read_data_option,
    resolved_config,
)
from gridrecourse.errors import GridRecourseError

if TYPE_CHECKING:  # pragma: no cover
    from gridrecourse.report.run_folder import RunFolder

#: Default feeder of info/validate/opf (= ``network.loading.DEFAULT_FEEDER``, kept here so
#: ``--help`` imports nothing heavy; a test checks they agree).
DEFAULT_FEEDER = "ieee_european_lv"
#: Built-in names shown in ``--help`` (= ``network.loading.builtin_names()``, tested).
BUILTIN_HELP = "ieee_european_lv, case33bw; ieee13 … ieee9500-unbal with the IEEE folder"
#: Sub-commands: name → (module, function adding its parser, one-line help). The module is
#: imported only when the command is run or its own ``--help`` is asked for.
COMMANDS: dict[str, tuple[str, str, str]] = {
    "info": ("gridrecourse.cli", "add_info_parser", "element counts and model size of a feeder"),
    "validate": (
        "gridrecourse.cli",
        "add_validate_parser",
        "compare LinDist3Flow with OpenDSS's AC power flow",
    ),
    "opf": (
        "gridrecourse.cli",
        "add_opf_parser",
        "deterministic 24-h OPF with HiGHS on bundled real profiles",
    ),
    "siting": (
        "gridrecourse.cli_siting",
        "add_siting_parser",
        "PV siting and sizing under uncertainty (SPAR, EF, PH; bounds; AC certificate)",
    ),
    "expand": (
        "gridrecourse.cli_expand",
        "add_expand_parser",
        "battery capacity expansion: LSTM + conformal boxes (ETO/E2E) or EF/PH/SPAR",
    ),
    "voltvar": (
        "gridrecourse.cli_voltvar",
        "add_voltvar_parser",
        "volt-var control: taps and switches under uncertainty (EF, PH)",
    ),
    "voltvar-train": (
        "gridrecourse.cli_voltvar",
        "add_voltvar_parser",
        "volt-var neural surrogate: generate data and train (paper B)",
    ),
    "operate": (
        "gridrecourse.cli_operate",
        "add_operate_parser",
        "day-ahead operation under uncertainty (IGDT, CL-DIGDT)",
    ),
    "export": (
        "gridrecourse.cli_export",
        "add_export_parser",
        "write a two-stage instance as MPS files for mpi-sppy (one per scenario)",
    ),
}
#: Ranges of opf's numeric options.
OPF_BOUNDS = {
    "day": Bound(0, 364),
    "pv_penetration": NON_NEGATIVE,
    "time_limit": POSITIVE,
    "max_switch_ops": NON_NEGATIVE,
    "max_total_switch_ops": NON_NEGATIVE,
    "switch_cost": NON_NEGATIVE,
    "max_tap_changes": NON_NEGATIVE,
    "tap_change_cost": NON_NEGATIVE,
}
#: opf options that apply only with --reconfigure / --taps optimize.
OPF_OPTION_MODES = {
    "max_switch_ops": ("reconfigure",),
    "max_total_switch_ops": ("reconfigure",),
    "switch_cost": ("reconfigure",),
    "tap_positions": ("optimize",),
    "max_tap_changes": ("optimize",),
    "tap_change_cost": ("optimize",),
    "tap_initial": ("optimize",),
}


def cmd_info(args: argparse.Namespace) -> dict:
    """Element counts of a feeder (and of its LinDist3Flow model)."""
    import warnings

    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.network.prepare import OperatingPoint, RootVoltages, prepare_feeder

    feeder = resolve_feeder_spec(args.feeder)
    summary = dict(feeder.summary())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prepared = prepare_feeder(feeder, OperatingPoint(root_voltages=RootVoltages.NOMINAL))
    model_feeder, math = prepared.feeder, prepared.math
    summary.update(
        model_n_buses=math.n_buses,
        model_n_nodes=math.n_nodes,
        model_n_branch_phases=math.n_branch_phases,
        reductions=[
            asdict(r) | {"folded_buses": len(r.folded_buses)} for r in model_feeder.reductions
        ],
    )

    def human() -> None:
        for key, value in summary.items():
            if key != "reductions":
                print(f"{key:>24}: {value}")
        for r in summary["reductions"]:
            print(f"{'reduction':>24}: {r['description']}")
            print(
                f"{'':>24}  buses {r['buses_before']} -> {r['buses_after']}, nodes "
                f"{r['nodes_before']} -> {r['nodes_after']}, branches {r['branches_before']} "
                f"-> {r['branches_after']}"
            )

    emit(summary, args.json, human)
    return summary


def cmd_validate(args: argparse.Namespace) -> dict:
    """LinDist3Flow vs OpenDSS AC power flow; run folder with table and voltage profile."""
    from gridrecourse.evaluation.validation import validate_feeder
    from gridrecourse.report.plots import voltage_profile_plot

    progress = Progress(3, quiet=args.json or args.quiet)
    t0 = time.perf_counter()
    folder = open_run(args, "validate", str(args.feeder), resolved_config(args))
    progress(f"importing {args.feeder} and solving the AC power flow in OpenDSS")
    run = validate_feeder(args.feeder)
    result = run.result
    progress("writing tables and the voltage-profile plot")
    folder.write_table("voltages", run.table)
    voltage_profile_plot(run.table, folder.path / "voltage_profile.png", f"{result.feeder}")
    r = result
    folder.add_report(
        f"# LinDist3Flow vs OpenDSS AC: {r.feeder}\n\n"
        f"- model: {r.n_buses} buses, {r.n_nodes} nodes, {r.n_branches} branch elements\n"
        f"- lossless: max |ΔV| = {r.max_abs_voltage_error_pu:.4f} p.u. (at {r.worst_node}), "
        f"mean {r.mean_abs_voltage_error_pu:.4f} p.u., substation P error "
        f"{r.substation_p_error_pct:.2f} %\n"
        f"- loss-corrected: max |ΔV| = {r.max_abs_voltage_error_pu_loss_corrected:.4f} p.u., "
        f"mean {r.mean_abs_voltage_error_pu_loss_corrected:.4f} p.u., substation P error "
        f"{r.substation_p_error_pct_loss_corrected:.3f} %\n"
        f"- reductions: {'; '.join(r.reductions) or 'none'}\n\n"
        "![voltage profile](voltage_profile.png)\n"
    )
    summary = {
        **asdict(result),
        "run_folder": str(folder.path),
        "wall_seconds": time.perf_counter() - t0,
    }
    folder.write_result(summary)
    progress(f"done: run folder {folder.path}")

    def human() -> None:
        print(
            f"{r.feeder}: {r.n_nodes} nodes; max |V_lin - V_AC| = "
            f"{r.max_abs_voltage_error_pu:.4f} p.u. lossless, "
            f"{r.max_abs_voltage_error_pu_loss_corrected:.4f} p.u. loss-corrected; "
            f"substation P error {r.substation_p_error_pct:.2f} % "
            f"({r.substation_p_error_pct_loss_corrected:.3f} % corrected)\n"
            f"run folder: {folder.path}"
        )

    emit(summary, args.json, human)
    return summary


def cmd_opf(args: argparse.Namespace) -> dict:
    """Deterministic 24-h OPF (import cost, PV curtailment, voltage and thermal limits)."""
    import numpy as np
    import pandas as pd

    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.network.prepare import prepare_math_feeder
    from gridrecourse.problems.opf import OPFConfig, build_opf, solve_opf
    from gridrecourse.problems.profiles import bundled_day
    from gridrecourse.report.plots import opf_plot
    from gridrecourse.solvers.options import SolverOptions

    given = getattr(args, "given_options", frozenset())
    modes = {"reconfigure"} if args.reconfigure else set()
    modes |= {"optimize"} if args.taps == "optimize" else set()
    check_options(args, OPF_BOUNDS)
    for dest, needs in OPF_OPTION_MODES.items():
        if dest in given and not modes & set(needs):
            flag = "--reconfigure" if needs == ("reconfigure",) else "--taps optimize"
            raise GridRecourseError(f"--{dest.replace('_', '-')} applies only with {flag}")
    progress = Progress(5, quiet=args.json or args.quiet)
    t0 = time.perf_counter()
    folder = open_run(args, "opf", str(args.feeder), resolved_config(args))
    progress(f"importing {args.feeder}")
    feeder = resolve_feeder_spec(args.feeder)
    # default operating point: OpenDSS taps, normal switches, snapshot root voltages
    switching = _switching_options(args)
    taps = _tap_options(args)
    math = prepare_math_feeder(feeder, _switching_operating_point(switching))
    day = _day_profiles(args, bundled_day(args.day))
    config = OPFConfig(
        load_profile=day.load,
        pv_profile=day.pv,
        price_per_mwh=day.price_per_mwh,
        pv_penetration=args.pv_penetration,
        thermal_limits=not args.no_thermal,
        voltage_penalty_per_pu_h=None if args.hard_limits else OPFConfig.voltage_penalty_per_pu_h,
        thermal_penalty_per_pu_h=None if args.hard_limits else OPFConfig.thermal_penalty_per_pu_h,
    )
    progress(f"building the {config.n_periods}-period model ({math.n_nodes} nodes)")
    opf = build_opf(math, config, switching=switching, taps=taps)
    progress("solving with HiGHS")
    result = solve_opf(opf, SolverOptions(time_limit=args.time_limit))
    hours = np.arange(config.n_periods)
    hourly = pd.DataFrame(
        {
            "hour": hours,
            "load_multiplier": day.load,
            "pv_multiplier": day.pv,
            "price_per_mwh": day.price_per_mwh,
            "import_kw": result.import_kw,
            "pv_kw": result.pv_kw.sum(axis=0),
            "pv_available_kw": result.pv_available_kw.sum(axis=0),
            "v_min_pu": result.v_pu.min(axis=0),
            "v_max_pu": result.v_pu.max(axis=0),
        }
    )
    folder.write_table("hourly", hourly)
    volts = pd.DataFrame(result.v_pu, columns=[f"h{h:02d}" for h in hours])
    volts.insert(0, "node", math.node_names)
    folder.write_table("voltages", volts)
    opf_plot(
        hours,
        result.import_kw,
        hourly["pv_kw"],
        hourly["pv_available_kw"],
        day.price_per_mwh,
        hourly["v_min_pu"],
        hourly["v_max_pu"],
        folder.path / "opf_day.png",
        f"{feeder.name}: day {args.day}",
    )
    summary = {
        "feeder": feeder.name,
        "status": result.status,
        "objective": result.cost,
        "energy_cost": result.energy_cost,
        "curtailed_kwh": result.curtailed_kwh,
        "n_voltage_violations": result.n_voltage_violations,
        "max_voltage_violation_pu": result.max_voltage_violation_pu,
        "n_thermal_violations": result.n_thermal_violations,
        "max_loading_pct": result.max_loading_pct,
        "n_nodes": math.n_nodes,
        "n_periods": config.n_periods,
        "build_seconds": result.build_seconds,
        "solve_seconds": result.solve_seconds,
        "wall_seconds": time.perf_counter() - t0,
        "run_folder": str(folder.path),
    }
    if switching is not None:
        progress("checking the chosen switch configurations (graph, OpenDSS AC)")
        summary.update(_switch_summary(feeder, opf, result))
    if taps is not None:
        progress("replaying the chosen taps in OpenDSS's AC power flow (controls off)")
        summary.update(_tap_summary(feeder, opf, result))
    from gridrecourse.report.html import key_value_table

    folder.add_report(
        f"# 24-h OPF on {feeder.name} (day {args.day})\n\n"
        + key_value_table(summary, {"objective": "EUR", "energy_cost": "EUR"}, skip=("run_folder",))
        + "\n![day](opf_day.png)\n"
    )
    progress("AC certificate: the decision pushed into OpenDSS hour by hour (controls off)")
    summary.update(_ac_certificate(feeder, opf, result, folder))
    folder.write_result(summary)
    progress(f"done: run folder {folder.path}")

    def human() -> None:
        print(
            f"{feeder.name}: {result.status}, energy cost {result.energy_cost:.2f}, "
            f"curtailed {result.curtailed_kwh:.1f} kWh, voltage violations "
            f"{result.n_voltage_violations}, overloads {result.n_thermal_violations}\n"
            f"run folder: {folder.path}"
        )
        if switching is not None:
            open_ = sorted(k for k, v in result.switch_states.items() if 0 in v)
            print(
                f"switches: {summary['n_switch_operations']} operations, open at some hour: "
                f"{open_}; radial {summary['switch_check_radial']}, energized "
                f"{summary['switch_check_energized']}, AC max |dV| "
                f"{summary['switch_ac_max_abs_voltage_error_pu']:.4f} p.u. (loss-corrected)"
            )
        if taps is not None:
            print(f"taps (OpenDSS tap numbers per hour), {summary['tap_changes']} step(s) moved:")
            for name, numbers in result.taps.items():
                print(f"  {name:>10}: {' '.join(f'{n:+d}' for n in numbers)}")
            ac = summary.get("tap_ac_max_abs_voltage_error_pu")
            if ac is not None:
                print(f"AC check of the chosen taps: max |V_model - V_AC| = {ac:.4f} p.u.")

    emit(summary, args.json, human)
    return summary


def _day_profiles(args: argparse.Namespace, bundled):
    """Day ``--day`` of ``--load-data/--pv-data/--price-data`` where given, else the bundled day.

    The files are read by :func:`gridrecourse.cli_common.read_data_option` (hourly, one value
    column): the load scaled to its peak, PV in kW per kW (scaled to its peak when above 1),
    prices as given.
    """
    from dataclasses import replace

    changes = {}
    for dest, field in (("load_data", "load"), ("pv_data", "pv"), ("price_data", "price_per_mwh")):
        values = read_data_option(args, dest)
        if values is None:
            continue
        hours = slice(args.day * 24, (args.day + 1) * 24)
        if len(values) < hours.stop:
            raise OptionError(
                f"{option_flag(args, dest)} {getattr(args, dest)}: {len(values)} hourly values, "
                f"--day {args.day} needs {hours.stop}"
            )
        changes[field] = values[hours]
    return replace(bundled, **changes) if changes else bundled


def _ac_certificate(feeder, opf, result, folder: RunFolder) -> dict:
    """The OPF's decision (loads, PV dispatch, taps, switch states) certified in OpenDSS."""
    from gridrecourse.evaluation.certificate import certify, opf_schedule
    from gridrecourse.report.ac_certificate import write_certificate

    run = certify(feeder, opf_schedule(opf, result))
    return write_certificate(folder, run, f"{feeder.name}: OPF decision in AC")


def _tap_options(args: argparse.Namespace):
    """``TapOptions`` from ``opf --taps optimize`` (None with ``--taps fixed``)."""
    if getattr(args, "taps", "fixed") != "optimize":
        return None
    from gridrecourse.formulation.taps import TapOptions, TapPositions

    try:
        positions = TapPositions.parse(args.tap_positions)
    except ValueError as exc:
        raise GridRecourseError(str(exc)) from exc
    return TapOptions(
        positions=positions,
        max_changes=args.max_tap_changes,
        initial=None if args.tap_initial == "none" else args.tap_initial,
        change_cost=args.tap_change_cost,
    )


def _tap_summary(feeder, opf, result) -> dict:
    """Chosen taps per regulator and hour, MILP size, and the taps replayed in OpenDSS.

    The AC check (:func:`gridrecourse.evaluation.certificate.check_opf_in_ac`) writes each
    hour's taps to the regulator transformers with every control off, sets the loads and the
    PV dispatch and compares OpenDSS's voltages with the model's (only for feeders from
    OpenDSS).
    """
    import numpy as np

    from gridrecourse.evaluation.certificate import check_opf_in_ac

    numbers = np.array(list(result.taps.values())).reshape(len(result.taps), -1)
    cols = opf.model.columns()
    out = {
        "taps": result.taps,
        "tap_changes": int(np.abs(np.diff(numbers, axis=1)).sum()),
        "tap_positions": opf.tap_options.positions.describe(),
        "milp_rows": opf.model.n_rows,
        "milp_columns": opf.model.n_cols,
        "milp_binaries": int(cols.integer.sum()),
    }
    if feeder.source_kind == "opendss" and result.taps:
        ac = check_opf_in_ac(feeder, opf, result)
        out.update(
            tap_ac_converged=ac.converged,
            tap_ac_max_abs_voltage_error_pu=ac.max_abs_voltage_error_pu,
            tap_ac_worst_node=ac.worst_node,
            tap_ac_worst_hour=ac.worst_period,
            tap_ac_v_min_pu=float(ac.ac_v_min_pu.min()),
            tap_ac_v_max_pu=float(ac.ac_v_max_pu.max()),
        )
    return out


def _switching_options(args: argparse.Namespace):
    """``SwitchingOptions`` from ``opf --reconfigure`` (None without it)."""
    if not getattr(args, "reconfigure", False):
        return None
    from gridrecourse.formulation.switches import SwitchingOptions

    return SwitchingOptions(
        max_operations=args.max_switch_ops,
        max_total_operations=args.max_total_switch_ops,
        operation_cost=args.switch_cost,
    )


def _switching_operating_point(switching):
    """With ``--reconfigure`` every switch is kept as decision data (ties included)."""
    if switching is None:
        return None
    from gridrecourse.network.prepare import OperatingPoint, SwitchMode

    return OperatingPoint(switches=SwitchMode.AS_DECISIONS)


def _switch_summary(feeder, opf, result) -> dict:
    """Chosen switch states, MILP size and independent checks of each distinct configuration.

    Each configuration used in some period is checked on the engineering feeder's phase graph
    (radial, every bus-phase fed) and in OpenDSS (states applied to the switch lines, AC power
    flow vs LinDist3Flow of that configuration, loss-corrected). The whole solution is also
    replayed hour by hour in OpenDSS (states, loads, PV; ``check_opf_in_ac``) against the
    OPF's own lossless voltages.
    """
    from gridrecourse.evaluation.switch_check import ac_agreement, check_radial_energized

    names = list(result.switch_states)
    hours = range(opf.config.n_periods)
    columns = {tuple(result.switch_states[n][t] for n in names) for t in hours}
    checks = []
    for column in sorted(columns):
        states = {n: bool(v) for n, v in zip(names, column, strict=True)}
        graph = check_radial_energized(feeder, states)
        row = {
            "open": [n for n, v in states.items() if not v],
            "radial": graph.radial,
            "energized": graph.energized,
            "loop": list(graph.loop_edges),
            "unfed_nodes": list(graph.unfed_nodes),
        }
        if feeder.source_kind == "opendss" and graph.radial and graph.energized:
            ac = ac_agreement(feeder, states)
            row.update(
                ac_converged=ac.ac_converged,
                ac_max_abs_voltage_error_pu=ac.max_abs_voltage_error_pu,
                ac_max_abs_voltage_error_pu_loss_corrected=ac.max_abs_voltage_error_pu_loss_corrected,
                ac_worst_node=ac.worst_node,
            )
        checks.append(row)
    key = "ac_max_abs_voltage_error_pu_loss_corrected"
    ac_errors = [c[key] for c in checks if key in c]
    cols = opf.model.columns()
    replay = {}
    if feeder.source_kind == "opendss":
        from gridrecourse.evaluation.certificate import check_opf_in_ac

        # the OPF's own (lossless) voltages vs OpenDSS at each hour's states, loads and PV
        ac = check_opf_in_ac(feeder, opf, result)
        replay = {
            "switch_opf_ac_converged": ac.converged,
            "switch_opf_ac_max_abs_voltage_error_pu": ac.max_abs_voltage_error_pu,
            "switch_opf_ac_worst_node": ac.worst_node,
            "switch_opf_ac_worst_hour": ac.worst_period,
        }
    return {
        **replay,
        "switch_states": result.switch_states,
        "n_switch_operations": result.n_switch_operations,
        "switch_configurations": checks,
        "switch_check_radial": all(c["radial"] for c in checks),
        "switch_check_energized": all(c["energized"] for c in checks),
        "switch_ac_max_abs_voltage_error_pu": max(ac_errors) if ac_errors else float("nan"),
        "milp_rows": opf.model.n_rows,
        "milp_columns": opf.model.n_cols,
        "milp_binaries": int(cols.integer.sum()),
    }


def _add_feeder(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "feeder",
        nargs="?",
        default=DEFAULT_FEEDER,
        help=f"built-in name ({BUILTIN_HELP}), OpenDSS master .dss or feeder .json "
        f"(default {DEFAULT_FEEDER})",
    )


def add_info_parser(sub) -> argparse.ArgumentParser:
    """Register ``info``."""
    p = sub.add_parser("info", help=COMMANDS["info"][2], description=COMMANDS["info"][2])
    _add_feeder(p)
    p.add_argument("--json", action="store_true", help="print one JSON object on stdout")
    p.set_defaults(func=cmd_info)
    return p


def add_validate_parser(sub) -> argparse.ArgumentParser:
    """Register ``validate``."""
    text = COMMANDS["validate"][2]
    p = sub.add_parser("validate", help=text, description=text)
    _add_feeder(p)
    add_run_options(p, "validate")
    p.set_defaults(func=cmd_validate)
    return p


def add_opf_parser(sub) -> argparse.ArgumentParser:
    """Register ``opf``."""
    text = COMMANDS["opf"][2]
    p = sub.add_parser("opf", help=text, description=text)
    _add_feeder(p)
    add_run_options(p, "opf")
    p.add_argument("--day", type=int, default=196, help="day of year 0-364 (default 196)")
    p.add_argument(
        "--pv-penetration",
        type=float,
        default=0.5,
        help="PV kW per load kW added when the feeder has no PV, >= 0 (default 0.5)",
    )
    p.add_argument(
        "--hard-limits", action="store_true", help="hard voltage/thermal limits (may be infeasible)"
    )
    p.add_argument("--no-thermal", action="store_true", help="drop thermal limits")
    p.add_argument("--time-limit", type=float, default=None, help="solver time limit (s, > 0)")
    add_data_options(p, tuple(SeriesKind), {kind: "day --day is used" for kind in SeriesKind})
    p.add_argument(
        "--reconfigure",
        action="store_true",
        help="switch states per hour as decisions (MILP; radial, every bus fed); the chosen "
        "configurations are checked on the feeder graph and against OpenDSS AC",
    )
    p.add_argument(
        "--max-switch-ops",
        type=int,
        default=None,
        help="with --reconfigure: operations per switch over the day (paper B: 8)",
    )
    p.add_argument(
        "--max-total-switch-ops",
        type=int,
        default=None,
        help="with --reconfigure: operations of all switches together over the day",
    )
    p.add_argument(
        "--switch-cost",
        type=float,
        default=100.0,
        help="with --reconfigure: cost per switch operation (default 100, paper B's C_sw)",
    )
    p.add_argument(
        "--taps",
        choices=("fixed", "optimize"),
        default="fixed",
        help="regulator taps: fixed at the feeder's (default) or decisions per hour (MILP); "
        "the chosen taps are replayed in OpenDSS's AC power flow",
    )
    p.add_argument(
        "--tap-positions",
        default="full",
        help="with --taps optimize: 'full' (each regulator's own range, default), H (±H steps "
        "around neutral), H@current (around the feeder's tap), 'paper-b' (0.95..1.05 in 5) or "
        "a comma list of taps in p.u.",
    )
    p.add_argument(
        "--max-tap-changes",
        type=int,
        default=None,
        help="with --taps optimize: tap steps each regulator may move over the day (paper B: 4)",
    )
    p.add_argument(
        "--tap-change-cost",
        type=float,
        default=0.0,
        help="with --taps optimize: cost per tap step moved (default 0; paper B's C_OLTC 300)",
    )
    p.add_argument(
        "--tap-initial",
        choices=("none", "current"),
        default="none",
        help="with --taps optimize: count changes from the feeder's taps before hour 0 "
        "('current') or leave hour 0 free ('none', default)",
    )
    p.set_defaults(func=cmd_opf)
    return p


def _version() -> str:
    from gridrecourse import __version__

    return __version__


def build_parser(commands: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The argument parser (one sub-command per job).

    Parameters
    ----------
    commands : sequence of str, optional
        Commands registered in full (their module imported); the others get a stub that only
        shows in the top-level ``--help``. None: every command in full.
    """
    parser = argparse.ArgumentParser(
        prog="gridrecourse",
        description="Decisions under uncertainty on three-phase distribution feeders. "
        "Start with: gridrecourse siting case33bw --scenarios 48 --max-iterations 60 --bounds "
        "--replications 3",
    )
    parser.add_argument("--version", action="version", version=f"gridrecourse {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    full = set(COMMANDS) if commands is None else set(commands)
    adders = {COMMANDS[name][:2] for name in full if name in COMMANDS}
    for name, (module, adder, text) in COMMANDS.items():
        if (module, adder) in adders:  # one module may register several commands
            adders.discard((module, adder))
            getattr(importlib.import_module(module), adder)(sub)
        elif name not in sub.choices:
            sub.add_parser(name, help=text, add_help=False)
    return parser


def _chosen_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in ``argv`` (the first token that is not an option)."""
    for token in argv:
        if not token.startswith("-"):
            return token
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (0 ok, 1 error, 2 usage, 130 SIGINT, 143 SIGTERM).

    Only the chosen command's module is imported (``--help`` stays fast). With ``--json``
    stdout holds exactly one JSON object, also on error (:func:`cli_common.execute`).
    """
    import json

    console = argv is None  # the process is ours (console script, python -m)
    argv = list(sys.argv[1:] if argv is None else argv)
    name = _chosen_command(argv)
    # only the named command's module is imported; no command (--help, --version): none; a
    # name not in COMMANDS (a command registered by a module itself): every module
    parser = build_parser([] if name is None else [name] if name in COMMANDS else None)
    as_json = "--json" in argv
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        code = int(exc.code or 0)
        if code and as_json:
            print(
                json.dumps(
                    {
                        "error": "UsageError",
                        "kind": "usage",
                        "message": f"invalid command line: {' '.join(argv)} (see stderr)",
                        "exit_code": EXIT_USAGE,
                    }
                )
            )
        return code
    sub = parser._subparsers._group_actions[0].choices[args.command]
    args.given_options, args.option_flags = given_options(sub, argv)
    args.argv = argv
    code = execute(args)
    highs = sys.modules.get("gridrecourse.solvers.highs")
    abandoned = highs is not None and highs.abandoned_solves()
    if console and (abandoned or code in (EXIT_SIGINT, EXIT_SIGTERM)):
        # an interrupt can leave native threads mid-task (a HiGHS solve left to its thread, a
        # solver's worker pool): C++ static destructors at interpreter exit then abort the
        # process (SIGABRT, "terminate called without an active exception") instead of
        # returning the exit code. Everything is written (run folder status, message), so the
        # process ends here, with its streams and log handlers flushed.
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
