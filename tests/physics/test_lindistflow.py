"""LinDist3Flow against hand-solvable cases and its own structure."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from gridrecourse.errors import InvalidSeriesError
from gridrecourse.network.components import Bus, Connection, Feeder, Line, Load, Root
from gridrecourse.network.math_model import GAMMA, build_math_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow, PhaseAngles, net_injections

KV_LN = 7.2


def two_bus_feeder(z_ohm: np.ndarray, kw=(300.0, 200.0, 100.0), kvar=(90.0, 60.0, 30.0)):
    """Source — line — load bus with one wye load per phase."""
    phases = (1, 2, 3)
    return Feeder(
        name="two-bus",
        buses=(Bus("s", phases, KV_LN), Bus("b", phases, KV_LN)),
        roots=(Root("s", (1.0, 1.0, 1.0)),),
        lines=(
            Line("l", "s", "b", phases, phases, z_ohm, np.zeros((3, 3), complex), 400.0, 1, 1.0),
        ),
        loads=tuple(
            Load(f"ld{p}", "b", (p,), Connection.WYE, kw[p - 1], kvar[p - 1], KV_LN) for p in phases
        ),
    )


def test_diagonal_impedance_reduces_to_distflow():
    """With no mutual coupling each phase obeys v_j = v_i − 2(rP + xQ) exactly."""
    r, x = 0.5, 1.0
    feeder = two_bus_feeder(np.eye(3) * complex(r, x))
    math = build_math_feeder(feeder)
    sol = LinDist3Flow(math).solve(*net_injections(math))
    z_base = KV_LN**2  # kV² / (1 MVA per phase)
    p = np.array([300.0, 200.0, 100.0]) / 1000
    q = np.array([90.0, 60.0, 30.0]) / 1000
    expected = np.sqrt(1.0 - 2 * (r * p + x * q) / z_base)
    load_nodes = ~math.is_root
    assert sol.v_pu[load_nodes] == pytest.approx(expected, abs=1e-12)
    assert sol.substation_p_pu == pytest.approx(p.sum())


def test_mutual_coupling_follows_gamma():
    """Off-diagonal drops use M_P = 2 Re(γ∘conj Z), M_Q = −2 Im(γ∘conj Z) (METHODS §1.1)."""
    z = np.array(
        [
            [0.4 + 1.0j, 0.1 + 0.4j, 0.1 + 0.35j],
            [0.1 + 0.4j, 0.4 + 1.0j, 0.1 + 0.3j],
            [0.1 + 0.35j, 0.1 + 0.3j, 0.4 + 1.0j],
        ]
    )
    feeder = two_bus_feeder(z)
    math = build_math_feeder(feeder)
    sol = LinDist3Flow(math).solve(*net_injections(math))
    zpu = z / KV_LN**2
    mp = 2 * np.real(GAMMA * np.conj(zpu))
    mq = -2 * np.imag(GAMMA * np.conj(zpu))
    p = np.array([0.3, 0.2, 0.1])
    q = np.array([0.09, 0.06, 0.03])
    expected = np.sqrt(1.0 - mp @ p - mq @ q)
    assert sol.v_pu[~math.is_root] == pytest.approx(expected, abs=1e-12)
    # The coupling matters: phase c sees the heavy phase-a flow.
    assert not np.allclose(
        expected, np.sqrt(1.0 - 2 * (zpu.real.diagonal() * p + zpu.imag.diagonal() * q))
    )


def test_multi_column_solve_equals_column_by_column():
    feeder = two_bus_feeder(np.eye(3) * (0.3 + 0.6j))
    math = build_math_feeder(feeder)
    ld = LinDist3Flow(math)
    p, q = net_injections(math)
    scale = np.array([0.5, 1.0, 1.5])
    many = ld.solve(np.outer(p, scale), np.outer(q, scale))
    for k, s in enumerate(scale):
        one = ld.solve(p * s, q * s)
        assert many.v_pu[:, k] == pytest.approx(one.v_pu)


def test_second_order_correction_adds_the_losses():
    """Losses from the correction equal Σ r|I|² per phase for a diagonal line (hand check)."""
    r, x = 0.8, 1.6
    feeder = two_bus_feeder(np.eye(3) * complex(r, x))
    math = build_math_feeder(feeder)
    ld = LinDist3Flow(math)
    p, q = net_injections(math)
    sol = ld.solve(p, q, second_order_iterations=6)
    # Exact two-bus solution per phase: fixed point of P_send = P + r(P_send²+Q_send²)/v0.
    zb = KV_LN**2
    loss = 0.0
    for pp, qq in zip([0.3, 0.2, 0.1], [0.09, 0.06, 0.03], strict=True):
        ps, qs = pp, qq
        for _ in range(50):
            i2 = (ps**2 + qs**2) / 1.0
            ps, qs = pp + r / zb * i2, qq + x / zb * i2
        loss += ps - pp
    assert sol.losses_p_pu == pytest.approx(loss, rel=1e-6)
    assert sol.substation_p_pu == pytest.approx(0.6 + loss, rel=1e-9)


def test_non_finite_injection_is_rejected():
    math = build_math_feeder(two_bus_feeder(np.eye(3) * (0.3 + 0.6j)))
    p, q = net_injections(math)
    p[-1] = np.nan
    with pytest.raises(InvalidSeriesError, match=r"b\.3"):
        LinDist3Flow(math).solve(p, q)
    p[-1] = -np.inf
    with pytest.raises(InvalidSeriesError):
        LinDist3Flow(math).solve(p, q)


def test_delta_load_splits_with_balanced_phasor_shares():
    """A delta a-b load of S puts S e^{−j30°}/√3 on a and S e^{+j30°}/√3 on b."""
    feeder = two_bus_feeder(np.eye(3) * (0.3 + 0.6j), kw=(0, 0, 0), kvar=(0, 0, 0))
    delta = Load("dab", "b", (1, 2), Connection.DELTA, 100.0, 50.0, KV_LN * np.sqrt(3))
    feeder = Feeder(**{**feeder.__dict__, "loads": (delta,)})
    math = build_math_feeder(feeder)
    p, q = net_injections(math)
    s = complex(100.0, 50.0) / 1000
    idx = math.node_index()
    sa = s * np.exp(-1j * np.pi / 6) / np.sqrt(3)
    sb = s * np.exp(1j * np.pi / 6) / np.sqrt(3)
    assert complex(p[idx["b.1"]], q[idx["b.1"]]) == pytest.approx(sa)
    assert complex(p[idx["b.2"]], q[idx["b.2"]]) == pytest.approx(sb)
    assert p.sum() == pytest.approx(s.real)


def _chain_feeder(z_ohm: np.ndarray, kw, kvar) -> Feeder:
    """Source — line — bus m — line — load bus b (the same line twice, loads at b)."""
    phases = (1, 2, 3)
    line = Line("l1", "s", "m", phases, phases, z_ohm, np.zeros((3, 3), complex), 400.0, 1, 1.0)
    return Feeder(
        name="chain",
        buses=(Bus("s", phases, KV_LN), Bus("m", phases, KV_LN), Bus("b", phases, KV_LN)),
        roots=(Root("s", (1.0, 1.0, 1.0)),),
        lines=(line, replace(line, name="l2", bus1="m", bus2="b")),
        loads=tuple(
            Load(f"ld{p}", "b", (p,), Connection.WYE, kw[p - 1], kvar[p - 1], KV_LN) for p in phases
        ),
    )


def _exact_chain(z_pu: np.ndarray, s_pu: np.ndarray) -> np.ndarray:
    """Load-bus phasors of the chain by a plain complex fixed point (the reference)."""
    v_s = np.exp(1j * np.array([0.0, -2 * np.pi / 3, 2 * np.pi / 3]))
    v = v_s.copy()
    for _ in range(500):
        v = v_s - 2 * z_pu @ np.conj(s_pu / v)
    return v


def test_operating_point_angles_reach_the_exact_power_flow():
    """With the operating point's angles the correction converges to the exact AC solution of
    the same circuit (heavily unbalanced load on coupled lines); with balanced angles the
    second line's drop keeps an error."""
    z = np.array(
        [
            [0.5 + 1.0j, 0.15 + 0.45j, 0.15 + 0.4j],
            [0.15 + 0.45j, 0.5 + 1.0j, 0.15 + 0.35j],
            [0.15 + 0.4j, 0.15 + 0.35j, 0.5 + 1.0j],
        ]
    )
    kw, kvar = (1500.0, 100.0, 600.0), (700.0, 20.0, 250.0)
    math = build_math_feeder(_chain_feeder(z, kw, kvar))
    exact = _exact_chain(z / KV_LN**2, (np.array(kw) + 1j * np.array(kvar)) / 1000)
    physics = LinDist3Flow(math)
    p, q = net_injections(math)
    swept = physics.solve(p, q, second_order_iterations=20, angles=PhaseAngles.OPERATING_POINT)
    nominal = physics.solve(p, q, second_order_iterations=20)
    load = math.node_bus == math.bus_names.index("b")
    balanced = np.array([0.0, -2 * np.pi / 3, 2 * np.pi / 3])
    assert np.abs(np.angle(exact) - balanced).max() > np.radians(2)  # far from balanced
    assert swept.v_pu[load] == pytest.approx(np.abs(exact), abs=1e-9)
    assert swept.v_angle_rad[load] == pytest.approx(np.angle(exact), abs=1e-9)
    assert np.abs(nominal.v_pu[load] - np.abs(exact)).max() > 1e-4  # measured 4.2e-4
    # the default correction keeps the balanced angles in its solution
    assert nominal.v_angle_rad[load] == pytest.approx(balanced)
