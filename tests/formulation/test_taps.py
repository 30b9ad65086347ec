"""Taps as decisions (METHODS §1.2, paper B eqs 5–8) against independent references.

The reference for every optimum is an enumeration: each tap combination is built through
another path — ``build_math_feeder(feeder, taps=...)`` puts the ratios into the feeder's own
arrays, then the ordinary (continuous) OPF is solved — and the best combination is compared with
the MILP.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridrecourse.errors import FeederInputError, InfeasibleModelError
from gridrecourse.formulation.network import add_lindist3flow
from gridrecourse.formulation.taps import (
    PAPER_B_TAPS,
    TapCenter,
    TapOptions,
    TapPositions,
    add_tap_selection,
    governing_regulator,
    regulated_positions,
)
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.problems.opf import OPFConfig, build_opf, solve_opf
from gridrecourse.solvers.highs import LinearModel
from gridrecourse.solvers.options import SolverOptions
from line_to_line_cases import open_delta_master

EXACT = SolverOptions(mip_gap=1e-9)


@pytest.fixture(scope="module")
def ieee13(feeder_dir):
    feeder = resolve_feeder_spec("ieee13")
    return feeder, build_math_feeder(feeder)


def _enumerate(feeder, math, config, numbers_per_regulator):
    """Objective of every tap combination through build_math_feeder(taps=...) + plain OPF."""
    reg = math.regulators
    out = {}
    for combo in itertools.product(*numbers_per_regulator):
        taps = {
            (reg.transformer_names[i], int(reg.winding[i])): 1.0 + n * reg.tap_step[i]
            for i, n in enumerate(combo)
        }
        try:
            out[tuple(int(n) for n in combo)] = solve_opf(
                build_opf(build_math_feeder(feeder, taps=taps), config), EXACT
            ).cost
        except InfeasibleModelError:
            continue
    return out


def _one_period(**kw):
    base = dict(
        load_profile=np.array([1.0]),
        pv_profile=np.array([0.0]),
        price_per_mwh=np.array([40.0]),
        pv_penetration=0.0,
    )
    base.update(kw)
    return OPFConfig(**base)


# -- positions ---------------------------------------------------------------------------------


def test_positions_full_window_and_paper_b(ieee13):
    _, math = ieee13
    reg = math.regulators
    full = TapPositions.full().grid(reg)
    assert full.size == 3 * 33
    assert full.number[full.regulator == 0].tolist() == list(range(-16, 17))
    np.testing.assert_allclose(full.tap_pu[full.regulator == 1], 1 + np.arange(-16, 17) * 0.00625)
    win = TapPositions.window(2, TapCenter.CURRENT).grid(reg)
    assert [win.number[win.regulator == i].tolist() for i in range(3)] == [
        [7, 8, 9, 10, 11],
        [4, 5, 6, 7, 8],
        [7, 8, 9, 10, 11],
    ]
    clipped = TapPositions.window(20).grid(reg)  # clipped to the range
    assert clipped.size == full.size
    paper = TapPositions.paper_b().grid(reg)
    np.testing.assert_allclose(paper.tap_pu[paper.regulator == 2], PAPER_B_TAPS)
    assert paper.number[paper.regulator == 2].tolist() == [-8, -4, 0, 4, 8]
    assert TapPositions.parse("paper-b") == TapPositions.paper_b()
    assert TapPositions.parse("3@current") == TapPositions.window(3, "current")
    assert TapPositions.parse("full") == TapPositions.full()


def test_positions_off_the_grid_name_the_regulators(ieee13):
    _, math = ieee13
    with pytest.raises(FeederInputError, match="reg1, reg2, reg3"):
        TapPositions.explicit([0.95, 0.96]).grid(math.regulators)
    with pytest.raises(FeederInputError, match="reg1"):
        TapPositions.explicit([1.2]).grid(math.regulators)


def test_unbounded_parent_voltage_without_envelope_is_an_error(ieee13):
    _, math = ieee13
    physics = LinDist3Flow(math)
    m = LinearModel("t")
    net = add_lindist3flow(m, physics, 1, regulated=regulated_positions(physics, math.regulators))
    with pytest.raises(ValueError, match=r"finite bounds.*reg1, reg2, reg3.*v_bounds"):
        add_tap_selection(m, net, math.regulators, TapPositions.full())
    with pytest.raises(ValueError, match="regulated"):
        add_tap_selection(
            m, add_lindist3flow(LinearModel("u"), physics, 1), math.regulators, TapPositions()
        )


def test_governing_regulator(ieee13):
    _, math = ieee13
    gov = governing_regulator(math, math.regulators)
    names = math.node_names
    assert gov[names.index("rg60.1")] == 0 and gov[names.index("675.3")] == 2
    assert gov[names.index("650.1")] == -1 and gov[names.index("sourcebus.1")] == -1
    # every phase-a node below the regulators is governed by reg1
    below = (gov >= 0) & (math.node_phase == 1)
    assert np.all(gov[below] == 0)


# -- optimum = best of the enumeration ---------------------------------------------------------


@pytest.mark.parametrize("hull", [True, False], ids=["hull", "eq7"])
def test_ieee13_soft_band_equals_enumeration(ieee13, hull):
    """Soft band, no PV: taps trade voltage penalties; the optimum (8, 6, 8) is interior."""
    feeder, math = ieee13
    config = _one_period()
    positions = TapPositions.window(2, TapCenter.CURRENT)
    result = solve_opf(build_opf(math, config, taps=TapOptions(positions, hull=hull)), EXACT)
    grid = positions.grid(math.regulators)
    ref = _enumerate(feeder, math, config, [grid.number[grid.regulator == i] for i in range(3)])
    assert len(ref) == 125
    best = min(ref, key=ref.get)
    assert result.cost == pytest.approx(ref[best], rel=1e-6)
    chosen = tuple(result.taps[n][0] for n in math.regulators.names)
    assert chosen == best  # the optimum is unique (next best is 12.7 higher)
    assert ref[chosen] == pytest.approx(result.cost, rel=1e-6)


def test_ieee13_hard_band_with_pv_equals_enumeration(ieee13):
    """Hard band (big-M from the band itself), PV curtailed unless taps lower the voltage."""
    feeder, math = ieee13
    config = _one_period(
        load_profile=np.array([0.6]),
        pv_profile=np.array([0.9]),
        pv_penetration=1.5,
        voltage_penalty_per_pu_h=None,
    )
    positions = TapPositions.window(2, TapCenter.CURRENT)
    opf = build_opf(math, config, taps=TapOptions(positions))
    lo, hi = opf.taps.v_bounds
    np.testing.assert_allclose(lo, 0.95**2)
    np.testing.assert_allclose(hi, 1.05**2)
    result = solve_opf(opf, EXACT)
    grid = positions.grid(math.regulators)
    ref = _enumerate(feeder, math, config, [grid.number[grid.regulator == i] for i in range(3)])
    assert 0 < len(ref) < 125  # some combinations cannot hold the band
    best = min(ref, key=ref.get)
    assert result.cost == pytest.approx(ref[best], rel=1e-6)
    assert tuple(result.taps[n][0] for n in math.regulators.names) == best
    assert result.n_voltage_violations == 0


def test_paper_b_positions_equal_enumeration(ieee13):
    feeder, math = ieee13
    config = _one_period(load_profile=np.array([0.8]))
    result = solve_opf(build_opf(math, config, taps=TapOptions(TapPositions.paper_b())), EXACT)
    numbers = [np.array([-8, -4, 0, 4, 8])] * 3
    ref = _enumerate(feeder, math, config, numbers)
    assert result.cost == pytest.approx(min(ref.values()), rel=1e-6)


def test_fixed_taps_reproduce_the_fixed_model(ieee13):
    """Fixing u at the feeder's own taps gives the plain OPF (same LP, other path)."""
    _, math = ieee13
    config = _one_period(
        load_profile=np.array([0.5, 1.0]), pv_profile=np.zeros(2), price_per_mwh=np.full(2, 40.0)
    )
    plain = solve_opf(build_opf(math, config))
    opf = build_opf(math, config, taps=TapOptions(TapPositions.window(0, TapCenter.CURRENT)))
    tapped = solve_opf(opf, EXACT)
    assert tapped.cost == pytest.approx(plain.cost, rel=1e-9)
    np.testing.assert_allclose(tapped.v_pu, plain.v_pu, atol=1e-7)
    assert tapped.taps == {"reg1": [9, 9], "reg2": [6, 6], "reg3": [9, 9]}


# -- tap-change counting (eq 8) ----------------------------------------------------------------

SWING = np.array([0.3, 1.2, 0.3, 1.2])


def _swing_config():
    return OPFConfig(
        load_profile=SWING,
        pv_profile=np.zeros(len(SWING)),
        price_per_mwh=np.full(len(SWING), 40.0),
        pv_penetration=0.0,
        v_min=0.98,
        v_max=1.03,
    )


def _changes(taps: dict, initial=None) -> np.ndarray:
    numbers = np.array(list(taps.values()))
    if initial is not None:
        numbers = np.c_[np.asarray(initial), numbers]
    return np.abs(np.diff(numbers, axis=1)).sum(axis=1)


def test_tap_change_limit_binds(ieee13):
    _, math = ieee13
    config = _swing_config()
    positions = TapPositions.window(3, TapCenter.CURRENT)
    free = solve_opf(build_opf(math, config, taps=TapOptions(positions)), EXACT)
    assert _changes(free.taps).max() > 4  # the unlimited optimum moves more than the limit
    limited = solve_opf(build_opf(math, config, taps=TapOptions(positions, max_changes=4)), EXACT)
    assert np.all(_changes(limited.taps) <= 4)
    assert limited.cost > free.cost + 1.0  # the limit costs something
    frozen = solve_opf(build_opf(math, config, taps=TapOptions(positions, max_changes=0)), EXACT)
    assert np.all(_changes(frozen.taps) == 0)
    assert frozen.cost >= limited.cost - 1e-6


def test_zero_changes_equals_best_constant_taps(ieee13):
    """max_changes=0: the optimum over constant taps, by enumeration over the horizon."""
    feeder, math = ieee13
    config = _swing_config()
    positions = TapPositions.window(1, TapCenter.CURRENT)
    result = solve_opf(build_opf(math, config, taps=TapOptions(positions, max_changes=0)), EXACT)
    grid = positions.grid(math.regulators)
    ref = _enumerate(feeder, math, config, [grid.number[grid.regulator == i] for i in range(3)])
    assert result.cost == pytest.approx(min(ref.values()), rel=1e-6)


def test_changes_count_from_the_initial_position(ieee13):
    """With ``initial`` and no moves allowed the taps stay at the initial position."""
    _, math = ieee13
    config = _swing_config()
    options = TapOptions(
        TapPositions.window(4, TapCenter.CURRENT), max_changes=0, initial="current"
    )
    result = solve_opf(build_opf(math, config, taps=options), EXACT)
    assert result.taps == {"reg1": [9] * 4, "reg2": [6] * 4, "reg3": [9] * 4}
    plain = solve_opf(build_opf(math, config))
    assert result.cost == pytest.approx(plain.cost, rel=1e-9)
    # one step allowed from an initial position away from the optimum: exactly one move used
    one = TapOptions(TapPositions.window(4, TapCenter.CURRENT), max_changes=1, initial=(5, 2, 5))
    moved = solve_opf(build_opf(math, config, taps=one), EXACT)
    assert np.all(_changes(moved.taps, initial=(5, 2, 5)) <= 1)


def test_change_cost_prices_steps(ieee13):
    _, math = ieee13
    config = _swing_config()
    positions = TapPositions.window(3, TapCenter.CURRENT)
    free = solve_opf(build_opf(math, config, taps=TapOptions(positions)), EXACT)
    priced = solve_opf(build_opf(math, config, taps=TapOptions(positions, change_cost=1e6)), EXACT)
    assert _changes(priced.taps).sum() == 0
    assert _changes(free.taps).sum() > 0


# -- bad input ---------------------------------------------------------------------------------


def test_tap_range_that_cannot_hold_the_band_names_the_regulators(ieee13):
    """IEEE 13 needs +6..+9 steps at full load; ±1 step around neutral cannot hold 0.95 p.u."""
    _, math = ieee13
    config = _one_period(voltage_penalty_per_pu_h=None)
    opf = build_opf(math, config, taps=TapOptions(TapPositions.window(1)))
    with pytest.raises(InfeasibleModelError, match=r"cannot hold the voltage band") as info:
        solve_opf(opf, EXACT)
    message = str(info.value)
    # phases a and c stay below 0.95 p.u. at +1; phase b (reg2) can hold the band
    for name in ("reg1", "reg3"):
        assert f"{name} at its highest allowed tap +1" in message
    assert "reg2" not in message
    assert "below v_min" in message


def test_range_wide_enough_is_feasible(ieee13):
    _, math = ieee13
    config = _one_period(voltage_penalty_per_pu_h=None)
    result = solve_opf(build_opf(math, config, taps=TapOptions(TapPositions.full())), EXACT)
    assert result.n_voltage_violations == 0


def test_fixed_taps_per_period_equal_the_independent_path(ieee13):
    """``fixed`` (u fixed by bounds), different taps per period: the OPF periods are
    independent, so the objective is the sum of one-period OPFs built at those ratios."""
    feeder, math = ieee13
    load = np.array([0.5, 1.0])
    config = _one_period(load_profile=load, pv_profile=np.zeros(2), price_per_mwh=np.full(2, 40.0))
    fixed = np.array([[4, 12], [0, 8], [-4, 16]])
    opf = build_opf(math, config, taps=TapOptions(TapPositions.full(), fixed=fixed))
    result = solve_opf(opf, EXACT)
    assert result.taps == {"reg1": [4, 12], "reg2": [0, 8], "reg3": [-4, 16]}
    reg = math.regulators
    total = 0.0
    for t in range(2):
        taps = {
            (reg.transformer_names[i], int(reg.winding[i])): 1.0 + fixed[i, t] * reg.tap_step[i]
            for i in range(3)
        }
        one = _one_period(load_profile=load[t : t + 1])
        total += solve_opf(build_opf(build_math_feeder(feeder, taps=taps), one)).cost
    assert result.cost == pytest.approx(total, rel=1e-9)


def test_fixed_taps_outside_the_positions_name_the_regulator(ieee13):
    _, math = ieee13
    options = TapOptions(TapPositions.paper_b(), fixed=(4, 5, 8))
    with pytest.raises(FeederInputError, match=r"reg2 \(got \[5\]"):
        build_opf(math, _one_period(), taps=options)


@pytest.fixture(scope="module")
def ieee123(feeder_dir):
    feeder = resolve_feeder_spec("ieee123")
    return feeder, build_math_feeder(feeder)


def _at_taps(feeder, math, numbers):
    reg = math.regulators
    taps = {
        (reg.transformer_names[i], int(reg.winding[i])): 1.0 + n * reg.tap_step[i]
        for i, n in enumerate(numbers)
    }
    return build_math_feeder(feeder, taps=taps)


def test_ieee123_ganged_regulator_at_the_root_and_series_regulators(ieee123):
    """IEEE 123: the ganged reg1 hangs off the root (w = v_root² u, no big-M), the others off
    variable voltages, two in series. The MILP's taps, rebuilt as ratios of the feeder, give
    the MILP's objective, and beat the feeder's own taps."""
    feeder, math = ieee123
    reg = math.regulators
    assert math.is_root[math.parent[reg.node[reg.regulator_of == 0]]].all()
    config = _one_period()
    opf = build_opf(math, config, taps=TapOptions(TapPositions.window(2, TapCenter.CURRENT)))
    assert opf.taps.w.size == (len(reg.node) - 3) * 5  # 6 single-phase regulators × 5
    result = solve_opf(opf, EXACT)
    chosen = [result.taps[n][0] for n in reg.names]
    rebuilt = solve_opf(build_opf(_at_taps(feeder, math, chosen), config), EXACT)
    assert result.cost == pytest.approx(rebuilt.cost, rel=1e-6)
    np.testing.assert_allclose(result.v_pu, rebuilt.v_pu, atol=1e-6)
    own = solve_opf(build_opf(math, config), EXACT)
    assert result.cost < own.cost


# -- line-to-line regulators (windings between two phases) ------------------------------------


def test_line_to_line_regulators_taps_match_the_fixed_model_and_enumeration(tmp_path):
    """Open-delta bank of two single-phase regulators between phase pairs: the tap model's
    sending voltage is the pair's, as in the fixed model's drop rows (fixing u at the feeder's
    taps gives the plain OPF), and the MILP optimum is the best of the enumeration through
    ``build_math_feeder(taps=...)``. A narrow band (0.99–1.01 p.u.) makes the taps matter."""
    feeder = resolve_feeder_spec(open_delta_master(tmp_path))
    math = build_math_feeder(feeder)
    assert (math.send_partner[math.regulators.node] >= 0).all()
    config = _one_period(v_min=0.99, v_max=1.01, thermal_limits=False)
    plain = solve_opf(build_opf(math, config))
    opf = build_opf(math, config, taps=TapOptions(TapPositions.window(0, TapCenter.CURRENT)))
    tapped = solve_opf(opf, EXACT)
    assert tapped.cost == pytest.approx(plain.cost, rel=1e-9)
    np.testing.assert_allclose(tapped.v_pu, plain.v_pu, atol=1e-7)
    positions = TapPositions.window(2, TapCenter.CURRENT)
    result = solve_opf(build_opf(math, config, taps=TapOptions(positions)), EXACT)
    grid = positions.grid(math.regulators)
    ref = _enumerate(feeder, math, config, [grid.number[grid.regulator == i] for i in range(2)])
    assert len(ref) == 25
    best = min(ref, key=ref.get)
    assert result.cost == pytest.approx(ref[best], rel=1e-6)
    assert max(ref.values()) > ref[best] + 1.0  # the enumeration is not flat
