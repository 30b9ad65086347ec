"""RegulatorData: regulator-controlled transformers, their nodes and tap ↔ ratio (METHODS §1.2)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gridrecourse.network.components import (
    Bus,
    Connection,
    Feeder,
    Load,
    Regulator,
    Root,
    Transformer,
    Winding,
)
from gridrecourse.network.io_opendss import feeder_from_opendss
from gridrecourse.network.loading import builtin_master
from gridrecourse.network.math_model import RegulatorData, build_math_feeder


def _check_reproduces_ratio(math) -> None:
    reg = math.regulators
    assert np.all(~math.is_root[reg.node])
    np.testing.assert_allclose(
        reg.ratio_at(reg.tap)[reg.regulator_of], math.ratio[reg.node], rtol=0, atol=1e-14
    )
    # the tap in use is a tap position of the regulator's own range
    np.testing.assert_allclose(reg.tap_at(reg.tap_position), reg.tap, atol=1e-12)


def test_ieee13_three_single_phase_regulators(feeder_dir):
    feeder = feeder_from_opendss(builtin_master("ieee13"))
    math = build_math_feeder(feeder)
    reg = math.regulators
    assert reg.names == ("reg1", "reg2", "reg3")
    assert reg.n_regulators == 3
    assert [math.node_names[i] for i in reg.node] == ["rg60.1", "rg60.2", "rg60.3"]
    np.testing.assert_array_equal(reg.regulator_of, [0, 1, 2])
    np.testing.assert_allclose(reg.tap_min, 0.9)
    np.testing.assert_allclose(reg.tap_max, 1.1)
    np.testing.assert_array_equal(reg.n_steps, 32)
    np.testing.assert_allclose(reg.tap_step, 0.00625)
    # OpenDSS settles the IEEE 13 regulators at +9 / +6 / +9 steps (feeders README)
    np.testing.assert_array_equal(reg.tap_position - 16, [9, 6, 9])
    np.testing.assert_array_equal(reg.tap_exponent, 1)
    _check_reproduces_ratio(math)
    assert all(
        math.branch_names[k] == f"Transformer.{n}"
        for k, n in zip(reg.branch_index, reg.transformer_names, strict=True)
    )


def test_ieee123_seven_regulators_one_ganged(feeder_dir):
    feeder = feeder_from_opendss(builtin_master("ieee123"))
    assert len(feeder.transformers) == 8  # 7 regulators + xfm1
    math = build_math_feeder(feeder)
    reg = math.regulators
    assert reg.n_regulators == 7
    assert set(reg.transformer_names) == {
        "reg1a",
        "reg2a",
        "reg3a",
        "reg3c",
        "reg4a",
        "reg4b",
        "reg4c",
    }
    counts = np.bincount(reg.regulator_of)
    ganged = reg.transformer_names.index("reg1a")
    assert counts[ganged] == 3  # the ganged 3-phase regulator at 150 is ONE regulator
    assert counts.sum() == 9
    _check_reproduces_ratio(math)


def test_neutral_taps_give_base_ratio(feeder_dir):
    feeder = feeder_from_opendss(builtin_master("ieee123"))
    neutral = {(r.transformer, r.winding): 1.0 for r in feeder.regulators}
    math = build_math_feeder(feeder, taps=neutral)
    reg = math.regulators
    np.testing.assert_allclose(reg.tap, 1.0)
    np.testing.assert_allclose(math.ratio[reg.node], reg.base_ratio[reg.regulator_of])
    np.testing.assert_array_equal(reg.tap_position, 16)


def _xf_feeder(tap_winding: int, reverse: bool) -> Feeder:
    """Source — 1-phase regulator (kV 2.4 → 2.4) — load; optionally back-fed."""
    w1 = Winding("a", (1,), Connection.WYE, 2.4, 500.0, 0.5, tap=1.0)
    w2 = Winding("b", (1,), Connection.WYE, 2.4, 500.0, 0.5, tap=1.0)
    tapped = dataclasses.replace((w1, w2)[tap_winding - 1], tap=1.05)
    windings = (tapped, w2) if tap_winding == 1 else (w1, tapped)
    return Feeder(
        name="xf",
        buses=(Bus("a", (1,), 2.4), Bus("b", (1,), 2.4)),
        roots=(Root("b" if reverse else "a", (1.0,)),),
        transformers=(Transformer("t", 1, windings, (1.0,)),),
        regulators=(Regulator("rc", "t", tap_winding, 0.9, 1.1, 32, 120.0, 2.0, 20.0),),
        loads=(Load("ld", "a" if reverse else "b", (1,), Connection.WYE, 10.0, 1.0, 2.4),),
    )


@pytest.mark.parametrize(
    ("winding", "reverse", "exponent"), [(2, False, 1), (1, False, -1), (2, True, -1), (1, True, 1)]
)
def test_tap_exponent_follows_winding_and_direction(winding, reverse, exponent):
    math = build_math_feeder(_xf_feeder(winding, reverse))
    reg = math.regulators
    assert reg.tap_exponent.tolist() == [exponent]
    assert reg.tap.tolist() == [1.05]
    assert math.ratio[reg.node][0] == pytest.approx(1.05**exponent, abs=1e-14)
    assert reg.base_ratio[0] == pytest.approx(1.0, abs=1e-14)
    _check_reproduces_ratio(math)
    # tap positions map to ratios: k = n_steps is tap_max
    assert reg.ratio_at(reg.tap_at(reg.n_steps))[0] == pytest.approx(1.1**exponent)


def test_no_regulators_is_empty():
    feeder = dataclasses.replace(_xf_feeder(2, False), regulators=())
    reg = build_math_feeder(feeder).regulators
    assert reg.n_regulators == 0 and len(reg.node) == 0
    assert isinstance(RegulatorData.empty(), RegulatorData)
