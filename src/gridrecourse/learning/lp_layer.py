"""Differentiable storage-expansion LP: paper A's task loss as a torch layer (METHODS §5).

:class:`StorageExpansionLayer` maps a batch of boxes — upper and lower prices and upper loads —
to the optimal values ``V`` of paper A's eq 19 (:class:`~gridrecourse.problems.
storage_expansion.StorageExpansionProblem`), i.e. ``L_task`` of eq 25, and back-propagates
exact sensitivities.

Why no KKT differentiation is needed
------------------------------------
The uncertain parameters enter the LP only as objective coefficients (prices) and right-hand
sides (loads). For ``V(c, b) = min {cᵀz : A z = b, …}`` the envelope theorem gives
``∂V/∂c = z*`` and ``∂V/∂b = λ*`` (the row duals) wherever the solution is unique and
non-degenerate, so one LP solve gives the value *and* its gradient:

* ``∂V/∂ȳ_P,t = Δt P0⁺_t`` — the import of hour t if the upper-price epigraph row
  ``η_t ≥ ȳ_P,t P0_t`` is active (P0_t > 0), else 0;
* ``∂V/∂y̲_P,t = −Δt P0⁻_t`` — minus the export of hour t if the lower-price row is active
  (P0_t < 0), else 0;
* ``∂V/∂ȳ_D,t,s = Σ_r λ_r ∂b_r/∂ȳ_D,t,s`` — the duals of the active/reactive balance rows of
  hour t at the nodes of site s, weighted by the site's spread over its nodes (and its nominal
  power factor for the reactive rows).

Units: prices in currency/**MWh**, loads in **kW**, V in currency. Gradients are therefore in
MWh (price) and currency/kW (load). The inputs are converted to float64 NumPy for the solver;
gradients are returned in the dtype and device of the inputs.

Degenerate and non-differentiable points
----------------------------------------
``V`` is concave and piecewise linear in the prices and convex and piecewise linear in the
loads, so it is differentiable almost everywhere but not at kinks:

* **Ties between the two η rows** (``P0_t = 0`` at the optimum, e.g. PV exactly cancels the
  load or the battery holds the substation at zero): both epigraph rows ``η_t ≥ ȳ_P,t P0_t``
  and ``η_t ≥ y̲_P,t P0_t`` are active. The layer returns ``P0⁺_t = P0⁻_t = 0``, i.e. 0 for
  both price gradients of that hour. If ``P0_t = 0`` is the unique optimum this is the exact
  gradient; if the optimal face also holds solutions with ``P0_t ≠ 0`` (V has a kink there),
  the one-sided derivatives are the largest/smallest optimal ``P0⁺_t`` and ``−P0⁻_t`` and 0 is
  one supergradient. A degenerate box ``ȳ_P,t = y̲_P,t`` makes the split P0⁺/P0⁻ non-unique,
  but only ``P0⁺ − P0⁻`` enters the total price gradient ``∂V/∂ȳ + ∂V/∂y̲``.
* **Non-unique primal** (ties between hours with equal prices, a capacity exactly at the
  break-even cost): the price gradient is the basic optimal solution HiGHS returns — one
  supergradient of the concave ``V``; the directional derivatives differ by direction.
* **Degenerate primal** (non-unique duals): the load gradient is HiGHS's basic dual — one
  subgradient of the convex ``V``.

In all these cases the returned vector is a valid (super/sub)gradient, which is what first-order
training needs; finite differences agree only on non-degenerate instances.

Parallel solves
---------------
With an :class:`~gridrecourse.execution.Executor`, the B LPs of a batch are solved by
``executor.map`` with the problem built **once per worker** (``state_factory =
problem.factory``); each worker keeps its HiGHS model and basis across mini-batches, so every
solve is a warm start. Without an executor the batch is solved in the calling process on
``problem`` itself (also warm-started).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from gridrecourse.errors import InfeasibleModelError
from gridrecourse.execution import Executor, TaskFailedError
from gridrecourse.problems.storage_expansion import (
    ExpansionBox,
    StorageExpansionProblem,
    StorageExpansionSolution,
    solve_expansion_box,
)

__all__ = ["StorageExpansionLayer", "cvxpylayers_reference"]


def _numpy(t: torch.Tensor) -> np.ndarray:
    return t.detach().to("cpu", torch.float64).numpy()


class _StorageExpansionFunction(torch.autograd.Function):
    """Optimal values of a batch of LPs; backward by the envelope theorem."""

    @staticmethod
    def forward(ctx, price_upper, price_lower, load_upper, layer, pv_kw):  # type: ignore[override]
        solutions = layer.solve_batch(
            _numpy(price_upper),
            _numpy(price_lower),
            _numpy(load_upper),
            None if pv_kw is None else np.asarray(pv_kw, dtype=float),
        )
        layer.last_solutions = solutions
        grads = [
            np.stack([getattr(s, name) for s in solutions])
            for name in ("grad_price_upper", "grad_price_lower", "grad_load_kw")
        ]
        ctx.save_for_backward(
            *(
                torch.as_tensor(g, dtype=ref.dtype, device=ref.device)
                for g, ref in zip(grads, (price_upper, price_lower, load_upper), strict=True)
            )
        )
        values = np.array([s.objective for s in solutions])
        return torch.as_tensor(values, dtype=price_upper.dtype, device=price_upper.device)

    @staticmethod
    def backward(ctx, grad_output):  # type: ignore[override]
        g_pu, g_pl, g_load = ctx.saved_tensors
        go = grad_output
        return (
            go[:, None] * g_pu if ctx.needs_input_grad[0] else None,
            go[:, None] * g_pl if ctx.needs_input_grad[1] else None,
            go[:, None, None] * g_load if ctx.needs_input_grad[2] else None,
            None,
            None,
        )


class StorageExpansionLayer(torch.nn.Module):
    """Paper A's eq 19 as a differentiable layer: boxes in, optimal values out.

    Parameters
    ----------
    problem : StorageExpansionProblem
        The built LP (its ``load_sites`` fix the load columns, ``n_hours`` the horizon).
    executor : Executor, optional
        Solve each batch's LPs in parallel with per-worker models (warm-started across
        batches). ``None``: solve sequentially on ``problem``.

    Attributes
    ----------
    last_solutions : list of StorageExpansionSolution
        The solutions of the last forward pass (capacities, dispatch, gradients).

    Examples
    --------
    >>> layer = StorageExpansionLayer(problem)                       # doctest: +SKIP
    >>> v = layer(price_hi, price_lo, load_hi)                       # (B,) currency
    >>> v.mean().backward()                                          # exact LP sensitivities
    """

    def __init__(self, problem: StorageExpansionProblem, executor: Executor | None = None):
        super().__init__()
        self.problem = problem
        self.executor = executor
        self.last_solutions: list[StorageExpansionSolution] = []

    def solve_batch(
        self,
        price_upper: np.ndarray,
        price_lower: np.ndarray,
        load_upper_kw: np.ndarray,
        pv_kw: np.ndarray | None = None,
    ) -> list[StorageExpansionSolution]:
        """Solve B boxes (NumPy, shapes (B, τ), (B, τ), (B, τ, n_sites), PV optional).

        ``pv_kw`` may be ``(τ, n_sites)`` (shared by the batch) or ``(B, τ, n_sites)``.

        Raises
        ------
        InfeasibleModelError
            A box is infeasible under hard limits; the message starts with ``batch item i``
            and names the hours/buses (also when solved through an executor).
        """
        b = price_upper.shape[0]
        if pv_kw is not None and pv_kw.ndim == 2:
            pv_kw = np.broadcast_to(pv_kw, (b, *pv_kw.shape))
        boxes = [
            ExpansionBox(
                price_upper[i],
                price_lower[i],
                load_upper_kw[i],
                None if pv_kw is None else np.ascontiguousarray(pv_kw[i]),
            )
            for i in range(b)
        ]
        if self.executor is None:
            solutions = []
            for i, box in enumerate(boxes):
                try:
                    solutions.append(solve_expansion_box(self.problem, box))
                except InfeasibleModelError as exc:
                    raise InfeasibleModelError(f"batch item {i} of {b}: {exc}") from exc
            return solutions
        try:
            return self.executor.map(solve_expansion_box, boxes, state_factory=self.problem.factory)
        except TaskFailedError as exc:
            if isinstance(exc.__cause__, InfeasibleModelError):
                raise InfeasibleModelError(
                    f"batch item {exc.index} of {b}: {exc.__cause__}"
                ) from exc
            raise

    def forward(
        self,
        price_upper: torch.Tensor,
        price_lower: torch.Tensor,
        load_upper: torch.Tensor,
        pv_kw: torch.Tensor | np.ndarray | None = None,
    ) -> torch.Tensor:
        """Optimal values of eq 19 for a batch of boxes.

        Parameters
        ----------
        price_upper, price_lower : Tensor, shape (B, τ) or (τ,)
            ȳ_P ≥ y̲_P (currency/MWh).
        load_upper : Tensor, shape (B, τ, n_sites) or (τ, n_sites)
            ȳ_D (kW), columns in the order of ``problem.load_sites``.
        pv_kw : Tensor or ndarray, shape (B, τ, n_sites) or (τ, n_sites), optional
            PV availability (kW); not differentiated.

        Returns
        -------
        Tensor, shape (B,) (or a scalar for unbatched inputs)
            Optimal values (currency); differentiable in the three box tensors.
        """
        unbatched = price_upper.dim() == 1
        if unbatched:
            price_upper, price_lower = price_upper[None], price_lower[None]
            load_upper = load_upper[None]
        expected = (self.problem.n_hours, self.problem.n_sites)
        b = price_upper.shape[0]
        for name, t, shape in (
            ("price_upper", price_upper, (b, expected[0])),
            ("price_lower", price_lower, (b, expected[0])),
            ("load_upper", load_upper, (b, *expected)),
        ):
            if tuple(t.shape) != shape:
                raise ValueError(
                    f"StorageExpansionLayer: {name} must have shape {shape} (batch, τ"
                    + (", n_sites)" if len(shape) == 3 else ")")
                    + f", got {tuple(t.shape)}"
                )
        pv = None
        if pv_kw is not None:
            pv = _numpy(pv_kw) if isinstance(pv_kw, torch.Tensor) else np.asarray(pv_kw, float)
        values = _StorageExpansionFunction.apply(price_upper, price_lower, load_upper, self, pv)
        return values[0] if unbatched else values


def cvxpylayers_reference(
    problem: StorageExpansionProblem,
    pv_kw: np.ndarray | None = None,
    solve_method: str = "Clarabel",
) -> Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]:
    """The same LP written in CVXPY and differentiated by cvxpylayers (a cross-check).

    The LP comes from :meth:`StorageExpansionProblem.parametric_form`: prices are parameters
    of the objective, loads of the equality right-hand sides (DPP). The returned function maps
    ``(price_upper (B, τ), price_lower (B, τ), load_upper (B, τ, n_sites))`` to the optimal
    values (B,), differentiable through cvxpylayers' implicit differentiation of the conic
    solution map (``solve_method`` of diffcp, e.g. ``"Clarabel"`` or ``"SCS"``).

    Raises
    ------
    ImportError
        cvxpy or cvxpylayers is not installed (``pip install cvxpy cvxpylayers``).
    """
    import cvxpy as cp
    from cvxpylayers.torch import CvxpyLayer

    lp = problem.parametric_form(pv_kw)
    n_cols = lp.a.shape[1]
    tau, n_sites = problem.n_hours, problem.n_sites
    z = cp.Variable(n_cols)
    pu, pl = cp.Parameter(tau), cp.Parameter(tau)
    load = cp.Parameter(tau * n_sites)
    eq = np.isfinite(lp.row_lb) & (lp.row_lb == lp.row_ub)
    upper = ~eq & np.isfinite(lp.row_ub)
    lower = ~eq & np.isfinite(lp.row_lb)
    has_lb, has_ub = np.isfinite(lp.col_lb), np.isfinite(lp.col_ub)
    constraints = [lp.a[eq] @ z == lp.row_lb[eq] + lp.rhs_load[eq] @ load]
    if upper.any():
        constraints.append(lp.a[upper] @ z <= lp.row_ub[upper])
    if lower.any():
        constraints.append(lp.a[lower] @ z >= lp.row_lb[lower])
    constraints.append(z[np.flatnonzero(has_lb)] >= lp.col_lb[has_lb])
    if has_ub.any():
        constraints.append(z[np.flatnonzero(has_ub)] <= lp.col_ub[has_ub])
    objective = lp.cost @ z + pu @ (lp.cost_price_upper.T @ z) + pl @ (lp.cost_price_lower.T @ z)
    layer = CvxpyLayer(cp.Problem(cp.Minimize(objective), constraints), [pu, pl, load], [z])
    cost = torch.as_tensor(lp.cost)
    c_up = torch.as_tensor(lp.cost_price_upper.toarray())
    c_lo = torch.as_tensor(lp.cost_price_lower.toarray())

    def values(
        price_upper: torch.Tensor, price_lower: torch.Tensor, load_upper: torch.Tensor
    ) -> torch.Tensor:
        b = price_upper.shape[0]
        (zs,) = layer(
            price_upper,
            price_lower,
            load_upper.reshape(b, tau * n_sites),
            solver_args={"solve_method": solve_method},
        )
        return (
            zs @ cost
            + ((zs @ c_up) * price_upper).sum(dim=1)
            + ((zs @ c_lo) * price_lower).sum(dim=1)
        )

    return values
