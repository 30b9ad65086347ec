"""AC certificate: decisions pushed into OpenDSS per period (new PV/storage, taps, loads)."""

from __future__ import annotations

import json

import numpy as np
import opendssdirect as dss
import pytest

from gridrecourse.cli import main
from gridrecourse.errors import FeederInputError
from gridrecourse.evaluation.certificate import (
    DecisionSchedule,
    DERKind,
    NewDER,
    certify,
    opf_schedule,
)
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.prepare import prepare_math_feeder
from gridrecourse.problems.opf import OPFConfig, build_opf, solve_opf

KEYS = (
    "ac_min_voltage_pu",
    "ac_max_voltage_pu",
    "ac_voltage_violations",
    "ac_thermal_violations",
    "ac_max_model_error_pu",
)


def _element_power(full_name: str) -> complex:
    dss.Circuit.SetActiveElement(full_name)
    s = np.asarray(dss.CktElement.Powers(), dtype=float)
    n = dss.CktElement.NumConductors()
    return complex(s[0 : 2 * n : 2].sum(), s[1 : 2 * n : 2].sum())


@pytest.mark.shared
def test_new_pv_and_storage_inject_the_decision_and_match_an_independent_script(
    feeder_dir, tmp_path
):
    """A new PVSystem and a new Storage inject exactly the decided P and Q; the AC voltages equal
    those of the master solved with the same injections as constant-PQ generators."""
    feeder = resolve_feeder_spec("ieee13")
    p_pv, q_pv = np.array([0.0, 250.0]), np.array([0.0, -40.0])
    p_st, q_st = np.array([120.0, -180.0]), np.array([10.0, 0.0])
    schedule = DecisionSchedule(
        n_periods=2,
        new_der=(
            NewDER("a", DERKind.PV, "675", (1, 2, 3), 200.0, p_pv, q_pv),
            NewDER("b", DERKind.STORAGE, "680", (1, 2, 3), 150.0, p_st, q_st, kwh=600.0),
        ),
    )
    run = certify(feeder, schedule)
    cert = run.certificate
    assert cert.converged and cert.n_new_pv == 1 and cert.n_new_storage == 1
    # last period is in the engine: injections (negative = generation) as decided
    assert _element_power("PVSystem.gr_a") == pytest.approx(complex(-250.0, 40.0), abs=0.05)
    assert _element_power("Storage.gr_b") == pytest.approx(complex(180.0, 0.0), abs=0.05)
    # independent: the same circuit, controls settled then off, generators as PQ injections
    dss.Text.Command("Clear")
    dss.Text.Command(f'Compile "{feeder.source_path}"')
    dss.Text.Command("Set maxiterations=100 maxcontroliter=100")
    dss.Text.Command("Solve")
    dss.Text.Command("Set controlmode=off")
    dss.Text.Command("New Generator.ga phases=3 bus1=675 kv=4.16 kW=250 kvar=-40 model=1")
    dss.Text.Command("New Load.lb phases=3 bus1=680 kv=4.16 kW=180 kvar=0 model=1 vminpu=0.5")
    dss.Text.Command("Solve")
    names = [n.lower() for n in dss.Circuit.AllNodeNames()]
    mags = dict(zip(names, dss.Circuit.AllBusMagPu(), strict=True))
    table = run.nodes.set_index("node")
    for node in ("675.1", "675.2", "675.3", "680.1", "652.1", "611.3"):
        # OpenDSS's convergence tolerance is 1e-4 p.u. (Solution.Tolerance)
        assert table.loc[node, "v_t01"] == pytest.approx(mags[node], abs=1e-4)
    # band counts agree with the per-node table
    inside = (run.nodes[["v_t00", "v_t01"]] >= 0.95 - 1e-6) & (
        run.nodes[["v_t00", "v_t01"]] <= 1.05 + 1e-6
    )
    assert cert.ac_voltage_violations == int((~inside.to_numpy()).sum())
    assert cert.ac_min_voltage_pu == pytest.approx(run.nodes["v_min_pu"].min())


@pytest.mark.shared
def test_taps_and_loads_per_period_change_the_ac_solution(feeder_dir):
    """Each period's taps and loads are written: raising every regulator by 10 steps scales the
    regulated voltage by the tap ratio, and doubling the loads lowers the voltages."""
    feeder = resolve_feeder_spec("ieee13")
    math = prepare_math_feeder(feeder)
    reg = math.regulators
    base = reg.tap
    taps = {
        (x, int(w)): np.array([t, t + 10 * 0.00625, t])
        for x, w, t in zip(reg.transformer_names, reg.winding, base, strict=True)
    }
    kw = np.outer(math.load_kw, [1.0, 1.0, 2.0])
    kvar = np.outer(math.load_kvar, [1.0, 1.0, 2.0])
    schedule = DecisionSchedule(
        3, load_names=math.load_names, load_kw=kw, load_kvar=kvar, taps=taps, model=math
    )
    run = certify(feeder, schedule)
    periods = run.periods
    rg = run.nodes.set_index("node").loc["rg60.1"]
    t0 = base[list(reg.names).index("reg1")]
    # ideal ratio plus the regulator's small leakage drop
    assert rg["v_t01"] / rg["v_t00"] == pytest.approx((t0 + 10 * 0.00625) / t0, abs=2e-3)
    assert periods.loc[2, "v_min_pu"] < periods.loc[0, "v_min_pu"] - 0.01
    # IEEE 13 has constant-Z and constant-I loads: doubled nominal power draws less than 2x
    assert 1.7 < periods.loc[2, "substation_kw"] / periods.loc[0, "substation_kw"] < 2.0


@pytest.mark.shared
def test_opf_certificate_model_error_is_small_and_violations_are_counted(feeder_dir):
    feeder = resolve_feeder_spec("ieee13")
    math = prepare_math_feeder(feeder)
    config = OPFConfig(
        load_profile=np.array([0.5, 1.0, 1.2]),
        pv_profile=np.array([0.0, 0.8, 0.2]),
        price_per_mwh=np.full(3, 40.0),
        pv_penetration=0.3,
    )
    opf = build_opf(math, config)
    result = solve_opf(opf)
    run = certify(feeder, opf_schedule(opf, result))
    cert = run.certificate
    assert cert.converged
    assert 0.0 < cert.ac_max_model_error_pu < 0.01
    assert cert.ac_worst_model_error_node in {n.lower() for n in math.node_names}
    modeled = run.nodes[run.nodes["modeled"]]
    cols = ["v_h00", "v_h01", "v_h02"]
    outside = (modeled[cols] < 0.95 - 1e-6) | (modeled[cols] > 1.05 + 1e-6)
    assert cert.ac_voltage_violations == int(outside.to_numpy().sum())
    assert run.periods["thermal_violations"].sum() == cert.ac_thermal_violations


def test_schedule_shapes_and_unknown_names_are_errors(feeder_dir):
    with pytest.raises(FeederInputError, match="load_kw has shape"):
        DecisionSchedule(2, load_names=("a",), load_kw=np.zeros((1, 3)))
    with pytest.raises(FeederInputError, match="p_kw and q_kvar"):
        DecisionSchedule(
            2, new_der=(NewDER("x", DERKind.PV, "675", (1,), 1.0, np.zeros(3), np.zeros(3)),)
        )
    feeder = resolve_feeder_spec("ieee13")
    bad = DecisionSchedule(1, load_names=("nope",), load_kw=np.ones((1, 1)))
    with pytest.raises(FeederInputError, match=r"Load element\(s\) \['nope'\]"):
        certify(feeder, bad)
    der = NewDER("x", DERKind.PV, "no_such_bus", (1,), 1.0, np.ones(1), np.zeros(1))
    with pytest.raises(FeederInputError, match="no_such_bus"):
        certify(feeder, DecisionSchedule(1, new_der=(der,)))


@pytest.mark.shared
def test_opf_json_and_run_folder_carry_the_certificate(feeder_dir, tmp_path, capsys):
    out = tmp_path / "o"
    assert main(["opf", "ieee13", "--json", "--out", str(out)]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert key in summary
    assert summary["ac_voltage_violations"] >= 0
    assert summary["ac_min_voltage_pu"] <= summary["ac_max_voltage_pu"]
    assert 0 < summary["ac_max_model_error_pu"] < 0.01
    assert (out / "ac_nodes.csv").is_file() and (out / "ac_certificate.png").is_file()
    assert (
        json.loads((out / "result.json").read_text())["ac_voltage_violations"]
        == summary["ac_voltage_violations"]
    )


@pytest.mark.shared
def test_siting_json_carries_the_certificate_with_new_pv(feeder_dir, tmp_path, capsys):
    out = tmp_path / "s"
    argv = ["siting", "ieee13", "--method", "ef", "--scenarios", "24", "--json", "--out", str(out)]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert key in summary
    assert summary["ac_n_periods"] == 24
    assert summary["ac_n_new_pv"] == len(summary["units_per_bus"])
    assert summary["ac_max_model_error_pu"] < 0.02
    assert (out / "ac_nodes.csv").is_file() and (out / "ac_certificate.png").is_file()


@pytest.mark.shared
def test_expand_json_carries_the_certificate_with_new_storage(feeder_dir, tmp_path, capsys):
    out = tmp_path / "e"
    fast = ["--epochs", "3", "--warmup-epochs", "2", "--hidden-size", "8", "--quiet"]
    assert main(["expand", "ieee13", "--method", "eto", "--json", "--out", str(out), *fast]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in KEYS:
        assert key in summary
    n_batteries = sum(v > 0 for v in summary["capacity_kwh"].values())
    assert summary["ac_n_new_storage"] == n_batteries
    assert summary["ac_n_periods"] == 24 and summary["ac_converged"]
    assert summary["ac_max_model_error_pu"] < 0.02
    assert (out / "ac_periods.csv").is_file() and (out / "ac_certificate.png").is_file()


@pytest.mark.shared
def test_delta_secondary_voltages_are_line_to_line_in_the_model_base(feeder_dir):
    """Behind the open-delta bank the certificate reports |V_12|/√3 on the 4.16 kV base, not
    OpenDSS's floating node-to-ground value on the 12.47 kV base it picked."""
    path = feeder_dir / "ieee4bus" / "4Bus-OYOD-Bal" / "4Bus-OYOD-Bal.DSS"
    feeder = resolve_feeder_spec(str(path))
    math = prepare_math_feeder(feeder)
    run = certify(feeder, DecisionSchedule(1, model=math))
    v = dict(zip(run.nodes["node"], run.nodes["v_t00"], strict=True))
    pairs = np.asarray(dss.Circuit.AllBusVolts()).reshape(-1, 2)
    volts = dict(zip(dss.Circuit.AllNodeNames(), pairs, strict=True))
    v1, v2 = (complex(*volts[f"n4.{k}"]) for k in (1, 2))
    assert v["n4.1"] == pytest.approx(abs(v1 - v2) / np.sqrt(3) / (4160 / np.sqrt(3)), abs=1e-9)
    assert 0.7 < v["n4.1"] < 1.0 and run.certificate.ac_min_voltage_pu == pytest.approx(
        min(v[n.lower()] for n in math.node_names)
    )
