"""``gridrecourse expand``: JSON keys, run folder contents, tables, errors."""

from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest

torch = pytest.importorskip("torch")

from gridrecourse.cli_expand import SUMMARY_KEYS, add_expand_parser, main, run_expand  # noqa: E402

FAST = ["--epochs", "3", "--warmup-epochs", "2", "--hidden-size", "8", "--quiet"]
#: Fewer, shorter windows (τ = 12 h, one every 2 days) for the multi-run table test.
SMALL = ["--horizon", "12", "--history", "12", "--stride", "48"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_expand_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["expand", *argv])


def test_parser_defaults_and_wiring():
    args = _parse([])
    assert args.feeder == "ieee13" and args.method == "e2e"
    assert (args.lam, args.alpha, args.history, args.horizon) == (0.8, 0.1, 24, 24)
    assert args.func is run_expand
    args = _parse(["ieee123", "--method", "eto", "--lambda", "0.6", "--seeds", "3", "4"])
    assert (args.feeder, args.method, args.lam, args.seeds) == ("ieee123", "eto", 0.6, [3, 4])


@pytest.mark.shared
def test_expand_json_keys_and_run_folder(feeder_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["expand", "ieee13", "--json", "--out", str(out), *FAST]) == 0
    summary = json.loads(capsys.readouterr().out)  # exactly one JSON object on stdout
    assert set(SUMMARY_KEYS) <= summary.keys()
    assert summary["method"] == "e2e" and summary["lam"] == 0.8
    assert 0.0 <= summary["test_coverage"] <= 1.0
    assert summary["total_loss"] == pytest.approx(summary["task_loss"] + summary["prediction_mse"])
    assert "German" in summary["data_note"] and "California" in summary["data_note"]
    for name in (
        "config.json",
        "result.json",
        "report.md",
        "capacities.csv",
        "test_windows.csv",
        "training_curves.csv",
        "training_curves.png",
        "coverage.png",
    ):
        assert (out / name).is_file(), name
    caps = pd.read_csv(out / "capacities.csv", dtype={"bus": str})
    assert caps["capacity_kwh"].sum() == pytest.approx(summary["capacity_kwh_total"])
    assert set(summary["fig3_coverage"]) == {"0.05", "0.3"}
    result = json.loads((out / "result.json").read_text())
    assert result["task_loss"] == pytest.approx(summary["task_loss"])
    config = json.loads((out / "config.json").read_text())
    assert len(config["dataset"]["sites"]) == 9 and config["units"]["price"].startswith("EUR/MWh")
    assert set(caps["bus"]) == set(config["candidate_buses"])


@pytest.mark.shared
def test_expand_table1_eto_vs_e2e(feeder_dir, tmp_path, capsys):
    out = tmp_path / "t1"
    argv = ["expand", "ieee13", "--method", "eto", "--json", "--out", str(out), "--table1"]
    assert main([*argv, "--seeds", "0", "1", *FAST, *SMALL]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["method"] == "eto"
    table = pd.read_csv(out / "table1.csv")
    assert sorted(zip(table["method"], table["seed"], strict=True)) == [
        ("e2e", 0),
        ("e2e", 1),
        ("eto", 0),
        ("eto", 1),
    ]
    assert (out / "table1.md").read_text().startswith("# Table I")
    assert {r["method"] for r in summary["tables"]["table1"]} == {"eto", "e2e"}


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--alpha", "1.5"], "between 0 and 1"),
        (["--lambda", "2"], "lambda"),
        (["--epochs", "3", "--warmup-epochs", "5"], "warmup"),
    ],
)
def test_expand_bad_arguments_give_error_json(argv, match, capsys):
    assert main(["expand", "ieee13", "--json", "--quiet", *argv]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert "error" in summary and match in summary["message"]
