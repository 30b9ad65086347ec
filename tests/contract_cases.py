"""Tiny two-stage problems that exercise the general contract, with independent references.

``Dispatch``: two generators built in integer steps (first stage), dispatched against demand
in each scenario with per-scenario fuel and grid prices (scenario costs), per-scenario import
limits (scenario column bounds) and two linking blocks (one capacity row each, scaled by the
scenario's availability). One demand row and box bounds: the recourse LP is solved by the merit
order (cheapest source first), which is the reference ``merit_order``.

``Startup``: one integer capacity decision; the recourse decides whether to start the unit (a
binary) and pays a start cost, an energy cost and a shortage price: a MILP recourse whose value
``startup_value`` is the cheaper of "off" and "on".
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from gridrecourse.problems.base import (
    ConstraintBlockSpec,
    FirstStageSpec,
    LinkingBlock,
    ScenarioData,
    SecondStageSpec,
    TwoStageProblem,
    VariableBlockSpec,
)


class Dispatch(TwoStageProblem[np.ndarray]):
    """Two generators, scenario prices, two linking blocks (see the module docstring)."""

    name = "dispatch-toy"
    MAX_STEPS = 3

    def __init__(self, n_scenarios: int = 5, seed: int = 0):
        rng = np.random.default_rng(seed)
        s = n_scenarios
        self.build_cost = np.array([1.3, 0.7])  # per step
        self.step_mw = np.array([2.0, 1.5])  # capacity per step
        self.demand = rng.uniform(3.0, 8.0, s)
        self.fuel = rng.uniform(0.5, 3.0, (s, 2))  # price of g1, g2
        self.grid = rng.uniform(2.0, 6.0, s)  # price of imports
        self.import_limit = self.demand + rng.uniform(0.5, 2.0, s)  # always feasible
        self.availability = rng.uniform(0.4, 1.0, (s, 2))
        self._prob = rng.dirichlet(np.ones(s))
        one = sp.csr_matrix([[1.0]])
        self._first = FirstStageSpec(
            (
                VariableBlockSpec(
                    "steps", 2, ub=float(self.MAX_STEPS), cost=self.build_cost, integer=True
                ),
            ),
            (),
        )
        self._second = SecondStageSpec(
            variables=(
                VariableBlockSpec("g", 2, cost=1.0),
                VariableBlockSpec("buy", 1, cost=4.0),
            ),
            constraints=(
                ConstraintBlockSpec(
                    "demand", (("g", sp.csr_matrix(np.ones((1, 2)))), ("buy", one)), lb=0.0
                ),
                ConstraintBlockSpec("cap-1", (("g", sp.csr_matrix([[1.0, 0.0]])),), ub=0.0),
                ConstraintBlockSpec("cap-2", (("g", sp.csr_matrix([[0.0, 1.0]])),), ub=0.0),
            ),
            linking=(
                LinkingBlock("cap-1", sp.csr_matrix([[-self.step_mw[0], 0.0]])),
                LinkingBlock("cap-2", sp.csr_matrix([[0.0, -self.step_mw[1]]])),
            ),
            scenario_costs=("g", "buy"),
            scenario_bounds=("buy",),
        )

    @property
    def first_stage(self) -> FirstStageSpec:
        return self._first

    @property
    def second_stage(self) -> SecondStageSpec:
        return self._second

    @property
    def probability(self) -> np.ndarray:
        return self._prob

    def scenario_data(self, indices) -> ScenarioData:
        idx = np.asarray(indices, dtype=int).ravel()
        n = len(idx)
        row_lb = np.c_[self.demand[idx], np.full((n, 2), -np.inf)]
        row_ub = np.full((n, 3), np.inf)
        row_ub[:, 1:] = 0.0
        return ScenarioData(
            idx,
            row_lb,
            row_ub,
            technology_scale=self.availability[idx],
            cost={"g": self.fuel[idx], "buy": self.grid[idx, None]},
            col_lb={"buy": np.zeros((n, 1))},
            col_ub={"buy": self.import_limit[idx, None]},
        )

    def decode(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float)

    def merit_order(self, x: np.ndarray, w: int) -> float:
        """``Q(x, ω)`` by the merit order (independent of any LP)."""
        built = self.availability[w] * self.step_mw * np.asarray(x, float)
        caps = np.r_[built, self.import_limit[w]]
        prices = np.r_[self.fuel[w], self.grid[w]]
        left, cost = self.demand[w], 0.0
        for k in np.argsort(prices):
            used = min(left, caps[k])
            cost += prices[k] * used
            left -= used
        return float("inf") if left > 1e-12 else cost

    def enumerate(self) -> tuple[float, np.ndarray]:
        """``min_x cᵀx + Σ π Q(x, ω)`` over all integer first stages (brute force)."""
        best, arg = np.inf, None
        for a in range(self.MAX_STEPS + 1):
            for b in range(self.MAX_STEPS + 1):
                x = np.array([a, b], dtype=float)
                q = [self.merit_order(x, w) for w in range(len(self._prob))]
                value = float(self.build_cost @ x + self._prob @ q)
                if value < best:
                    best, arg = value, x
        assert arg is not None
        return best, arg


class Startup(TwoStageProblem[np.ndarray]):
    """Integer capacity, binary start-up in the recourse (see the module docstring)."""

    name = "startup-toy"
    MAX_UNITS = 3

    def __init__(self, n_scenarios: int = 4, seed: int = 1, quadratic: bool = False):
        rng = np.random.default_rng(seed)
        s = n_scenarios
        self.unit_cost = 0.9
        self.unit_mw = 1.0
        self.start_cost = 2.5
        self.energy_cost = 0.4
        self.shortage = 2.0
        self.demand = rng.uniform(1.0, 3.5, s)
        self.availability = rng.uniform(0.5, 1.0, s)
        self._prob = np.full(s, 1.0 / s)
        big_m = self.MAX_UNITS * self.unit_mw
        one = sp.csr_matrix([[1.0]])
        self._first = FirstStageSpec(
            (
                VariableBlockSpec(
                    "units", 1, ub=float(self.MAX_UNITS), cost=self.unit_cost, integer=True
                ),
            ),
            (),
        )
        quad = dict(quadratic=np.array([0.1]), quadratic_range=(0.0, big_m)) if quadratic else {}
        self._second = SecondStageSpec(
            variables=(
                VariableBlockSpec("p", 1, cost=self.energy_cost, **quad),
                VariableBlockSpec("on", 1, ub=1.0, cost=self.start_cost, integer=True),
                VariableBlockSpec("unserved", 1, cost=self.shortage),
            ),
            constraints=(
                ConstraintBlockSpec("serve", (("p", one), ("unserved", one)), lb=0.0),
                ConstraintBlockSpec("commit", (("p", one), ("on", -big_m * one)), ub=0.0),
                ConstraintBlockSpec("capacity", (("p", one),), ub=0.0),
            ),
            linking="capacity",
            technology=sp.csr_matrix([[-self.unit_mw]]),
        )

    @property
    def first_stage(self) -> FirstStageSpec:
        return self._first

    @property
    def second_stage(self) -> SecondStageSpec:
        return self._second

    @property
    def probability(self) -> np.ndarray:
        return self._prob

    def scenario_data(self, indices) -> ScenarioData:
        idx = np.asarray(indices, dtype=int).ravel()
        n = len(idx)
        row_lb = np.c_[self.demand[idx], np.full((n, 2), -np.inf)]
        row_ub = np.c_[np.full(n, np.inf), np.zeros((n, 2))]
        return ScenarioData(idx, row_lb, row_ub, technology_scale=self.availability[idx, None])

    def decode(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(x, dtype=float)

    def startup_value(self, x: float, w: int) -> float:
        """``Q(x, ω) = min(off, on)`` in closed form (linear costs only)."""
        off = self.shortage * self.demand[w]
        p = min(self.demand[w], self.availability[w] * self.unit_mw * x)
        on = self.start_cost + self.energy_cost * p + self.shortage * (self.demand[w] - p)
        return float(min(off, on))

    def enumerate(self) -> tuple[float, float]:
        """``min_x c x + Σ π Q(x, ω)`` over x = 0..MAX_UNITS (brute force)."""
        values = [
            self.unit_cost * x
            + float(np.mean([self.startup_value(x, w) for w in range(len(self._prob))]))
            for x in range(self.MAX_UNITS + 1)
        ]
        k = int(np.argmin(values))
        return float(values[k]), float(k)
