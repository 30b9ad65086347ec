"""Paper A's storage-expansion LP (eq 19): hand-solvable sizing, export prices, duals, errors."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError, InvalidSeriesError
from gridrecourse.evaluation.validation import prepare_for_linear_model
from gridrecourse.formulation.limits import LimitMode
from gridrecourse.network.components import Bus, Connection, Feeder, Line, Load, Root
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.problems.storage_expansion import (
    StorageExpansionConfig,
    StorageExpansionInputError,
    StorageExpansionProblem,
    capital_recovery_factor,
    horizon_installation_cost,
)

KV_LN = 7.2
LOAD_KW = 600.0


def two_bus_math(load_kw: float = LOAD_KW):
    """Source — short line — 3-phase load bus ``b`` (one wye load, 200 kW per phase)."""
    phases = (1, 2, 3)
    feeder = Feeder(
        name="two-bus",
        buses=(Bus("s", phases, KV_LN), Bus("b", phases, KV_LN)),
        roots=(Root("s", (1.0, 1.0, 1.0)),),
        lines=(
            Line(
                "l",
                "s",
                "b",
                phases,
                phases,
                np.eye(3) * (0.05 + 0.1j),
                np.zeros((3, 3), complex),
                400.0,
                1,
                1.0,
            ),
        ),
        loads=(Load("ld", "b", phases, Connection.WYE, load_kw, 0.3 * load_kw, KV_LN),),
    )
    return build_math_feeder(feeder)


def two_bus_problem(cost_per_kwh: float, **kw) -> StorageExpansionProblem:
    base = dict(
        n_hours=2,
        c_rate_per_h=1.0,
        installation_cost_per_kwh=cost_per_kwh,
        max_capacity_kwh=10 * LOAD_KW,
    )
    base.update(kw)
    return StorageExpansionProblem(two_bus_math(), StorageExpansionConfig(**base))


@pytest.fixture(scope="module")
def ieee13(feeder_dir):
    return build_math_feeder(prepare_for_linear_model(resolve_feeder_spec("ieee13")))


# ------------------------------------------------------------------------------------------
# Hand-checkable sizing on a 2-bus feeder
# ------------------------------------------------------------------------------------------
# Hour 0: price box [15, 20], hour 1: [60, 100] $/MWh; load 600 kW both hours; C-rate 1/h.
# One kWh of capacity charged in hour 0 and discharged in hour 1 is worth
#   (ȳ1 − ȳ0)/1000 = 0.08 $/kWh while it displaces imports (x ≤ 600 kWh), and
#   (y̲1 − ȳ0)/1000 = 0.04 $/kWh once it exports (worst-case export price is the LOWER end).
# So x* = 0 if c > 0.08, x* = 600 kWh if 0.04 < c < 0.08, x* = x_max if c < 0.04, and
# V = 72 + 600 min(c − 0.08, 0) + (x* − 600)⁺ (c − 0.04) with 72 = (20 + 100) · 0.6.
PRICE_UPPER = np.array([20.0, 100.0])
PRICE_LOWER = np.array([15.0, 60.0])
LOAD = np.full((2, 1), LOAD_KW)


@pytest.mark.parametrize(
    ("cost", "capacity", "objective"),
    [
        (0.09, 0.0, 72.0),
        (0.06, LOAD_KW, 72.0 + LOAD_KW * (0.06 - 0.08)),
        (0.02, 10 * LOAD_KW, 72.0 + LOAD_KW * (0.02 - 0.08) + 9 * LOAD_KW * (0.02 - 0.04)),
    ],
)
def test_two_bus_capacity_follows_spread_vs_cost_threshold(cost, capacity, objective):
    problem = two_bus_problem(cost)
    assert problem.load_sites == ("b",)
    assert problem.candidate_buses == ("b",)
    sol = problem.solve(PRICE_UPPER, PRICE_LOWER, LOAD)
    assert sol.capacity_kwh["b"] == pytest.approx(capacity, abs=1e-6)
    assert sol.objective == pytest.approx(objective, abs=1e-7)
    assert sol.installation_cost == pytest.approx(cost * capacity, abs=1e-7)
    assert sol.energy_cost + sol.installation_cost == pytest.approx(sol.objective, abs=1e-7)
    # lossless network: the substation carries load + battery power
    assert sol.import_kw == pytest.approx(LOAD[:, 0] + sol.dispatch_kw[:, 0], abs=1e-6)
    assert sol.soc_kwh[:, 0] == pytest.approx(np.cumsum(sol.dispatch_kw[:, 0]), abs=1e-6)


def test_two_bus_naive_upper_price_model_would_oversize():
    """Crediting exports at ȳ_P (paper's literal η ≥ ȳ_P·P0) builds x_max at c = 0.06."""
    problem = two_bus_problem(0.06)
    naive = problem.solve(PRICE_UPPER, PRICE_UPPER, LOAD)  # box collapsed at the upper end
    robust = problem.solve(PRICE_UPPER, PRICE_LOWER, LOAD)
    assert naive.capacity_kwh["b"] == pytest.approx(10 * LOAD_KW)
    assert robust.capacity_kwh["b"] == pytest.approx(LOAD_KW)
    assert robust.objective > naive.objective


def test_round_trip_efficiency_moves_the_threshold():
    """η_rt = 0.81: one kWh bought at ȳ0 returns 0.81 kWh, worth 0.81·100 − 20 = 61 $/MWh."""
    low = two_bus_problem(0.055, round_trip_efficiency=0.81)
    high = two_bus_problem(0.065, round_trip_efficiency=0.81)
    sol = low.solve(PRICE_UPPER, PRICE_LOWER, LOAD)
    # displacing the whole 600 kW of hour 1 needs 600/0.81 kWh charged at the C-rate limit
    assert sol.capacity_kwh["b"] == pytest.approx(LOAD_KW / 0.81, rel=1e-7)
    assert high.solve(PRICE_UPPER, PRICE_LOWER, LOAD).capacity_kwh["b"] == pytest.approx(0.0)


def test_soc_min_applies_to_end_of_hour_states():
    """SOC_min = 0.2: 20 % of x is bought in hour 0 and never used; x* = 600/0.8 kWh."""
    sol = two_bus_problem(0.05, soc_min=0.2).solve(PRICE_UPPER, PRICE_LOWER, LOAD)
    x = LOAD_KW / 0.8
    assert sol.capacity_kwh["b"] == pytest.approx(x, rel=1e-9)
    assert sol.soc_kwh[:, 0] == pytest.approx([x, 0.2 * x], rel=1e-9)
    # hour 0 buys x at 20, hour 1 imports nothing, installation 0.05 x
    assert sol.objective == pytest.approx((LOAD_KW + x) * 0.02 + 0.05 * x, rel=1e-9)


def test_robust_box_stores_pv_that_would_be_exported_at_the_lower_price():
    """Flat upper price: no arbitrage for ȳ_P alone, but PV exported at y̲_P is worth storing."""
    problem = two_bus_problem(0.03)
    upper = np.array([50.0, 50.0])
    lower = np.array([10.0, 40.0])
    pv = np.array([[2 * LOAD_KW], [0.0]])
    robust = problem.solve(upper, lower, LOAD, pv)
    naive = problem.solve(upper, upper, LOAD, pv)
    assert naive.capacity_kwh["b"] == pytest.approx(0.0, abs=1e-6)
    # storing the 600 kW surplus saves (50 − 10)/1000 = 0.04 > 0.03 $/kWh
    assert robust.capacity_kwh["b"] == pytest.approx(LOAD_KW, abs=1e-6)
    assert robust.import_kw == pytest.approx([0.0, 0.0], abs=1e-6)


def test_load_gradient_sign_matches_finite_difference_two_bus():
    """HiGHS row duals are ∂objective/∂(row bound): the load gradient is +price in $/kW."""
    problem = two_bus_problem(0.09)
    sol = problem.solve(PRICE_UPPER, PRICE_LOWER, LOAD)
    h = 1.0
    for t in range(2):
        e = np.zeros_like(LOAD)
        e[t, 0] = h
        up = problem.solve(PRICE_UPPER, PRICE_LOWER, LOAD + e).objective
        down = problem.solve(PRICE_UPPER, PRICE_LOWER, LOAD - e).objective
        assert sol.grad_load_kw[t, 0] == pytest.approx((up - down) / (2 * h), rel=1e-9)
        assert sol.grad_load_kw[t, 0] == pytest.approx(PRICE_UPPER[t] / 1000, rel=1e-9)
    assert sol.grad_price_upper == pytest.approx(LOAD[:, 0] / 1000)  # MWh imported
    assert sol.grad_price_lower == pytest.approx([0.0, 0.0])


def test_kink_at_zero_import_returns_zero_price_gradients():
    """c = 0.06: x* = 600 kWh makes P0_1 = 0 exactly; both η rows are active (documented)."""
    sol = two_bus_problem(0.06).solve(PRICE_UPPER, PRICE_LOWER, LOAD)
    assert sol.import_kw[1] == pytest.approx(0.0, abs=1e-6)
    assert sol.grad_price_upper[1] == pytest.approx(0.0, abs=1e-9)
    assert sol.grad_price_lower[1] == pytest.approx(0.0, abs=1e-9)


# ------------------------------------------------------------------------------------------
# IEEE 13
# ------------------------------------------------------------------------------------------
def test_defaults_on_ieee13(ieee13):
    problem = StorageExpansionProblem(ieee13, StorageExpansionConfig(n_hours=4))
    assert problem.candidate_buses == ("634", "671", "692", "675", "670")
    assert set(problem.candidate_buses) <= set(problem.load_sites)
    assert len(problem.load_sites) == 9
    assert problem.nominal_load_kw.sum() == pytest.approx(ieee13.load_kw.sum())
    assert problem.n_hours == 4
    expected = horizon_installation_cost(150.0, 20.0, 0.05, 4.0)
    assert problem.installation_cost_per_kwh == pytest.approx(np.full(5, expected))
    assert expected == pytest.approx(150 * capital_recovery_factor(0.05, 20) * 4 / 8760)
    own = [problem.load_sites.index(b) for b in problem.candidate_buses]
    assert problem.max_capacity_kwh == pytest.approx(4.0 * problem.nominal_load_kw[own])


def test_export_hours_use_the_lower_price(ieee13):
    """Large PV in hours 1–2 reverses the substation flow; the cost uses y̲_P there."""
    T = 4
    problem = StorageExpansionProblem(
        ieee13, StorageExpansionConfig(n_hours=T, max_capacity_kwh=0.0)
    )
    load = np.outer([0.8, 0.6, 0.7, 1.0], problem.nominal_load_kw)
    pv = np.outer([0.0, 3.0, 2.5, 0.0], problem.nominal_load_kw)
    upper = np.array([40.0, 35.0, 30.0, 60.0])
    lower = np.array([30.0, 10.0, 5.0, 45.0])
    sol = problem.solve(upper, lower, load, pv)
    p0 = sol.import_kw
    assert (p0[[1, 2]] < 0).all() and (p0[[0, 3]] > 0).all()
    worst = np.where(p0 > 0, upper, lower) * p0 / 1000.0
    naive = upper * p0 / 1000.0
    assert sol.energy_cost == pytest.approx(worst.sum(), rel=1e-9)
    assert sol.objective == pytest.approx(worst.sum(), rel=1e-9)
    assert sol.energy_cost > naive.sum() + 1.0  # the naive ȳ_P·P0 credits exports too much
    assert sol.grad_price_lower == pytest.approx(np.minimum(p0, 0) / 1000.0, abs=1e-9)
    assert sol.grad_price_upper == pytest.approx(np.maximum(p0, 0) / 1000.0, abs=1e-9)


def test_warm_resolve_matches_a_fresh_build(ieee13):
    T = 6
    cfg = StorageExpansionConfig(n_hours=T, voltage_limits=LimitMode.SOFT, v_max=1.06)
    problem = StorageExpansionProblem(ieee13, cfg)
    rng = np.random.default_rng(3)
    boxes = []
    for _ in range(3):
        up = 40 + 30 * rng.random(T)
        load = np.outer(0.5 + rng.random(T), problem.nominal_load_kw)
        boxes.append((up, up - 10 * rng.random(T), load))
    warm = [problem.solve(*box).objective for box in boxes]
    fresh = [StorageExpansionProblem(ieee13, cfg).solve(*box).objective for box in boxes]
    assert warm == pytest.approx(fresh, rel=1e-8)


def test_realized_cost_fixes_the_capacity(ieee13):
    T = 6
    problem = StorageExpansionProblem(ieee13, StorageExpansionConfig(n_hours=T))
    price = np.array([20.0, 15.0, 30.0, 90.0, 110.0, 60.0])
    load = np.outer([0.6, 0.5, 0.7, 1.0, 1.1, 0.9], problem.nominal_load_kw)
    best = problem.solve(price, price, load)
    assert best.total_capacity_kwh > 0
    # scoring the optimal capacity on the same data reproduces the optimum
    assert problem.realized_cost(best.capacity_kwh, price, load) == pytest.approx(
        best.objective, rel=1e-9
    )
    vector = problem.realized_cost(best.capacity_vector_kwh, price, load)
    assert vector == pytest.approx(best.objective, rel=1e-9)
    # any other capacity costs more; no battery costs exactly the energy bill
    assert problem.realized_cost({}, price, load) > best.objective
    no_bess = problem.evaluate(np.zeros(problem.n_candidates), price, load)
    assert no_bess.objective == pytest.approx(np.sum(price * no_bess.import_kw) / 1000)
    # the optimization model is untouched by the evaluation model
    assert problem.solve(price, price, load).objective == pytest.approx(best.objective)


def test_soft_voltage_band_reports_penalties(ieee13):
    """ieee13's regulator output sits at 1.056 p.u. whatever the load: a soft band pays for it."""
    T = 2
    load = np.outer([0.8, 1.0], StorageExpansionProblem(ieee13).nominal_load_kw)
    soft = StorageExpansionProblem(
        ieee13, StorageExpansionConfig(n_hours=T, voltage_limits=LimitMode.SOFT)
    ).solve(np.full(T, 40.0), np.full(T, 30.0), load)
    assert soft.penalty_cost > 0
    assert soft.v_pu.max() > 1.05


def test_hard_band_infeasible_names_hour_and_bus(ieee13):
    T = 3
    cfg = StorageExpansionConfig(n_hours=T, voltage_limits="hard", v_min=0.9, v_max=1.1)
    problem = StorageExpansionProblem(ieee13, cfg)
    load = np.outer([1.0, 3.0, 1.0], problem.nominal_load_kw)  # hour 1: 3x nominal
    with pytest.raises(InfeasibleModelError, match=r"ieee13.*infeasible.*hours \[1\].*bus 6"):
        problem.solve(np.full(T, 40.0), np.full(T, 30.0), load)
    # the same model still solves a feasible box afterwards
    ok = problem.solve(np.full(T, 40.0), np.full(T, 30.0), load / 3)
    assert ok.status == "Optimal"


def test_hard_thermal_limits_infeasible_names_the_branch(ieee13):
    cfg = StorageExpansionConfig(n_hours=2, thermal_limits=LimitMode.HARD)
    problem = StorageExpansionProblem(ieee13, cfg)
    load = np.outer([1.0, 3.0], problem.nominal_load_kw)
    with pytest.raises(InfeasibleModelError, match=r"hour 1: Line\.650632"):
        problem.solve(np.full(2, 40.0), np.full(2, 30.0), load)


# ------------------------------------------------------------------------------------------
# Input errors
# ------------------------------------------------------------------------------------------
def test_unknown_or_root_candidate_bus_is_a_clear_error(ieee13):
    with pytest.raises(StorageExpansionInputError, match=r"\['nowhere'\].*not buses"):
        StorageExpansionProblem(ieee13, StorageExpansionConfig(candidate_buses=("671", "nowhere")))
    with pytest.raises(StorageExpansionInputError, match="root"):
        StorageExpansionProblem(ieee13, StorageExpansionConfig(candidate_buses=("sourcebus",)))
    with pytest.raises(StorageExpansionInputError, match="3 values for 2 candidate"):
        StorageExpansionProblem(
            ieee13,
            StorageExpansionConfig(
                candidate_buses=("671", "675"), installation_cost_per_kwh=(1.0, 2.0, 3.0)
            ),
        )


def test_given_candidates_may_be_single_phase(ieee13):
    cfg = StorageExpansionConfig(n_hours=2, candidate_buses=("611", "671"))
    problem = StorageExpansionProblem(ieee13, cfg)
    assert problem.candidate_buses == ("611", "671")
    load = np.outer([0.5, 1.0], problem.nominal_load_kw)
    sol = problem.solve(np.array([10.0, 200.0]), np.array([5.0, 100.0]), load)
    assert sol.capacity_kwh["611"] > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(c_rate_per_h=0.0), "c_rate"),
        (dict(soc_min=0.9, soc_max=0.5), "soc_min"),
        (dict(round_trip_efficiency=1.2), "round_trip"),
        (dict(voltage_limits="sometimes"), "sometimes"),
    ],
)
def test_bad_config_is_rejected(kwargs, match):
    with pytest.raises(ValueError, match=match):
        StorageExpansionConfig(**kwargs)


def test_bad_series_are_rejected():
    problem = two_bus_problem(0.05)
    with pytest.raises(InvalidSeriesError, match="crossed at hour 1"):
        problem.solve(np.array([20.0, 50.0]), np.array([10.0, 60.0]), LOAD)
    with pytest.raises(InvalidSeriesError, match=r"load_upper_kw must have shape \(2, 1\)"):
        problem.solve(PRICE_UPPER, PRICE_LOWER, np.ones((3, 1)))
    with pytest.raises(InvalidSeriesError, match="price_upper"):
        problem.solve(np.array([np.nan, 1.0]), PRICE_LOWER, LOAD)
    with pytest.raises(InvalidSeriesError, match=r"pv_kw.*negative"):
        problem.solve(PRICE_UPPER, PRICE_LOWER, LOAD, -np.ones((2, 1)))
    with pytest.raises(StorageExpansionInputError, match="non-candidate"):
        problem.realized_cost({"s": 5.0}, PRICE_UPPER, LOAD)
