"""Tests of the OpenDSS writer (gridrecourse.network.io_dss_writer).

The AC references are independent of gridrecourse: pandapower's own balanced power flow
(``runpp``) for case33bw and its three-phase power flow (``runpp_3ph``) for the IEEE European LV
feeder, compared with OpenDSS solving the written script.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pandapower as pp
import pytest

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import (
    Bus,
    Capacitor,
    Connection,
    Feeder,
    Generator,
    Line,
    Load,
    LoadModel,
    PVSystem,
    Regulator,
    Root,
    Storage,
    Switch,
    Transformer,
    Winding,
)
from gridrecourse.network.io_dss_writer import dss_name, feeder_to_dss, write_opendss
from gridrecourse.network.io_opendss import feeder_from_opendss
from gridrecourse.network.io_pandapower import feeder_from_pandapower, load_pandapower_net

#: Acceptance limits of the brief (p.u.).
CASE33_TOL_PU = 1e-3
EUROPEAN_TOL_PU = 5e-3
#: With pandapower's zero-sequence magnetizing branch neutralized the models coincide.
EUROPEAN_SAME_Z0_TOL_PU = 1e-4
PHASE_COLUMNS = (("vm_a_pu", 1), ("vm_b_pu", 2), ("vm_c_pu", 3))
KV_LN_12 = 12.47 / math.sqrt(3.0)


@pytest.fixture(autouse=True)
def _reset_opendss() -> Iterator[None]:
    """The written scripts set DefaultBaseFrequency, which OpenDSS keeps across Clear."""
    yield
    dss.Text.Command("Clear")
    dss.Text.Command("Set DefaultBaseFrequency=60")


def solve_script(path: Path) -> dict[str, float]:
    """Compile and solve a script; node name (``bus.phase``) -> voltage magnitude (p.u.)."""
    dss.Text.Command("Clear")
    dss.Text.Command(f'Redirect "{path}"')
    dss.Solution.Solve()
    assert dss.Solution.Converged()
    names = [n.lower() for n in dss.Circuit.AllNodeNames()]
    return dict(zip(names, dss.Circuit.AllBusMagPu(), strict=True))


def node(bus: str, phase: int) -> str:
    return f"{dss_name(bus).lower()}.{phase}"


def test_case33bw_matches_pandapower_runpp(tmp_path: Path) -> None:
    net = load_pandapower_net("case33bw")
    feeder = feeder_from_pandapower(net, "case33bw")
    v = solve_script(write_opendss(feeder, tmp_path))
    pp.runpp(net)
    diff = max(
        abs(v[node(bus.name, ph)] - net.res_bus.at[idx, "vm_pu"])
        for idx, bus in zip(net.bus.index, feeder.buses, strict=True)
        for ph in (1, 2, 3)
    )
    print(f"case33bw: max |V_OpenDSS - V_pandapower| = {diff:.3e} p.u.")  # measured 3.5e-06
    assert diff <= CASE33_TOL_PU
    assert min(v.values()) == pytest.approx(net.res_bus.vm_pu.min(), abs=CASE33_TOL_PU)


def _european_diff(net, feeder, v: dict[str, float]) -> float:
    pp.runpp_3ph(net)
    res = net.res_bus_3ph
    return max(
        abs(v[node(bus.name, ph)] - res.at[idx, col])
        for idx, bus in zip(net.bus.index, feeder.buses, strict=True)
        for col, ph in PHASE_COLUMNS
    )


def test_european_lv_matches_pandapower_runpp_3ph(tmp_path: Path) -> None:
    net = load_pandapower_net("ieee_european_lv_asymmetric")
    feeder = feeder_from_pandapower(net, "ieee_european_lv_asymmetric")
    v = solve_script(write_opendss(feeder, tmp_path))
    diff = _european_diff(net, feeder, v)
    print(f"European LV: max per-phase |dV| = {diff:.3e} p.u.")  # measured 6.2e-04
    assert diff <= EUROPEAN_TOL_PU
    # The residual is pandapower's zero-sequence T-model of the Dyn transformer
    # (mag0_percent=100, mag0_rx=0, si0_hv_partial=0.9 give Z0 ≈ 0.57·Z1 seen from the LV
    # side; OpenDSS and the Feeder have Z0 = Z1). Neutralize the magnetizing branch and the
    # two models agree to the power-flow tolerance.
    net.trafo["mag0_percent"] = 1e9
    same_z0 = _european_diff(net, feeder, v)
    print(f"European LV, pandapower Z0 = Z1: max per-phase |dV| = {same_z0:.3e} p.u.")  # 2.2e-06
    assert same_z0 <= EUROPEAN_SAME_Z0_TOL_PU


def _z(n: int, seed: int, scale: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    mutual = rng.uniform(0.02, 0.05, (n, n)) + 1j * rng.uniform(0.05, 0.1, (n, n))
    mutual = (mutual + mutual.T) / 2
    return scale * (mutual + np.eye(n) * (0.15 + 0.35j))


def all_elements_feeder() -> Feeder:
    """A 12.47 kV feeder with every component type, awkward names and an unbalanced root."""
    y_shunt = 1j * 2 * math.pi * 60 * 1e-8 * (np.eye(3) * 3 - 0.5)
    buses = (
        Bus("src", (1, 2, 3), KV_LN_12, 0.0, 0.0),
        Bus("reg out", (1, 2, 3), KV_LN_12, 0.0, 1.0),
        Bus("b.2", (1, 2, 3), KV_LN_12, 1.0, 1.0),
        Bus("b3", (1, 2, 3), KV_LN_12),
        Bus("b4", (1, 2, 3), KV_LN_12),
        Bus("tie", (1, 2, 3), KV_LN_12),
        Bus("lat", (3,), KV_LN_12, 2.0, 3.5),
        Bus("sec", (1, 2), 0.12),
        Bus("lv", (1, 2, 3), 0.416 / math.sqrt(3.0)),
    )
    lines = (
        Line("l1", "reg out", "b.2", (1, 2, 3), (1, 2, 3), _z(3, 1), y_shunt, 400.0, 600.0, 1.0),
        Line("l2", "b.2", "b3", (1, 2, 3), (1, 2, 3), _z(3, 2, 0.5), np.zeros((3, 3))),
        Line("l3", "b3", "tie", (1, 2, 3), (1, 2, 3), _z(3, 3, 0.2), np.zeros((3, 3))),
        Line("lat line", "b3", "lat", (3,), (3,), _z(1, 4, 0.5), np.zeros((1, 1))),
    )
    switches = (
        Switch("s open", "b.2", "tie", (1, 2, 3), (1, 2, 3), False, 200.0),
        Switch("s closed", "b3", "b4", (1, 2, 3), (1, 2, 3), True),
    )
    transformers = (
        Transformer(
            "reg",
            3,
            (
                Winding("src", (1, 2, 3), Connection.WYE, 12.47, 10000.0, 0.001),
                Winding("reg out", (1, 2, 3), Connection.WYE, 12.47, 10000.0, 0.001, 1.0125),
            ),
            (0.01,),
        ),
        Transformer(
            "ct",
            1,
            (
                Winding("lat", (3,), Connection.WYE, 7.2, 50.0, 0.6),
                Winding("sec", (1,), Connection.WYE, 0.12, 50.0, 1.2, 1.025),
                Winding("sec", (), Connection.WYE, 0.12, 50.0, 1.2, 1.025),
            ),
            (2.04, 2.04, 1.36),
        ),
        Transformer(
            "dyn",
            3,
            (
                Winding("b4", (1, 2, 3), Connection.DELTA, 12.47, 150.0, 0.5, 0.975),
                Winding("lv", (1, 2, 3), Connection.WYE, 0.416, 150.0, 0.5),
            ),
            (4.0,),
        ),
    )
    loads = (
        Load("ld wye", "b.2", (1, 2, 3), Connection.WYE, 300.0, 100.0, 12.47),
        Load("ld delta z", "b3", (1, 2, 3), Connection.DELTA, 150.0, 50.0, 12.47, 2),
        Load("ld ab", "b3", (1, 2), Connection.DELTA, 40.0, 10.0, 12.47),
        Load("ld lat", "lat", (3,), Connection.WYE, 20.0, 5.0, 7.2),
        Load("ld 240", "sec", (1, 2), Connection.DELTA, 6.0, 2.0, 0.24),
        Load("ld 120", "sec", (1,), Connection.WYE, 2.0, 1.0, 0.12),
        Load(
            "ld zip",
            "lv",
            (1, 2, 3),
            Connection.WYE,
            60.0,
            20.0,
            0.416,
            LoadModel.ZIP,
            (0.2, 0.3, 0.5, 0.1, 0.2, 0.7, 0.0),
        ),
    )
    return Feeder(
        name="all elements",
        buses=buses,
        roots=(Root("src", (1.02, 1.01, 1.03), (1.0, -119.5, 120.25)),),
        lines=lines,
        switches=switches,
        transformers=transformers,
        regulators=(Regulator("rg", "reg", 2, 0.9, 1.1, 32, 122.0, 2.0, 60.0),),
        capacitors=(
            Capacitor("c3", "b3", (1, 2, 3), Connection.WYE, 300.0, 12.47),
            Capacitor("c ab", "b.2", (1, 2), Connection.DELTA, 100.0, 12.47, 0.5),
        ),
        loads=loads,
        pv_systems=(
            PVSystem("pv lat", "lat", (3,), Connection.WYE, 10.0, 8.0, 6.0, 1.0, 7.2),
            PVSystem("pv lv", "lv", (1, 2, 3), Connection.WYE, 30.0, 25.0, 20.0, -3.0, 0.416),
        ),
        generators=(Generator("g4", "b4", (1, 2, 3), Connection.WYE, 50.0, 10.0, 80.0, 12.47),),
        storage=(
            Storage(
                "st2", "b.2", (1, 2, 3), Connection.WYE, 100.0, 400.0, 120.0, 20.0, -5.0, 12.47
            ),
            Storage(
                "st lv", "lv", (2,), Connection.WYE, 10.0, 20.0, 10.0, -3.0, 0.0, 0.24, soc_pct=80.0
            ),
        ),
        source_kind="synthetic",
        frequency_hz=60.0,
    )


def _element_powers(cls: str, name: str) -> complex:
    dss.Circuit.SetActiveElement(f"{cls}.{dss_name(name)}")
    s = np.asarray(dss.CktElement.Powers(), dtype=float)
    n = dss.CktElement.NumConductors()
    return complex(s[0 : 2 * n : 2].sum(), s[1 : 2 * n : 2].sum())


def test_all_elements_solve_at_the_feeder_operating_point(tmp_path: Path) -> None:
    feeder = all_elements_feeder()
    path = write_opendss(feeder, tmp_path)
    dss.Text.Command("Clear")
    dss.Text.Command(f'Redirect "{path}"')
    dss.Text.Command("Set ControlMode=off")
    dss.Text.Command("Set Tolerance=1e-10")  # DER injections converge with the voltages
    dss.Solution.Solve()
    assert dss.Solution.Converged()
    # root phasors are the feeder's
    dss.Circuit.SetActiveBus("src")
    pu = np.asarray(dss.Bus.PuVoltage())
    phasors = pu[0::2] + 1j * pu[1::2]
    root = feeder.roots[0]
    np.testing.assert_allclose(np.abs(phasors[:3]), root.v_pu, atol=1e-6)
    np.testing.assert_allclose(np.angle(phasors[:3], deg=True), root.angle_deg, atol=1e-4)
    # bus bases are exactly the feeder's, coordinates where given
    for bus in feeder.buses:
        dss.Circuit.SetActiveBus(dss_name(bus.name))
        assert dss.Bus.kVBase() == pytest.approx(bus.kv_base_ln, rel=1e-12), bus.name
        assert bool(dss.Bus.Coorddefined()) == (bus.x is not None), bus.name
        if bus.x is not None:
            assert (dss.Bus.X(), dss.Bus.Y()) == (bus.x, bus.y)
    # fixed P/Q of DER and constant-PQ loads
    for pv in feeder.pv_systems:
        s = _element_powers("PVSystem", pv.name)
        assert s == pytest.approx(complex(-pv.p_kw, -pv.q_kvar), rel=1e-6), pv.name
    for gen in feeder.generators:
        s = _element_powers("Generator", gen.name)
        assert s == pytest.approx(complex(-gen.kw, -gen.kvar), rel=1e-6), gen.name
    for st in feeder.storage:
        s = _element_powers("Storage", st.name)
        assert s == pytest.approx(complex(-st.kw, -st.kvar), rel=1e-6, abs=1e-9), st.name
    for load in feeder.loads:
        if load.model == LoadModel.CONSTANT_PQ:
            s = _element_powers("Load", load.name)
            assert s == pytest.approx(complex(load.kw, load.kvar), rel=1e-6), load.name
    # the open switch carries only its own charging current (µA), the closed one the load
    dss.Circuit.SetActiveElement("Line.s_open")
    assert dss.CktElement.IsOpen(1, 0)
    assert np.abs(np.asarray(dss.CktElement.Currents())).max() < 1e-3
    dss.Circuit.SetActiveElement("Line.s_closed")
    assert np.abs(np.asarray(dss.CktElement.Currents())).max() > 0.1
    # taps, steps, regulator
    dss.Transformers.Name("reg")
    dss.Transformers.Wdg(2)
    assert dss.Transformers.Tap() == pytest.approx(1.0125)
    assert dss.Transformers.NumTaps() == 32 and dss.Transformers.MaxTap() == 1.1
    dss.Capacitors.Name("c_ab")
    assert list(dss.Capacitors.States()) == [1, 0]
    # split-phase secondary: 240 V across, 120 V to neutral
    v = dict(
        zip([n.lower() for n in dss.Circuit.AllNodeNames()], dss.Circuit.AllBusVMag(), strict=True)
    )
    assert v["sec.1"] == pytest.approx(v["sec.2"], rel=0.02)
    assert 110 < v["sec.1"] < 130


def test_read_back_through_opendss_importer(tmp_path: Path) -> None:
    """Written script -> OpenDSS -> gridrecourse's OpenDSS importer gives the feeder back."""
    feeder = all_elements_feeder()
    back = feeder_from_opendss(write_opendss(feeder, tmp_path))
    key = {n: dss_name(n).lower() for n in [b.name for b in feeder.buses]}
    assert back.frequency_hz == feeder.frequency_hz
    got_buses = {b.name: b for b in back.buses}
    assert set(got_buses) == set(key.values())
    for bus in feeder.buses:
        got = got_buses[key[bus.name]]
        assert got.phases == bus.phases and got.kv_base_ln == pytest.approx(bus.kv_base_ln)
        assert (got.x, got.y) == (bus.x, bus.y)
    got_lines = {ln.name: ln for ln in back.lines}
    for line in feeder.lines:
        got = got_lines[dss_name(line.name).lower()]
        assert (got.bus1, got.bus2) == (key[line.bus1], key[line.bus2])
        assert got.phases1 == line.phases1
        np.testing.assert_allclose(got.z_ohm, line.z_ohm, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(got.y_shunt_siemens, line.y_shunt_siemens, atol=1e-15)
        assert got.norm_amps == line.norm_amps and got.emerg_amps == line.emerg_amps
    assert {s.name: s.closed for s in back.switches} == {"s_open": False, "s_closed": True}
    got_xf = {x.name: x for x in back.transformers}
    for xf in feeder.transformers:
        got = got_xf[xf.name]
        assert got.x_pct == pytest.approx(xf.x_pct)
        for w, g in zip(xf.windings, got.windings, strict=True):
            assert (g.bus, g.phases, g.connection) == (key[w.bus], w.phases, w.connection)
            assert (g.kv, g.kva, g.r_pct) == pytest.approx((w.kv, w.kva, w.r_pct))
            if xf.name != "reg":  # the regulator's tap is moved by its RegControl on solve
                assert g.tap == pytest.approx(w.tap)
    (reg,) = back.regulators
    assert (reg.transformer, reg.winding, reg.n_steps) == ("reg", 2, 32)
    assert (reg.tap_min, reg.tap_max, reg.vreg, reg.band, reg.pt_ratio) == pytest.approx(
        (0.9, 1.1, 122.0, 2.0, 60.0)
    )
    got_loads = {ld.name: ld for ld in back.loads}
    for load in feeder.loads:
        got = got_loads[dss_name(load.name).lower()]
        assert (got.bus, got.phases, got.connection) == (
            key[load.bus],
            load.phases,
            load.connection,
        )
        assert (got.kw, got.kvar, got.kv) == pytest.approx((load.kw, load.kvar, load.kv))
        assert got.model == load.model
        if load.model == LoadModel.ZIP:
            assert got.zipv == pytest.approx(load.zipv)
    got_caps = {c.name: c for c in back.capacitors}
    for cap in feeder.capacitors:
        got = got_caps[dss_name(cap.name).lower()]
        assert (got.phases, got.connection) == (cap.phases, cap.connection)
        assert (got.kvar, got.kv, got.steps_closed) == pytest.approx(
            (cap.kvar, cap.kv, cap.steps_closed)
        )
    got_pv = {p.name: p for p in back.pv_systems}
    for pv in feeder.pv_systems:
        got = got_pv[dss_name(pv.name).lower()]
        # read from the solved powers at OpenDSS's default tolerance (1e-4 p.u.)
        assert (got.p_kw, got.q_kvar) == pytest.approx((pv.p_kw, pv.q_kvar), rel=1e-4)
        assert (got.pmpp_kw, got.kv, got.kva) == pytest.approx((pv.pmpp_kw, pv.kv, pv.kva))
    (gen,) = back.generators
    assert (gen.kw, gen.kvar, gen.kv, gen.kva) == pytest.approx((50.0, 10.0, 12.47, 80.0), rel=1e-4)
    got_st = {s.name: s for s in back.storage}
    for st in feeder.storage:
        got = got_st[dss_name(st.name).lower()]
        assert (got.kw, got.kvar) == pytest.approx((st.kw, st.kvar), rel=1e-4, abs=1e-4)
        assert (got.kw_rated, got.kwh_rated, got.soc_pct) == pytest.approx(
            (st.kw_rated, st.kwh_rated, st.soc_pct)
        )


def test_pandapower_feeder_read_back_keeps_roots_and_open_ties(tmp_path: Path) -> None:
    feeder = feeder_from_pandapower(load_pandapower_net("case33bw"), "case33bw")
    back = feeder_from_opendss(write_opendss(feeder, tmp_path))
    assert back.roots == feeder.roots
    assert sorted((s.name, s.closed) for s in back.switches) == sorted(
        (s.name, s.closed) for s in feeder.switches
    )
    assert back.n_nodes == feeder.n_nodes and len(back.loads) == len(feeder.loads)


def test_unsafe_and_colliding_names(tmp_path: Path) -> None:
    assert dss_name('a "b".c d=1!') == "a__b__c_d_1_"
    assert dss_name("") == "_"
    assert dss_name("bus-7_x") == "bus-7_x"
    z = np.eye(3, dtype=complex) * (0.1 + 0.1j)
    zero = np.zeros((3, 3))
    buses = tuple(Bus(n, (1, 2, 3), KV_LN_12) for n in ("s", "a b", "a_b", "A.B"))
    feeder = Feeder(
        name="names",
        buses=buses,
        roots=(Root("s", (1.0, 1.0, 1.0)),),
        lines=tuple(
            Line(f"x{i}", "s", b.name, (1, 2, 3), (1, 2, 3), z * (i + 1), zero)
            for i, b in enumerate(buses[1:])
        ),
        loads=tuple(
            Load("same name", b.name, (1, 2, 3), Connection.WYE, 10.0, 1.0, 12.47)
            for b in buses[1:]
        ),
    )
    text = feeder_to_dss(feeder)
    assert "bus2=a_b.1.2.3" in text and "bus2=a_b_2.1.2.3" in text and "bus2=A_B_3.1.2.3" in text
    v = solve_script(write_opendss(feeder, tmp_path))
    assert {"a_b.1", "a_b_2.1", "a_b_3.1"} <= set(v)
    assert dss.Loads.Count() == 3
    # different impedances reached different buses
    assert v["a_b.1"] > v["a_b_2.1"] > v["a_b_3.1"]


def test_writer_rejects_unwritable_feeders(tmp_path: Path) -> None:
    good = all_elements_feeder()
    with pytest.raises(FeederInputError, match="no root"):
        write_opendss(Feeder("x", good.buses, ()), tmp_path)
    bad_bus = Load("lost", "nowhere", (1,), Connection.WYE, 1.0, 0.0, 7.2)
    with pytest.raises(FeederInputError, match="'nowhere'"):
        feeder_to_dss(Feeder("x", good.buses, good.roots, loads=(bad_bus,)))
    one_phase_delta = Load("d1", "b3", (1,), Connection.DELTA, 1.0, 0.0, 7.2)
    with pytest.raises(FeederInputError, match="delta connection needs 2 or 3 phases"):
        feeder_to_dss(Feeder("x", good.buses, good.roots, loads=(one_phase_delta,)))
    zip_without_zipv = Load("z", "b3", (1,), Connection.WYE, 1.0, 0.0, 7.2, LoadModel.ZIP)
    with pytest.raises(FeederInputError, match="7 zipv"):
        feeder_to_dss(Feeder("x", good.buses, good.roots, loads=(zip_without_zipv,)))
    with pytest.raises(FeederInputError, match="regulator 'rg'"):
        feeder_to_dss(Feeder("x", good.buses, good.roots, regulators=good.regulators))


def test_shunt_conductance_and_asymmetry_warn() -> None:
    good = all_elements_feeder()
    z = _z(3, 9)
    z[0, 1] += 0.5
    lossy = Line("lossy", "src", "b.2", (1, 2, 3), (1, 2, 3), z, np.eye(3) * (1e-6 + 1e-6j))
    strong_pv = PVSystem("pv", "b.2", (1, 2, 3), Connection.WYE, 10.0, 8.0, 9.0, 0.0, 12.47)
    feeder = Feeder("x", good.buses, good.roots, lines=(lossy,), pv_systems=(strong_pv,))
    with pytest.warns(UserWarning, match="shunt conductance dropped") as record:
        text = feeder_to_dss(feeder)
    assert len(record) == 1
    assert "not symmetric" in str(record[0].message)
    assert "Pmpp written as p_kw" in str(record[0].message) and "pmpp=9.0 " in text
    assert f"| {float(((z[0, 1] + z[1, 0]) / 2).real)!r} " in text  # the symmetric part is written


def test_write_is_atomic_and_self_contained(tmp_path: Path) -> None:
    target = tmp_path / "out"
    path = write_opendss(all_elements_feeder(), target, filename="feeder.dss")
    assert path == target / "feeder.dss"
    assert sorted(p.name for p in target.iterdir()) == ["feeder.dss"]
    text = path.read_text()
    assert "redirect" not in text.lower() and "buscoords" not in text.lower()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        write_opendss(all_elements_feeder(), target, filename="feeder.dss")
