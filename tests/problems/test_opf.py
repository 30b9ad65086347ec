"""The deterministic OPF: LP assembly against the direct power-flow solve, re-solve, limits."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.errors import InfeasibleModelError, InvalidSeriesError
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow, net_injections
from gridrecourse.problems.opf import OPFConfig, build_opf, set_operating_data, solve_opf

T = 6


@pytest.fixture(scope="module")
def ieee123(feeder_dir):
    return build_math_feeder(resolve_feeder_spec("ieee123"))


def _config(**kw):
    base = dict(
        load_profile=np.linspace(0.5, 1.0, T),
        pv_profile=np.zeros(T),
        price_per_mwh=np.full(T, 40.0),
        pv_penetration=0.0,
        v_min=0.5,
        v_max=1.5,
        thermal_limits=False,
    )
    base.update(kw)
    return OPFConfig(**base)


def test_opf_without_decisions_reproduces_power_flow(ieee123):
    """No PV, wide limits: the LP's voltages equal the direct LinDist3Flow solve each hour."""
    cfg = _config()
    result = solve_opf(build_opf(ieee123, cfg))
    ld = LinDist3Flow(ieee123)
    p, q = net_injections(ieee123)
    direct = ld.solve(np.outer(p, cfg.load_profile), np.outer(q, cfg.load_profile))
    assert result.v_pu == pytest.approx(direct.v_pu, abs=1e-7)
    assert result.import_kw == pytest.approx(direct.substation_p_pu * 1000, rel=1e-7)
    assert result.energy_cost == pytest.approx(np.sum(40.0 / 1000 * result.import_kw))


def test_resolve_with_new_vectors_matches_fresh_build(ieee123):
    cfg = _config(pv_penetration=0.8, pv_profile=np.linspace(0, 1, T), v_min=0.95, v_max=1.05)
    opf = build_opf(ieee123, cfg)
    solve_opf(opf)
    new_load = np.linspace(1.0, 0.4, T)
    new_pv = np.linspace(1, 0, T)
    set_operating_data(opf, new_load, new_pv, np.full(T, 55.0))
    warm = solve_opf(opf)
    fresh_cfg = _config(
        load_profile=new_load,
        pv_profile=new_pv,
        price_per_mwh=np.full(T, 55.0),
        pv_penetration=0.8,
        v_min=0.95,
        v_max=1.05,
    )
    fresh = solve_opf(build_opf(ieee123, fresh_cfg))
    assert warm.cost == pytest.approx(fresh.cost, rel=1e-7)


def test_pv_is_used_before_curtailment_and_lowers_cost(ieee123):
    without = solve_opf(build_opf(ieee123, _config()))
    pv = _config(pv_penetration=0.3, pv_profile=np.full(T, 0.5))
    with_pv = solve_opf(build_opf(ieee123, pv))
    assert with_pv.energy_cost < without.energy_cost
    assert with_pv.curtailed_kwh == pytest.approx(0.0, abs=1e-6)  # positive price: use all PV


def test_hard_limits_can_be_infeasible_with_a_clear_error(ieee123):
    cfg = _config(v_min=1.04, v_max=1.05, voltage_penalty_per_pu_h=None)
    with pytest.raises(InfeasibleModelError, match="opf"):
        solve_opf(build_opf(ieee123, cfg))


@pytest.mark.parametrize("bad", [np.nan, -np.inf])
def test_non_finite_profiles_are_rejected(bad):
    load = np.ones(T)
    load[2] = bad
    with pytest.raises(InvalidSeriesError, match="load_profile"):
        _config(load_profile=load)
