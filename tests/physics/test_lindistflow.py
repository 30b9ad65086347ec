"""LinDist3Flow against hand-solvable cases and its own structure."""

from __future__ import annotations

import numpy as np
import pytest

from gridrecourse.errors import InvalidSeriesError
from gridrecourse.network.components import Bus, Connection, Feeder, Line, Load, Root
from gridrecourse.network.math_model import GAMMA, build_math_feeder
from gridrecourse.physics.lindistflow import LinDist3Flow, net_injections

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
