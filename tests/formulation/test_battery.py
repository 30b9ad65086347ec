"""Battery block: SOC trajectory by hand, arbitrage optima derived by hand, mode binaries."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from gridrecourse.formulation.battery import BatteryParameters, add_battery
from gridrecourse.solvers.highs import LinearModel


def _priced(model: LinearModel, battery, price: np.ndarray) -> None:
    """Energy bought at ``price`` per unit of net charging power per period (Δt = 1 h)."""
    model.set_cost(battery.charge, np.repeat(price, battery.params.n_units))
    model.set_cost(battery.discharge, -np.repeat(price, battery.params.n_units))


def test_soc_trajectory_matches_hand_computation():
    """Fixed dispatch: SOC_t = SOC_0 + Σ Δt (η_c ch − dis / η_d), per battery."""
    T, dt = 4, 0.5
    params = BatteryParameters(
        n_units=2,
        period_hours=dt,
        charge_efficiency=[0.9, 1.0],
        discharge_efficiency=[0.8, 0.5],
        soc_min=0.0,
        soc_max=1.0,
        charge_rate=10.0,
        discharge_rate=10.0,
        initial_soc=[0.25, 0.5],
    )
    capacity = np.array([4.0, 2.0])
    m = LinearModel("soc")
    bess = add_battery(m, T, params, capacity)
    ch = np.array([[1.0, 0.0], [0.0, 0.4], [0.5, 0.0], [0.0, 0.2]])  # (T, J)
    dis = np.array([[0.0, 0.4], [0.4, 0.0], [0.0, 0.0], [0.2, 0.0]])
    m.set_col_bounds(bess.charge, ch.ravel(), ch.ravel())
    m.set_col_bounds(bess.discharge, dis.ravel(), dis.ravel())
    sol = m.solve()
    # by hand: battery 0 starts at 0.25·4 = 1.0; battery 1 at 0.5·2 = 1.0
    expected = np.array(
        [
            [1.0 + 0.5 * 0.9 * 1.0, 1.0 - 0.5 * 0.4 / 0.5],  # 1.45, 0.6
            [1.45 - 0.5 * 0.4 / 0.8, 0.6 + 0.5 * 1.0 * 0.4],  # 1.2, 0.8
            [1.2 + 0.5 * 0.9 * 0.5, 0.8],  # 1.425, 0.8
            [1.425 - 0.5 * 0.2 / 0.8, 0.8 + 0.5 * 0.2],  # 1.3, 0.9
        ]
    )
    np.testing.assert_allclose(sol.value(bess.soc).reshape(T, 2), expected, atol=1e-9)
    assert bess.soc_upper is None and bess.charge_limit is None  # fixed E: column bounds


@pytest.mark.parametrize(
    ("cheap", "dear", "eta", "profit"),
    [
        (10.0, 50.0, 0.9, 50.0 * 0.9 - 10.0 / 0.9),  # buy E/η in hour 0, sell η E in hour 1
        (45.0, 50.0, 0.9, 0.0),  # 50 η² = 40.5 < 45: the round trip loses money
        (10.0, 50.0, 1.0, 40.0),
    ],
)
def test_arbitrage_with_fixed_capacity_earns_the_hand_derived_profit(cheap, dear, eta, profit):
    """E = 1, σ̄ = 1, rates 10/h (not binding), SOC_0 = 0, two one-hour periods."""
    params = BatteryParameters(1, 1.0, eta, eta, 0.0, 1.0, 10.0, 10.0, 0.0)
    m = LinearModel("arbitrage")
    bess = add_battery(m, 2, params, np.array([1.0]))
    _priced(m, bess, np.array([cheap, dear]))
    sol = m.solve()
    assert sol.objective == pytest.approx(-profit, abs=1e-9)


@pytest.mark.parametrize(
    ("capacity_cost", "expected_capacity"),
    [(5.0, 5.0), (40.0, 0.0)],
)
def test_capacity_expansion_builds_when_the_spread_pays(capacity_cost, expected_capacity):
    """x ∈ [0, 5] at ``capacity_cost`` per unit; per unit of x the best round trip buys
    ``min(r, σ̄/η) = 1/0.9`` in hour 0 and sells ``min(r, η σ̄) = 0.9`` in hour 1 (r = 2/h):
    profit 50·0.9 − 10/0.9 = 33.89 per unit, so x = 5 when it costs 5 and x = 0 at 40."""
    params = BatteryParameters.uniform(1, 1.0, round_trip_efficiency=0.81, c_rate=2.0)
    m = LinearModel("expansion")
    x = m.add_variables("bess-capacity", 1, lb=0.0, ub=5.0, cost=capacity_cost)
    bess = add_battery(m, 2, params, x)
    _priced(m, bess, np.array([10.0, 50.0]))
    sol = m.solve()
    per_unit = 50.0 * 0.9 - 10.0 / 0.9 - capacity_cost
    assert sol.value(x)[0] == pytest.approx(expected_capacity, abs=1e-9)
    assert sol.objective == pytest.approx(-max(per_unit, 0.0) * 5.0, abs=1e-9)
    assert bess.soc_lower is None  # σ̲ = 0: no row


def test_capacity_rows_bind_like_the_rating_they_replace():
    """C-rate 0.5/h and σ̲ = 0.2 with x = 4: charge ≤ 2 per hour, SOC within [0.8, 4]."""
    params = BatteryParameters.uniform(1, 1.0, soc_min=0.2, c_rate=0.5, initial_soc=0.2)
    m = LinearModel("rows")
    x = m.add_variables("bess-capacity", 1, lb=4.0, ub=4.0)
    bess = add_battery(m, 3, params, x)
    _priced(m, bess, np.array([-2.0, -1.0, 5.0]))  # paid to charge, then sell
    sol = m.solve()
    # charge 2 (rate), then 1.2 (SOC hits 4), then sell min(2, 4 − 0.8) = 2
    np.testing.assert_allclose(sol.value(bess.soc), [2.8, 4.0, 2.0], atol=1e-9)
    assert sol.objective == pytest.approx(-2.0 * 2.0 - 1.2 - 5.0 * 2.0, abs=1e-9)
    assert bess.soc_lower is not None


@pytest.mark.parametrize("variable_capacity", [False, True])
def test_mode_binaries_forbid_dumping_energy_in_a_full_battery(variable_capacity):
    """Full battery (SOC_0 = E = 1), price −10, η = 0.9: without binaries the LP charges 1
    and discharges 0.81 at once (net 0.19 bought, −1.9); with them it cannot (0)."""
    params = BatteryParameters(1, 1.0, 0.9, 0.9, 0.0, 1.0, 1.0, 1.0, 1.0)
    for modes, expected in ((False, -1.9), (True, 0.0)):
        m = LinearModel("modes")
        cap = m.add_variables("cap", 1, lb=1.0, ub=1.0) if variable_capacity else np.ones(1)
        bess = add_battery(m, 1, params, cap, mode_binaries=modes)
        _priced(m, bess, np.array([-10.0]))
        sol = m.solve()
        assert sol.objective == pytest.approx(expected, abs=1e-7)
        assert (bess.mode is not None) == modes


def test_from_ratings_reads_paper_d_table_ii():
    """ESS1 of paper D: p̄ch = p̄dis = 120 kW, ē = 600 kWh, e̲ = 120 kWh, η = 0.9."""
    params, capacity = BatteryParameters.from_ratings(1.0, [120.0], [120.0], [600.0], [120.0], 0.9)
    m = LinearModel("ess")
    bess = add_battery(m, 2, params, capacity)
    soc, ch = m.columns(bess.soc), m.columns(bess.charge)
    np.testing.assert_allclose(soc.lb, 120.0)
    np.testing.assert_allclose(soc.ub, 600.0)
    np.testing.assert_allclose(ch.ub, 120.0)
    np.testing.assert_allclose(m.rows(bess.dynamics).lb, [120.0, 0.0])  # starts at e̲


def test_injections_charge_is_a_load():
    params = BatteryParameters.uniform(2, 1.0)
    m = LinearModel("inj")
    bess = add_battery(m, 1, params, np.ones(2))
    node_map = sp.csr_matrix(np.array([[0.5, 0.0], [0.5, 0.0], [0.0, 1.0]]))
    charge, discharge = bess.injections(node_map)
    np.testing.assert_allclose(charge.p_map.toarray(), -node_map.toarray())
    np.testing.assert_allclose(discharge.p_map.toarray(), node_map.toarray())
    assert charge.q_map.nnz == 0


def test_invalid_inputs_raise():
    params = BatteryParameters.uniform(1, 1.0)
    m = LinearModel("bad")
    x = m.add_variables("cap", 1)  # no upper bound: no big-M
    with pytest.raises(ValueError, match="finite upper bound"):
        add_battery(m, 2, params, x, mode_binaries=True)
    with pytest.raises(ValueError, match="fixed capacity"):
        add_battery(LinearModel("b"), 2, params, np.ones(3))
    with pytest.raises(ValueError, match="efficiency"):
        BatteryParameters.uniform(1, 1.0, round_trip_efficiency=1.5)
    with pytest.raises(ValueError, match="soc_min"):
        BatteryParameters.uniform(1, 1.0, soc_min=0.9, soc_max=0.5)
