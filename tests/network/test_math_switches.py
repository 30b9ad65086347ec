"""Switches kept as decision data (``keep_switches=True``) and the meshed9 test feeder (§1.3)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
from dss_fixtures import MESHED, RADIAL, write_master

from gridrecourse.errors import IslandedBusError, MeshedNetworkError
from gridrecourse.evaluation.validation import validate_feeder
from gridrecourse.network.io_opendss import compile_opendss, feeder_from_opendss
from gridrecourse.network.loading import builtin_master
from gridrecourse.network.math_model import GAMMA, BranchKind, build_math_feeder

MESHED9 = Path(__file__).resolve().parents[1] / "data" / "meshed9" / "Master.dss"


@pytest.fixture(scope="module")
def meshed9():
    return feeder_from_opendss(MESHED9)


def _names(math, nodes) -> list[str]:
    return [math.node_names[i] for i in nodes]


def test_meshed9_compiles_and_solves_in_opendss():
    _, converged = compile_opendss(MESHED9)
    assert converged
    import opendssdirect as dss

    assert dss.Circuit.NumBuses() == 9
    assert -dss.Circuit.TotalPower()[0] == pytest.approx(2550.0, rel=0.02)  # loads + losses


def test_meshed9_imports_with_expected_switches(meshed9):
    assert {s.name: s.closed for s in meshed9.switches} == {
        "s23": True,
        "s45": True,
        "s67": True,
        "t37": False,
        "t58": False,
    }
    assert len(meshed9.lines) == 5
    assert len(meshed9.loads) == 10


def test_meshed9_default_mode_is_the_normal_radial_configuration(meshed9):
    math = build_math_feeder(meshed9)
    assert math.switches is None
    assert math.n_buses == 9 and math.n_nodes == 27
    assert not any(name.startswith("Switch.t") for name in math.branch_names)
    bus = dict(zip(math.bus_names, range(len(math.bus_names)), strict=True))
    parent_bus = {
        math.bus_names[math.node_bus[i]]: math.bus_names[math.node_bus[math.parent[i]]]
        for i in np.flatnonzero(~math.is_root)
    }
    assert parent_bus == {
        "b1": "src",
        "b2": "b1",
        "b3": "b2",
        "b4": "b3",
        "b5": "b4",
        "b6": "b1",
        "b7": "b6",
        "b8": "b7",
    }
    assert bus["src"] in math.node_bus[math.is_root]


def test_meshed9_keep_switches_ties_and_tree_switches(meshed9):
    math = build_math_feeder(meshed9, keep_switches=True)
    sw = math.switches
    assert sw.names == ("s23", "s45", "s67", "t37", "t58")
    assert sw.tree_switch_names == ("s23", "s45", "s67")
    assert sw.tie_names == ("t37", "t58")
    np.testing.assert_array_equal(sw.normal_closed, [True, True, True, False, False])
    assert _names(math, sw.tree_node) == [f"b{b}.{p}" for b in (3, 5, 7) for p in (1, 2, 3)]
    np.testing.assert_array_equal(sw.tree_switch, np.repeat([0, 1, 2], 3))
    assert _names(math, sw.tie_from_node) == [f"b{b}.{p}" for b in (3, 5) for p in (1, 2, 3)]
    assert _names(math, sw.tie_to_node) == [f"b{b}.{p}" for b in (7, 8) for p in (1, 2, 3)]
    np.testing.assert_array_equal(sw.tie_switch, np.repeat([3, 4], 3))
    np.testing.assert_array_equal(sw.tie_phase, [1, 2, 3, 1, 2, 3])
    assert sw.tie_z_pu.shape == (6, 6)
    # tree switches are zero-impedance branches of the tree; every switch is a branch element
    assert np.all(math.z_pu[sw.tree_node].toarray() == 0)
    assert [math.branch_kinds[k] for k in sw.branch_index] == [BranchKind.SWITCH] * 5
    assert [math.branch_names[k] for k in sw.branch_index] == [f"Switch.{n}" for n in sw.names]
    # bus ends: tree switches parent → child, ties bus1 → bus2
    ends = [
        (math.bus_names[a], math.bus_names[b]) for a, b in zip(sw.bus_from, sw.bus_to, strict=True)
    ]
    assert ends == [("b2", "b3"), ("b4", "b5"), ("b6", "b7"), ("b3", "b7"), ("b5", "b8")]
    # rating: 400 A per phase at 7.2 kV L-N on a 1000 kVA per-phase base
    np.testing.assert_allclose(sw.rating_pu, 400 * 12.47 / np.sqrt(3) / 1000, rtol=1e-3)
    assert sw.normal_energized.all()
    # the tree is the same as the default (normal-state) model
    default = build_math_feeder(meshed9)
    assert math.node_names == default.node_names
    np.testing.assert_array_equal(math.parent, default.parent)
    assert (math.z_pu - default.z_pu).count_nonzero() == 0


def test_keep_switches_node_behind_normally_open_switch(meshed9):
    """With S45 also open, b5 is reachable only through a normally-open switch."""
    math = build_math_feeder(meshed9, keep_switches=True, switch_states={"s45": False})
    sw = math.switches
    assert sw.tie_names == ("t37", "t58")  # s45 comes first among the weight-2 switches
    assert "b5.1" in math.node_names
    dead = {math.node_names[i] for i in np.flatnonzero(~sw.normal_energized)}
    assert dead == {"b5.1", "b5.2", "b5.3"}
    # the default mode drops the open switches and cannot feed b5's load
    with pytest.raises(IslandedBusError, match="b5"):
        build_math_feeder(meshed9, switch_states={"s45": False})


def test_switch_states_pick_another_radial_configuration(meshed9):
    math = build_math_feeder(meshed9, switch_states={"s23": False, "t37": True})
    b3 = math.node_index()["b3.1"]
    assert math.bus_names[math.node_bus[math.parent[b3]]] == "b7"
    kept = build_math_feeder(meshed9, keep_switches=True, switch_states={"s23": False, "t37": True})
    assert kept.switches.tie_names == ("s23", "t58")
    np.testing.assert_array_equal(kept.parent, math.parent)


def test_tie_drop_matrices_follow_lindistflow(tmp_path):
    """A tie with impedance gets M_P = 2 Re(γ∘conj Z), M_Q = −2 Im(γ∘conj Z)."""
    feeder = feeder_from_opendss(MESHED9)
    sw = build_math_feeder(feeder, keep_switches=True).switches
    z = np.array([[0.3 + 0.6j, 0.1 + 0.2j, 0], [0.1 + 0.2j, 0.3 + 0.6j, 0], [0, 0, 0.3 + 0.6j]])
    sw = dataclasses.replace(sw, tie_z_pu=sp.csr_matrix(np.kron(np.eye(2), z)))
    m_p, m_q = sw.tie_drop_matrices()
    gz = GAMMA * np.conj(z)
    np.testing.assert_allclose(m_p.toarray()[:3, :3], 2 * gz.real)
    np.testing.assert_allclose(m_q.toarray()[3:, 3:], -2 * gz.imag)
    assert m_p.toarray()[:3, 3:].sum() == 0


def test_keep_switches_loop_of_lines_is_still_meshed(tmp_path):
    feeder = feeder_from_opendss(write_master(tmp_path, MESHED))
    with pytest.raises(MeshedNetworkError) as info:
        build_math_feeder(feeder, keep_switches=True)
    assert set(info.value.loop_branches) >= {"Line.l1", "Line.l2", "Line.l3"}


def test_keep_switches_loop_through_a_switch_becomes_a_tie(tmp_path):
    body = RADIAL + "New Line.sw bus1=b2 bus2=src switch=yes\n"
    feeder = feeder_from_opendss(write_master(tmp_path, body))
    with pytest.raises(MeshedNetworkError, match=r"Switch\.sw"):
        build_math_feeder(feeder)
    sw = build_math_feeder(feeder, keep_switches=True).switches
    assert sw.tie_names == ("sw",) and sw.normal_closed.tolist() == [True]


def test_ieee123_switches_ties(feeder_dir):
    feeder = feeder_from_opendss(builtin_master("ieee123-switches"))
    default = build_math_feeder(feeder)
    math = build_math_feeder(feeder, keep_switches=True)
    sw = math.switches
    assert sw.tie_names == ("sw7", "sw8")
    assert len(sw.tree_switch_names) == 6 and sw.normal_closed[~sw.is_tie].all()
    assert _names(math, sw.tie_to_node) == ["300.1", "300.2", "300.3", "94.1"]
    assert _names(math, sw.tie_from_node) == ["151.1", "151.2", "151.3", "54.1"]
    assert math.node_names == default.node_names
    np.testing.assert_array_equal(math.ratio, default.ratio)


def test_ieee123_master_dummy_buses_stay_tree_switches(feeder_dir):
    """In IEEE123Master.dss Sw7/Sw8 end at dummy *_OPEN buses: no loop, so no tie."""
    feeder = feeder_from_opendss(builtin_master("ieee123"))
    sw = build_math_feeder(feeder, keep_switches=True).switches
    assert not sw.is_tie.any() and sw.n_switches == 8


def test_meshed9_linear_model_against_opendss(tmp_path):
    """Normal and one alternative configuration: LinDist3Flow vs OpenDSS AC within 0.5 %."""
    normal = validate_feeder(MESHED9).result
    assert normal.ac_converged and normal.n_compared_nodes == 27
    assert normal.max_abs_voltage_error_pu < 5e-3
    assert abs(normal.substation_p_error_pct) < 2.0
    alt = tmp_path / "alt.dss"
    alt.write_text(f'Redirect "{MESHED9}"\nOpen Line.S23 term=1\nClose Line.T37 term=2\n')
    run = validate_feeder(alt)
    assert run.result.ac_converged and run.result.max_abs_voltage_error_pu < 5e-3
    b3 = run.math.node_index()["b3.1"]
    assert run.math.bus_names[run.math.node_bus[run.math.parent[b3]]] == "b7"
