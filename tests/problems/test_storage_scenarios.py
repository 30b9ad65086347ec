"""Two-stage battery expansion over price/load days: contract, exact values, EF/PH/SPAR."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.formulation.limits import LimitMode
from gridrecourse.methods.extensive_form import solve_extensive_form
from gridrecourse.methods.progressive_hedging import PHConfig, solve_progressive_hedging
from gridrecourse.methods.spar import SPARConfig, solve_spar
from gridrecourse.network.components import Bus, Connection, Feeder, Line, Load, Root
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.problems.capabilities import (
    SPAR,
    Trait,
    UnsupportedProblemError,
    check_requirements,
    problem_traits,
)
from gridrecourse.problems.storage_expansion import (
    StorageExpansionConfig,
    StorageExpansionProblem,
)
from gridrecourse.problems.storage_scenarios import (
    CAPACITY_BLOCK,
    CapacityDomain,
    StorageScenarioConfig,
    StorageScenarioInputError,
    StorageScenarioProblem,
    evenly_spaced,
)
from gridrecourse.solvers.options import SolverOptions

KV_LN = 7.2
N_HOURS = 4
N_SCENARIOS = 5
#: kW (and kvar = 0.3 kW) of the wye loads at buses a and b.
NOMINAL = {"a": 300.0, "b": 450.0}
OPTIONS = SolverOptions(mip_gap=1e-9)


def three_bus_math():
    """Source ``s`` — line — ``a`` — line (rated 24 A per phase) — ``b``, loads at a and b.

    24 A at 7.2 kV is 173 kVA per phase: the line to ``b`` overloads at the high-load hours
    (b's 450 kW nominal = 150 kW and 45 kvar per phase), so with soft thermal limits only a
    battery at ``b`` relieves it and its value saturates: the optimal capacity at ``b`` is
    interior, the one at ``a`` (arbitrage only) at a bound.
    """
    phases = (1, 2, 3)
    z = np.eye(3) * (0.05 + 0.1j)
    y0 = np.zeros((3, 3), complex)
    feeder = Feeder(
        name="three-bus",
        buses=(Bus("s", phases, KV_LN), Bus("a", phases, KV_LN), Bus("b", phases, KV_LN)),
        roots=(Root("s", (1.0, 1.0, 1.0)),),
        lines=(
            Line("l1", "s", "a", phases, phases, z, y0),
            Line("l2", "a", "b", phases, phases, z, y0, 24.0),
        ),
        loads=tuple(
            Load(f"ld-{bus}", bus, phases, Connection.WYE, kw, 0.3 * kw, KV_LN)
            for bus, kw in NOMINAL.items()
        ),
    )
    return build_math_feeder(feeder)


def expansion(**kw) -> StorageExpansionProblem:
    base = dict(
        n_hours=N_HOURS,
        c_rate_per_h=0.5,
        installation_cost_per_kwh=0.01,
        thermal_limits=LimitMode.SOFT,
        thermal_penalty_per_pu_h=2000.0,
    )
    base.update(kw)
    return StorageExpansionProblem(three_bus_math(), StorageExpansionConfig(**base))


def scenario_days(robust: StorageExpansionProblem, n: int = N_SCENARIOS, seed: int = 0):
    """Prices (n, τ) EUR/MWh with an evening peak, loads (n, τ, sites) kW, PV (n, τ, sites)."""
    rng = np.random.default_rng(seed)
    price = rng.uniform(20.0, 60.0, (n, N_HOURS)) + np.array([0.0, 10.0, 60.0, 90.0])
    factor = rng.uniform(0.6, 1.4, (n, N_HOURS, 1)) * np.array([0.7, 0.9, 1.2, 1.3])[:, None]
    load = factor * robust.nominal_load_kw[None, None, :]
    pv = rng.uniform(0.0, 50.0, load.shape)
    return price, load, pv


@pytest.fixture(scope="module")
def robust() -> StorageExpansionProblem:
    return expansion()


@pytest.fixture(scope="module")
def data(robust):
    return scenario_days(robust)


@pytest.fixture(scope="module")
def problem(robust, data) -> StorageScenarioProblem:
    price, load, pv = data
    return StorageScenarioProblem(robust, price, load, pv)


@pytest.fixture(scope="module")
def ef(problem):
    return solve_extensive_form(problem, OPTIONS)


# ------------------------------------------------------------------------------ the contract
def test_declaration(problem, robust):
    fs, ss = problem.first_stage, problem.second_stage
    assert fs.size == len(robust.candidate_buses) == 2
    assert fs.integer.all() and np.all(fs.lb == 0)
    np.testing.assert_array_equal(fs.ub, np.floor(robust.max_capacity_kwh / 100.0))
    np.testing.assert_allclose(fs.cost, robust.installation_cost_per_kwh * 100.0)
    assert ss.scenario_costs == ("substation-p",)
    assert {k.name for k in ss.links} == {
        "bess-soc_max",
        "bess-charge_limit",
        "bess-discharge_limit",
    }
    assert CAPACITY_BLOCK not in {v.name for v in ss.variables}
    assert [v.name for v in ss.variables if v.penalty] == ["branch-overload"]
    traits = problem_traits(problem)
    for trait in (Trait.SCENARIO_COSTS, Trait.SEVERAL_LINKING_BLOCKS, Trait.SEPARABLE_FIRST_STAGE):
        assert trait in traits
    assert problem.separable_first_stage.n_elements == 2
    # instances are shipped to workers: they pickle, and to the same bytes after use
    before = pickle.dumps(problem)
    problem.scenario_data([0, 1])
    assert pickle.dumps(problem) == before


def test_scenario_data_is_vectorized_consistently(problem):
    both = problem.scenario_data([3, 1])
    for k, omega in enumerate((3, 1)):
        one = problem.scenario_data([omega])
        np.testing.assert_array_equal(both.row_lb[k], one.row_lb[0])
        np.testing.assert_array_equal(both.row_ub[k], one.row_ub[0])
        np.testing.assert_array_equal(both.cost["substation-p"][k], one.cost["substation-p"][0])
    np.testing.assert_allclose(
        both.cost["substation-p"],
        problem.price_eur_per_mwh[[3, 1]] * 1.0 * problem.math.s_base_kva / 1000,
    )


def test_recourse_equals_the_robust_lp_evaluator(problem, robust, data):
    """``c x + Q(x, ξ_ω)`` = ``StorageExpansionProblem.realized_cost`` (an independent LP)."""
    price, load, pv = data
    x = np.array([3.0, 7.0])
    evaluation = evaluate_first_stage(problem, x, options=OPTIONS, desc=None)
    capacity = problem.decode(x).capacity_vector_kwh
    np.testing.assert_allclose(capacity, [300.0, 700.0])
    realized = [robust.realized_cost(capacity, price[s], load[s], pv[s]) for s in range(len(price))]
    np.testing.assert_allclose(
        evaluation.objectives + problem.first_stage.cost @ x, realized, rtol=1e-8, atol=1e-8
    )
    assert evaluation.expected_penalty > 0  # the overload penalty is active in this instance


# ------------------------------------------------------------------------------ the optimum
def test_ef_objective_is_first_stage_cost_plus_mean_exact_recourse(problem, ef):
    exact = evaluate_first_stage(problem, ef.x, options=OPTIONS, desc=None)
    by_hand = problem.first_stage.cost @ ef.x + np.mean(exact.objectives)
    assert ef.objective == pytest.approx(by_hand, rel=1e-8)
    assert exact.expected_objective == pytest.approx(ef.objective, rel=1e-8)
    # interior in this instance (neither zero nor every candidate at its bound)
    assert 0 < ef.x.sum() < problem.max_units.sum()


def test_ef_is_not_worse_than_other_capacities(problem, ef):
    def value(x):
        return evaluate_first_stage(problem, np.asarray(x, float), options=OPTIONS, desc=None)

    grid = np.stack(
        np.meshgrid(*[np.arange(0, u + 1, 3) for u in problem.max_units], indexing="ij"), -1
    ).reshape(-1, 2)
    candidates = [
        np.zeros(2),
        problem.max_units,
        *grid,
        ef.x + np.array([1, 0]),
        ef.x - np.array([0, 1]),
    ]
    for x in candidates:
        if np.all(x >= 0) and np.all(x <= problem.max_units):
            assert ef.objective <= value(x).expected_objective + 1e-7


def test_continuous_ef_not_worse_than_the_eto_capacity(robust, data):
    """The robust LP (ETO's optimizer) at a box covering the days gives a capacity; the
    continuous EF over the same days does at least as well on them."""
    price, load, pv = data
    cont = StorageScenarioProblem(
        robust, price, load, pv, StorageScenarioConfig(domain=CapacityDomain.CONTINUOUS)
    )
    ef_c = solve_extensive_form(cont, OPTIONS)
    box = robust.solve(price.max(0), price.min(0), load.max(0), pv.min(0))
    x_eto = cont.first_stage_vector(box.capacity_kwh)
    eto = evaluate_first_stage(cont, x_eto, options=OPTIONS, desc=None).expected_objective
    assert ef_c.objective <= eto + 1e-7
    zero = evaluate_first_stage(cont, np.zeros(2), options=OPTIONS, desc=None).expected_objective
    assert ef_c.objective <= zero + 1e-7


def test_ph_and_spar_within_one_percent_of_ef(problem, ef):
    ph = solve_progressive_hedging(problem, PHConfig(rho=0.1), options=OPTIONS)
    spar = solve_spar(problem, SPARConfig(seed=0, max_iterations=60), options=OPTIONS)
    for name, result in (("PH", ph), ("SPAR", spar)):
        assert result.objective >= ef.objective - 1e-7, name  # EF is optimal
        assert result.objective <= ef.objective * 1.01, (name, result.x, ef.x)


# ------------------------------------------------------------------------------ what cannot run
def test_spar_refuses_continuous_capacities(robust, data):
    price, load, pv = data
    cont = StorageScenarioProblem(
        robust, price, load, pv, StorageScenarioConfig(domain=CapacityDomain.CONTINUOUS)
    )
    assert cont.separable_first_stage is None
    with pytest.raises(UnsupportedProblemError, match=r"SPAR cannot solve.*SeparableFirstStage"):
        check_requirements(SPAR, cont)
    with pytest.raises(UnsupportedProblemError, match="SPAR cannot solve"):
        solve_spar(cont, SPARConfig(max_iterations=5))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"price": np.zeros((2, 3))}, "price must have shape"),
        ({"load": np.zeros((5, N_HOURS, 3))}, "load_kw must have shape"),
        ({"pv": -np.ones((N_SCENARIOS, N_HOURS, 2))}, "pv_kw must be >= 0"),
        ({"probability": np.full(N_SCENARIOS, 0.1)}, "summing to 1"),
        ({"config": StorageScenarioConfig(capacity_unit_kwh=5000.0)}, "less than one unit"),
    ],
)
def test_bad_inputs(robust, data, kwargs, match):
    price, load, pv = data
    args = {"price": price, "load": load, "pv": pv, "config": None, "probability": None, **kwargs}
    with pytest.raises(StorageScenarioInputError, match=match):
        StorageScenarioProblem(
            robust, args["price"], args["load"], args["pv"], args["config"], args["probability"]
        )


def test_decode_and_first_stage_vector_round_trip(problem):
    x = np.array([2.0, 5.0])
    decision = problem.decode(x)
    assert decision.capacity_kwh == {"a": 200.0, "b": 500.0}
    np.testing.assert_array_equal(problem.first_stage_vector(decision.capacity_kwh), x)
    np.testing.assert_array_equal(problem.first_stage_vector({"b": 500.0}), [0.0, 5.0])
    with pytest.raises(StorageScenarioInputError, match="non-candidate"):
        problem.first_stage_vector({"zz": 1.0})


def test_evenly_spaced():
    np.testing.assert_array_equal(evenly_spaced(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(evenly_spaced(3, None), [0, 1, 2])
    with pytest.raises(StorageScenarioInputError, match=r"1\.\.3"):
        evenly_spaced(3, 4)
