"""``gridrecourse expand``: JSON keys, run folder contents, tables, errors."""

from __future__ import annotations

import argparse
import json
import re

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


# ------------------------------------------------------------------ bring-your-own data
def cli_main(argv):
    from gridrecourse.cli import main as gridrecourse_main

    return gridrecourse_main(argv)


def _series_file(path, values, column: str = "value", start: str = "2018-01-01"):
    import numpy as np

    stamps = pd.date_range(start, periods=len(values), freq="1h")
    frame = pd.DataFrame({"timestamp": stamps, column: np.asarray(values, dtype=float)})
    if str(path).endswith(".parquet"):
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return path


def test_expand_data_options_replace_the_bundled_series(tmp_path, capsys):
    """--load-data (CSV) and --price-data (Parquet) of 60 days: the dataset holds exactly the
    files' values (load scaled to each bus's nominal kW, prices as given) and only their
    hours; the command runs on them."""
    import numpy as np

    from gridrecourse.cli_expand import _dataset, _load_problem

    hours = np.arange(24 * 60)
    load = 20.0 + 30.0 * np.sin(np.pi * (hours % 24) / 24.0) ** 2 + hours / 1000.0
    price = np.where(hours % 24 < 12, -5.0, 80.0) + (hours // 24)
    load_file = _series_file(tmp_path / "load.csv", load, "kw")
    price_file = _series_file(tmp_path / "price.parquet", price, "eur_per_mwh")
    data = ["--load-data", str(load_file), "--price-data", str(price_file)]
    args = _parse(["case33bw", "--method", "ef", *SMALL, *data])
    _, problem = _load_problem("case33bw", args.horizon)
    config, dataset = _dataset(args, problem.load_sites, problem.nominal_load_kw)
    assert config.n_hours == len(hours)
    series = dataset.series
    np.testing.assert_array_equal(series.price_eur_per_mwh, price)
    expected = load[:, None] / load.max() * np.asarray(problem.nominal_load_kw)[None, :]
    np.testing.assert_allclose(series.load_kw, expected, rtol=1e-12)

    out = tmp_path / "run"
    argv = ["case33bw", "--method", "ef", "--scenarios", "3", *SMALL, *data, "--quiet"]
    assert cli_main(["expand", *argv, "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    windows = summary["n_train"] + summary["n_calibration"] + summary["n_test"]
    assert 0 < windows <= len(hours) // 48  # one window per 2 days of the FILES, not a year
    assert json.loads((out / "options.json").read_text())["price_data"] == str(price_file)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        ("two_columns", r"--load-data .*two\.csv: expected one value column .*\['a', 'b'\]"),
        ("negative", r"--load-data .*neg\.csv: column 'kw': negative value -1"),
        ("missing", r"--load-data .*nothing\.csv: no such file"),
        ("pv", r"--pv-data .*pv\.csv: needs --pv-penetration > 0"),
        ("too_long", r"--load-data .*long\.csv: 8784 hourly values, expected at most 8760"),
        ("quarter_hours", r"--load-data .*q\.csv.*timestamp"),
    ],
)
def test_expand_bad_data_files_are_named(make, match, tmp_path, capsys):
    """Each bad file ends in one input error naming the option, the file and the problem
    (column, row), before any run folder holds a result."""
    import numpy as np

    h = np.arange(24 * 30)
    flag, path = "--load-data", tmp_path / "nothing.csv"
    if make == "two_columns":
        path = tmp_path / "two.csv"
        stamps = pd.date_range("2018-01-01", periods=len(h), freq="1h")
        pd.DataFrame({"timestamp": stamps, "a": h, "b": h}).to_csv(path, index=False)
    elif make == "negative":
        path = _series_file(tmp_path / "neg.csv", -1.0 * (h % 3), "kw")
    elif make == "pv":
        flag, path = "--pv-data", _series_file(tmp_path / "pv.csv", (h % 24) / 24.0, "kw_per_kw")
    elif make == "too_long":
        path = _series_file(tmp_path / "long.csv", np.ones(8784), "kw")
    elif make == "quarter_hours":
        path = tmp_path / "q.csv"
        stamps = pd.date_range("2018-01-01", periods=96, freq="15min")
        pd.DataFrame({"timestamp": stamps, "kw": 1.0}).to_csv(path, index=False)
    out = tmp_path / "run"
    argv = ["case33bw", "--method", "ef", *SMALL, flag, str(path), "--quiet"]
    assert cli_main(["expand", *argv, "--json", "--out", str(out)]) == 1
    error = json.loads(capsys.readouterr().out)
    assert error["kind"] == "input"
    assert re.search(match, error["message"]), error["message"]
    assert not (out / "result.json").exists()
