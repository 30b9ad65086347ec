"""Tests of the SPAR-OPF first-stage MILP (paper C D1 with lambda / epigraph formulations)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError
from gridrecourse.methods.spar_first_stage import (
    FirstStageConfigError,
    FirstStageInfeasibleError,
    FirstStageModel,
    FirstStageSolution,
    Formulation,
)
from gridrecourse.problems.base import FirstStageSpec, VariableBlockSpec
from gridrecourse.problems.separable import SeparableFirstStage
from gridrecourse.problems.siting_budget import SITED, UNITS, SitingBudget


def declaration(n_sites: int, cfg: SitingBudget) -> SeparableFirstStage:
    """Paper C's D1 over ``n_sites`` candidates as a separable first stage (budget in $)."""
    fs = FirstStageSpec(
        (
            VariableBlockSpec(UNITS, n_sites, ub=float(cfg.max_units), integer=True),
            VariableBlockSpec(SITED, n_sites, ub=1.0, integer=True),
        ),
        cfg.rows(n_sites),
    )
    return SeparableFirstStage(fs, UNITS, SITED, rows=cfg.rows(n_sites, budget_in_units=False))


def first_stage_model(
    n_sites: int, cfg: SitingBudget, formulation: Formulation, slopes: np.ndarray
) -> FirstStageModel:
    return FirstStageModel(declaration(n_sites, cfg), formulation, slopes)


def random_convex_slopes(rng: np.random.Generator, n_sites: int, max_units: int) -> np.ndarray:
    """Nondecreasing slope rows, mostly negative at first so that installing PV pays."""
    return np.sort(rng.normal(loc=-0.5, scale=2.0, size=(n_sites, max_units)), axis=1)


def breakpoint_values(slopes: np.ndarray) -> np.ndarray:
    return np.concatenate([np.zeros((slopes.shape[0], 1)), np.cumsum(slopes, axis=1)], axis=1)


def brute_force(
    slopes: np.ndarray,
    cfg: SitingBudget,
    cuts: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[float, tuple[int, ...]]:
    """Independent reference: enumerate every (n, s) of D1 and keep the cheapest feasible."""
    n_sites, big_l = slopes.shape
    values = breakpoint_values(slopes)
    best, arg = np.inf, ()
    for n in itertools.product(range(big_l + 1), repeat=n_sites):
        units = np.array(n)
        if cfg.unit_cost * units.sum() > cfg.budget + 1e-9:
            continue
        if cuts is not None and np.any(cuts[0] @ units < cuts[1] - 1e-9):
            continue
        for s in itertools.product((0, 1), repeat=n_sites):
            sited = np.array(s)
            kw = cfg.unit_kw * units
            if np.any(kw < cfg.min_kw * sited - 1e-9) or np.any(kw > cfg.g_max_kw * sited + 1e-9):
                continue
            if not cfg.min_sites <= sited.sum() <= cfg.max_sites:
                continue
            value = values[np.arange(n_sites), units].sum()
            if value < best:
                best, arg = value, n
            break  # any feasible s gives the same objective
    return float(best), arg


def assert_feasible(
    sol: FirstStageSolution,
    cfg: SitingBudget,
    cuts: tuple[np.ndarray, np.ndarray] | None = None,
) -> None:
    kw = cfg.unit_kw * sol.units
    assert np.all((sol.units >= 0) & (sol.units <= cfg.max_units))
    assert np.all(kw >= cfg.min_kw * sol.sited - 1e-6)
    assert np.all(kw <= cfg.g_max_kw * sol.sited + 1e-6)
    assert cfg.unit_cost * sol.units.sum() <= cfg.budget + 1e-6
    assert cfg.min_sites <= sol.sited.sum() <= cfg.max_sites
    if cuts is not None:
        assert np.all(cuts[0] @ sol.units >= cuts[1] - 1e-6)


TINY = SitingBudget(
    unit_kw=10.0,
    max_units=4,
    cost_per_kw=1000.0,
    budget=60e3,  # at most 6 units in total
    min_sites=2,
    max_sites=2,
    min_kw=20.0,  # a sited bus gets at least 2 units
)


@pytest.mark.parametrize("formulation", list(Formulation))
def test_tiny_case_equals_brute_force(formulation: Formulation) -> None:
    rng = np.random.default_rng(7)
    for _ in range(8):
        slopes = random_convex_slopes(rng, 3, TINY.max_units)
        sol = first_stage_model(3, TINY, formulation, slopes).solve()
        best, arg = brute_force(slopes, TINY)
        assert sol.optimal
        assert sol.objective == pytest.approx(best, abs=1e-6)
        assert sol.dual_bound == pytest.approx(best, abs=1e-4 * (1 + abs(best)))
        assert_feasible(sol, TINY)
        values = breakpoint_values(slopes)
        assert values[np.arange(3), sol.units].sum() == pytest.approx(
            values[np.arange(3), list(arg)].sum(), abs=1e-6
        )


def test_mip_feasibility_tolerance_is_set_on_each_solve() -> None:
    """A tighter tolerance reaches HiGHS, gives the brute-force optimum, and does not stick."""
    slopes = random_convex_slopes(np.random.default_rng(7), 3, TINY.max_units)
    model = first_stage_model(3, TINY, Formulation.EPIGRAPH, slopes)
    tight = model.solve(feasibility_tolerance=1e-9)
    assert model._highs.getOptionValue("mip_feasibility_tolerance")[1] == 1e-9
    assert tight.objective == pytest.approx(brute_force(slopes, TINY)[0], abs=1e-6)
    model.solve()
    assert model._highs.getOptionValue("mip_feasibility_tolerance")[1] == 1e-6


def test_lambda_handles_nonconvex_slopes_and_epigraph_rejects_them() -> None:
    rng = np.random.default_rng(3)
    slopes = rng.normal(size=(3, TINY.max_units))
    slopes[:, 1] = slopes[:, 0] - 1.0  # surely nonconvex
    sol = first_stage_model(3, TINY, Formulation.LAMBDA, slopes).solve()
    assert sol.objective == pytest.approx(brute_force(slopes, TINY)[0], abs=1e-6)
    with pytest.raises(FirstStageConfigError, match="nondecreasing"):
        first_stage_model(3, TINY, Formulation.EPIGRAPH, slopes)
    model = first_stage_model(3, TINY, Formulation.EPIGRAPH, np.zeros((3, TINY.max_units)))
    with pytest.raises(FirstStageConfigError, match="nondecreasing"):
        model.set_slopes(slopes)


def test_lambda_and_epigraph_agree_on_random_slopes() -> None:
    rng = np.random.default_rng(11)
    cfg = SitingBudget(max_units=10, budget=200e3, min_sites=1, max_sites=3, min_kw=20.0)
    for _ in range(12):
        slopes = random_convex_slopes(rng, 5, 10)
        sols = {f: first_stage_model(5, cfg, f, slopes).solve(mip_gap=0.0) for f in Formulation}
        lam, epi = sols[Formulation.LAMBDA], sols[Formulation.EPIGRAPH]
        assert lam.objective == pytest.approx(epi.objective, abs=1e-6)
        for sol in sols.values():
            assert_feasible(sol, cfg)
            assert sol.solve_seconds >= 0


@pytest.mark.parametrize("formulation", list(Formulation))
def test_set_slopes_updates_in_place_like_a_fresh_model(formulation: Formulation) -> None:
    rng = np.random.default_rng(5)
    model = first_stage_model(3, TINY, formulation, np.zeros((3, TINY.max_units)))
    n_rows = model._highs.getNumRow()
    n_cols = model._highs.getNumCol()
    slopes = random_convex_slopes(rng, 3, TINY.max_units)
    for _ in range(6):
        model.set_slopes(slopes)
        np.testing.assert_array_equal(model.slopes, slopes)
        assert (model._highs.getNumRow(), model._highs.getNumCol()) == (n_rows, n_cols)
        sol = model.solve()
        fresh = first_stage_model(3, TINY, formulation, slopes).solve()
        assert sol.objective == pytest.approx(fresh.objective, abs=1e-6)
        assert sol.objective == pytest.approx(brute_force(slopes, TINY)[0], abs=1e-6)
        # SPAR-like change: one site's row moves (stays convex); also zero slopes sometimes
        i = rng.integers(3)
        slopes = slopes.copy()
        slopes[i] = np.sort(slopes[i] + rng.normal(scale=3.0, size=TINY.max_units))
        if rng.random() < 0.3:
            slopes[rng.integers(3)] = 0.0


@pytest.mark.parametrize("threshold", [0, 10**9])
def test_many_changed_slopes_rebuild_the_epigraph_model_with_its_cuts(monkeypatch, threshold):
    """Above ``_REBUILD_CHANGES`` changed coefficients the epigraph model is rebuilt at the new
    slopes (cheaper than changeCoeff per entry on large feeders); below, changed in place.
    Both keep the cuts and solve to the enumerated optimum."""
    import gridrecourse.methods.spar_first_stage as fsm

    monkeypatch.setattr(fsm, "_REBUILD_CHANGES", threshold)
    rng = np.random.default_rng(23)
    cfg = SitingBudget(max_units=4, budget=80e3, min_sites=1, max_sites=3, min_kw=10.0)
    model = first_stage_model(3, cfg, Formulation.EPIGRAPH, np.zeros((3, 4)))
    a, b = np.array([[0.0, 0.0, -1.0], [1.0, 1.0, 0.0]]), np.array([-2.0, 1.0])
    model.add_cut(a, b)
    shape = (model._highs.getNumRow(), model._highs.getNumCol())
    for _ in range(5):
        slopes = random_convex_slopes(rng, 3, 4)
        model.set_slopes(slopes)
        np.testing.assert_array_equal(model.slopes, slopes)
        assert (model._highs.getNumRow(), model._highs.getNumCol()) == shape
        assert model.n_cuts == 2 and model._layout.cut_rows == [shape[0] - 2, shape[0] - 1]
        sol = model.solve()
        assert_feasible(sol, cfg, (a, b))
        assert sol.objective == pytest.approx(brute_force(slopes, cfg, (a, b))[0], abs=1e-6)


@pytest.mark.parametrize("formulation", list(Formulation))
def test_cuts_are_respected(formulation: Formulation) -> None:
    rng = np.random.default_rng(19)
    cfg = SitingBudget(max_units=4, budget=80e3, min_sites=1, max_sites=3, min_kw=10.0)
    for _ in range(5):
        slopes = random_convex_slopes(rng, 3, 4)
        model = first_stage_model(3, cfg, formulation, slopes)
        unconstrained = model.solve()
        # cut off the unconstrained optimum: Σ n ≤ (its total) − 1, and keep site 2 small
        a = np.array([[-1.0, -1.0, -1.0], [0.0, 0.0, -1.0]])
        b = np.array([-(unconstrained.units.sum() - 1.0), -2.0])
        if unconstrained.units.sum() == 0:
            a, b = np.array([[1.0, 1.0, 1.0]]), np.array([2.0])
        model.add_cut(a[0], b[0])
        if a.shape[0] > 1:
            model.add_cut(a[1:], b[1:])
        assert model.n_cuts == a.shape[0]
        np.testing.assert_array_equal(model.cuts[0], a)
        sol = model.solve()
        assert_feasible(sol, cfg, (a, b))
        assert sol.objective == pytest.approx(brute_force(slopes, cfg, (a, b))[0], abs=1e-6)
        assert sol.objective >= unconstrained.objective - 1e-9


@pytest.mark.parametrize("formulation", list(Formulation))
def test_infeasible_cut_raises_clear_error(formulation: Formulation) -> None:
    model = first_stage_model(3, TINY, formulation, np.zeros((3, TINY.max_units)))
    model.add_cut(np.ones(3), 7.0)  # needs 7 units, the budget pays for 6
    with pytest.raises(FirstStageInfeasibleError, match="infeasible") as err:
        model.solve()
    assert isinstance(err.value, InfeasibleModelError)
    assert "1 feasibility cut" in str(err.value)


@pytest.mark.parametrize(
    "cfg",
    [
        SitingBudget(max_units=4, min_sites=4, max_sites=5),
        SitingBudget(max_units=4, budget=30e3, min_sites=2, min_kw=20.0),
        SitingBudget(max_units=4, min_kw=25.0, max_kw=29.0),
    ],
)
@pytest.mark.parametrize("formulation", list(Formulation))
def test_infeasible_declared_rows_raise_on_solve(cfg: SitingBudget, formulation) -> None:
    model = first_stage_model(3, cfg, formulation, np.zeros((3, cfg.max_units)))
    with pytest.raises(FirstStageInfeasibleError, match=r"'pv-units'.*0 feasibility cut"):
        model.solve()


def test_infeasibility_only_the_solver_can_see_raises() -> None:
    # statically fine (one site of 2 units is affordable); the cuts force all three sites on,
    # each then needs >= 2 units (min_kw), 6 units > the 4 the budget pays for
    cfg = SitingBudget(max_units=4, budget=40e3, min_sites=1, max_sites=3, min_kw=20.0)
    model = first_stage_model(3, cfg, Formulation.LAMBDA, np.zeros((3, 4)))
    model.add_cut(np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]), [1.0, 1.0, 1.0])
    with pytest.raises(FirstStageInfeasibleError):
        model.solve()


def test_model_rejects_bad_shapes() -> None:
    with pytest.raises(FirstStageConfigError, match="shape"):
        first_stage_model(3, TINY, Formulation.LAMBDA, np.zeros((3, 5)))
    with pytest.raises(FirstStageConfigError):
        first_stage_model(3, TINY, "lambda", np.zeros((3, 4)))  # type: ignore[arg-type]
    with pytest.raises(FirstStageConfigError, match="SeparableFirstStage"):
        FirstStageModel(TINY, Formulation.LAMBDA, np.zeros((3, 4)))  # type: ignore[arg-type]
    model = first_stage_model(3, TINY, Formulation.LAMBDA, np.zeros((3, 4)))
    with pytest.raises(FirstStageConfigError):
        model.add_cut(np.ones(4), 1.0)
    with pytest.raises(FirstStageConfigError):
        model.add_cut(np.ones(3), np.nan)
