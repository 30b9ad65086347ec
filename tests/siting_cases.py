"""The tiny PV-siting instance shared by the siting, EF, PH, SPAR and evaluation tests.

A 5-bus feeder: s — b1 — b2 — b3 (3-phase) and b1 — b4 (phase b only), loads and PV
candidates at b2, b3, b4; 50 kW units, at most 3 per bus, money for 4 units and at most 2
sites, so both first-stage limits bind. Small enough for brute-force enumeration.
"""

from __future__ import annotations

import itertools

import numpy as np

from gridrecourse.evaluation.out_of_sample import evaluate_first_stage
from gridrecourse.network.components import Bus, Connection, Feeder, Line, Load, Root
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.problems.siting import PVSitingProblem, SitingConfig, SitingObjective
from gridrecourse.problems.siting_budget import SitingBudget
from gridrecourse.solvers.options import SolverOptions
from gridrecourse.uncertainty.scenarios import ScenarioSet

KV_LN = 7.2
Z_KM = np.array(
    [
        [0.3 + 0.6j, 0.1 + 0.2j, 0.1 + 0.2j],
        [0.1 + 0.2j, 0.3 + 0.6j, 0.1 + 0.2j],
        [0.1 + 0.2j, 0.1 + 0.2j, 0.3 + 0.6j],
    ]
)
ABC = (1, 2, 3)
SITES = ("b2", "b3", "b4")
LOAD = np.array([[1.0, 0.9, 1.1], [0.6, 0.7, 0.5], [0.8, 1.0, 0.9], [0.4, 0.5, 0.3]])
PV = np.array([[0.9, 0.8, 0.85], [0.2, 0.3, 0.1], [0.6, 0.5, 0.7], [0.0, 0.0, 0.0]])
PROB = np.array([0.1, 0.2, 0.3, 0.4])
BUDGET = SitingBudget(
    unit_kw=50.0, max_units=3, cost_per_kw=1000.0, budget=200_000.0, min_sites=1, max_sites=2
)
EXACT = SolverOptions(mip_gap=1e-9)


def line(name: str, a: str, b: str, km: float, phases: tuple[int, ...] = ABC) -> Line:
    """A line of ``km`` kilometres with the coupled impedance ``Z_KM``."""
    idx = [p - 1 for p in phases]
    z = Z_KM[np.ix_(idx, idx)] * km
    return Line(name, a, b, phases, phases, z, np.zeros_like(z), np.inf, np.inf, km)


def tiny_feeder(load_scale: float = 1.0) -> Feeder:
    """The 5-bus feeder with its three loads scaled by ``load_scale``."""
    kv_ll = KV_LN * np.sqrt(3)
    s = load_scale
    return Feeder(
        name="tiny",
        buses=(
            Bus("s", ABC, KV_LN),
            Bus("b1", ABC, KV_LN),
            Bus("b2", ABC, KV_LN),
            Bus("b3", ABC, KV_LN),
            Bus("b4", (2,), KV_LN),
        ),
        roots=(Root("s", (1.0, 1.0, 1.0)),),
        lines=(
            line("l1", "s", "b1", 4.0),
            line("l2", "b1", "b2", 3.0),
            line("l3", "b2", "b3", 3.0),
            line("l4", "b1", "b4", 4.0, (2,)),
        ),
        loads=(
            Load("ld2", "b2", ABC, Connection.WYE, 900.0 * s, 300.0 * s, kv_ll),
            Load("ld3", "b3", ABC, Connection.WYE, 600.0 * s, 200.0 * s, kv_ll),
            Load("ld4", "b4", (2,), Connection.WYE, 250.0 * s, 80.0 * s, KV_LN),
        ),
    )


def tiny_scenarios(load=LOAD, pv=PV, prob=PROB) -> ScenarioSet:
    """Scenarios over the three candidate buses (default: the 4 fixed ones above)."""
    return ScenarioSet(load, pv, prob, SITES)


def tiny_problem(
    objective: SitingObjective = SitingObjective.VOLTAGE_DEVIATION,
    load_scale: float = 1.0,
    scenarios: ScenarioSet | None = None,
    **config,
) -> PVSitingProblem:
    """The siting problem on the tiny feeder (``config`` goes to :class:`SitingConfig`)."""
    cfg = SitingConfig(objective=objective, budget=BUDGET, **config)
    scen = scenarios if scenarios is not None else tiny_scenarios()
    return PVSitingProblem(build_math_feeder(tiny_feeder(load_scale)), scen, cfg)


def brute_force(problem: PVSitingProblem, scenarios=None) -> dict[tuple[int, ...], float]:
    """Exact expected recourse of every first stage that D1 admits (independent reference)."""
    fs = problem.first_stage
    budget = problem.config.budget
    values = {}
    for units in itertools.product(range(budget.max_units + 1), repeat=problem.n_sites):
        feasible_s = [
            s
            for s in itertools.product((0, 1), repeat=problem.n_sites)
            if fs.is_feasible(problem.first_stage_vector(units, np.array(s, dtype=bool)))
        ]
        if feasible_s:
            x = problem.first_stage_vector(units, np.array(feasible_s[0], dtype=bool))
            ev = evaluate_first_stage(problem, x, scenarios=scenarios, desc=None)
            values[units] = ev.expected_objective
    return values


def enumerate_first_stages(problem: PVSitingProblem) -> tuple[np.ndarray, np.ndarray]:
    """Every D1-feasible first stage ``x`` (rows) and its exact recourse per scenario."""
    fs = problem.first_stage
    budget = problem.config.budget
    model = problem.build_second_stage()
    xs, values, cache = [], [], {}
    for units in itertools.product(range(budget.max_units + 1), repeat=problem.n_sites):
        for sited in itertools.product((0, 1), repeat=problem.n_sites):
            x = problem.first_stage_vector(units, np.array(sited, dtype=bool))
            if not fs.is_feasible(x):
                continue
            key = (problem.second_stage.technology @ x).tobytes()
            if key not in cache:
                cache[key] = np.array(
                    [model.solve(x, w, EXACT).objective for w in range(problem.n_scenarios)]
                )
            xs.append(x)
            values.append(cache[key] + fs.cost @ x)
    return np.array(xs), np.array(values)
