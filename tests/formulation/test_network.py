"""The LinDist3Flow network block against closed forms and the factorized physics model."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.formulation.injections import Injection, fixed_net_load
from gridrecourse.formulation.network import SubstationMode, add_lindist3flow
from gridrecourse.formulation.periods import by_period
from gridrecourse.network.components import Bus, Connection, Feeder, Line, Load, PVSystem, Root
from gridrecourse.network.loading import resolve_feeder_spec
from gridrecourse.network.math_model import build_math_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.solvers.highs import LinearModel

KV_LN = 7.2


def _chain_feeder(r: float, x: float, pv_kw: float = 0.0) -> Feeder:
    """Source s — line — bus a — line — bus b, wye loads on every phase of a and b."""
    phases = (1, 2, 3)
    z = np.eye(3) * complex(r, x)
    zero = np.zeros((3, 3), complex)
    loads = tuple(
        Load(f"{bus}{p}", bus, (p,), Connection.WYE, kw * p, 0.3 * kw * p, KV_LN)
        for bus, kw in (("a", 100.0), ("b", 50.0))
        for p in phases
    )
    pv = (
        (PVSystem("pv", "b", phases, Connection.WYE, pv_kw * 1.1, pv_kw, pv_kw, 0.0, KV_LN),)
        if pv_kw
        else ()
    )
    return Feeder(
        name="chain",
        buses=(Bus("s", phases, KV_LN), Bus("a", phases, KV_LN), Bus("b", phases, KV_LN)),
        roots=(Root("s", (1.0, 1.0, 1.0)),),
        lines=(
            Line("sa", "s", "a", phases, phases, z, zero, 400.0, 1, 1.0),
            Line("ab", "a", "b", phases, phases, z, zero, 400.0, 1, 1.0),
        ),
        loads=loads,
        pv_systems=pv,
    )


def _solve_fixed(math, p_pu, q_pu, losses=None, injections_of=None):
    physics = LinDist3Flow(math)
    T = p_pu.shape[1]
    model = LinearModel("test")
    injections = injections_of(model) if injections_of else ()
    net = add_lindist3flow(model, physics, T, injections, substation=SubstationMode.NET)
    net.set_rhs(model, net.rhs(p_pu, q_pu, losses=losses))
    sol = model.solve()
    return physics, net, sol


def test_chain_matches_distflow_closed_form_in_every_period():
    """Diagonal Z: v_a = 1 − 2(r P_sa + x Q_sa), v_b = v_a − 2(r P_ab + x Q_ab) per phase/period."""
    r, x = 0.4, 0.8
    math = build_math_feeder(_chain_feeder(r, x))
    profile = np.array([0.5, 1.0, 1.5])
    p_pu, q_pu = fixed_net_load(
        math, np.outer(math.load_kw, profile), np.outer(math.load_kvar, profile)
    )
    physics, net, sol = _solve_fixed(math, p_pu, q_pu)
    z_base = KV_LN**2
    kw_a, kw_b = 100.0 * np.arange(1, 4), 50.0 * np.arange(1, 4)
    p_sa, p_ab = (kw_a + kw_b) / 1000, kw_b / 1000
    v = net.values(sol, net.v)  # (E, T)
    bus_of = np.array([math.bus_names[b] for b in math.node_bus[physics.nonroot]])
    phase_of = math.node_phase[physics.nonroot] - 1
    for t, k in enumerate(profile):
        v_a = 1 - 2 * (r + 0.3 * x) * k * p_sa / z_base
        v_b = v_a - 2 * (r + 0.3 * x) * k * p_ab / z_base
        expect = np.where(bus_of == "a", v_a[phase_of], v_b[phase_of])
        assert v[:, t] == pytest.approx(expect, abs=1e-10)
    assert sol.value(net.substation[0]) == pytest.approx(profile * (p_sa.sum()), rel=1e-9)


def test_pv_injection_enters_the_balances_like_negative_load():
    """PV as a decision column fixed at its output equals PV as fixed negative load."""
    math = build_math_feeder(_chain_feeder(0.4, 0.8, pv_kw=90.0))
    p_fix, q_fix = fixed_net_load(math)  # PV at its imported output (90 kW)
    p_fix, q_fix = p_fix[:, None], q_fix[:, None]
    _, net_a, sol_a = _solve_fixed(math, p_fix, q_fix)

    no_pv = np.zeros(1)
    p_dec, q_dec = fixed_net_load(math, pv_kw=no_pv, pv_kvar=no_pv)

    def pv_column(model):
        block = model.add_variables("pv-p", 1, lb=90.0 / math.s_base_kva, ub=90.0 / math.s_base_kva)
        return (Injection.active(block, math.pv_map),)

    _, net_b, sol_b = _solve_fixed(math, p_dec[:, None], q_dec[:, None], injections_of=pv_column)
    assert sol_b.value(net_b.v) == pytest.approx(sol_a.value(net_a.v), abs=1e-12)
    assert sol_b.value(net_b.p) == pytest.approx(sol_a.value(net_a.p), abs=1e-12)


@pytest.mark.shared
def test_ieee13_block_equals_factorized_physics_lossless_and_loss_corrected(feeder_dir):
    """Block LP = LinDist3Flow solve (validated against OpenDSS in tests/evaluation).

    Lossless and loss-corrected; two periods with different loads.
    """
    from gridrecourse.evaluation.validation import prepare_for_linear_model

    math = build_math_feeder(prepare_for_linear_model(resolve_feeder_spec("ieee13")))
    profile = np.array([0.6, 1.0])
    p_pu, q_pu = fixed_net_load(
        math, np.outer(math.load_kw, profile), np.outer(math.load_kvar, profile)
    )
    physics = LinDist3Flow(math)
    losses = physics.loss_terms(p_pu, q_pu, iterations=3)
    for loss, passes in ((None, 0), (losses, 3)):
        _, net, sol = _solve_fixed(math, p_pu, q_pu, losses=loss)
        ref = physics.solve(p_pu, q_pu, second_order_iterations=passes)
        v_lp = np.sqrt(net.values(sol, net.v))
        assert v_lp == pytest.approx(ref.v_pu[physics.nonroot], abs=1e-8)
        assert sol.value(net.substation[0]) == pytest.approx(ref.substation_p_pu, rel=1e-8)
    # the correction moves voltages by more than the tolerance used above (the test can fail)
    assert np.max(np.abs(losses.drop)) > 1e-5


def test_rhs_rejects_wrong_shape():
    math = build_math_feeder(_chain_feeder(0.4, 0.8))
    model = LinearModel("x")
    net = add_lindist3flow(model, LinDist3Flow(math), 2)
    with pytest.raises(ValueError, match="shape"):
        net.rhs(np.zeros((math.n_nodes, 3)), np.zeros((math.n_nodes, 3)))


def test_period_major_order():
    assert by_period(np.array([[1, 2], [3, 4]])) == pytest.approx([1, 3, 2, 4])


def test_loss_corrected_block_is_the_lossy_distflow_of_paper_d_against_opendss():
    """case33bw (paper D's feeder): the loss-corrected block vs OpenDSS's AC power flow.

    Measured when written: lossless max |ΔV| 2.8e-3 p.u., loss-corrected 2.9e-6 p.u.; substation
    P 3715.0 (lossless) / 3917.60 (corrected) vs 3917.58 kW in OpenDSS.
    """
    from gridrecourse.evaluation.validation import validate_feeder

    run = validate_feeder("case33bw")
    math = run.math
    p_pu, q_pu = fixed_net_load(math)
    p_pu, q_pu = p_pu[:, None], q_pu[:, None]
    physics = LinDist3Flow(math)
    v_ac = run.table["v_ac_pu"].to_numpy()[physics.nonroot]
    errors, imports = [], []
    for losses in (None, physics.loss_terms(p_pu, q_pu, iterations=3)):
        _, net, sol = _solve_fixed(math, p_pu, q_pu, losses=losses)
        errors.append(np.max(np.abs(np.sqrt(net.values(sol, net.v)[:, 0]) - v_ac)))
        imports.append(float(sol.value(net.substation[0])[0]) * math.s_base_kva)
    assert errors[1] < 2e-5 < errors[0]
    assert imports[1] == pytest.approx(run.result.ac_substation_kw, rel=1e-4)
    assert imports[0] < 0.96 * run.result.ac_substation_kw  # the losses the correction adds
