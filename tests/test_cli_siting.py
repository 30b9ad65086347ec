"""``gridrecourse siting``: JSON keys, run folder, and the EF decision evaluated exactly."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from gridrecourse.cli import main

REQUIRED_KEYS = {"method", "status", "objective", "wall_seconds", "n_scenarios", "units_per_bus"}


@pytest.mark.shared
def test_siting_ef_json_and_run_folder(feeder_dir, tmp_path, capsys):
    out = tmp_path / "ef"
    code = main(
        ["siting", "ieee13", "--scenarios", "24", "--method", "ef", "--json", "--out", str(out)]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert REQUIRED_KEYS <= summary.keys()
    assert summary["n_scenarios"] == 24
    # The exact evaluation of the EF's first stage equals the EF's own objective (P1 is an LP:
    # the EF models the recourse exactly), up to the MIP gap.
    assert summary["objective"] == pytest.approx(summary["ef_objective"], rel=1e-6)
    assert summary["ef_bound"] <= summary["objective"] * (1 + 1e-9)
    # the whole budget is $1.5M at $1000/kW: at most 1500 kW
    assert 0 < summary["total_pv_kw"] <= 1500.0 + 1e-9
    for name in ("decision.csv", "scenario_objectives.csv", "result.json", "report.md"):
        assert (out / name).is_file(), name


@pytest.mark.shared
def test_siting_spar_json_reports_iterations_and_accuracy(feeder_dir, tmp_path, capsys):
    out = tmp_path / "spar"
    code = main(
        [
            "siting",
            "ieee13",
            "--scenarios",
            "24",
            "--method",
            "spar",
            "--max-iterations",
            "30",
            "--mip-feasibility-tolerance",
            "1e-9",
            "--json",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert REQUIRED_KEYS | {"iterations", "approximation_accuracy"} <= summary.keys()
    assert 1 <= summary["iterations"] <= 30
    # polishing (default) keeps the best exactly evaluated decision: never above SPAR's own
    assert summary["polish_decisions_evaluated"] >= 1
    assert summary["objective"] <= summary["learned_objective"] * (1 + 1e-12)
    assert (out / "learned_value_functions.png").is_file()
    assert (out / "history.csv").is_file()


@pytest.mark.shared
def test_siting_ph_json(feeder_dir, tmp_path, capsys):
    code = main(
        [
            "siting",
            "ieee13",
            "--scenarios",
            "24",
            "--method",
            "ph",
            "--max-iterations",
            "5",
            "--rho",
            "0.5",
            "--rho-growth",
            "2",
            "--json",
            "--out",
            str(tmp_path / "ph"),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert REQUIRED_KEYS | {"iterations", "converged"} <= summary.keys()
    assert 1 <= summary["iterations"] <= 6  # iteration 0 plus at most 5 PH iterations
    history = pd.read_csv(tmp_path / "ph" / "history.csv")
    rho = history["rho"].to_numpy()
    np.testing.assert_allclose(rho, [0.0] + [0.5 * 2.0**k for k in range(len(rho) - 1)])
