"""``gridrecourse opf --taps optimize``: chosen taps in the JSON, change limit, AC replay."""

from __future__ import annotations

import json

import numpy as np
import opendssdirect as dss
import pytest

from gridrecourse.cli import main
from gridrecourse.evaluation.certificate import check_opf_in_ac
from gridrecourse.formulation.taps import TapOptions, TapPositions
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.problems.opf import OPFConfig, build_opf, solve_opf


@pytest.mark.shared
def test_opf_taps_optimize_json(feeder_dir, tmp_path, capsys):
    out = tmp_path / "o"
    argv = ["opf", "ieee13", "--taps", "optimize", "--tap-positions", "2@current"]
    argv += ["--max-tap-changes", "3", "--json", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["status"] == "Optimal"
    taps = summary["taps"]
    assert set(taps) == {"reg1", "reg2", "reg3"}
    numbers = np.array([taps["reg1"], taps["reg2"], taps["reg3"]])
    assert numbers.shape == (3, 24)
    center = np.array([9, 6, 9])[:, None]  # the feeder's own taps (OpenDSS's settled ones)
    assert np.all(np.abs(numbers - center) <= 2)
    assert np.all(np.abs(np.diff(numbers, axis=1)).sum(axis=1) <= 3)
    assert summary["milp_binaries"] == 3 * 5 * 24
    assert summary["tap_ac_converged"]
    assert 0 < summary["tap_ac_max_abs_voltage_error_pu"] < 0.01
    assert json.loads((out / "result.json").read_text())["taps"] == taps


@pytest.mark.shared
def test_opf_taps_fixed_by_default_has_no_taps_key(feeder_dir, tmp_path, capsys):
    assert main(["opf", "ieee13", "--json", "--out", str(tmp_path / "o")]) == 0
    assert "taps" not in json.loads(capsys.readouterr().out)


def test_bad_tap_positions_is_an_error(feeder_dir, tmp_path, capsys):
    argv = ["opf", "ieee13", "--taps", "optimize", "--tap-positions", "wide", "--json"]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 1
    assert "tap positions" in json.loads(capsys.readouterr().out)["message"]


@pytest.mark.shared
def test_ac_replay_sets_the_chosen_taps(feeder_dir):
    """The AC check writes each period's taps into OpenDSS: the last period's are in the engine
    and the AC voltage ratio across reg1 follows the chosen tap."""
    feeder = resolve_feeder_spec("ieee13")
    math = build_math_feeder(feeder)
    config = OPFConfig(
        load_profile=np.array([0.4, 1.0]),
        pv_profile=np.zeros(2),
        price_per_mwh=np.full(2, 40.0),
        pv_penetration=0.0,
    )
    opf = build_opf(math, config, taps=TapOptions(TapPositions.window(3, "current")))
    result = solve_opf(opf)
    check = check_opf_in_ac(feeder, opf, result)
    assert check.converged and check.max_abs_voltage_error_pu < 0.01
    for name, xf in zip(math.regulators.names, math.regulators.transformer_names, strict=True):
        dss.Transformers.Name(xf)
        dss.Transformers.Wdg(2)
        assert dss.Transformers.Tap() == pytest.approx(1 + result.taps[name][-1] * 0.00625)
    dss.Circuit.SetActiveBus("rg60")
    v_out = np.asarray(dss.Bus.puVmagAngle())[0]
    dss.Circuit.SetActiveBus("650")
    v_in = np.asarray(dss.Bus.puVmagAngle())[0]
    # ideal ratio plus the regulator's small leakage drop
    assert v_out / v_in == pytest.approx(1 + result.taps["reg1"][-1] * 0.00625, abs=2e-3)
