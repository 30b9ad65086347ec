"""The one feeder pipeline (network.prepare) against the call-site recipes it replaces."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gridrecourse.errors import FeederInputError, MeshedNetworkError
from gridrecourse.evaluation.ac_check import read_snapshot
from gridrecourse.evaluation.validation import prepare_for_linear_model
from gridrecourse.network.io_opendss import compile_opendss
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import MathFeeder, build_math_feeder
from gridrecourse.network.prepare import (
    OperatingPoint,
    RootVoltages,
    SwitchMode,
    TapMode,
    prepare_feeder,
    prepare_math_feeder,
)

MESHED9 = Path(__file__).resolve().parents[1] / "data" / "meshed9" / "Master.dss"


def assert_same_model(a: MathFeeder, b: MathFeeder, *, branches: bool = True) -> None:
    """Every array of the two models is identical (bit for bit)."""
    for key in (
        "node_bus",
        "node_phase",
        "parent",
        "ratio",
        "rating_pu",
        "branch_of_node",
        "root_v_pu",
        "cap_b_pu",
        "kv_base_ln",
        "distance_km",
        "load_kw",
        "load_kvar",
    ):
        assert np.array_equal(getattr(a, key), getattr(b, key), equal_nan=True), key
    for key in ("z_pu", "load_map", "pv_map", "gen_map", "storage_map"):
        assert (getattr(a, key) != getattr(b, key)).nnz == 0, key
    assert a.bus_names == b.bus_names
    if branches:
        assert a.branch_names == b.branch_names


@pytest.mark.parametrize("name", ["ieee13", "ieee123"])
def test_default_is_the_opf_recipe(feeder_dir, name):
    feeder = resolve_feeder_spec(name)
    old = build_math_feeder(prepare_for_linear_model(feeder, read_snapshot()))
    prepared = prepare_feeder(name)
    assert_same_model(old, prepared.math)
    assert prepared.operating_point == OperatingPoint()
    assert prepared.source.name == prepared.feeder.name == feeder.name


def test_neutral_taps_is_the_siting_recipe(feeder_dir):
    feeder = prepare_for_linear_model(resolve_feeder_spec("ieee123"))
    neutral = {(r.transformer, r.winding): 1.0 for r in feeder.regulators}
    old = build_math_feeder(feeder, taps=neutral)
    op = OperatingPoint(taps=TapMode.NEUTRAL, root_voltages=RootVoltages.NOMINAL)
    new = prepare_math_feeder("ieee123", op)
    assert_same_model(old, new)
    np.testing.assert_allclose(new.regulators.tap, 1.0)


def test_explicit_taps_by_regulator_name(feeder_dir):
    math = prepare_math_feeder("ieee13", OperatingPoint(taps={"reg2": 1.1}))
    reg = math.regulators
    assert reg.tap.tolist() == pytest.approx([1.05625, 1.1, 1.05625])
    np.testing.assert_allclose(reg.ratio_at(reg.tap)[reg.regulator_of], math.ratio[reg.node])
    with pytest.raises(FeederInputError, match="nope"):
        prepare_math_feeder("ieee13", OperatingPoint(taps={"nope": 1.0}))
    with pytest.raises(FeederInputError, match="outside its range"):
        prepare_math_feeder("ieee13", OperatingPoint(taps={"reg1": 1.2}))


def test_switch_modes_on_meshed9():
    normal = prepare_math_feeder(MESHED9)
    assert normal.switches is None
    kept = prepare_math_feeder(MESHED9, OperatingPoint(switches=SwitchMode.AS_DECISIONS))
    assert kept.switches.tie_names == ("t37", "t58")
    assert_same_model(normal, kept, branches=False)  # the ties are extra branch elements
    alt = prepare_math_feeder(MESHED9, OperatingPoint(switches={"s23": False, "t37": True}))
    b3 = alt.node_index()["b3.1"]
    assert alt.bus_names[alt.node_bus[alt.parent[b3]]] == "b7"
    with pytest.raises(MeshedNetworkError):
        prepare_math_feeder(MESHED9, OperatingPoint(switches={"t37": True}))
    with pytest.raises(FeederInputError, match="s99"):
        prepare_math_feeder(MESHED9, OperatingPoint(switches={"s99": True}))


def test_string_enum_values_are_accepted():
    math = prepare_math_feeder(
        MESHED9,
        OperatingPoint(taps="neutral", switches="as_decisions"),  # type: ignore[arg-type]
    )
    assert math.switches is not None
    point = OperatingPoint(taps="neutral", switches="as_decisions")  # type: ignore[arg-type]
    assert point.taps is TapMode.NEUTRAL and point.switches is SwitchMode.AS_DECISIONS
    with pytest.raises(FeederInputError, match="sideways"):
        OperatingPoint(taps="sideways")  # type: ignore[arg-type]


SUBTRANSMISSION_LOOP = """Clear
New Circuit.subloop basekv=69 pu=1.02 phases=3 bus1=src
New Linecode.hv nphases=3 units=km r1=0.1 x1=0.4 r0=0.3 x0=1.2 c1=0 c0=0
New Linecode.mv nphases=3 units=km rmatrix=[0.3 | 0.1 0.3 | 0.1 0.1 0.3]
~ xmatrix=[0.6 | 0.2 0.6 | 0.2 0.2 0.6]
New Line.h1 bus1=src bus2=h1 linecode=hv length=5
New Line.h2 bus1=h1 bus2=h2 linecode=hv length=5
New Line.h3 bus1=h2 bus2=src linecode=hv length=8
New Transformer.sub phases=3 windings=2 buses=[h2 m0] conns=[delta wye] kvs=[69 12.47]
~ kvas=[10000 10000] xhl=8 %rs=[0.5 0.5]
New Line.m1 bus1=m0 bus2=m1 linecode=mv length=2
New Load.l1 bus1=m1 phases=3 kv=12.47 kw=3000 kvar=1200 model=1
Set voltagebases=[69 12.47]
Calcvoltagebases
"""


def test_subtransmission_loop_rooted_with_snapshot_voltages(tmp_path):
    """A 69 kV loop is cut at the substation with OpenDSS's voltages there (or 1.0 p.u.)."""
    master = tmp_path / "subloop.dss"
    master.write_text(SUBTRANSMISSION_LOOP)
    feeder = resolve_feeder_spec(master)
    old = build_math_feeder(prepare_for_linear_model(feeder, read_snapshot()))
    prepared = prepare_feeder(master)
    assert_same_model(old, prepared.math)
    assert [r.bus for r in prepared.feeder.roots] == ["m0"]
    v_root = prepared.math.root_v_pu[prepared.math.is_root]
    assert not np.allclose(v_root, 1.0)
    nominal = prepare_math_feeder(feeder, OperatingPoint(root_voltages=RootVoltages.NOMINAL))
    np.testing.assert_array_equal(nominal.root_v_pu[nominal.is_root], 1.0)
    # another circuit in the engine: the snapshot is recompiled from the feeder's source file
    compile_opendss(MESHED9)
    assert_same_model(old, prepare_math_feeder(feeder))
