"""Paper C's D1 settings (problems.siting_budget)."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.problems.siting_budget import (
    SITED,
    UNITS,
    SitingBudget,
    SitingBudgetError,
    SitingInfeasibleError,
)


def test_siting_budget_defaults_match_methods() -> None:
    cfg = SitingBudget()
    assert (cfg.unit_kw, cfg.max_units, cfg.cost_per_kw, cfg.budget) == (10, 100, 1000, 1.5e6)
    assert (cfg.min_sites, cfg.max_sites, cfg.min_kw) == (1, 20, 0)
    assert cfg.g_max_kw == 1000.0
    assert cfg.unit_cost == 10_000.0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"unit_kw": 0.0},
        {"budget": -1.0},
        {"max_units": 0},
        {"min_sites": 3, "max_sites": 2},
        {"min_kw": 2000.0},
        {"max_kw": float("nan")},
    ],
)
def test_siting_budget_validation(kwargs: dict[str, float]) -> None:
    with pytest.raises(SitingBudgetError):
        SitingBudget(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cfg", "n_sites", "match"),
    [
        (SitingBudget(max_units=4, min_sites=4, max_sites=5), 3, "min_sites"),
        (SitingBudget(max_units=4, budget=30e3, min_sites=2, min_kw=20.0), 3, "budget"),
        (SitingBudget(max_units=4, min_kw=25.0, max_kw=29.0), 3, "integer number"),
    ],
)
def test_infeasible_settings_raise_clear_error(cfg: SitingBudget, n_sites: int, match: str):
    with pytest.raises(SitingInfeasibleError, match=match):
        cfg.check_sites(n_sites)
    SitingBudget(max_units=4).check_sites(3)  # feasible settings pass


def test_rows_in_units_and_in_dollars_describe_the_same_budget() -> None:
    cfg = SitingBudget(max_units=4, budget=60e3, min_kw=20.0)
    units, dollars = cfg.rows(3), cfg.rows(3, budget_in_units=False)
    assert [c.name for c in units] == [c.name for c in dollars]
    n = np.array([2.0, 3.0, 1.0])
    a_u, a_d = dict(units[2].terms)[UNITS], dict(dollars[2].terms)[UNITS]
    assert (a_u @ n)[0] <= units[2].ub[0]  # 6 units, the budget pays for 6
    assert (a_d @ n)[0] == pytest.approx(60e3)
    assert dollars[2].ub[0] == pytest.approx(60e3)
    assert SITED in dict(units[0].terms)
