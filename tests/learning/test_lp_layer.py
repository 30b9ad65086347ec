"""The differentiable storage-expansion layer: finite differences, cvxpylayers, executors."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="the LP layer needs torch (the 'ml' extra)")

from gridrecourse.errors import InfeasibleModelError  # noqa: E402
from gridrecourse.evaluation.validation import prepare_for_linear_model  # noqa: E402
from gridrecourse.execution import ExecutorKind, make_executor  # noqa: E402
from gridrecourse.formulation.limits import LimitMode  # noqa: E402
from gridrecourse.learning.lp_layer import (  # noqa: E402
    StorageExpansionLayer,
    cvxpylayers_reference,
)
from gridrecourse.network.loading import resolve_feeder_spec  # noqa: E402
from gridrecourse.network.math_model import build_math_feeder  # noqa: E402
from gridrecourse.problems.storage_expansion import (  # noqa: E402
    StorageExpansionConfig,
    StorageExpansionProblem,
)

T = 5
HAS_CVXPYLAYERS = all(importlib.util.find_spec(m) for m in ("cvxpy", "cvxpylayers", "diffcp"))


@pytest.fixture(scope="module")
def ieee13(feeder_dir):
    return build_math_feeder(prepare_for_linear_model(resolve_feeder_spec("ieee13")))


@pytest.fixture(scope="module")
def problem(ieee13):
    """Soft voltage band whose penalties are active in some hours (rg60 sits at 1.056), τ = 5."""
    cfg = StorageExpansionConfig(n_hours=T, voltage_limits=LimitMode.SOFT, v_max=1.055)
    return StorageExpansionProblem(ieee13, cfg)


def _box(problem, seed: int, batch: int = 1):
    """Distinct prices, an export hour (PV), loads with noise: a generic, non-degenerate box."""
    rng = np.random.default_rng(seed)
    upper = np.array([30.0, 18.0, 55.0, 70.0, 42.0]) + rng.random((batch, T))
    lower = upper - np.array([5.0, 4.0, 9.0, 12.0, 3.0]) - rng.random((batch, T))
    profile = np.array([0.6, 0.5, 0.9, 1.1, 0.8])
    load = (
        profile[None, :, None]
        * problem.nominal_load_kw[None, None, :]
        * (1 + 0.05 * rng.standard_normal((batch, T, problem.n_sites)))
    )
    pv = np.zeros((T, problem.n_sites))
    pv[1] = 1.6 * problem.nominal_load_kw
    return upper, lower, load, pv


def _tensors(*arrays):
    return [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]


def _central_difference(problem, upper, lower, load, pv, which: str, h: float) -> np.ndarray:
    args = {"upper": upper, "lower": lower, "load": load}
    base = args[which]
    grad = np.zeros_like(base)
    for idx in np.ndindex(base.shape):
        values = []
        for sign in (1.0, -1.0):
            moved = dict(args)
            moved[which] = base.copy()
            moved[which][idx] += sign * h
            values.append(
                problem.solve(moved["upper"], moved["lower"], moved["load"], pv).objective
            )
        grad[idx] = (values[0] - values[1]) / (2 * h)
    return grad


def test_gradient_matches_central_differences(problem):
    upper, lower, load, pv = _box(problem, seed=1)
    layer = StorageExpansionLayer(problem)
    pu, pl, ld = _tensors(upper, lower, load)
    value = layer(pu, pl, ld, pv)
    value.sum().backward()
    sol = layer.last_solutions[0]
    # the instance is generic: imports and exports, batteries built, penalties active
    assert (sol.import_kw < 0).any() and (sol.import_kw > 0).any()
    assert sol.total_capacity_kwh > 0 and sol.penalty_cost > 0
    assert np.min(np.abs(sol.import_kw)) > 1.0  # no tie between the two η rows
    checks = {
        "upper": (pu.grad.numpy()[0], 1e-3),
        "lower": (pl.grad.numpy()[0], 1e-3),
        "load": (ld.grad.numpy()[0], 1e-2),
    }
    for which, (grad, h) in checks.items():
        fd = _central_difference(problem, upper[0], lower[0], load[0], pv, which, h)
        rel = np.linalg.norm(grad - fd) / np.linalg.norm(fd)
        assert rel <= 1e-4, f"{which}: relative error {rel:.2e}"
        assert np.linalg.norm(fd) > 0


def test_gradient_is_chained_with_the_upstream_gradient(problem):
    upper, lower, load, pv = _box(problem, seed=2, batch=3)
    layer = StorageExpansionLayer(problem)
    pu, pl, ld = _tensors(upper, lower, load)
    weights = torch.tensor([0.5, -2.0, 3.0], dtype=torch.float64)
    (layer(pu, pl, ld, pv) * weights).sum().backward()
    for b, sol in enumerate(layer.last_solutions):
        w = weights[b].item()
        assert pu.grad[b].numpy() == pytest.approx(w * sol.grad_price_upper)
        assert pl.grad[b].numpy() == pytest.approx(w * sol.grad_price_lower)
        assert ld.grad[b].numpy() == pytest.approx(w * sol.grad_load_kw)


def test_float32_and_unbatched_inputs(problem):
    upper, lower, load, pv = _box(problem, seed=3)
    layer = StorageExpansionLayer(problem)
    pu = torch.tensor(upper[0], dtype=torch.float32, requires_grad=True)
    pl = torch.tensor(lower[0], dtype=torch.float32)
    ld = torch.tensor(load[0], dtype=torch.float32, requires_grad=True)
    value = layer(pu, pl, ld, torch.tensor(pv))
    assert value.shape == () and value.dtype == torch.float32
    value.backward()
    assert pu.grad.dtype == torch.float32 and ld.grad.shape == (T, problem.n_sites)
    assert pl.grad is None
    with pytest.raises(ValueError, match="load_upper must have shape"):
        layer(pu[None], pl[None], ld[None, :, :3])


@pytest.mark.parametrize("kind", [ExecutorKind.INPROCESS, ExecutorKind.PROCESS])
def test_executor_solves_agree_with_sequential(problem, kind):
    upper, lower, load, pv = _box(problem, seed=4, batch=4)
    sequential = StorageExpansionLayer(problem)
    n_workers = 2 if kind is ExecutorKind.PROCESS else None
    with make_executor(kind, n_workers=n_workers) as ex:
        parallel = StorageExpansionLayer(problem, executor=ex)
        results = []
        for layer in (sequential, parallel):
            pu, pl, ld = _tensors(upper, lower, load)
            value = layer(pu, pl, ld, pv)
            value.sum().backward()
            results.append((value.detach().numpy(), pu.grad, pl.grad, ld.grad))
        # a second batch on the same (cached, warm) worker models
        again = parallel(*_tensors(upper[::-1].copy(), lower[::-1].copy(), load[::-1].copy()), pv)
    (v0, *g0), (v1, *g1) = results
    assert v1 == pytest.approx(v0, rel=1e-9)
    for a, b in zip(g0, g1, strict=True):
        assert b.numpy() == pytest.approx(a.numpy(), rel=1e-7, abs=1e-9)
    assert again.detach().numpy() == pytest.approx(v0[::-1], rel=1e-9)


@pytest.mark.parametrize("kind", [None, ExecutorKind.INPROCESS])
def test_infeasible_box_names_the_batch_item(ieee13, kind):
    cfg = StorageExpansionConfig(n_hours=2, voltage_limits=LimitMode.HARD, v_min=0.9, v_max=1.1)
    problem = StorageExpansionProblem(ieee13, cfg)
    load = np.stack([np.outer([1.0, 1.0], problem.nominal_load_kw)] * 2)
    load[1, 1] *= 3.0
    prices = torch.full((2, 2), 40.0, dtype=torch.float64)
    executor = None if kind is None else make_executor(kind)
    layer = StorageExpansionLayer(problem, executor=executor)
    with pytest.raises(InfeasibleModelError, match=r"batch item 1 of 2: .*hours \[1\]"):
        layer(prices, prices - 5, torch.tensor(load))
    if executor is not None:
        executor.close()


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # numpy-2 notes inside diffcp
@pytest.mark.skipif(
    not HAS_CVXPYLAYERS,
    reason="cvxpylayers/cvxpy/diffcp not installed (pip install cvxpy cvxpylayers)",
)
def test_agrees_with_cvxpylayers(ieee13):
    """The same LP in CVXPY, differentiated by cvxpylayers (Clarabel): values and gradients."""
    tau = 4
    problem = StorageExpansionProblem(ieee13, StorageExpansionConfig(n_hours=tau))
    rng = np.random.default_rng(7)
    b = 3
    upper = 30 + 40 * rng.random((b, tau))
    lower = upper - 15 * rng.random((b, tau))
    load = problem.nominal_load_kw * (0.6 + 0.6 * rng.random((b, tau, problem.n_sites)))
    pv = np.zeros((tau, problem.n_sites))
    pv[1] = 1.5 * problem.nominal_load_kw  # an export hour
    ours = StorageExpansionLayer(problem)
    reference = cvxpylayers_reference(problem, pv)
    grads = []
    values = []
    for fn in (lambda *a: ours(*a, pv), reference):
        pu, pl, ld = _tensors(upper, lower, load)
        value = fn(pu, pl, ld)
        value.sum().backward()
        values.append(value.detach().numpy())
        grads.append([pu.grad.numpy(), pl.grad.numpy(), ld.grad.numpy()])
    assert values[1] == pytest.approx(values[0], rel=1e-6)
    for name, g_ours, g_ref in zip(("upper", "lower", "load"), *grads, strict=True):
        rel = np.linalg.norm(g_ours - g_ref) / np.linalg.norm(g_ours)
        assert rel < 1e-3, f"{name}: relative difference {rel:.2e}"
