"""``gridrecourse expand --method ef|ph|spar``: JSON keys, held-out days, agreement, errors."""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
import pytest

from gridrecourse.cli_expand import (
    SUMMARY_KEYS,
    add_expand_parser,
    check_method_options,
    main,
    run_expand,
)

#: Short windows (τ = 12 h, one every 2 days) and few scenarios: a small, fast instance.
SMALL = ["--horizon", "12", "--history", "12", "--stride", "48", "--quiet"]
N_SCENARIOS = 4
#: Keys every ``expand`` JSON carries (the learning methods' summary).
EXPAND_KEYS = {
    *SUMMARY_KEYS,
    "feeder",
    "lam",
    "alpha",
    "seed",
    "q_hat",
    "oracle_cost",
    "price_mse",
    "load_mse",
    "n_train",
    "n_calibration",
    "n_test",
    "capacity_kwh",
    "task_scale",
    "fig3_coverage",
    "fig3_skipped_alphas",
    "units",
    "data_note",
    "command_seconds",
    "run_folder",
}


def _parse(argv):
    parser = argparse.ArgumentParser()
    add_expand_parser(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(["expand", *argv])


@pytest.fixture(scope="module")
def runs(feeder_dir, tmp_path_factory):
    out = {}
    for method in ("ef", "ph", "spar"):
        folder = tmp_path_factory.mktemp(method)
        argv = ["ieee13", "--method", method, "--scenarios", str(N_SCENARIOS), *SMALL]
        args = _parse([*argv, "--out", str(folder)])
        out[method] = (run_expand(args), folder)
    return out


def test_parser_records_given_options():
    args = _parse(["--method", "ph", "--rho", "0.1", "--continuous-capacity"])
    assert args.given_options == {"method", "rho", "continuous_capacity"}
    assert args.rho == 0.1 and args.continuous_capacity is True
    args = _parse([])
    assert args.given_options == frozenset() and args.continuous_capacity is False


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["--method", "ef", "--lambda", "0.8"], "--lambda"),
        (["--method", "ph", "--epochs", "30", "--alpha", "0.1"], "--alpha .*--epochs"),
        (["--method", "e2e", "--scenarios", "5"], "--scenarios"),
        (["--method", "eto", "--unit-kwh", "50"], "--unit-kwh"),
        (["--method", "ef", "--rho", "1"], "--rho"),
        (["--method", "spar", "--time-limit", "5"], "--time-limit"),
        (["--method", "ef", "--seed", "0"], "--seed"),
        (["--method", "ph", "--scenarios", "0"], "--scenarios must be >= 1"),
    ],
)
def test_options_that_do_not_apply_are_errors(argv, match, capsys):
    with pytest.raises(Exception, match=match):
        check_method_options(_parse(argv))
    assert main(["expand", "ieee13", "--json", "--quiet", *argv]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["error"] == "ExpandInputError" and "--" in summary["message"]


@pytest.mark.shared
def test_json_keys_run_folder_and_held_out_days(runs):
    from gridrecourse.cli_expand import _load_problem
    from gridrecourse.learning.feeder_data import FeederDataConfig, build_feeder_dataset

    _, expansion = _load_problem("ieee13", 12)
    dataset = build_feeder_dataset(
        expansion.load_sites,
        expansion.nominal_load_kw,
        FeederDataConfig(history=12, horizon=12, stride=48),
    )
    for method, (summary, folder) in runs.items():
        assert EXPAND_KEYS <= summary.keys(), method
        assert summary["method"] == method and summary["n_scenarios"] == N_SCENARIOS
        assert summary["task_loss"] is None and summary["q_hat"] is None
        assert summary["realized_cost"] == summary["held_out_objective"]
        assert summary["n_test"] == len(dataset.test)
        for key in ("solve_seconds", "held_out_seconds", "wall_seconds"):
            assert summary[key] > 0, (method, key)
        for name in ("config.json", "result.json", "report.md", "capacities.csv"):
            assert (folder / name).is_file(), (method, name)
        caps = pd.read_csv(folder / "capacities.csv", dtype={"bus": str})
        assert caps["capacity_kwh"].sum() == pytest.approx(summary["capacity_kwh_total"])
        windows = pd.read_csv(folder / "test_windows.csv")
        # the held-out days are the test days ETO/E2E are scored on
        np.testing.assert_array_equal(
            windows["first_target_hour_of_year"], dataset.target_hour_of_year("test")[:, 0]
        )
        assert summary["realized_cost"] == pytest.approx(windows["realized_cost_eur"].mean())
        assert json.loads((folder / "result.json").read_text())["n_scenarios"] == N_SCENARIOS


@pytest.mark.shared
def test_ph_and_spar_within_one_percent_of_ef(runs):
    ef = runs["ef"][0]["in_sample_objective"]
    assert runs["ef"][0]["method_details"]["ef_status"] == "optimal"
    for method in ("ph", "spar"):
        value = runs[method][0]["in_sample_objective"]
        assert ef - 1e-6 <= value <= ef * 1.01, (method, value, ef)


@pytest.mark.shared
def test_spar_on_continuous_capacities_gives_the_requirement_error(feeder_dir, capsys):
    argv = ["expand", "ieee13", "--method", "spar", "--continuous-capacity", "--json", *SMALL]
    assert main([*argv, "--scenarios", "2"]) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["error"] == "UnsupportedProblemError"
    assert "SPAR cannot solve" in summary["message"]
    assert "SeparableFirstStage" in summary["message"]


@pytest.mark.shared
def test_more_scenarios_than_training_days_is_an_error(feeder_dir, capsys):
    argv = ["expand", "ieee13", "--method", "ef", "--scenarios", "100000", "--json", *SMALL]
    assert main(argv) == 1
    summary = json.loads(capsys.readouterr().out)
    assert summary["error"] == "StorageScenarioInputError" and "scenarios" in summary["message"]
