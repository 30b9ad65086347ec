"""Switch states as decisions: big-M flows and drops, radiality, switching counts (METHODS §1.3).

Binary ``z_{k,t}`` = 1 if switch k is closed in period t, ganged over its phases (paper B
eqs 14–17). Every switch of a :class:`~gridrecourse.network.math_model.MathFeeder` built with
``keep_switches=True`` is either a *tree switch* (a branch of the model's spanning tree; its
flows are the ``branch-p``/``branch-q`` columns of its child nodes) or a *tie* (an extra edge,
whose flows are the ``tie-p``/``tie-q`` columns made by :func:`add_tie_flows` and entered as
node injections). Rows, for every switched edge-phase e of switch k and period t::

    |P_e|, |Q_e| ≤ M^flow_e z_{k,t}                                  (METHODS §1.3, eq 15 flows)
    tree switch:  |g_e| ≤ M^v_e (1 − z_{k,t})      g = branch-v_gap of the drop row (eq 15)
    tie:          |v_to − v_from + M_P P + M_Q Q| ≤ M^v_e (1 − z_{k,t})   (eq 15, tie drop)

with ``M_P = 2 Re(γ ∘ conj Z)``, ``M_Q = −2 Im(γ ∘ conj Z)`` of the tie
(:meth:`~gridrecourse.network.math_model.SwitchData.tie_drop_matrices`); a tie end at a root
node has the constant ``v = v_root²``.

Big-M from physical limits
--------------------------
* Flow: in a radial configuration the (lossless) flow of an edge-phase is the net injection of
  the nodes behind it, all in the edge's *component* (the connected part of the all-closed
  node graph once the root nodes are removed — one per phase on a feeder without
  phase-shifting transformers). So ``M^flow_e = Σ_{n ∈ comp(e)} |s_n|`` with ``|s_n|`` the
  bound of node n's injection (default: loads' |S| plus PV/generator/storage ratings spread by
  the element maps; reactive adds ``|b_n| v_max`` of capacitors). A switch rating replaces it
  when smaller and the caller declares ratings hard (``flow_limit_pu``).
* Voltage: with the switch open its flows are zero, so the drop row reduces to a difference
  of two voltages: ``M^v = max(v_hi,to − v_lo,from, v_hi,from − v_lo,to)`` (times ρ² for a
  transformer-ratio parent) from the finite bounds of ``bus-v`` (required).

Radiality and connectivity (our choice: single-commodity flow on the node graph)
-------------------------------------------------------------------------------
Paper B's eqs 14–16 (parent indicators ``β_ij + β_ji = z_ij``, one parent per bus, edge count
``N_bus − N_sub``) are written per bus; with ganged three-phase switches *and* single-phase
ties (IEEE 123's Sw8, 54.1–94.1) a bus-level tree does not guarantee that every *phase* of a
bus is fed, and parent indicators alone admit a cycle disconnected from the substation (every
bus on it has its one parent on the cycle). We therefore state radiality per phase, on the
node graph (nodes = bus-phases, edges = tree branch-phases and tie edge-phases), as a spanning
forest with one root node per tree, by a single-commodity fictitious flow (Lavorato et al.,
IEEE TPWRS 27(1), 2012):

    Σ_{e into n} f_{e,t} − Σ_{e out of n} f_{e,t} = 1         every fed non-root node n
    |f_{e,t}| ≤ K_c z_{k(e),t}  (switched),  |f_{e,t}| ≤ K_c  (fixed branches)
    Σ_{e ∈ c} z_{k(e),t} = |c| − #(non-switch edges of c)      every component c

``K_c = |c|``. Root nodes supply freely. The flow rows make every node reachable from a root
through closed edges; with exactly ``|c|`` closed edges on the ``|c|`` non-root nodes of each
component the closed edges form a forest in which every tree holds one root: radial and
connected, no disconnected cycles. The only binaries are the switch states ``z`` (no parent
indicators), which keeps IEEE 123 × 24 periods small (S·T binaries).

Switching counts (eq 17): ``s_{k,t} ≥ ±(z_{k,t} − z_{k,t−1})`` with ``z_{k,−1}`` the initial
state (default: the normal states), ``Σ_t s_{k,t} ≤ N_sw`` per switch and optionally
``Σ_{k,t} s_{k,t} ≤ N_total``; ``s`` is continuous (exact because z is binary) and priced at
the operation cost. Fixed states are bounds on z (a fully fixed schedule is the special case
with no free binary).

Before any row is built, :func:`add_switching` checks on the graph of the network with every
allowed switch closed that each load/DER node can be fed, and that the switches fixed closed do
not close a loop (:class:`UnfedBusError`, :class:`~gridrecourse.errors.MeshedNetworkError`).
Nodes that no allowed switch set can reach and that carry nothing are left unfed (their
switches are held open).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from gridrecourse.errors import IslandedBusError, MeshedNetworkError
from gridrecourse.formulation.injections import Injection
from gridrecourse.formulation.limits import DEFAULT_POLYGON_SIDES, LimitMode, polygon_rows
from gridrecourse.formulation.network import NetworkBlocks
from gridrecourse.formulation.periods import by_period, over_periods
from gridrecourse.network.math_model import MathFeeder, SwitchData
from gridrecourse.physics.lindistflow import LinDist3Flow
from gridrecourse.solvers.highs import ConstraintBlock, LinearModel, Solution, VariableBlock

FixedStates = Mapping[str, "bool | Sequence[bool]"]


class UnfedBusError(IslandedBusError):
    """No allowed switch configuration energizes some load/DER buses.

    Attributes
    ----------
    buses : list of str
        The buses that cannot be fed.
    switches : list of str
        The switches whose state decides it (those touching the unfed part).
    periods : list of int
        Periods in which it happens.
    """

    def __init__(self, message: str, buses: list[str], switches: list[str], periods: list[int]):
        super().__init__(message, buses)
        self.switches = switches
        self.periods = periods


@dataclass(frozen=True)
class SwitchingOptions:
    """Settings of switch reconfiguration in a problem (e.g. ``build_opf(..., switching=)``).

    Attributes
    ----------
    fixed : mapping, optional
        ``{switch: closed}`` or ``{switch: [closed per period]}``: states that are not decided.
    initial : mapping, optional
        ``{switch: closed}`` before the first period (default: the normal states).
    max_operations : int, optional
        ``N_sw``: operations per switch over the horizon (paper B eq 17; Table II: 8).
    max_total_operations : int, optional
        Limit on all switches' operations together.
    operation_cost : float
        Cost per operation (paper B ``C_sw``, Table II: 100 $/op).
    v_bounds_pu : (float, float)
        Hard outer bounds of every voltage magnitude (p.u.) that make the voltage big-M finite
        when the problem's voltage band is soft (**our choice** 0.8–1.2: far outside any
        feasible operating point of the linear model, so it cuts nothing off).
    rated_flows : bool or None
        Use switch ratings as flow limits (and big-M); ``None``: when thermal limits are hard.
    """

    fixed: FixedStates | None = None
    initial: Mapping[str, bool] | None = None
    max_operations: int | None = None
    max_total_operations: int | None = None
    operation_cost: float = 0.0
    v_bounds_pu: tuple[float, float] = (0.8, 1.2)
    rated_flows: bool | None = None


@dataclass(frozen=True, eq=False)
class TieFlows:
    """Tie flow columns (p.u., from → to, ``E_L`` per period) and their node injections."""

    p: VariableBlock
    q: VariableBlock
    injections: tuple[Injection, Injection]


@dataclass(frozen=True, eq=False)
class SwitchBlocks:
    """Handle of the blocks added by :func:`add_switching`.

    Attributes
    ----------
    switches : SwitchData
    n_periods : int
    z : VariableBlock
        ``switch-z``: binary state, S per period (period-major).
    operations : VariableBlock
        ``switch-operations``: ``s_{k,t} ≥ |z_{k,t} − z_{k,t−1}|``.
    connectivity_flow : VariableBlock
        ``switch-connectivity_flow`` over the node-graph edges (E tree + E_L ties).
    ties : TieFlows or None
    initial : ndarray of bool, (S,)
    flow_big_m, voltage_big_m : ndarray, (E_T + E_L, T)
        The big-M values of the tree-switch and tie edge-phases (rows: tree switches first).
    fed : ndarray of bool, (N, T)
        Nodes that the configuration must feed.
    """

    switches: SwitchData
    n_periods: int
    z: VariableBlock
    operations: VariableBlock
    connectivity_flow: VariableBlock
    ties: TieFlows | None
    initial: np.ndarray
    flow_big_m: np.ndarray
    voltage_big_m: np.ndarray
    fed: np.ndarray
    rows: dict[str, ConstraintBlock]

    def state_matrix(self, solution: Solution) -> np.ndarray:
        """Switch states ``(S, T)`` as 0/1 integers."""
        z = solution.value(self.z).reshape(self.n_periods, -1).T
        return np.rint(z).astype(int)

    def states(self, solution: Solution) -> dict[str, list[int]]:
        """``{switch name: [0/1 per period]}``."""
        z = self.state_matrix(solution)
        return {name: z[k].tolist() for k, name in enumerate(self.switches.names)}

    def n_operations(self, solution: Solution) -> int:
        """Number of state changes over the horizon (from the initial states)."""
        z = self.state_matrix(solution)
        full = np.column_stack([self.initial.astype(int), z])
        return int(np.abs(np.diff(full, axis=1)).sum())


def tree_switch_positions(physics: LinDist3Flow, switches: SwitchData) -> np.ndarray:
    """Branch-phase positions (order of ``physics.nonroot``) of the tree-switch edge-phases.

    Pass them as ``gapped`` to :func:`~gridrecourse.formulation.network.add_lindist3flow`.
    """
    pos = np.searchsorted(physics.nonroot, switches.tree_node)
    if len(pos) and not np.array_equal(physics.nonroot[pos], switches.tree_node):
        raise ValueError("tree-switch nodes must be non-root nodes of the feeder")
    return pos.astype(int)


def add_tie_flows(
    model: LinearModel, math: MathFeeder, switches: SwitchData, n_periods: int
) -> TieFlows:
    """Free tie flow columns ``tie-p``, ``tie-q`` and their injections at the tie ends.

    Create them before :func:`~gridrecourse.formulation.network.add_lindist3flow` and pass
    ``TieFlows.injections`` there: a tie flow leaves ``tie_from_node`` and enters
    ``tie_to_node`` (lossless; METHODS §1.3).
    """
    e_l = len(switches.tie_from_node)
    p = model.add_variables("tie-p", e_l * n_periods, lb=-np.inf)
    q = model.add_variables("tie-q", e_l * n_periods, lb=-np.inf)
    args = (switches.tie_from_node, switches.tie_to_node, math.n_nodes)
    inj = (Injection.flow(p, *args, reactive=False), Injection.flow(q, *args, reactive=True))
    return TieFlows(p, q, inj)


def add_tie_thermal_polygon(
    model: LinearModel,
    ties: TieFlows,
    switches: SwitchData,
    n_periods: int,
    mode: LimitMode,
    *,
    n_sides: int = DEFAULT_POLYGON_SIDES,
    penalty: float = 0.0,
) -> ConstraintBlock | None:
    """Thermal polygon of the tie flows at their switches' ratings (METHODS §1.4).

    The same rows as :func:`~gridrecourse.formulation.limits.add_thermal_polygon` on the
    ``tie-p``/``tie-q`` columns (a closed tie is a branch like any other; an open one carries
    nothing): ``cos θ_k P + sin θ_k Q ≤ cos(π/n) S (+ σ)``, with SOFT overload columns
    ``tie-overload`` priced at ``penalty``. Ties without a rating get no rows.
    """
    rating = switches.rating_pu[switches.tie_switch]
    rated = np.flatnonzero(np.isfinite(rating) & (rating > 0))
    if mode is LimitMode.OFF or not len(rated):
        return None
    cos, sin, inscribe = polygon_rows(n_sides)
    n_r, e_l, T = len(rated), len(rating), n_periods
    sel = _sel(np.arange(n_r), rated, (n_r, e_l))
    terms = [
        (ties.p, over_periods(sp.kron(sel, np.c_[cos], format="csr"), T)),
        (ties.q, over_periods(sp.kron(sel, np.c_[sin], format="csr"), T)),
    ]
    if mode is LimitMode.SOFT:
        over = model.add_variables("tie-overload", n_r * T, lb=0.0, cost=penalty)
        share = sp.kron(sp.identity(n_r), np.ones((n_sides, 1)), format="csr")
        terms.append((over, over_periods(-share, T)))
    ub = np.tile(np.repeat(rating[rated] * inscribe, n_sides), T)
    return model.add_constraints("tie-thermal", terms, ub=ub)


def node_injection_bound(
    math: MathFeeder,
    load_scale: float = 1.0,
    *,
    pv_kva: np.ndarray | None = None,
    pv_map: sp.spmatrix | None = None,
) -> np.ndarray:
    """Bound of each node's apparent-power injection |s_n| (p.u.): the flow big-M's source.

    ``load_scale · |S_load|`` of every load plus the kVA of every PV system (``pv_kva`` /
    ``pv_map`` override the feeder's, e.g. PV added by a problem), generator and storage unit,
    spread onto nodes by the absolute values of the element maps.
    """
    s = math.s_base_kva

    def spread(node_map: sp.spmatrix, kva: np.ndarray) -> np.ndarray:
        if node_map.shape[1] == 0:
            return np.zeros(math.n_nodes)
        return np.asarray(abs(sp.csr_matrix(node_map)) @ (np.abs(kva) / s)).ravel()

    load = np.hypot(math.load_kw, math.load_kvar) * float(load_scale)
    pv_m = math.pv_map if pv_map is None else pv_map
    pv_s = math.pv_kva if pv_kva is None else pv_kva
    return (
        spread(math.load_map, load)
        + spread(pv_m, pv_s)
        + spread(math.gen_map, np.hypot(math.gen_kw, math.gen_kvar))
        + spread(math.storage_map, np.hypot(math.storage_kw, math.storage_kvar))
    )


@dataclass(frozen=True, eq=False)
class _Graph:
    """The node graph: tree branch-phases (edge k feeds nonroot[k]) then tie edge-phases."""

    tail: np.ndarray  # from / parent node, (n_edges,)
    head: np.ndarray  # to / child node
    switch: np.ndarray  # switch index or -1
    component: np.ndarray  # of each node (-1 at roots), (N,)
    edge_component: np.ndarray  # (n_edges,), -1: both ends are roots
    n_components: int


def _node_graph(physics: LinDist3Flow, switches: SwitchData) -> _Graph:
    math = physics.math
    n = math.n_nodes
    sw_of_node = np.full(n, -1)
    sw_of_node[switches.tree_node] = switches.tree_switch
    tail = np.r_[math.parent[physics.nonroot], switches.tie_from_node].astype(int)
    head = np.r_[physics.nonroot, switches.tie_to_node].astype(int)
    switch = np.r_[sw_of_node[physics.nonroot], switches.tie_switch].astype(int)
    nonroot_edge = ~math.is_root[tail] & ~math.is_root[head]
    adj = sp.csr_matrix(
        (np.ones(nonroot_edge.sum()), (tail[nonroot_edge], head[nonroot_edge])), shape=(n, n)
    )
    _, labels = connected_components(adj, directed=False)
    nonroot = np.flatnonzero(~math.is_root)
    uniq, comp_nonroot = np.unique(labels[nonroot], return_inverse=True)
    component = np.full(n, -1)
    component[nonroot] = comp_nonroot
    edge_component = np.where(component[head] >= 0, component[head], component[tail])
    return _Graph(tail, head, switch, component, edge_component, len(uniq))


def _fixed_matrix(switches: SwitchData, fixed: FixedStates | None, n_periods: int) -> np.ndarray:
    """``(S, T)`` float array: 1 fixed closed, 0 fixed open, NaN free."""
    out = np.full((switches.n_switches, n_periods), np.nan)
    if not fixed:
        return out
    index = {name.lower(): k for k, name in enumerate(switches.names)}
    for name, value in fixed.items():
        k = index.get(str(name).lower())
        if k is None:
            raise ValueError(f"unknown switch {name!r} in fixed states; switches: {switches.names}")
        arr = np.broadcast_to(np.asarray(value, dtype=float), (n_periods,))
        out[k] = arr
    return out


def _reach(n_nodes: int, roots: np.ndarray, tail, head, closed: np.ndarray) -> np.ndarray:
    """Nodes connected to a root through the ``closed`` edges (super-root at index N)."""
    rows = np.r_[tail[closed], np.full(len(roots), n_nodes)]
    cols = np.r_[head[closed], roots]
    adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_nodes + 1, n_nodes + 1))
    _, labels = connected_components(adj, directed=False)
    return labels[:n_nodes] == labels[n_nodes]


def _has_cycle(n_nodes: int, roots: np.ndarray, tail, head, closed: np.ndarray) -> bool:
    """Whether the closed edges (plus a super-root joining the roots) contain a cycle."""
    rows = np.r_[tail[closed], np.full(len(roots), n_nodes)]
    cols = np.r_[head[closed], roots]
    adj = sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_nodes + 1, n_nodes + 1))
    n_comp, _ = connected_components(adj, directed=False)
    return len(rows) > n_nodes + 1 - n_comp


def check_switch_topology(
    math: MathFeeder, switches: SwitchData, fixed_states: np.ndarray
) -> np.ndarray:
    """Graph checks before solving; returns the nodes that must be fed, ``(N, T)``.

    With every switch closed that is not fixed open, every node carrying a load, PV, generator
    or storage element must be reachable from a root; and the switches fixed closed (with the
    non-switch branches) must not close a loop.

    Parameters
    ----------
    fixed_states : ndarray, (S, T)
        1 fixed closed, 0 fixed open, NaN free.

    Raises
    ------
    UnfedBusError
        Names the unfed buses, the switches touching the unfed part and the periods.
    MeshedNetworkError
        The fixed-closed switches close a loop (names them).
    """
    physics = LinDist3Flow(math)
    graph = _node_graph(physics, switches)
    n, roots = math.n_nodes, physics.root
    loaded = (
        np.asarray(abs(math.load_map).sum(axis=1)).ravel()
        + np.asarray(abs(math.pv_map).sum(axis=1)).ravel()
        + np.asarray(abs(math.gen_map).sum(axis=1)).ravel()
        + np.asarray(abs(math.storage_map).sum(axis=1)).ravel()
    ) > 0
    T = fixed_states.shape[1]
    fed = np.zeros((n, T), dtype=bool)
    patterns, inverse = np.unique(
        np.nan_to_num(fixed_states.T, nan=-1.0), axis=0, return_inverse=True
    )
    inverse = np.asarray(inverse).ravel()
    is_sw = graph.switch >= 0
    for j, pattern in enumerate(patterns):  # distinct fixed patterns (usually one)
        periods = np.flatnonzero(inverse == j)
        state = np.where(is_sw, pattern[np.maximum(graph.switch, 0)], 1.0)
        allowed = state != 0.0
        reached = _reach(n, roots, graph.tail, graph.head, allowed)
        unfed = ~reached & loaded
        if unfed.any():
            # switches with an end in the part no allowed configuration reaches
            edge_touch = is_sw & (~reached[graph.tail] | ~reached[graph.head])
            sw_names = sorted({switches.names[k] for k in graph.switch[edge_touch]})
            buses = sorted({math.bus_names[b] for b in math.node_bus[unfed]})
            raise UnfedBusError(
                f"no allowed switch configuration feeds buses {buses} in periods "
                f"{periods.tolist()}: with every switch closed that is not fixed open they have "
                f"no path to a source; switches involved (fixed open or on the cut-off part): "
                f"{sw_names}",
                buses,
                sw_names,
                periods.tolist(),
            )
        closed = state == 1.0
        if _has_cycle(n, roots, graph.tail, graph.head, closed):
            names = sorted({switches.names[k] for k in graph.switch[closed & is_sw]})
            raise MeshedNetworkError(
                f"the switches fixed closed in periods {periods.tolist()} close a loop with the "
                f"non-switch branches: {names}",
                [f"Switch.{s}" for s in names],
            )
        fed[:, periods] = reached[:, None]
    return fed


def _bounds_of_v(model: LinearModel, net: NetworkBlocks) -> tuple[np.ndarray, np.ndarray]:
    """Bounds of v at every node, ``(N, T)``; roots at ``v_root²``; requires finite bounds."""
    cols = model.columns(net.v)
    T, e = net.n_periods, net.n_branch_phases
    lo, hi = cols.lb.reshape(T, e).T, cols.ub.reshape(T, e).T
    if not (np.all(np.isfinite(hi)) and np.all(np.isfinite(lo))):
        raise ValueError(
            "add_switching needs finite bounds of bus-v for its voltage big-M: pass v_bounds to "
            "add_lindist3flow or add a HARD voltage band first (a soft band leaves bus-v "
            "unbounded)"
        )
    ph = net.physics
    n = ph.math.n_nodes
    v_lo, v_hi = np.empty((n, T)), np.empty((n, T))
    v_lo[ph.nonroot], v_hi[ph.nonroot] = lo, hi
    root_v2 = (ph.math.root_v_pu[ph.root] ** 2)[:, None]
    v_lo[ph.root], v_hi[ph.root] = root_v2, root_v2
    return v_lo, v_hi


def _sel(rows: np.ndarray, cols: np.ndarray, shape, values=None) -> sp.csr_matrix:
    vals = np.ones(len(rows)) if values is None else values
    return sp.csr_matrix((vals, (rows, cols)), shape=shape)


def add_switching(
    model: LinearModel,
    net: NetworkBlocks,
    switches: SwitchData,
    n_periods: int,
    *,
    ties: TieFlows | None = None,
    fixed: FixedStates | None = None,
    max_operations: int | np.ndarray | None = None,
    max_total_operations: int | None = None,
    initial: Mapping[str, bool] | None = None,
    operation_cost: float = 0.0,
    node_bound_pu: np.ndarray | None = None,
    node_bound_q_pu: np.ndarray | None = None,
    flow_limit_pu: np.ndarray | None = None,
) -> SwitchBlocks:
    """Switch states as decisions on a LinDist3Flow network (see the module docstring).

    Parameters
    ----------
    model : LinearModel
    net : NetworkBlocks
        Built with ``gapped=tree_switch_positions(physics, switches)``, the tie flows'
        injections and finite ``bus-v`` bounds.
    switches : SwitchData
        From ``build_math_feeder(..., keep_switches=True)``.
    n_periods : int
    ties : TieFlows, optional
        From :func:`add_tie_flows` (required when the feeder has ties).
    fixed : mapping, optional
        ``{switch: closed}`` or ``{switch: [closed per period]}``.
    max_operations : int or ndarray (S,), optional
        ``N_sw`` per switch over the horizon (eq 17).
    max_total_operations : int, optional
        Limit on the sum of all operations.
    initial : mapping, optional
        States before period 0 (default: ``switches.normal_closed``).
    operation_cost : float
        Cost per operation.
    node_bound_pu : ndarray, (N,) or (N, T), optional
        Bound of each node's active (and apparent) injection (p.u.); default
        :func:`node_injection_bound`.
    node_bound_q_pu : ndarray, (N,) or (N, T), optional
        Reactive bound (default: ``node_bound_pu`` plus capacitors' ``|b| v_max``).
    flow_limit_pu : ndarray, (S,), optional
        Per-phase flow limit of each switch (e.g. its rating when thermal limits are hard);
        the flow big-M is ``min(limit, component bound)``.

    Returns
    -------
    SwitchBlocks

    Raises
    ------
    UnfedBusError, MeshedNetworkError
        From :func:`check_switch_topology`.
    ValueError
        Missing ties, gapped positions not matching the tree switches, infinite ``bus-v``
        bounds, unknown switch names.
    """
    T, S = int(n_periods), switches.n_switches
    physics = net.physics
    math = physics.math
    e = physics.n_branch_phases
    pos_t = tree_switch_positions(physics, switches)
    if not np.array_equal(np.asarray(net.gapped), pos_t):
        raise ValueError(
            "the network's gapped positions must be tree_switch_positions(physics, switches)"
        )
    e_t, e_l = len(pos_t), len(switches.tie_from_node)
    if e_l and ties is None:
        raise ValueError("the feeder has ties: pass ties=add_tie_flows(...) (and their injections)")
    if net.n_periods != T:
        raise ValueError(f"network has {net.n_periods} periods, add_switching got {T}")

    # ---- states: fixed, initial, switches without edge-phases -------------------------------
    fixed_arr = _fixed_matrix(switches, fixed, T)
    init = switches.normal_closed.astype(bool).copy()
    if initial:
        index = {name.lower(): k for k, name in enumerate(switches.names)}
        for name, value in initial.items():
            if str(name).lower() not in index:
                raise ValueError(f"unknown switch {name!r} in initial states")
            init[index[str(name).lower()]] = bool(value)
    graph = _node_graph(physics, switches)
    has_edge = np.zeros(S, dtype=bool)
    has_edge[graph.switch[graph.switch >= 0]] = True
    root_root = np.zeros(S, dtype=bool)
    root_root[graph.switch[(graph.switch >= 0) & (graph.edge_component < 0)]] = True
    fixed_arr[~has_edge] = np.where(
        np.isnan(fixed_arr[~has_edge]), init[~has_edge, None], fixed_arr[~has_edge]
    )
    fixed_arr[root_root] = 0.0  # closing would join two roots
    fed = check_switch_topology(math, switches, fixed_arr)  # (N, T)
    # switches touching a node that cannot be fed stay open
    is_sw = graph.switch >= 0
    dead_edge = ~fed[graph.tail] | ~fed[graph.head]  # (n_edges, T)
    dead_sw = np.zeros((S, T), dtype=bool)
    rows_dead, t_dead = np.nonzero(dead_edge & is_sw[:, None])
    dead_sw[graph.switch[rows_dead], t_dead] = True
    fixed_arr[dead_sw] = 0.0
    lb = np.where(np.isnan(fixed_arr), 0.0, fixed_arr)
    ub = np.where(np.isnan(fixed_arr), 1.0, fixed_arr)
    z = model.add_variables("switch-z", S * T, lb=by_period(lb), ub=by_period(ub), integer=True)

    # ---- big-M -------------------------------------------------------------------------------
    v_lo, v_hi = _bounds_of_v(model, net)
    bound_p = node_injection_bound(math) if node_bound_pu is None else node_bound_pu
    bound_p = np.broadcast_to(
        np.asarray(bound_p, dtype=float).reshape(math.n_nodes, -1), (math.n_nodes, T)
    )
    if node_bound_q_pu is None:
        bound_q = bound_p + np.abs(math.cap_b_pu)[:, None] * v_hi
    else:
        bound_q = np.broadcast_to(
            np.asarray(node_bound_q_pu, dtype=float).reshape(math.n_nodes, -1), (math.n_nodes, T)
        )
    comp_of = graph.component
    nonroot = physics.nonroot
    agg = _sel(comp_of[nonroot], np.arange(len(nonroot)), (graph.n_components, len(nonroot)))
    comp_p, comp_q = agg @ bound_p[nonroot], agg @ bound_q[nonroot]  # (n_comp, T)
    sw_edges = np.r_[pos_t, e + np.arange(e_l)].astype(int)  # tree switch then tie edge-phases
    sw_of = graph.switch[sw_edges]
    comp_e = np.maximum(graph.edge_component[sw_edges], 0)
    m_p, m_q = comp_p[comp_e], comp_q[comp_e]  # (E_T + E_L, T)
    if flow_limit_pu is not None:
        limit = np.asarray(flow_limit_pu, dtype=float)[sw_of][:, None]
        use = np.isfinite(limit) & (limit > 0)
        m_p = np.where(use, np.minimum(m_p, limit), m_p)
        m_q = np.where(use, np.minimum(m_q, limit), m_q)
    tail, head = graph.tail[sw_edges], graph.head[sw_edges]
    rho2 = np.r_[math.ratio[switches.tree_node] ** 2, np.ones(e_l)][:, None]
    m_v = np.maximum.reduce(
        [v_hi[head] - rho2 * v_lo[tail], rho2 * v_hi[tail] - v_lo[head], np.zeros_like(v_hi[head])]
    )

    rows: dict[str, ConstraintBlock] = {}
    pos = np.full(math.n_nodes, -1)  # node → branch-phase position (−1 at roots)
    pos[nonroot] = np.arange(e)
    n_sw_e = e_t + e_l
    g_all = _sel(np.arange(n_sw_e), sw_of, (n_sw_e, S))  # edge-phase → its switch
    g_tree, g_tie = g_all[:e_t], g_all[e_t:]

    def big_m_rows(
        name: str,
        block: VariableBlock,
        select: sp.csr_matrix,
        g: sp.csr_matrix,
        m: np.ndarray,
        closed_side: bool,
    ) -> None:
        """``±select·x ≤ M z`` (closed_side) or ``±select·x ≤ M (1 − z)``, both signs."""
        m_flat = by_period(m)
        gz = sp.diags(m_flat) @ over_periods(g, T)
        sel = over_periods(select, T)
        if closed_side:
            terms = [(block, sp.vstack([sel, -sel])), (z, sp.vstack([-gz, -gz]))]
            ub = np.zeros(2 * len(m_flat))
        else:
            terms = [(block, sp.vstack([sel, -sel])), (z, sp.vstack([gz, gz]))]
            ub = np.r_[m_flat, m_flat]
        rows[name] = model.add_constraints(name, terms, ub=ub)

    if e_t:
        pick = _sel(np.arange(e_t), pos_t, (e_t, e))
        big_m_rows("switch-p_limit", net.p, pick, g_tree, m_p[:e_t], True)
        big_m_rows("switch-q_limit", net.q, pick, g_tree, m_q[:e_t], True)
        big_m_rows(
            "switch-v_gap", net.drop_gap, sp.identity(e_t, format="csr"), g_tree, m_v[:e_t], False
        )
    if e_l:
        eye = sp.identity(e_l, format="csr")
        big_m_rows("tie-p_limit", ties.p, eye, g_tie, m_p[e_t:], True)
        big_m_rows("tie-q_limit", ties.q, eye, g_tie, m_q[e_t:], True)
        # tie drop v_to − v_from + M_P P + M_Q Q within ±M(1 − z); root ends are constants
        tm_p, tm_q = switches.tie_drop_matrices()
        to_n, from_n = switches.tie_to_node, switches.tie_from_node
        sign_v = np.r_[np.ones(e_l), -np.ones(e_l)]
        ends = np.r_[to_n, from_n]
        line = np.r_[np.arange(e_l), np.arange(e_l)]
        free = pos[ends] >= 0
        dv = _sel(line[free], pos[ends[free]], (e_l, e), sign_v[free])
        const = np.zeros(e_l)
        np.add.at(const, line[~free], sign_v[~free] * math.root_v_pu[ends[~free]] ** 2)
        c_flat = np.tile(const, T)
        mv_flat = by_period(m_v[e_t:])
        gz = sp.diags(mv_flat) @ over_periods(g_tie, T)
        drop = [
            (net.v, over_periods(dv, T)),
            (ties.p, over_periods(tm_p, T)),
            (ties.q, over_periods(tm_q, T)),
        ]
        rows["tie-drop_upper"] = model.add_constraints(
            "tie-drop_upper", [*drop, (z, gz)], ub=mv_flat - c_flat
        )
        rows["tie-drop_lower"] = model.add_constraints(
            "tie-drop_lower", [*drop, (z, -gz)], lb=-mv_flat - c_flat
        )

    # ---- radiality and connectivity: single-commodity flow on the node graph ----------------
    n_edges = len(graph.tail)
    comp_size = np.bincount(comp_of[nonroot], minlength=graph.n_components).astype(float)
    k_e = comp_size[np.maximum(graph.edge_component, 0)]
    k_e = np.where(graph.edge_component >= 0, k_e, 0.0)
    cap = np.where(is_sw, np.inf, k_e)
    f = model.add_variables(
        "switch-connectivity_flow", n_edges * T, lb=-np.tile(cap, T), ub=np.tile(cap, T)
    )
    inc_rows = np.r_[pos[graph.head], pos[graph.tail]]
    inc_vals = np.r_[np.ones(n_edges), -np.ones(n_edges)]
    inc_cols = np.r_[np.arange(n_edges), np.arange(n_edges)]
    keep = inc_rows >= 0
    incidence = _sel(inc_rows[keep], inc_cols[keep], (e, n_edges), inc_vals[keep])
    demand = fed[nonroot].astype(float)  # (E, T)
    rows["switch-connectivity"] = model.add_constraints(
        "switch-connectivity",
        [(f, over_periods(incidence, T))],
        lb=by_period(demand),
        ub=by_period(demand),
    )
    sw_idx = np.flatnonzero(is_sw)
    n_se = len(sw_idx)
    pick_f = _sel(np.arange(n_se), sw_idx, (n_se, n_edges))
    g_f = _sel(np.arange(n_se), graph.switch[sw_idx], (n_se, S))
    big_m_rows(
        "switch-connectivity_capacity",
        f,
        pick_f,
        g_f,
        np.repeat(k_e[sw_idx][:, None], T, axis=1),
        True,
    )
    # edge count per component: Σ z over its switched edges = fed nodes − fixed branches
    valid = graph.edge_component >= 0
    count_sw = _sel(
        graph.edge_component[valid & is_sw], graph.switch[valid & is_sw], (graph.n_components, S)
    )
    fixed_edges = valid & ~is_sw
    fed_nodes = agg @ fed[nonroot].astype(float)  # (n_comp, T)
    fixed_fed = _sel(
        graph.edge_component[fixed_edges],
        np.flatnonzero(fixed_edges),
        (graph.n_components, n_edges),
    ) @ (fed[graph.head] & fed[graph.tail]).astype(float)
    rhs = fed_nodes - fixed_fed
    rows["switch-radiality"] = model.add_constraints(
        "switch-radiality", [(z, over_periods(count_sw, T))], lb=by_period(rhs), ub=by_period(rhs)
    )

    # ---- switching counts (eq 17) -----------------------------------------------------------
    ops = model.add_variables("switch-operations", S * T, lb=0.0, cost=operation_cost)
    diff = sp.identity(S * T, format="csr") - sp.kron(
        sp.eye(T, k=-1, format="csr"), sp.identity(S), format="csr"
    )
    first = np.r_[init.astype(float), np.zeros(S * (T - 1))]
    eye_st = sp.identity(S * T, format="csr")
    rows["switch-operations_up"] = model.add_constraints(
        "switch-operations_up", [(ops, eye_st), (z, -diff)], lb=-first
    )
    rows["switch-operations_down"] = model.add_constraints(
        "switch-operations_down", [(ops, eye_st), (z, diff)], lb=first
    )
    if max_operations is not None:
        limit = np.broadcast_to(np.asarray(max_operations, dtype=float), (S,))
        rows["switch-operations_limit"] = model.add_constraints(
            "switch-operations_limit",
            [(ops, sp.kron(np.ones((1, T)), sp.identity(S), format="csr"))],
            ub=limit,
        )
    if max_total_operations is not None:
        rows["switch-operations_total"] = model.add_constraints(
            "switch-operations_total",
            [(ops, np.ones((1, S * T)))],
            ub=float(max_total_operations),
        )
    return SwitchBlocks(
        switches=switches,
        n_periods=T,
        z=z,
        operations=ops,
        connectivity_flow=f,
        ties=ties,
        initial=init,
        flow_big_m=np.maximum(m_p, m_q),
        voltage_big_m=m_v,
        fed=fed,
        rows=rows,
    )
