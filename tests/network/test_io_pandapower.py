"""Tests of the pandapower importer (gridrecourse.network.io_pandapower)."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pandapower as pp
import pandas as pd
import pytest

from gridrecourse.errors import FeederInputError, UnknownFeederError
from gridrecourse.network.components import Connection, LoadModel
from gridrecourse.network.io_pandapower import (
    feeder_from_pandapower,
    load_pandapower_case,
    load_pandapower_net,
)

SQRT3 = math.sqrt(3.0)
A = np.exp(2j * np.pi / 3)
#: Symmetrical-component transform: phase = SEQ @ (zero, positive, negative).
SEQ = np.array([[1, 1, 1], [1, A * A, A], [1, A, A * A]])


@pytest.fixture(scope="module")
def case33() -> tuple[object, object]:
    net = load_pandapower_net("case33bw")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # case33bw maps completely: no warning at all
        feeder = feeder_from_pandapower(net, "case33bw")
    return net, feeder


@pytest.fixture(scope="module")
def european() -> tuple[object, object]:
    net = load_pandapower_net("ieee_european_lv_asymmetric")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        feeder = feeder_from_pandapower(net, "ieee_european_lv_asymmetric")
    return net, feeder


def test_case33bw_buses_lines_switches(case33) -> None:
    net, feeder = case33
    assert feeder.source_kind == "pandapower" and feeder.name == "case33bw"
    assert feeder.frequency_hz == 60.0
    assert feeder.n_buses == 33 and feeder.n_nodes == 99
    assert all(b.phases == (1, 2, 3) for b in feeder.buses)
    assert all(b.kv_base_ln == pytest.approx(12.66 / SQRT3) for b in feeder.buses)
    assert all(b.x is not None and b.y is not None for b in feeder.buses)
    assert [b.name for b in feeder.buses] == [str(i) for i in range(33)]
    assert len(feeder.lines) == 32 and len(feeder.switches) == 5
    assert all(not s.closed for s in feeder.switches)
    tie = net.line.index[~net.line.in_service]
    assert sorted(s.name for s in feeder.switches) == sorted(f"line{i}" for i in tie)
    for line in feeder.lines:
        row = net.line.loc[int(line.name.removeprefix("line"))]
        z1 = complex(row.r_ohm_per_km, row.x_ohm_per_km) * row.length_km
        np.testing.assert_allclose(line.z_ohm, z1 * np.eye(3), atol=0)
        assert line.y_shunt_siemens.shape == (3, 3) and not line.y_shunt_siemens.any()
        assert (line.bus1, line.bus2) == (str(row.from_bus), str(row.to_bus))


def test_case33bw_loads_and_root(case33) -> None:
    net, feeder = case33
    assert len(feeder.loads) == 32
    assert all(ld.phases == (1, 2, 3) and ld.connection is Connection.WYE for ld in feeder.loads)
    assert all(ld.model == LoadModel.CONSTANT_PQ and ld.kv == 12.66 for ld in feeder.loads)
    assert sum(ld.kw for ld in feeder.loads) == pytest.approx(1000 * net.load.p_mw.sum())
    assert sum(ld.kvar for ld in feeder.loads) == pytest.approx(1000 * net.load.q_mvar.sum())
    assert sum(ld.kw for ld in feeder.loads) == pytest.approx(3715.0)
    (root,) = feeder.roots
    assert root.bus == "0" and root.v_pu == (1.0, 1.0, 1.0)
    assert root.angle_deg == (0.0, -120.0, 120.0)


def test_european_lv_structure(european) -> None:
    _, feeder = european
    assert feeder.frequency_hz == 50.0
    assert feeder.n_buses == 907 and len(feeder.lines) == 905 and not feeder.switches
    assert len(feeder.loads) == 55
    (root,) = feeder.roots
    assert root.bus == "SOURCEBUS" and root.v_pu == pytest.approx((1.05,) * 3)
    lv = feeder.bus("1")
    assert lv.kv_base_ln == pytest.approx(0.416 / SQRT3) and lv.x == pytest.approx(390872.663)
    assert feeder.bus("SOURCEBUS").kv_base_ln == pytest.approx(11 / SQRT3)
    (xf,) = feeder.transformers
    hv, lvw = xf.windings
    assert (hv.bus, lvw.bus) == ("SOURCEBUS", "1")
    assert hv.connection is Connection.DELTA and lvw.connection is Connection.WYE
    assert (hv.kv, lvw.kv) == pytest.approx((11.0, 0.416))
    assert hv.kva == pytest.approx(800.0) and hv.r_pct + lvw.r_pct == pytest.approx(0.4)
    assert xf.x_pct[0] == pytest.approx(math.sqrt(4.01995**2 - 0.4**2), rel=1e-6)
    assert hv.tap == lvw.tap == 1.0


def test_european_lv_loads_per_phase(european) -> None:
    net, feeder = european
    table = net.asymmetric_load
    by_name = {ld.name: ld for ld in feeder.loads}
    assert set(by_name) == set(table.name)
    for _, row in table.iterrows():
        load = by_name[row["name"]]
        (phase,) = load.phases
        letter = "abc"[phase - 1]
        assert load.connection is Connection.WYE
        assert load.kw == pytest.approx(1000 * row[f"p_{letter}_mw"] * row.scaling)
        assert load.kvar == pytest.approx(1000 * row[f"q_{letter}_mvar"] * row.scaling)
        assert load.kv == pytest.approx(0.416 / SQRT3)
    for phase, letter in ((1, "a"), (2, "b"), (3, "c")):
        total = sum(ld.kw for ld in feeder.loads if ld.phases == (phase,))
        assert total == pytest.approx(1000 * table[f"p_{letter}_mw"].sum())


def test_european_lv_sequence_impedances(european) -> None:
    """The phase matrix has exactly the line's sequence impedances."""
    net, feeder = european
    by_name = {ln.name: ln for ln in feeder.lines}
    for idx in (0, 14, 41, 887):
        row = net.line.loc[idx]
        line = by_name[row["name"]]
        z012 = np.linalg.solve(SEQ, line.z_ohm @ SEQ)
        z0 = complex(row.r0_ohm_per_km, row.x0_ohm_per_km) * row.length_km
        z1 = complex(row.r_ohm_per_km, row.x_ohm_per_km) * row.length_km
        np.testing.assert_allclose(np.diag(z012), [z0, z1, z1], rtol=1e-12)
        np.testing.assert_allclose(z012 - np.diag(np.diag(z012)), 0, atol=1e-15)
        assert line.norm_amps == pytest.approx(1000 * row.max_i_ka)
        assert line.length_km == row.length_km


def test_load_pandapower_case_names() -> None:
    with pytest.raises(UnknownFeederError, match="case33bw"):
        load_pandapower_case("case9999")
    feeder = load_pandapower_case("case33bw")
    assert feeder.name == "case33bw" and feeder.source_kind == "pandapower"


def _mixed_net() -> pp.pandapowerNet:
    """A small net with every table the importer maps and two it does not."""
    net = pp.create_empty_network(f_hz=50.0)
    b0 = pp.create_bus(net, 20.0, name="HV", geodata=(1.0, 2.0))
    b1 = pp.create_bus(net, 0.4, name="dup")
    b2 = pp.create_bus(net, 0.4, name="dup")
    b3 = pp.create_bus(net, 0.4, name="")
    b4 = pp.create_bus(net, 0.4, name="bus1")  # clashes with the fallback name of b1
    b5 = pp.create_bus(net, 0.4, name="dead", in_service=False)
    pp.create_ext_grid(net, b0, vm_pu=1.02, va_degree=5.0)
    pp.create_transformer_from_parameters(
        net,
        b0,
        b1,
        sn_mva=0.4,
        vn_hv_kv=20.0,
        vn_lv_kv=0.4,
        vk_percent=6.0,
        vkr_percent=1.0,
        pfe_kw=0.5,
        i0_percent=0.2,
        vector_group="YNd5",
        tap_side="lv",
        tap_pos=2,
        tap_neutral=0,
        tap_step_percent=1.5,
    )
    pp.create_line_from_parameters(
        net,
        b1,
        b2,
        length_km=0.5,
        r_ohm_per_km=0.2,
        x_ohm_per_km=0.08,
        c_nf_per_km=200.0,
        max_i_ka=0.2,
        parallel=2,
        name="cable",
    )
    ln = pp.create_line_from_parameters(
        net,
        b2,
        b3,
        length_km=0.1,
        r_ohm_per_km=0.4,
        x_ohm_per_km=0.1,
        c_nf_per_km=0.0,
        max_i_ka=0.1,
    )
    pp.create_switch(net, b3, ln, et="l", closed=False)
    pp.create_line_from_parameters(
        net,
        b3,
        b5,
        length_km=0.1,
        r_ohm_per_km=0.4,
        x_ohm_per_km=0.1,
        c_nf_per_km=0.0,
        max_i_ka=0.1,
    )
    pp.create_switch(net, b2, b4, et="b", closed=True, name="tie")
    pp.create_load(net, b2, p_mw=0.03, q_mvar=0.01, scaling=2.0, name="L")
    pp.create_load(net, b3, p_mw=0.02, q_mvar=0.0, const_z_p_percent=30, const_i_p_percent=20)
    pp.create_load(net, b4, p_mw=0.01, q_mvar=0.0, type="delta", name="L")
    pp.create_load(net, b5, p_mw=0.01, q_mvar=0.0, name="on dead bus")
    pp.create_asymmetric_load(net, b3, p_a_mw=0.001, p_c_mw=0.002, q_c_mvar=0.0005, name="A")
    pp.create_asymmetric_load(net, b4, p_b_mw=0.004, type="delta", name="D")
    pp.create_sgen(net, b2, p_mw=0.02, q_mvar=0.001, sn_mva=0.03, type="PV", name="roof")
    pp.create_sgen(net, b4, p_mw=0.05, type="WP", name="wind")
    pp.create_asymmetric_sgen(net, b3, p_b_mw=0.003, type="PV", name="apv")
    pp.create_storage(net, b4, p_mw=-0.01, max_e_mwh=0.05, sn_mva=0.02, soc_percent=40.0)
    pp.create_shunt(net, b1, q_mvar=-0.05, p_mw=0.0, step=1, max_step=2, name="cap")
    pp.create_shunt(net, b2, q_mvar=0.02, p_mw=0.0, name="reactor")
    pp.create_ward(net, b3, ps_mw=0.01, qs_mvar=0.0, pz_mw=0.0, qz_mvar=0.0)
    pp.create_motor(net, b4, pn_mech_mw=0.01, cos_phi=0.9)
    return net


@pytest.fixture(scope="module")
def mixed():
    net = _mixed_net()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        feeder = feeder_from_pandapower(net, "mixed")
    return net, feeder, caught


def test_single_warning_lists_unsupported_tables(mixed) -> None:
    _, _, caught = mixed
    ours = [w for w in caught if "pandapower net 'mixed'" in str(w.message)]
    assert len(ours) == 1 and issubclass(ours[0].category, UserWarning)
    text = str(ours[0].message)
    for piece in ("1 ward", "1 motor", "shunt reactor", "magnetizing", "out-of-service buses"):
        assert piece in text
    assert "poly_cost" not in text


def test_names_are_unique_and_fall_back(mixed) -> None:
    _, feeder, _ = mixed
    names = [b.name for b in feeder.buses]
    # real names win over fallbacks; the dead bus 5 is skipped
    assert names == ["HV", "bus1_1", "bus2", "bus3", "bus1"]
    assert len({n.lower() for n in names}) == len(names)
    assert feeder.bus("HV").x == 1.0 and feeder.bus("HV").y == 2.0
    assert feeder.bus("bus2").x is None
    load_names = [ld.name for ld in feeder.loads]
    assert len({n.lower() for n in load_names}) == len(load_names)


def test_mixed_mapping(mixed) -> None:
    _, feeder, _ = mixed
    (root,) = feeder.roots
    assert root.bus == "HV" and root.v_pu == (1.02,) * 3 and root.angle_deg == (5.0, -115.0, 125.0)
    (xf,) = feeder.transformers
    assert [w.connection for w in xf.windings] == [Connection.WYE, Connection.DELTA]
    assert xf.windings[0].tap == 1.0 and xf.windings[1].tap == pytest.approx(1.03)
    cable = next(ln for ln in feeder.lines if ln.name == "cable")
    np.testing.assert_allclose(np.diag(cable.z_ohm), (0.2 + 0.08j) * 0.5 / 2)
    omega = 2 * math.pi * 50.0
    np.testing.assert_allclose(np.diag(cable.y_shunt_siemens), 1j * omega * 200e-9 * 0.5 * 2)
    assert cable.norm_amps == pytest.approx(400.0)
    assert len(feeder.lines) == 1  # open line switch -> open Switch; line to dead bus dropped
    sw = {s.name: s for s in feeder.switches}
    assert sw["line1"].closed is False and sw["tie"].closed is True
    assert (sw["tie"].bus1, sw["tie"].bus2) == ("bus2", "bus1")
    loads = {ld.name: ld for ld in feeder.loads}
    # two loads named "L": both fall back to load<idx>
    assert loads["load0"].kw == pytest.approx(60.0) and loads["load0"].kvar == pytest.approx(20.0)
    zip_load = next(ld for ld in feeder.loads if ld.bus == "bus3" and ld.phases == (1, 2, 3))
    assert zip_load.model == LoadModel.ZIP
    assert zip_load.zipv == pytest.approx((0.3, 0.2, 0.5, 0.0, 0.0, 1.0, 0.0))
    delta = loads["load2"]
    assert delta.bus == "bus1" and delta.phases == (1, 2, 3)
    assert delta.connection is Connection.DELTA and delta.kv == 0.4
    assert loads["A_a"].phases == (1,) and loads["A_a"].kw == pytest.approx(1.0)
    assert loads["A_c"].phases == (3,) and loads["A_c"].kvar == pytest.approx(0.5)
    assert loads["A_a"].kv == pytest.approx(0.4 / SQRT3)
    assert loads["D"].phases == (2, 3) and loads["D"].connection is Connection.DELTA
    assert loads["D"].kv == 0.4
    assert "on dead bus" not in loads
    pvs = {pv.name: pv for pv in feeder.pv_systems}
    assert pvs["roof"].p_kw == pytest.approx(20.0) and pvs["roof"].kva == pytest.approx(30.0)
    assert pvs["apv"].phases == (2,) and pvs["apv"].p_kw == pytest.approx(3.0)
    (gen,) = feeder.generators
    assert gen.name == "wind" and gen.kw == pytest.approx(50.0)
    (st,) = feeder.storage
    assert st.kw == pytest.approx(10.0) and st.kwh_rated == pytest.approx(50.0)
    assert st.soc_pct == 40.0 and st.kva == pytest.approx(20.0)
    (cap,) = feeder.capacitors
    assert cap.kvar == pytest.approx(100.0) and cap.steps_closed == 0.5 and cap.kv == 0.4


def test_old_style_bus_geodata() -> None:
    net = pp.create_empty_network()
    b0 = pp.create_bus(net, 11.0)
    b1 = pp.create_bus(net, 11.0)
    pp.create_ext_grid(net, b0)
    pp.create_line_from_parameters(net, b0, b1, 1.0, 0.1, 0.1, 0.0, 0.1)
    net["bus_geodata"] = pd.DataFrame({"x": [3.0, np.nan], "y": [4.0, 1.0]}, index=[b0, b1])
    feeder = feeder_from_pandapower(net, "geo")
    assert (feeder.buses[0].x, feeder.buses[0].y) == (3.0, 4.0)
    assert feeder.buses[1].x is None


def test_errors() -> None:
    net = pp.create_empty_network()
    b0 = pp.create_bus(net, 11.0)
    with pytest.raises(FeederInputError, match="no in-service ext_grid"):
        feeder_from_pandapower(net, "noslack")
    with pytest.raises(FeederInputError, match="no buses"):
        feeder_from_pandapower(pp.create_empty_network(), "empty")
    b1 = pp.create_bus(net, 0.4)
    pp.create_ext_grid(net, b0)
    pp.create_transformer_from_parameters(
        net, b0, b1, 0.4, 11.0, 0.4, 1.0, 4.0, 0.0, 0.0, vector_group="Dzn0"
    )
    with pytest.raises(FeederInputError, match="zigzag"):
        feeder_from_pandapower(net, "zigzag")
