"""A trained ReLU network as MILP rows (paper B §III-E, eqs 31–35; METHODS §4).

The network ``y = W_L h_{L−1} + b_L``, ``h_l = max(0, ẑ_l)``, ``ẑ_l = W_l h_{l−1} + b_l``
(``h_0`` the input, eqs 31–33) is written over the columns of a :class:`LinearModel`. Every
hidden neuron gets bounds ``L ≤ ẑ ≤ U`` from interval bound propagation (IBP) over the input
box (:func:`interval_bounds`)::

    U ≤ 0          h = 0                       (stably inactive: no binary)
    L ≥ 0          h = ẑ                       (stably active: no binary)
    L < 0 < U      h ≥ ẑ,  h ≥ 0,  h ≤ ẑ − L (1 − σ),  h ≤ U σ,   σ ∈ {0, 1}      (eq 35)

With ``σ = 1`` the rows give ``h = ẑ`` (and ``ẑ ≥ 0``), with ``σ = 0`` they give ``h = 0``
(and ``ẑ ≤ 0``): the MILP is exact for any valid bounds. :attr:`BoundMode.BIG_M` writes the
textbook version with one uniform ``M`` (``L = −M``, ``U = M``, a binary for every neuron), the
baseline the IBP bounds are measured against.

:attr:`BoundMode.LP` tightens the IBP bounds by optimization-based bound tightening (the
"LP-based tightening" of paper B §III-E): layer by layer, ``min ẑ_i`` and ``max ẑ_i`` of every
unstable neuron over the LP relaxation of the model's own rows (the first-stage polytope rather
than the input box) with the earlier layers in their triangle relaxation
``h ≥ ẑ, h ≥ 0, h ≤ U (ẑ − L) / (U − L)`` (:func:`lp_tightened_bounds`). Every LP optimum
bounds ``ẑ_i`` over a superset of the MILP's feasible set, so the bounds stay valid for every
input the model's rows allow, not for the whole box.

Everything is vectorized per layer (one sparse block of rows per layer and row kind).
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

import numpy as np
import scipy.sparse as sp

from gridrecourse.errors import GridRecourseError, SolverError
from gridrecourse.solvers.highs import LinearModel, VariableBlock, WarmStartBudget
from gridrecourse.solvers.options import SolverOptions

__all__ = [
    "BoundMode",
    "LayerBounds",
    "ReluBlocks",
    "ReluNetwork",
    "ReluNetworkError",
    "TightenedBounds",
    "add_relu_network",
    "interval_bounds",
    "lp_tightened_bounds",
]


class ReluNetworkError(GridRecourseError, ValueError):
    """Inconsistent network weights, input map or bounds."""


class BoundMode(str, Enum):
    """Neuron bounds of the embedding."""

    #: interval bound propagation over the input box (stable neurons without binaries)
    IBP = "ibp"
    #: IBP, then LP-based tightening over the model's rows (:func:`lp_tightened_bounds`)
    LP = "lp"
    #: one uniform big-M for every neuron (a binary per neuron); the textbook baseline
    BIG_M = "big-m"


@dataclass(frozen=True, eq=False)
class ReluNetwork:
    """A fully connected ReLU network with a linear output layer (eqs 31–33).

    Attributes
    ----------
    weights : tuple of ndarray
        ``W_l`` of shape ``(n_l, n_{l−1})``; the last one maps to the output(s).
    biases : tuple of ndarray
        ``b_l`` of shape ``(n_l,)``.
    """

    weights: tuple[np.ndarray, ...]
    biases: tuple[np.ndarray, ...]

    def __post_init__(self) -> None:
        w = tuple(np.asarray(a, dtype=float) for a in self.weights)
        b = tuple(np.asarray(a, dtype=float).ravel() for a in self.biases)
        if not w or len(w) != len(b):
            raise ReluNetworkError("need one bias per weight matrix and at least one layer")
        for k, (wk, bk) in enumerate(zip(w, b, strict=True)):
            if wk.ndim != 2 or wk.shape[0] != bk.shape[0]:
                raise ReluNetworkError(f"layer {k}: W {wk.shape} and b {bk.shape} do not match")
            if k and wk.shape[1] != w[k - 1].shape[0]:
                raise ReluNetworkError(f"layer {k}: input {wk.shape[1]} != {w[k - 1].shape[0]}")
        object.__setattr__(self, "weights", w)
        object.__setattr__(self, "biases", b)

    @property
    def n_inputs(self) -> int:
        """Input width ``n_0``."""
        return self.weights[0].shape[1]

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Widths of the hidden (ReLU) layers."""
        return tuple(w.shape[0] for w in self.weights[:-1])

    def forward(self, inputs: np.ndarray) -> np.ndarray:
        """Outputs for a batch of inputs ``(B, n_0)`` → ``(B, n_out)`` (float64)."""
        h = np.atleast_2d(np.asarray(inputs, dtype=float))
        for w, b in zip(self.weights[:-1], self.biases[:-1], strict=True):
            h = np.maximum(h @ w.T + b, 0.0)
        return h @ self.weights[-1].T + self.biases[-1]

    def with_fixed_inputs(self, columns: np.ndarray, values: np.ndarray) -> ReluNetwork:
        """The network with inputs ``columns`` fixed at ``values`` folded into the first bias.

        Used for the scenario embedding ``e``: ``W_1 [x; e] + b_1 = W_1x x + (W_1e e + b_1)``.
        """
        cols = np.asarray(columns, dtype=int)
        keep = np.setdiff1d(np.arange(self.n_inputs), cols)
        w1 = self.weights[0]
        b1 = self.biases[0] + w1[:, cols] @ np.asarray(values, dtype=float)
        return ReluNetwork((w1[:, keep], *self.weights[1:]), (b1, *self.biases[1:]))


@dataclass(frozen=True, eq=False)
class LayerBounds:
    """Pre-activation bounds ``L_l ≤ ẑ_l ≤ U_l`` of every layer (the output layer last)."""

    lower: tuple[np.ndarray, ...]
    upper: tuple[np.ndarray, ...]

    def stable_counts(self) -> tuple[int, int, int]:
        """``(stably inactive, stably active, unstable)`` hidden neurons."""
        lo = np.concatenate(self.lower[:-1]) if len(self.lower) > 1 else np.zeros(0)
        hi = np.concatenate(self.upper[:-1]) if len(self.upper) > 1 else np.zeros(0)
        return int(np.sum(hi <= 0)), int(np.sum(lo >= 0)), int(np.sum((lo < 0) & (hi > 0)))


def interval_bounds(net: ReluNetwork, lb: np.ndarray, ub: np.ndarray) -> LayerBounds:
    """Interval bound propagation over the input box ``lb ≤ h_0 ≤ ub``.

    With ``W⁺ = max(W, 0)``, ``W⁻ = min(W, 0)``: ``U_l = W⁺ ū + W⁻ l̄ + b``,
    ``L_l = W⁺ l̄ + W⁻ ū + b``, and the next layer's box is ``[max(L, 0), max(U, 0)]``.
    Valid (every reachable ``ẑ`` lies inside), not tight.

    Parameters
    ----------
    net : ReluNetwork
    lb, ub : ndarray, shape (n_0,)
        Input box (finite).

    Returns
    -------
    LayerBounds
    """
    lo = np.asarray(lb, dtype=float).ravel()
    hi = np.asarray(ub, dtype=float).ravel()
    if lo.shape != (net.n_inputs,) or hi.shape != (net.n_inputs,):
        raise ReluNetworkError(f"input box must have {net.n_inputs} entries")
    if not (np.all(np.isfinite(lo)) and np.all(np.isfinite(hi)) and np.all(lo <= hi)):
        raise ReluNetworkError("input box must be finite with lb <= ub")
    lowers, uppers = [], []
    for k, (w, b) in enumerate(zip(net.weights, net.biases, strict=True)):
        wp, wn = np.maximum(w, 0.0), np.minimum(w, 0.0)
        z_lo = wp @ lo + wn @ hi + b
        z_hi = wp @ hi + wn @ lo + b
        lowers.append(z_lo)
        uppers.append(z_hi)
        if k < len(net.weights) - 1:
            lo, hi = np.maximum(z_lo, 0.0), np.maximum(z_hi, 0.0)
    return LayerBounds(tuple(lowers), tuple(uppers))


@dataclass(frozen=True, eq=False)
class TightenedBounds:
    """Outcome of :func:`lp_tightened_bounds`.

    Attributes
    ----------
    bounds : LayerBounds
        Valid for every input the model's rows allow.
    n_lps : int
        LPs solved.
    seconds : float
        Wall time of the tightening.
    complete : bool
        Every unstable neuron was tightened (False: the time limit stopped it; the neurons not
        reached keep their IBP bounds, propagated from the tightened layers).
    """

    bounds: LayerBounds
    n_lps: int
    seconds: float
    complete: bool


#: relative and absolute margin added to an LP optimum before it becomes a neuron bound
#: (HiGHS's optimum is exact to its feasibility tolerances, 1e-7)
_LP_BOUND_MARGIN = 1.0e-6


def lp_tightened_bounds(
    model: LinearModel,
    net: ReluNetwork,
    inputs: Sequence[tuple[VariableBlock, sp.spmatrix | np.ndarray]],
    input_lb: np.ndarray,
    input_ub: np.ndarray,
    *,
    input_offset: np.ndarray | None = None,
    time_limit: float | None = None,
    lp_time_limit: float = 2.0,
) -> TightenedBounds:
    """IBP bounds tightened by LP over the relaxation of ``model``'s rows (module docstring).

    Layer by layer, every neuron IBP leaves unstable (``L < 0 < U``) gets ``max ẑ_i`` (then,
    unless that shows it inactive, ``min ẑ_i``) over the LP relaxation of ``model`` (a
    :meth:`~gridrecourse.solvers.highs.LinearModel.relaxed_copy`; ``model`` is not changed)
    with the earlier layers in their triangle relaxation under the bounds already tightened.
    The LPs of one layer differ only in their objective and are re-solved warm. After each
    layer, IBP from its tightened box bounds the later layers (the intersection is kept).

    Parameters
    ----------
    model : LinearModel
        The rows the network's input columns obey (e.g. the first stage).
    net, inputs, input_lb, input_ub, input_offset
        As :func:`add_relu_network`; the box bounds IBP's start.
    time_limit : float, optional
        Wall seconds for the whole tightening; neurons not reached keep the IBP bounds.
    lp_time_limit : float
        Wall seconds of one LP (warm attempt and cold retry each); a bound whose LP is not
        solved within it is kept.

    Returns
    -------
    TightenedBounds
    """
    t0 = time.perf_counter()
    a0 = np.zeros(net.n_inputs) if input_offset is None else np.asarray(input_offset, float)
    box_lo = np.asarray(input_lb, dtype=float).ravel() + a0
    box_hi = np.asarray(input_ub, dtype=float).ravel() + a0
    ibp = interval_bounds(net, box_lo, box_hi)
    lowers, uppers = [a.copy() for a in ibp.lower], [a.copy() for a in ibp.upper]
    lp = model.relaxed_copy(f"{model.name}-neuron-bounds")
    terms = _first_layer_terms(net.weights[0], [(b, sp.csr_matrix(a)) for b, a in inputs])
    const = net.biases[0] + net.weights[0] @ a0
    deadline = math.inf if time_limit is None else t0 + float(time_limit)
    n_lps, complete = 0, True
    warm_budget = WarmStartBudget()
    for k in range(len(net.weights) - 1):
        lo, hi = lowers[k], uppers[k]
        n = lo.size
        z = lp.add_variables(f"z{k + 1}", n, lb=lo, ub=hi)
        lp.add_constraints(
            f"z{k + 1}_definition",
            [(z, sp.identity(n, format="csr"))] + [(blk, -m) for blk, m in terms],
            lb=const,
            ub=const,
        )
        for i in np.flatnonzero((lo < 0) & (hi > 0)):
            for sense in (-1.0, 1.0):  # max ẑ_i (as min −ẑ_i), then min ẑ_i
                left = deadline - time.perf_counter()
                if left <= 0:
                    complete = False
                    break
                cost = np.zeros(n)
                cost[i] = sense
                lp.set_cost(z, cost)
                try:  # warm from the previous LP's basis, bounded by the cold solves
                    options = SolverOptions(time_limit=min(left, lp_time_limit), threads=1)
                    value = warm_budget.solve(lp, options).dual_bound
                except SolverError:
                    value = math.nan  # keep the bound this LP would have tightened
                n_lps += 1
                if not math.isfinite(value):
                    continue
                margin = _LP_BOUND_MARGIN * (1.0 + abs(value))
                if sense < 0:
                    hi[i] = min(hi[i], -value + margin)
                else:
                    lo[i] = max(lo[i], value - margin)
                if hi[i] <= 0 or lo[i] >= 0:
                    break
            if not complete:
                break
        lp.set_cost(z, 0.0)
        lp.set_col_bounds(z, lo, hi)
        if k + 1 < len(net.weights):  # IBP from the tightened box, intersected
            rest = interval_bounds(
                ReluNetwork(net.weights[k + 1 :], net.biases[k + 1 :]),
                np.maximum(lo, 0.0),
                np.maximum(hi, 0.0),
            )
            for j, (r_lo, r_hi) in enumerate(zip(rest.lower, rest.upper, strict=True)):
                lowers[k + 1 + j] = np.maximum(lowers[k + 1 + j], r_lo)
                uppers[k + 1 + j] = np.minimum(uppers[k + 1 + j], r_hi)
        if not complete:
            break
        h = _add_triangle_relaxation(lp, z, lo, hi, f"h{k + 1}")
        terms = [(h, sp.csr_matrix(net.weights[k + 1]))]
        const = net.biases[k + 1]
    bounds = LayerBounds(tuple(lowers), tuple(uppers))
    return TightenedBounds(bounds, n_lps, time.perf_counter() - t0, complete)


def _add_triangle_relaxation(
    model: LinearModel, z: VariableBlock, lo: np.ndarray, hi: np.ndarray, name: str
) -> VariableBlock:
    """``h = max(0, z)`` relaxed to its convex hull over ``lo ≤ z ≤ hi``.

    ``h = z`` (``lo ≥ 0``), ``h = 0`` (``hi ≤ 0``), else the triangle
    ``h ≥ z, h ≥ 0, h ≤ hi (z − lo) / (hi − lo)``.
    """
    n = lo.size
    h = model.add_variables(name, n, lb=0.0, ub=np.maximum(hi, 0.0))
    eye = sp.identity(n, format="csr")
    on, unstable = np.flatnonzero(lo >= 0), np.flatnonzero((lo < 0) & (hi > 0))
    if on.size:
        sel = sp.csr_matrix(eye[on])
        model.add_constraints(f"{name}-active", [(h, sel), (z, -sel)], lb=0.0, ub=0.0)
    if unstable.size:
        sel = sp.csr_matrix(eye[unstable])
        slope = hi[unstable] / (hi[unstable] - lo[unstable])
        model.add_constraints(f"{name}-above", [(h, sel), (z, -sel)], lb=0.0)
        model.add_constraints(
            f"{name}-chord",
            [(h, sel), (z, -sp.diags(slope) @ sel)],
            ub=-slope * lo[unstable],
        )
    return h


@dataclass(frozen=True, eq=False)
class ReluBlocks:
    """Columns of an embedded network.

    Attributes
    ----------
    output : VariableBlock
        ``y`` (the network's output(s), free).
    hidden : tuple of VariableBlock
        ``h_l`` per hidden layer.
    active : tuple of VariableBlock or None
        ``σ_l`` per hidden layer (binaries of the unstable neurons; ``None`` when none).
    bounds : LayerBounds
        Bounds used (IBP or the uniform ``±M``).
    n_binaries : int
    unstable : tuple of ndarray
        Neuron indices of each hidden layer that carry a binary (the columns of ``active``).
    net : ReluNetwork
        The embedded network (with ``input_offset`` not folded in).
    offset : ndarray
        ``a_0``.
    tightening : TightenedBounds or None
        The LP-based tightening (:attr:`BoundMode.LP`; None otherwise).
    """

    output: VariableBlock
    hidden: tuple[VariableBlock, ...]
    active: tuple[VariableBlock | None, ...]
    bounds: LayerBounds
    n_binaries: int
    unstable: tuple[np.ndarray, ...] = ()
    net: ReluNetwork | None = None
    offset: np.ndarray | None = None
    tightening: TightenedBounds | None = None

    def start_values(self, inputs: np.ndarray) -> dict[VariableBlock, np.ndarray]:
        """Values of every embedding column at a network input (a MIP start).

        Parameters
        ----------
        inputs : ndarray, shape (n_0,)
            ``Σ_k A_k x_k`` at the start point (without ``a_0``).
        """
        net = self.net
        h = np.asarray(inputs, dtype=float).ravel() + self.offset
        values: dict[VariableBlock, np.ndarray] = {}
        for k, (w, b) in enumerate(zip(net.weights[:-1], net.biases[:-1], strict=True)):
            z = w @ h + b
            h = np.maximum(z, 0.0)
            values[self.hidden[k]] = h
            if self.active[k] is not None:
                values[self.active[k]] = (z[self.unstable[k]] > 0).astype(float)
        values[self.output] = net.weights[-1] @ h + net.biases[-1]
        return values


def _first_layer_terms(
    w1: np.ndarray, inputs: Sequence[tuple[VariableBlock, sp.spmatrix]]
) -> list[tuple[VariableBlock, sp.csr_matrix]]:
    """``W_1 A_k`` per input block (the network input is ``Σ_k A_k x_k + a_0``)."""
    terms = []
    for block, a in inputs:
        prod = sp.csr_matrix(w1 @ sp.csc_matrix(a).toarray()) if a.shape[0] else None
        if prod is None or prod.shape[1] != block.size:
            raise ReluNetworkError(f"input map of {block.name!r} has the wrong shape {a.shape}")
        terms.append((block, prod))
    return terms


def add_relu_network(
    model: LinearModel,
    net: ReluNetwork,
    inputs: Sequence[tuple[VariableBlock, sp.spmatrix | np.ndarray]],
    input_lb: np.ndarray,
    input_ub: np.ndarray,
    *,
    input_offset: np.ndarray | None = None,
    name: str = "nn",
    mode: BoundMode = BoundMode.IBP,
    big_m: float = 1.0e4,
    output_cost: float | np.ndarray = 0.0,
    tighten_time_limit: float | None = None,
) -> ReluBlocks:
    """Write ``y = net(Σ_k A_k x_k + a_0)`` into ``model`` (module docstring, eq 35).

    Parameters
    ----------
    model : LinearModel
    net : ReluNetwork
    inputs : sequence of (VariableBlock, matrix)
        The network input as a linear map of model columns: ``A_k`` of shape
        ``(n_0, block.size)``.
    input_lb, input_ub : ndarray, shape (n_0,)
        A box containing every input the model's other rows allow (IBP runs over it).
    input_offset : ndarray, shape (n_0,), optional
        ``a_0`` (default zero).
    name : str
        Prefix of the new blocks.
    mode : BoundMode
        IBP bounds (default), IBP tightened by LP over ``model``'s rows as they are when the
        network is added, or a uniform big-M.
    big_m : float
        ``M`` of :attr:`BoundMode.BIG_M` (must exceed every |ẑ| for exactness).
    output_cost : float or ndarray
        Objective coefficient(s) of ``y``.
    tighten_time_limit : float, optional
        Wall seconds of the LP tightening (:attr:`BoundMode.LP`; :func:`lp_tightened_bounds`).

    Returns
    -------
    ReluBlocks
    """
    mode = BoundMode(mode)
    n0 = net.n_inputs
    a0 = np.zeros(n0) if input_offset is None else np.asarray(input_offset, dtype=float).ravel()
    box_lo = np.asarray(input_lb, dtype=float).ravel() + a0
    box_hi = np.asarray(input_ub, dtype=float).ravel() + a0
    tightening = None
    if mode is BoundMode.IBP:
        bounds = interval_bounds(net, box_lo, box_hi)
    elif mode is BoundMode.LP:
        tightening = lp_tightened_bounds(
            model, net, inputs, input_lb, input_ub, input_offset=a0, time_limit=tighten_time_limit
        )
        bounds = tightening.bounds
    else:
        m = float(big_m)
        bounds = LayerBounds(
            tuple(np.full(w.shape[0], -m) for w in net.weights),
            tuple(np.full(w.shape[0], m) for w in net.weights),
        )
    # the previous layer's value as terms over model columns plus a constant
    prev_terms = _first_layer_terms(net.weights[0], [(b, sp.csr_matrix(a)) for b, a in inputs])
    prev_const = net.biases[0] + net.weights[0] @ a0
    hidden: list[VariableBlock] = []
    active: list[VariableBlock | None] = []
    unstable_idx: list[np.ndarray] = []
    n_bin = 0
    n_layers = len(net.weights)
    for k in range(n_layers - 1):
        lo, hi = bounds.lower[k], bounds.upper[k]
        n = lo.size
        if mode is not BoundMode.BIG_M:
            off = hi <= 0
            on = lo >= 0
        else:
            off = np.zeros(n, dtype=bool)
            on = np.zeros(n, dtype=bool)
        unstable = ~(off | on)
        unstable_idx.append(np.flatnonzero(unstable))
        h = model.add_variables(f"{name}-h{k + 1}", n, lb=0.0, ub=np.maximum(hi, 0.0))
        hidden.append(h)
        eye = sp.identity(n, format="csr")

        # ẑ = Σ terms + const;  rows "h − ẑ" over the chosen neurons
        def rows(mask: np.ndarray, eye=eye, h=h, prev_terms=prev_terms):
            sel = sp.csr_matrix(eye[np.flatnonzero(mask)])
            return [(h, sel)] + [(blk, -(sel @ mat)) for blk, mat in prev_terms]

        c = prev_const
        if on.any():
            model.add_constraints(f"{name}-active{k + 1}", rows(on), lb=c[on], ub=c[on])
        if unstable.any():
            idx = np.flatnonzero(unstable)
            n_u = idx.size
            sigma = model.add_variables(f"{name}-sigma{k + 1}", n_u, lb=0.0, ub=1.0, integer=True)
            n_bin += n_u
            active.append(sigma)
            model.add_constraints(f"{name}-above{k + 1}", rows(unstable), lb=c[idx])  # h ≥ ẑ
            # h − ẑ − L σ ≤ −L  (h ≤ ẑ − L(1 − σ))
            model.add_constraints(
                f"{name}-below{k + 1}",
                [*rows(unstable), (sigma, sp.diags(-lo[idx]).tocsr())],
                ub=c[idx] - lo[idx],
            )
            # h − U σ ≤ 0
            sel = sp.csr_matrix(eye[idx])
            model.add_constraints(
                f"{name}-upper{k + 1}", [(h, sel), (sigma, sp.diags(-hi[idx]).tocsr())], ub=0.0
            )
        else:
            active.append(None)
        prev_terms = [(h, sp.csr_matrix(net.weights[k + 1]))]
        prev_const = net.biases[k + 1]
    n_out = net.weights[-1].shape[0]
    y = model.add_variables(f"{name}-output", n_out, lb=-np.inf, ub=np.inf, cost=output_cost)
    model.add_constraints(
        f"{name}-output_row",
        [(y, sp.identity(n_out, format="csr"))] + [(b, -m) for b, m in prev_terms],
        lb=prev_const,
        ub=prev_const,
    )
    return ReluBlocks(
        y, tuple(hidden), tuple(active), bounds, n_bin, tuple(unstable_idx), net, a0, tightening
    )
