"""Switch states as decisions (METHODS §1.3, paper B eqs 14–17) against independent references.

The references never go through :mod:`gridrecourse.formulation.switches`: every radial
configuration of the meshed9 test feeder is enumerated with ``build_math_feeder(...,
switch_states=...)`` (the default radial model, which orients its own tree) and solved with the
ordinary OPF; switching schedules are enumerated over those per-period optima.
"""

from __future__ import annotations

import dataclasses
import itertools
import warnings
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

from gridrecourse.errors import MeshedNetworkError, TopologyError
from gridrecourse.evaluation.switch_check import ac_agreement, check_radial_energized
from gridrecourse.formulation.network import add_lindist3flow
from gridrecourse.formulation.switches import (
    SwitchingOptions,
    UnfedBusError,
    add_switching,
    add_tie_flows,
    tree_switch_positions,
)
from gridrecourse.network.io_opendss import feeder_from_opendss
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.problems.opf import OPFConfig, build_opf, solve_opf
from gridrecourse.solvers.highs import LinearModel
from gridrecourse.solvers.options import SolverOptions

MESHED9 = Path(__file__).resolve().parents[1] / "data" / "meshed9" / "Master.dss"
EXACT = SolverOptions(mip_gap=1e-9)
#: band in which the configuration matters on meshed9 (source at 1.03 p.u.): heavy load
#: pulls the far buses below 1.02 p.u., light load leaves them above 1.025 p.u.
V_MIN, V_MAX = 1.02, 1.025


@pytest.fixture(scope="module")
def meshed9():
    feeder = feeder_from_opendss(MESHED9)
    return feeder, build_math_feeder(feeder, keep_switches=True)


@pytest.fixture(scope="module")
def radial_configs(meshed9):
    """Every radial configuration that feeds all 27 nodes, found by the radial builder."""
    return _radial_configurations(*meshed9)


def _radial_configurations(feeder, math):
    names = math.switches.names
    found = []
    for states in itertools.product([False, True], repeat=len(names)):
        st = dict(zip(names, states, strict=True))
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                radial = build_math_feeder(feeder, switch_states=st)
        except TopologyError:
            continue
        if radial.n_nodes == math.n_nodes:
            found.append((st, radial))
    return found


def _config(loads, **kw) -> OPFConfig:
    t = len(loads)
    base = dict(
        load_profile=np.asarray(loads, dtype=float),
        pv_profile=np.zeros(t),
        price_per_mwh=np.full(t, 40.0),
        pv_penetration=0.0,
        v_min=V_MIN,
        v_max=V_MAX,
        thermal_limits=False,
    )
    base.update(kw)
    return OPFConfig(**base)


def test_meshed9_has_eight_radial_configurations(radial_configs, meshed9):
    """Two independent loops of 3 and 4 switched edges sharing T37: 3·4 − 1·... = 8 trees."""
    feeder, _ = meshed9
    assert len(radial_configs) == 8
    for st, _ in radial_configs:
        graph = check_radial_energized(feeder, st)
        assert graph.radial and graph.energized


def test_reconfiguration_equals_best_enumerated_configuration(meshed9, radial_configs):
    _, math = meshed9
    cfg = _config([2.5])
    costs = [solve_opf(build_opf(radial, cfg)).cost for _, radial in radial_configs]
    best = int(np.argmin(costs))
    result = solve_opf(build_opf(math, cfg, switching=SwitchingOptions()), EXACT)
    assert result.cost == pytest.approx(costs[best], rel=1e-9)
    chosen = {k: bool(v[0]) for k, v in result.switch_states.items()}
    assert chosen == radial_configs[best][0]
    # the optimum is not the normal configuration, and the choice matters
    assert chosen != dict(zip(math.switches.names, math.switches.normal_closed, strict=True))
    assert max(costs) > 2 * min(costs)


def test_fixed_states_reproduce_each_radial_model(meshed9):
    """Fixed states: the big-M model equals the radial model of that configuration, with the
    switches rated 30 A so that closed ties are overloaded (soft thermal polygon on ties)."""
    feeder, _ = meshed9
    feeder = dataclasses.replace(
        feeder, switches=[dataclasses.replace(s, norm_amps=30.0) for s in feeder.switches]
    )
    math = build_math_feeder(feeder, keep_switches=True)
    cfg = _config([2.0], thermal_limits=True)
    tie_overload = 0.0
    for st, radial in _radial_configurations(feeder, math):
        ref = solve_opf(build_opf(radial, cfg))
        opf = build_opf(math, cfg, switching=SwitchingOptions(fixed=st))
        res = solve_opf(opf, EXACT)
        assert res.cost == pytest.approx(ref.cost, rel=1e-9), st
        order = [radial.node_index()[n] for n in math.node_names]
        np.testing.assert_allclose(res.v_pu, ref.v_pu[order], atol=1e-7)
        tie_overload += opf.model.solve(EXACT).value(opf.model.variables["tie-overload"]).sum()
    assert tie_overload > 1e-3  # overloaded closed ties were part of the comparison


def test_feasible_states_are_exactly_the_radial_configurations(meshed9, radial_configs):
    """Without load (no electrical restriction), price z by ``1 − 2 v`` for each of the 32
    state vectors v: the unique minimizer over all binaries is v itself, so the MILP returns
    v exactly when v is feasible. It does so for the 8 radial configurations and for no
    other vector."""
    _, math = meshed9
    names = math.switches.names
    radial = {tuple(st[n] for n in names) for st, _ in radial_configs}
    opf = build_opf(math, _config([0.0]), switching=SwitchingOptions())
    for v in itertools.product([0, 1], repeat=len(names)):
        opf.model.set_cost(opf.switching.z, 1.0 - 2.0 * np.asarray(v, dtype=float))
        got = tuple(x[0] for x in solve_opf(opf, EXACT).switch_states.values())
        assert (got == v) == (tuple(map(bool, v)) in radial), v
        assert tuple(map(bool, got)) in radial


def test_single_phase_tie_radiality_is_per_phase(tmp_path):
    """meshed9 plus a normally-open single-phase tie T48 (b4.1–b8.1): the feasible states are
    exactly those whose bus-phase graph (built from the engineering feeder with networkx) is a
    forest feeding every bus-phase. Same cost trick as above over all 64 state vectors.

    Closing T48 makes a phase-a loop that only a ganged three-phase switch can open, which cuts
    phases b and c: T48 is never closed. A bus-level spanning tree (paper B's eqs 14–16 per
    bus) would accept {S23 open, T48 closed}: buses b3, b4, b5 would then be fed on phase a
    only."""
    master = tmp_path / "t48.dss"
    master.write_text(
        f'Redirect "{MESHED9}"\n'
        "New Line.T48 phases=1 bus1=b4.1 bus2=b8.1 switch=yes normamps=400\n"
        "Open Line.T48 term=2\n"
    )
    feeder = feeder_from_opendss(master)
    math = build_math_feeder(feeder, keep_switches=True)
    names = math.switches.names
    assert "t48" in math.switches.tie_names
    opf = build_opf(math, _config([0.0]), switching=SwitchingOptions())
    n_feasible = 0
    for v in itertools.product([0, 1], repeat=len(names)):
        graph = check_radial_energized(feeder, dict(zip(names, map(bool, v), strict=True)))
        opf.model.set_cost(opf.switching.z, 1.0 - 2.0 * np.asarray(v, dtype=float))
        got = tuple(x[0] for x in solve_opf(opf, EXACT).switch_states.values())
        assert (got == v) == (graph.radial and graph.energized), v
        n_feasible += got == v
    assert n_feasible == 8
    bus_tree = {"s23": False, "s45": True, "s67": True, "t37": False, "t58": False, "t48": True}
    buses = nx.Graph([(e.bus1, e.bus2) for e in feeder.lines])
    buses.add_edges_from((w.bus1, w.bus2) for w in feeder.switches if bus_tree[w.name])
    assert nx.is_tree(buses) and buses.number_of_nodes() == 9
    assert not check_radial_energized(feeder, bus_tree).energized
    opf.model.set_cost(opf.switching.z, [1.0 - 2.0 * bus_tree[n] for n in names])
    assert solve_opf(opf, EXACT).switch_states["t48"] == [0]


def test_connectivity_flow_excludes_a_disconnected_cycle(meshed9):
    """Without load every island is electrically feasible; a price on closing S67 would make
    the parent-indicator/edge-count solution {S45 closed, S67 open} (cycle b3-b4-b5-b8-b7
    cut off from the source) the cheapest. The fictitious flow forbids it."""
    feeder, math = meshed9
    fixed = {"s23": False, "t37": True, "t58": True}
    opf = build_opf(math, _config([0.0]), switching=SwitchingOptions(fixed=fixed))
    cost = np.zeros(math.switches.n_switches)
    cost[math.switches.names.index("s67")] = 1.0
    opf.model.set_cost(opf.switching.z, cost)
    result = solve_opf(opf, EXACT)
    assert result.switch_states["s67"] == [1] and result.switch_states["s45"] == [0]
    states = {k: bool(v[0]) for k, v in result.switch_states.items()}
    assert check_radial_energized(feeder, states).energized


def _schedule_optimum(period_costs, configs, normal, max_ops=None):
    """Best schedule by enumeration: Σ_t cost[t, k_t] with per-switch operation limits."""
    states = np.array([[st[n] for n in normal] for st, _ in configs], dtype=int)
    init = np.array(list(normal.values()), dtype=int)
    best = (np.inf, None)
    T = period_costs.shape[0]
    for sched in itertools.product(range(len(configs)), repeat=T):
        path = np.vstack([init, states[list(sched)]])
        ops = np.abs(np.diff(path, axis=0)).sum(axis=0)
        if max_ops is not None and ops.max() > max_ops:
            continue
        cost = period_costs[np.arange(T), list(sched)].sum()
        if cost < best[0]:
            best = (cost, sched)
    return best


def test_switching_count_limit_binds(meshed9, radial_configs):
    """Heavy, light, heavy hours prefer different configurations; N_sw = 1 per switch forbids
    switching back and forth. Both optima equal the enumeration over schedules."""
    _, math = meshed9
    loads = [2.5, 0.6, 2.5]
    period_costs = np.array(
        [[solve_opf(build_opf(r, _config([x]))).cost for _, r in radial_configs] for x in loads]
    )
    assert len(set(np.argmin(period_costs, axis=1))) > 1  # the hours disagree
    normal = dict(zip(math.switches.names, math.switches.normal_closed.tolist(), strict=True))
    free_ref, _ = _schedule_optimum(period_costs, radial_configs, normal)
    lim_ref, _ = _schedule_optimum(period_costs, radial_configs, normal, max_ops=1)
    assert lim_ref > free_ref * (1 + 1e-6)  # the limit binds

    cfg = _config(loads)
    free = solve_opf(build_opf(math, cfg, switching=SwitchingOptions()), EXACT)
    limited = solve_opf(build_opf(math, cfg, switching=SwitchingOptions(max_operations=1)), EXACT)
    assert free.cost == pytest.approx(free_ref, rel=1e-8)
    assert limited.cost == pytest.approx(lim_ref, rel=1e-8)

    def per_switch_ops(res):
        z = np.array([res.switch_states[n] for n in normal])
        full = np.column_stack([np.array(list(normal.values()), dtype=int), z])
        return np.abs(np.diff(full, axis=1)).sum(axis=1)

    assert per_switch_ops(free).max() > 1
    assert per_switch_ops(limited).max() <= 1
    assert limited.n_switch_operations == per_switch_ops(limited).sum()
    # a total limit of 0 keeps the normal configuration
    none = solve_opf(
        build_opf(math, cfg, switching=SwitchingOptions(max_total_operations=0)), EXACT
    )
    assert all(v == [int(normal[k])] * 3 for k, v in none.switch_states.items())
    assert none.cost == pytest.approx(
        sum(period_costs[t, _index_of(radial_configs, normal)] for t in range(3)), rel=1e-8
    )


def _index_of(configs, states) -> int:
    return next(i for i, (st, _) in enumerate(configs) if st == states)


def test_unfed_bus_error_names_buses_and_switches(meshed9):
    _, math = meshed9
    with pytest.raises(UnfedBusError) as info:
        build_opf(
            math, _config([1.0]), switching=SwitchingOptions(fixed={"s45": False, "t58": False})
        )
    assert info.value.buses == ["b5"]
    assert {"s45", "t58"} <= set(info.value.switches)
    assert "b5" in str(info.value) and "s45" in str(info.value)
    # in one period only
    with pytest.raises(UnfedBusError) as info:
        build_opf(
            math,
            _config([1.0, 1.0]),
            switching=SwitchingOptions(fixed={"s23": [True, False], "t37": False, "s45": False}),
        )
    assert info.value.periods == [1] and set(info.value.buses) == {"b3", "b4"}


def test_fixed_closed_loop_is_an_error(meshed9):
    _, math = meshed9
    with pytest.raises(MeshedNetworkError, match="t37"):
        build_opf(
            math,
            _config([1.0]),
            switching=SwitchingOptions(fixed={"s23": True, "s67": True, "t37": True}),
        )


def test_big_m_from_physical_limits(meshed9):
    """Flow M = the component's load (phase a: hand sum of the loads' |S| shares); voltage
    M = v_max² − v_min² of the hard band; ratings replace the flow M when declared hard."""
    _, math = meshed9
    sw = math.switches
    cfg = _config([1.0], voltage_penalty_per_pu_h=None, v_min=0.9, v_max=1.1)
    blocks = build_opf(math, cfg, switching=SwitchingOptions()).switching
    s = lambda p, q: abs(complex(p, q)) / 1000.0  # noqa: E731
    third = 1.0 / 3.0
    # 3-phase delta b4: pairs ab and ca put (e^{-j30°} + e^{+j30°})/(3√3) = 1/3 of S on a
    phase_a = (
        third * s(450, 200)
        + third * s(300, 150)
        + s(250, 100)
        + third * s(350, 120)
        + third * s(200, 90)
        + third * s(250, 110)
        + third * s(280, 120)
    )
    first = np.flatnonzero(math.node_phase[sw.tree_node] == 1)[0]
    assert blocks.flow_big_m[first, 0] == pytest.approx(phase_a, rel=1e-12)
    np.testing.assert_allclose(blocks.voltage_big_m, 1.1**2 - 0.9**2, rtol=1e-12)
    rated = build_opf(
        math,
        _config([1.0], thermal_limits=True, thermal_penalty_per_pu_h=None),
        switching=SwitchingOptions(),
    ).switching
    assert np.all(rated.flow_big_m <= sw.rating_pu[0] + 1e-12)


def test_add_switching_requires_finite_voltage_bounds(meshed9):
    _, math = meshed9
    physics = LinDist3Flow(math)
    model = LinearModel("no-bounds")
    ties = add_tie_flows(model, math, math.switches, 1)
    net = add_lindist3flow(
        model, physics, 1, ties.injections, gapped=tree_switch_positions(physics, math.switches)
    )
    with pytest.raises(ValueError, match="finite bounds of bus-v"):
        add_switching(model, net, math.switches, 1, ties=ties)


def test_default_opf_unchanged_on_a_keep_switches_feeder(meshed9, radial_configs):
    """Without ``switching`` the OPF of the keep-switches model is the normal radial OPF."""
    _, math = meshed9
    cfg = _config([2.0])
    normal = next(
        r
        for st, r in radial_configs
        if st == {"s23": True, "s45": True, "s67": True, "t37": False, "t58": False}
    )
    opf = build_opf(math, cfg)
    assert opf.switching is None and "switch-z" not in opf.model.variables
    assert solve_opf(opf).cost == pytest.approx(solve_opf(build_opf(normal, cfg)).cost, rel=1e-12)


@pytest.mark.slow
@pytest.mark.shared
def test_ieee123_switches_reconfiguration_is_radial_and_matches_opendss(feeder_dir):
    """IEEE123Switches, four hours of the bundled day: the chosen configuration is radial and
    feeds every bus (graph check on the engineering feeder) and OpenDSS's AC solution of it
    agrees with LinDist3Flow within 0.010 p.u. (loss-corrected); reconfiguring never costs more
    than the normal configuration."""
    from gridrecourse.network.loading import resolve_feeder_spec
    from gridrecourse.network.prepare import OperatingPoint, SwitchMode, prepare_feeder
    from gridrecourse.problems.profiles import bundled_day

    feeder = resolve_feeder_spec("ieee123-switches")
    math = prepare_feeder(feeder, OperatingPoint(switches=SwitchMode.AS_DECISIONS)).math
    day = bundled_day(196)
    hours = slice(16, 20)
    cfg = OPFConfig(
        load_profile=day.load[hours],
        pv_profile=day.pv[hours],
        price_per_mwh=day.price_per_mwh[hours],
    )
    result = solve_opf(build_opf(math, cfg, switching=SwitchingOptions(operation_cost=100.0)))
    normal = solve_opf(build_opf(math, cfg))
    assert result.cost <= normal.cost + 1e-6 * abs(normal.cost)
    assert set(result.switch_states) == {f"sw{i}" for i in range(1, 9)}
    columns = {tuple(v[t] for v in result.switch_states.values()) for t in range(4)}
    for column in columns:
        states = {k: bool(x) for k, x in zip(result.switch_states, column, strict=True)}
        graph = check_radial_energized(feeder, states)
        assert graph.radial and graph.energized, graph
        ac = ac_agreement(feeder, states)
        assert ac.ac_converged
        assert ac.max_abs_voltage_error_pu_loss_corrected <= 0.010
