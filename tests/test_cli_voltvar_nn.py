"""``gridrecourse voltvar-train`` and ``voltvar --method nn`` on the tiny voltvar5 feeder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gridrecourse.cli import main

pytest.importorskip("torch")

FEEDER = str(Path(__file__).resolve().parent / "data" / "voltvar5" / "Master.dss")
CONFIG = [
    "--hours", "2",
    "--start-hour", "18",
    "--pv-buses", "b4",
    "--pv-kva", "500",
    "--monitor", "fm",
    "--max-tap-changes", "2",
    "--initial-taps", "0.95",
    "--max-violation-hours", "1",
    "--max-consecutive-violations", "1",
]  # fmt: skip


def _json(capfd, argv: list[str]) -> tuple[int, dict]:
    code = main([*argv, "--json"])
    out = capfd.readouterr().out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1, f"stdout must be one JSON object, got {out!r}"
    return code, json.loads(lines[0])


def test_train_resume_and_solve_with_nn(capfd, tmp_path):
    train = ["voltvar-train", FEEDER, *CONFIG, "--samples", "8", "--chunk-size", "4",
             "--kernels", "1", "--epochs", "10", "--hidden", "16,8", "--executor", "inprocess",
             "--dir", str(tmp_path / "train")]  # fmt: skip
    code, first = _json(capfd, train)
    assert code == 0 and first["n_samples"] == 8 and first["epochs"] == 10
    assert (tmp_path / "train" / "training_curve.csv").exists()
    code, again = _json(capfd, train)  # every chunk and epoch done: nothing recomputed
    assert code == 0 and again["data_hash"] == first["data_hash"]
    net = first["network"]
    solve = ["voltvar", FEEDER, *CONFIG, "--scenarios", "3", "--seed", "1", "--mip-gap", "1e-9",
             "--method", "nn", "--network", net, "--no-ac", "--ef-objective", "600",
             "--out", str(tmp_path / "nn")]  # fmt: skip
    code, nn = _json(capfd, solve)
    assert code == 0 and nn["method"] == "nn"
    assert {"surrogate_objective", "objective", "gap_pct", "taps", "switch_states"} <= set(nn)
    # a network of 8 samples and 10 epochs may pick taps some scenario cannot recover from
    # (exact objective inf, reported as a string); otherwise never below the EF optimum
    objective = float(nn["objective"])
    assert objective >= 600.0 - 1e-6  # the enumerated optimum (tests/test_cli_voltvar.py)
    if objective < float("inf"):
        assert nn["gap_pct"] == pytest.approx(100.0 * (objective - 600.0) / 600.0)
    bad = [*solve[:-2], "--out", str(tmp_path / "bad")]
    bad[bad.index("--max-tap-changes") + 1] = "1"
    code, err = _json(capfd, bad)
    assert code != 0 and "trained" in err["message"] and "max_tap_changes" in err["message"]
    # feasibility rounds: the decision is feasible in all 3 scenarios (at most 3 rounds add
    # them all), and the command reports the method's own evaluation
    code, fr = _json(capfd, [*solve[:-2], "--nn-feasibility-rounds", "3",
                             "--out", str(tmp_path / "rounds")])  # fmt: skip
    assert code == 0 and fr["n_infeasible_scenarios"] == fr["n_unresolved_scenarios"] == 0
    assert 600.0 - 1e-6 <= float(fr["objective"]) < float("inf")
    assert 1 <= fr["nn_rounds"] <= 1 + len(fr["nn_feasibility_scenarios"]) <= 4
    assert fr["nn_evaluate_seconds"] > 0
    code, err = _json(capfd, [*solve[:-2], "--nn-feasibility-rounds", "-1",
                              "--out", str(tmp_path / "neg")])  # fmt: skip
    assert code != 0 and "--nn-feasibility-rounds must be >= 0" in err["message"]
