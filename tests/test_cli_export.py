"""``gridrecourse export``: mpi-sppy MPS files whose stacked EF is our EF (issue 14)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gridrecourse.cli import main
from gridrecourse.cli_export import build_export_problem
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.solvers.options import SolverOptions

sys.path.insert(0, str(Path(__file__).resolve().parent / "problems"))
from test_export import stacked_ef_objective

EXACT = SolverOptions(mip_gap=1e-9)
VOLTVAR5 = str(Path(__file__).resolve().parent / "data" / "voltvar5" / "Master.dss")


def _export(tmp_path: Path, capsys, *argv: str) -> tuple[dict, Path]:
    out = tmp_path / "instance"
    assert main(["export", *argv, "--out", str(out), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out)
    return summary, out


def _reference(problem_name: str, feeder: str, n: int, options: str = "") -> float:
    ns = argparse.Namespace(
        problem=problem_name, feeder=feeder, scenarios=n, seed=0, options=options
    )
    problem, indices = build_export_problem(ns)
    return solve_extensive_form(problem, EXACT, scenarios=indices).objective


@pytest.mark.slow
def test_export_ieee13_siting_10(tmp_path: Path, capsys) -> None:
    summary, out = _export(tmp_path, capsys, "ieee13", "--problem", "siting", "--scenarios", "10")
    assert summary["n_scenarios"] == 10 and len(summary["scenario_indices"]) == 10
    assert sorted(p.name for p in out.glob("*.mps")) == sorted(summary["files"])
    assert np.isclose(sum(summary["probabilities"]), 1.0)
    tree = json.loads((out / "scen3_nonants.json").read_text())
    assert tree["scenarioData"]["scenProb"] == pytest.approx(0.1)
    assert len(tree["treeData"]["nodes"]["ROOT"]["nonAnts"]) == summary["n_nonants"]
    ours = _reference("siting", "ieee13", 10)
    theirs = stacked_ef_objective(out)
    assert abs(theirs - ours) <= 1e-6 * max(1.0, abs(ours)), (theirs, ours)


def test_export_voltvar5_milp_recourse(tmp_path: Path, capsys) -> None:
    summary, out = _export(
        tmp_path,
        capsys,
        VOLTVAR5,
        "--problem",
        "voltvar",
        "--scenarios",
        "2",
        "--options",
        "--monitor fm",
    )
    assert summary["n_scenarios"] == 2
    ours = _reference("voltvar", VOLTVAR5, 2, "--monitor fm")
    theirs = stacked_ef_objective(out)
    assert abs(theirs - ours) <= 1e-6 * max(1.0, abs(ours)), (theirs, ours)


def test_export_refuses_a_used_directory(tmp_path: Path, capsys) -> None:
    (tmp_path / "x").write_text("keep")
    code = main(["export", VOLTVAR5, "--problem", "voltvar", "--out", str(tmp_path), "--json"])
    assert code == 1
    assert "already holds files" in json.loads(capsys.readouterr().out)["message"]
    assert (tmp_path / "x").read_text() == "keep"
