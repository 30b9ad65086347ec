"""ReLU networks as MILP rows (formulation/relu.py) against PyTorch's forward pass.

The reference is torch itself (float64): the MILP with the inputs fixed must reproduce the
network's output, under IBP bounds and under a uniform big-M, and IBP bounds must contain every
pre-activation reached from the input box.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import scipy.sparse as sp

from gridrecourse.formulation.relu import (
    BoundMode,
    ReluNetwork,
    ReluNetworkError,
    add_relu_network,
    interval_bounds,
    lp_tightened_bounds,
)
from gridrecourse.solvers.highs import LinearModel
from gridrecourse.solvers.options import SolverOptions

torch = pytest.importorskip("torch")

N_IN = 12


def _torch_mlp(seed: int = 0, widths=(128, 64, 32)):
    torch.manual_seed(seed)
    layers = []
    sizes = (N_IN, *widths)
    for a, b in itertools.pairwise(sizes):
        layers += [torch.nn.Linear(a, b), torch.nn.ReLU()]
    layers.append(torch.nn.Linear(sizes[-1], 1))
    return torch.nn.Sequential(*layers).double()


def _relu_network(mlp) -> ReluNetwork:
    lin = [m for m in mlp if isinstance(m, torch.nn.Linear)]
    return ReluNetwork(
        tuple(m.weight.detach().numpy() for m in lin), tuple(m.bias.detach().numpy() for m in lin)
    )


def _embedded(net: ReluNetwork, mode: BoundMode, lo: np.ndarray, hi: np.ndarray):
    model = LinearModel("relu-test")
    x = model.add_variables("x", N_IN, lb=lo, ub=hi)
    blocks = add_relu_network(
        model, net, [(x, sp.identity(N_IN, format="csr"))], lo, hi, mode=mode, big_m=1e3
    )
    return model, x, blocks


@pytest.mark.parametrize(
    ("mode", "n_points"),
    # the IBP embedding is the one the neural method uses (issue 13: 1000 points); the
    # uniform big-M one (every neuron a binary, 2x slower per solve) is the comparison
    [(BoundMode.IBP, 1000), pytest.param(BoundMode.BIG_M, 200, marks=pytest.mark.slow)],
)
def test_milp_equals_torch_forward_at_1000_points(mode, n_points):
    mlp = _torch_mlp(1)
    net = _relu_network(mlp)
    lo, hi = -np.ones(N_IN), 2.0 * np.ones(N_IN)
    model, x, blocks = _embedded(net, mode, lo, hi)
    rng = np.random.default_rng(7)
    points = rng.uniform(lo, hi, size=(n_points, N_IN))
    # some points on the box's corners (binary first stages)
    n_corners = n_points // 5
    points[:n_corners] = np.where(rng.random((n_corners, N_IN)) < 0.5, lo, hi)
    with torch.no_grad():
        ref = mlp(torch.as_tensor(points)).numpy()[:, 0]
    options = SolverOptions(mip_gap=0.0, threads=1)
    got = np.empty(len(points))
    for i, p in enumerate(points):  # one MILP per point (inputs fixed)
        model.set_col_bounds(x, p, p)
        got[i] = model.solve(options).value(blocks.output)[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)
    np.testing.assert_allclose(net.forward(points)[:, 0], ref, rtol=0, atol=1e-10)


def test_ibp_bounds_contain_pre_activations_and_save_binaries():
    mlp = _torch_mlp(2)
    net = _relu_network(mlp)
    lo, hi = np.zeros(N_IN), np.ones(N_IN)
    bounds = interval_bounds(net, lo, hi)
    pts = np.random.default_rng(3).uniform(lo, hi, size=(5000, N_IN))
    pts[:500] = np.round(pts[:500])
    h = pts
    for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        z = h @ w.T + b
        assert np.all(z >= bounds.lower[k] - 1e-9) and np.all(z <= bounds.upper[k] + 1e-9)
        h = np.maximum(z, 0.0)
    off, on, unstable = bounds.stable_counts()
    assert off + on + unstable == sum(net.hidden_sizes)
    _, _, ibp = _embedded(net, BoundMode.IBP, lo, hi)
    _, _, big = _embedded(net, BoundMode.BIG_M, lo, hi)
    assert ibp.n_binaries == unstable < big.n_binaries == sum(net.hidden_sizes)


def test_minimum_over_the_box_matches_enumeration_of_binary_inputs():
    """min y over {0,1}^n (integer inputs): MILP = brute force over all 2^n points."""
    n = 8
    torch.manual_seed(4)
    mlp = torch.nn.Sequential(
        torch.nn.Linear(n, 16), torch.nn.ReLU(), torch.nn.Linear(16, 8), torch.nn.ReLU(),
        torch.nn.Linear(8, 1),
    ).double()  # fmt: skip
    net = _relu_network(mlp)
    corners = np.array(np.meshgrid(*[[0.0, 1.0]] * n, indexing="ij")).reshape(n, -1).T
    with torch.no_grad():
        best = float(mlp(torch.as_tensor(corners)).min())
    model = LinearModel("relu-min")
    x = model.add_variables("x", n, lb=0.0, ub=1.0, integer=True)
    add_relu_network(
        model, net, [(x, sp.identity(n, format="csr"))], np.zeros(n), np.ones(n), output_cost=1.0
    )
    sol = model.solve(SolverOptions(mip_gap=0.0, threads=1))
    assert sol.objective == pytest.approx(best, abs=1e-6)


def test_bad_networks_are_refused():
    with pytest.raises(ReluNetworkError):
        ReluNetwork((np.ones((3, 2)),), (np.ones(2),))
    with pytest.raises(ReluNetworkError):
        ReluNetwork((np.ones((3, 2)), np.ones((1, 4))), (np.ones(3), np.ones(1)))
    net = ReluNetwork((np.ones((3, 2)), np.ones((1, 3))), (np.zeros(3), np.zeros(1)))
    with pytest.raises(ReluNetworkError):
        interval_bounds(net, np.zeros(2), np.array([1.0, np.inf]))


def _simplex_domain(n: int, budget: float) -> tuple[LinearModel, object]:
    """Inputs in [0, 1]^n with Σ x ≤ budget (a polytope much smaller than the box)."""
    model = LinearModel("relu-domain")
    x = model.add_variables("x", n, lb=0.0, ub=1.0)
    model.add_constraints("budget", [(x, np.ones((1, n)))], ub=budget)
    return model, x


def _points_in_domain(rng, n_points: int, budget: float) -> np.ndarray:
    """Random points of the domain, a fifth of them binary (at most ``budget`` ones)."""
    pts = rng.uniform(0.0, 1.0, size=(n_points, N_IN))
    pts *= np.minimum(1.0, budget / pts.sum(axis=1))[:, None]
    n_bin = n_points // 5
    ones = rng.integers(0, int(budget) + 1, size=n_bin)
    pts[:n_bin] = 0.0
    for i, k in enumerate(ones):
        pts[i, rng.choice(N_IN, size=k, replace=False)] = 1.0
    return pts


def test_lp_bounds_contain_pre_activations_of_the_domain_and_save_binaries():
    """LP-tightened bounds (over Σ x ≤ 2) lie inside IBP's, contain every pre-activation the
    domain reaches, and stabilize neurons IBP leaves unstable."""
    net = _relu_network(_torch_mlp(2, widths=(32, 16)))
    lo, hi = np.zeros(N_IN), np.ones(N_IN)
    model, x = _simplex_domain(N_IN, 2.0)
    eye = sp.identity(N_IN, format="csr")
    ibp = interval_bounds(net, lo, hi)
    tight = lp_tightened_bounds(model, net, [(x, eye)], lo, hi)
    assert tight.complete and tight.n_lps > 0
    assert model.n_cols == N_IN and model.n_rows == 1  # the model itself is not changed
    pts = _points_in_domain(np.random.default_rng(5), 5000, 2.0)
    h = pts
    for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        z = h @ w.T + b
        assert np.all(tight.bounds.lower[k] >= ibp.lower[k] - 1e-12)
        assert np.all(tight.bounds.upper[k] <= ibp.upper[k] + 1e-12)
        assert np.all(z >= tight.bounds.lower[k]) and np.all(z <= tight.bounds.upper[k])
        h = np.maximum(z, 0.0)
    assert tight.bounds.stable_counts()[2] < ibp.stable_counts()[2]


def test_lp_bounded_milp_equals_torch_forward_on_the_domain():
    mlp = _torch_mlp(3, widths=(32, 16))
    net = _relu_network(mlp)
    lo, hi = np.zeros(N_IN), np.ones(N_IN)
    model, x = _simplex_domain(N_IN, 2.0)
    blocks = add_relu_network(
        model, net, [(x, sp.identity(N_IN, format="csr"))], lo, hi, mode=BoundMode.LP
    )
    assert blocks.tightening is not None and blocks.n_binaries == blocks.bounds.stable_counts()[2]
    points = _points_in_domain(np.random.default_rng(11), 300, 2.0)
    with torch.no_grad():
        ref = mlp(torch.as_tensor(points)).numpy()[:, 0]
    options = SolverOptions(mip_gap=0.0, threads=1)
    got = np.empty(len(points))
    for i, p in enumerate(points):
        model.set_col_bounds(x, p, p)
        got[i] = model.solve(options).value(blocks.output)[0]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-6)


def test_lp_tightening_stops_at_its_time_limit_with_valid_bounds():
    net = _relu_network(_torch_mlp(2, widths=(32, 16)))
    lo, hi = np.zeros(N_IN), np.ones(N_IN)
    model, x = _simplex_domain(N_IN, 2.0)
    tight = lp_tightened_bounds(
        model, net, [(x, sp.identity(N_IN, format="csr"))], lo, hi, time_limit=0.0
    )
    ibp = interval_bounds(net, lo, hi)
    assert not tight.complete and tight.n_lps == 0
    for a, b in zip(tight.bounds.lower + tight.bounds.upper, ibp.lower + ibp.upper, strict=True):
        np.testing.assert_array_equal(a, b)
