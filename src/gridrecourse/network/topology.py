"""Radial-tree analysis of a feeder: orientation from the roots, loops, islands.

Branch elements that connect the same pair of buses (e.g. three single-phase regulators between
IEEE 13's buses 650 and RG60, or single-phase laterals sharing a bus pair) form one *branch
group*; a group is a loop only if two of its elements share a phase.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import breadth_first_order, connected_components

from gridrecourse.errors import IslandedBusError, MeshedNetworkError


@dataclass(frozen=True)
class BranchEdge:
    """One closed branch element between two buses (for topology only)."""

    name: str
    bus1: int
    bus2: int


@dataclass(frozen=True)
class TreeOrder:
    """Orientation of a radial forest.

    Attributes
    ----------
    order : ndarray of int
        Energized bus indices in breadth-first order from the roots (roots first).
    parent : ndarray of int, shape (n_buses,)
        Parent bus of each bus; ``-1`` for roots and de-energized buses.
    depth : ndarray of int, shape (n_buses,)
        Number of branches to the root; ``-1`` for de-energized buses.
    energized : ndarray of bool, shape (n_buses,)
        Buses with a path to a root.
    """

    order: np.ndarray
    parent: np.ndarray
    depth: np.ndarray
    energized: np.ndarray


def _loop_error(
    n_buses: int, edges: list[BranchEdge], bus_names: list[str], component_buses: np.ndarray
) -> MeshedNetworkError:
    graph = nx.MultiGraph()
    members = set(component_buses.tolist())
    for e in edges:
        if e.bus1 in members:
            graph.add_edge(e.bus1, e.bus2, key=e.name)
    cycle = nx.find_cycle(graph)
    names = [key for _, _, key in cycle]
    buses = [bus_names[u] for u, _, _ in cycle]
    switches = sorted(
        {part for key in names for part in key.split("+") if part.startswith("Switch.")}
    )
    if switches:
        advice = (
            f"opening any one of the switches on it makes it radial: {switches}; pass switch "
            "states (e.g. OperatingPoint(switches={...}))"
        )
    else:
        advice = (
            "no switch is on this loop: it cannot be made radial by switching; open a line "
            "in the source model (or make it a normally-open switch)"
        )
    return MeshedNetworkError(
        f"the network is meshed, but a radial network is required: closed branches "
        f"{names} form a loop through buses {buses}; {advice}",
        loop_branches=names,
    )


def accumulate_to_root(parent: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Sum of ``values`` along the path from every node up to its root (pointer jumping).

    Parameters
    ----------
    parent : ndarray of int
        Parent index of each node of a forest, ``-1`` at roots.
    values : ndarray
        Value of each node's edge to its parent (0 at roots).

    Returns
    -------
    ndarray
        Path sums, in O(log depth) vectorized passes.
    """
    total = np.asarray(values).copy()
    ancestor = parent.copy()
    while True:
        idx = np.flatnonzero(ancestor >= 0)
        if len(idx) == 0:
            return total
        up = ancestor[idx]
        total[idx] += total[up]
        ancestor[idx] = ancestor[up]


def tree_depth(parent: np.ndarray) -> np.ndarray:
    """Number of edges from every node of a forest to its root."""
    return accumulate_to_root(parent, (parent >= 0).astype(int))


def orient_radial(
    n_buses: int,
    edges: list[BranchEdge],
    roots: list[int],
    bus_names: list[str],
    required_buses: np.ndarray | None = None,
) -> TreeOrder:
    """Orient a radial network away from its roots.

    Parameters
    ----------
    n_buses : int
        Number of buses.
    edges : list of BranchEdge
        Closed branch *groups* (one edge per connected bus pair).
    roots : list of int
        Root (source) bus indices.
    bus_names : list of str
        For error messages.
    required_buses : ndarray of bool, optional
        Buses that must be energized (they carry loads or DER); an unreachable one raises.

    Raises
    ------
    MeshedNetworkError
        If a component reachable from a root has a loop (names the branches of one loop), or
        two roots are connected.
    IslandedBusError
        If a required bus has no path to a root.
    """
    if not edges:
        u = v = np.zeros(0, dtype=int)
    else:
        u = np.fromiter((e.bus1 for e in edges), dtype=int, count=len(edges))
        v = np.fromiter((e.bus2 for e in edges), dtype=int, count=len(edges))
    # Super-root n_buses joined to every root: one BFS orients the whole forest.
    super_root = n_buses
    roots_arr = np.asarray(roots, dtype=int)
    rows = np.concatenate([u, v, np.full(len(roots_arr), super_root), roots_arr])
    cols = np.concatenate([v, u, roots_arr, np.full(len(roots_arr), super_root)])
    graph = coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(n_buses + 1, n_buses + 1)).tocsr()

    _, labels = connected_components(graph, directed=False)
    root_label = labels[super_root]
    in_root_comp = labels[:n_buses] == root_label
    # Edges inside the energized component (each group counted once) vs. buses: a tree has
    # exactly (buses - 1) edges; with the super-root, that is n_energized + 1 nodes and
    # n_edges + n_roots edges.
    n_energized = int(in_root_comp.sum())
    n_edges_energized = int(np.sum(in_root_comp[u])) if len(u) else 0
    if n_edges_energized + len(roots_arr) != n_energized:
        raise _loop_error(
            n_buses + 1,
            [*edges, *(BranchEdge(f"<source {bus_names[r]}>", super_root, r) for r in roots)],
            [*bus_names, "<sources>"],
            np.flatnonzero(labels == root_label),
        )
    order, predecessors = breadth_first_order(graph, super_root, directed=False)
    order = order[1:]  # drop the super-root
    parent = np.full(n_buses, -1, dtype=int)
    parent[order] = predecessors[order]
    parent[parent == super_root] = -1
    depth = tree_depth(parent)
    depth[~in_root_comp] = -1
    energized = in_root_comp
    if required_buses is not None:
        stranded = np.flatnonzero(required_buses & ~energized)
        if len(stranded):
            names = [bus_names[i] for i in stranded]
            raise IslandedBusError(
                f"{len(names)} bus(es) with loads or generation have no path to a source: "
                f"{names[:20]}{' ...' if len(names) > 20 else ''}; check open switches, "
                f"disabled lines and bus names",
                buses=names,
            )
    return TreeOrder(order=order, parent=parent, depth=depth, energized=energized)


def check_feeder_elements(feeder, source: str = "") -> None:
    """Reject structurally broken feeders with one error naming every bad element.

    Checks: every bus has at least one phase; no branch (line, switch, transformer winding pair)
    connects a bus to itself; line lengths are finite and not negative (0 means unknown);
    branches and shunt elements (loads, PV, capacitors, generators, storage) attach only to
    existing buses and to phases those buses have.

    Parameters
    ----------
    feeder : Feeder
    source : str
        File name for the message.

    Raises
    ------
    FeederInputError
        Lists up to 20 problems, each naming the element, the field and what was expected.
    """
    from gridrecourse.errors import FeederInputError

    phases = {b.name: set(b.phases) for b in feeder.buses}
    problems: list[str] = [
        f"Bus.{b.name}: has no phases; expected at least one of nodes 1, 2, 3"
        for b in feeder.buses
        if not b.phases
    ]

    def attach(kind: str, name: str, bus: str, ph) -> None:
        if bus not in phases:
            problems.append(f"{kind}.{name}: bus {bus!r} does not exist")
            return
        missing = sorted(set(ph) - phases[bus])
        if missing:
            problems.append(
                f"{kind}.{name}: on phase(s) {missing} of bus {bus!r}, which has phases "
                f"{sorted(phases[bus])}"
            )

    for line in feeder.lines:
        if line.bus1 == line.bus2:
            problems.append(f"Line.{line.name}: connects bus {line.bus1!r} to itself")
        if not np.isfinite(line.length_km) or line.length_km < 0:
            problems.append(
                f"Line.{line.name}: length {line.length_km} km; expected a positive length"
            )
        attach("Line", line.name, line.bus1, line.phases1)
        attach("Line", line.name, line.bus2, line.phases2)
    for sw in feeder.switches:
        if sw.bus1 == sw.bus2:
            problems.append(f"Switch.{sw.name}: connects bus {sw.bus1!r} to itself")
    for xf in feeder.transformers:
        buses = [w.bus for w in xf.windings]
        if len(set(buses)) < min(len(buses), 2):
            problems.append(f"Transformer.{xf.name}: all windings on bus {buses[0]!r}")
    for kind, elements in (
        ("Load", feeder.loads),
        ("PVSystem", feeder.pv_systems),
        ("Capacitor", feeder.capacitors),
        ("Generator", feeder.generators),
        ("Storage", feeder.storage),
    ):
        for el in elements:
            attach(kind, el.name, el.bus, el.phases)
    if problems:
        where = f"{source}: " if source else ""
        more = f" (and {len(problems) - 20} more)" if len(problems) > 20 else ""
        raise FeederInputError(
            f"{where}feeder {feeder.name!r} has {len(problems)} invalid element(s): "
            + "; ".join(problems[:20])
            + more
        )
