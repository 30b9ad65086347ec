"""The command-line interface: JSON summaries, run folders, errors."""

from __future__ import annotations

import json

import pytest

from gridrecourse.cli import main

VALIDATE_KEYS = {
    "feeder",
    "n_buses",
    "n_nodes",
    "n_branches",
    "max_abs_voltage_error_pu",
    "mean_abs_voltage_error_pu",
    "substation_p_error_pct",
    "build_seconds",
    "solve_seconds",
}


@pytest.mark.shared
def test_validate_json_and_run_folder(feeder_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["validate", "ieee13", "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert VALIDATE_KEYS <= summary.keys()
    assert summary["n_nodes"] == 41
    assert summary["max_abs_voltage_error_pu"] < 0.01
    for name in ("config.json", "result.json", "voltages.csv", "voltage_profile.png", "report.md"):
        assert (out / name).is_file(), name
    assert json.loads((out / "result.json").read_text())["feeder"] == summary["feeder"]


@pytest.mark.shared
def test_opf_json(feeder_dir, tmp_path, capsys):
    assert main(["opf", "ieee13", "--json", "--out", str(tmp_path / "o")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "Optimal"
    assert summary["n_periods"] == 24
    assert (tmp_path / "o" / "opf_day.png").is_file()


def test_unknown_feeder_gives_error_json(capsys):
    assert main(["info", "no-such-feeder", "--json"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["error"] == "UnknownFeederError"
    assert "no-such-feeder" in summary["message"]


def test_info_on_json_feeder_round_trip(tmp_path, capsys):
    from gridrecourse.network.io_json import feeder_to_json
    from gridrecourse.network.loading import resolve_feeder_spec

    feeder = resolve_feeder_spec("case33bw")
    path = feeder_to_json(feeder, tmp_path / "case33bw.json")
    assert main(["info", str(path), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_buses"] == 33
    assert summary["n_open_switches"] == 5  # the five tie lines of case33bw


def test_default_feeder_validates(tmp_path, capsys):
    assert main(["validate", "--json", "--out", str(tmp_path / "v")]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["feeder"] == "ieee_european_lv_asymmetric"
    assert summary["n_buses"] == 907
    assert summary["max_abs_voltage_error_pu"] < 0.01


EXPAND_KEYS = {
    "method",
    "task_loss",
    "prediction_mse",
    "total_loss",
    "test_coverage",
    "realized_cost",
    "capacity_kwh_total",
    "wall_seconds",
}


@pytest.mark.shared
def test_expand_is_wired_into_the_main_cli(feeder_dir, tmp_path, capsys):
    code = main(
        [
            "expand",
            "ieee13",
            "--method",
            "eto",
            "--epochs",
            "3",
            "--json",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert EXPAND_KEYS <= summary.keys()
    assert summary["method"] == "eto"
    assert 0.0 <= summary["test_coverage"] <= 1.0
