"""``gridrecourse operate``: exactly one JSON object on stdout, the issue's keys, bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gridrecourse.cli import main

KEYS = {
    "method",
    "budget",
    "first_stage_cost",
    "mean_second_stage_cost",
    "epb",
    "reliability",
    "n_evaluation_days",
    "alpha",
    "delta",
    "iterations",
    "wall_seconds",
}


def test_operate_dt_prints_one_clean_json_object(tmp_path):
    """A fresh process (HiGHS prints its banner once per process, on file descriptor 1)."""
    out = tmp_path / "run"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "gridrecourse.cli",
            "operate",
            "case33bw",
            "--method",
            "dt",
            "--test-days",
            "3",
            "--no-ac",
            "--json",
            "--out",
            str(out),
        ],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert set(summary) == KEYS
    assert summary["method"] == "dt" and summary["n_evaluation_days"] == 3
    assert summary["alpha"] is None and summary["delta"] is None and summary["iterations"] == []
    assert summary["budget"] == pytest.approx(1.3 * summary["first_stage_cost"], rel=1e-9)
    assert summary["epb"] == pytest.approx(
        summary["first_stage_cost"] + summary["mean_second_stage_cost"], rel=1e-12
    )
    for name in (
        "methods.csv",
        "evaluation_days.csv",
        "result.json",
        "report.md",
        "ambiguity_band.png",
        "intervals_vs_alpha.png",
        "epb_reliability.png",
    ):
        assert (Path(out) / name).is_file(), name


@pytest.mark.parametrize(
    ("argv", "error", "match"),
    [
        (["--gamma", "1.5"], "AmbiguityInputError", "gamma"),
        (["--gamma", "0"], "AmbiguityInputError", "gamma"),
        (["--epsilon", "0"], "AmbiguityInputError", "epsilon"),
        (["--prior-strength", "-1"], "AmbiguityInputError", "prior"),
        (["--corners", "middle"], "OperateInputError", "corners"),
        (["--ef-days", "-1"], "OperateInputError", "ef-days"),
        (["--workers", "0"], "OperateInputError", "workers"),
        (["--method", "dt", "--train-days", "1"], "AmbiguityInputError", "at least 2"),
        (
            ["--method", "igdt", "--budget", "1", "--test-days", "1", "--no-ac"],
            "BudgetInfeasibleError",
            "below the deterministic cost",
        ),
    ],
)
def test_operate_bad_input_gives_a_clear_error(argv, error, match, tmp_path, capsys):
    code = main(["operate", "case33bw", *argv, "--json", "--out", str(tmp_path / "x")])
    assert code == 1
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["error"] == error
    assert match in payload["message"]


def test_operate_feeder_without_documented_sites(tmp_path, capsys):
    code = main(["operate", "ieee13", "--json", "--out", str(tmp_path / "x")])
    assert code == 1
    payload = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert payload["error"] == "FeederInputError" and "no documented" in payload["message"]


@pytest.mark.slow
def test_operate_ef_row_is_evaluated_like_the_other_plans(tmp_path, capsys):
    """``--ef-days 2``: the stochastic program's plan gets a row of the methods table,
    evaluated on the same held-out days (its EPB is its first-stage cost plus the mean
    recourse over the days every plan serves)."""
    out = tmp_path / "run"
    argv = ["operate", "case33bw", "--method", "dt", "--ef-days", "2", "--test-days", "3"]
    code = main([*argv, "--no-ac", "--json", "--out", str(out)])
    assert code == 0
    result = json.loads((out / "result.json").read_text())
    rows = {r["method"]: r for r in result["methods"]}
    assert set(rows) == {"dt", "ef"}
    ef = rows["ef"]
    assert ef["epb"] == pytest.approx(ef["first_stage_cost"] + ef["mean_second_stage_cost"])
    assert len(result["ef_days"]) == 2 and np.isfinite(result["ef_objective"])
    assert result["argv"][:2] == ["gridrecourse", "operate"]


@pytest.mark.slow
def test_operate_post_evaluation_in_worker_processes_gives_the_same_days(tmp_path):
    """``--workers 2``: the held-out days solved in two worker processes give the recourse
    costs of the in-process evaluation, day by day."""
    out = {}
    for workers in (1, 2):
        folder = tmp_path / f"w{workers}"
        argv = ["operate", "case33bw", "--method", "dt", "--test-days", "4", "--no-ac"]
        assert main([*argv, "--workers", str(workers), "--json", "--out", str(folder)]) == 0
        out[workers] = np.loadtxt(
            folder / "evaluation_days.csv", delimiter=",", skiprows=1, usecols=1
        )
    assert out[2] == pytest.approx(out[1], rel=1e-7)
