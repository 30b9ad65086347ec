"""Independent checks of a switch configuration chosen by a model (METHODS §1.3).

* :func:`check_radial_energized`: graph check on the engineering :class:`Feeder` (not on the
  :class:`~gridrecourse.network.math_model.MathFeeder` the model was built from): per phase, the
  closed lines, switches and transformer conductors form a forest in which every tree holds one
  source node, and every bus-phase is fed.
* :func:`ac_agreement`: applies the states in OpenDSS (``Open``/``Close`` of the switch lines on
  top of the feeder's master), solves the AC power flow and compares it with LinDist3Flow of the
  same configuration on the same injections
  (:func:`gridrecourse.evaluation.validation.validate_feeder`).
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import networkx as nx

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import Feeder
from gridrecourse.network.reduce import fold_split_phase_secondaries


@dataclass(frozen=True)
class GraphCheck:
    """Result of :func:`check_radial_energized`.

    Attributes
    ----------
    radial : bool
        No loop on any phase (a path between two source nodes counts as a loop).
    energized : bool
        Every bus-phase connected to a source.
    loop_edges : tuple of str
        Elements on a loop found (empty when radial).
    unfed_nodes : tuple of str
        ``bus.phase`` with no path to a source.
    """

    radial: bool
    energized: bool
    loop_edges: tuple[str, ...]
    unfed_nodes: tuple[str, ...]


def _phase_graph(feeder: Feeder, states: Mapping[str, bool]) -> nx.MultiGraph:
    g = nx.MultiGraph()
    closed = {s.name.lower(): s.closed for s in feeder.switches}
    closed.update({k.lower(): bool(v) for k, v in states.items()})
    for bus in feeder.buses:
        g.add_nodes_from(f"{bus.name}.{p}" for p in bus.phases)
    for el in feeder.lines:
        for p1, p2 in zip(el.phases1, el.phases2, strict=False):
            g.add_edge(f"{el.bus1}.{p1}", f"{el.bus2}.{p2}", name=f"Line.{el.name}")
    for sw in feeder.switches:
        if closed[sw.name.lower()] and sw.bus1 != sw.bus2:
            for p1, p2 in zip(sw.phases1, sw.phases2, strict=False):
                g.add_edge(f"{sw.bus1}.{p1}", f"{sw.bus2}.{p2}", name=f"Switch.{sw.name}")
    for xf in feeder.transformers:
        w1, w2 = xf.windings[0], xf.windings[-1]
        for p1, p2 in zip(w1.phases[: xf.n_phases], w2.phases[: xf.n_phases], strict=False):
            g.add_edge(f"{w1.bus}.{p1}", f"{w2.bus}.{p2}", name=f"Transformer.{xf.name}")
    for root in feeder.roots:
        phases = next(b.phases for b in feeder.buses if b.name == root.bus)
        for p in phases:
            g.add_edge("<source>", f"{root.bus}.{p}", name="<source>")
    return g


def check_radial_energized(feeder: Feeder, states: Mapping[str, bool]) -> GraphCheck:
    """Radiality and energization of ``feeder`` with switch ``states`` (others: normal).

    Nodes are bus-phases; edges are line and closed-switch conductors and transformer
    conductor pairs; every source node hangs off one super-source. The configuration is
    radial when this graph is a forest and energized when the super-source reaches every
    bus-phase.
    """
    feeder = fold_split_phase_secondaries(feeder)
    g = _phase_graph(feeder, states)
    loop: tuple[str, ...] = ()
    try:
        cycle = nx.find_cycle(g)
        loop = tuple(sorted({g.edges[e]["name"] for e in cycle}))
    except nx.NetworkXNoCycle:
        pass
    reached = nx.node_connected_component(g, "<source>") if "<source>" in g else set()
    unfed = tuple(sorted(n for n in g.nodes if n not in reached))
    return GraphCheck(not loop, not unfed, loop, unfed)


@dataclass(frozen=True)
class ACAgreement:
    """LinDist3Flow vs OpenDSS AC on one switch configuration.

    Attributes
    ----------
    max_abs_voltage_error_pu, max_abs_voltage_error_pu_loss_corrected : float
        ``max |V_lin − V_AC|`` over the compared nodes (lossless / loss-corrected).
    worst_node : str
    ac_converged : bool
    """

    max_abs_voltage_error_pu: float
    max_abs_voltage_error_pu_loss_corrected: float
    worst_node: str
    ac_converged: bool


def ac_agreement(feeder: Feeder, states: Mapping[str, bool]) -> ACAgreement:
    """Apply switch ``states`` in OpenDSS and compare its AC solution with LinDist3Flow.

    A script redirecting to the feeder's OpenDSS master opens (both terminals) or closes the
    switch lines, and :func:`~gridrecourse.evaluation.validation.validate_feeder` imports and
    solves it (OpenDSS's controls active) and compares the linear model of that configuration
    on the AC injections.

    Raises
    ------
    FeederInputError
        The feeder did not come from an OpenDSS master.
    """
    from gridrecourse.evaluation.validation import validate_feeder

    if feeder.source_kind != "opendss" or not feeder.source_path:
        raise FeederInputError(
            f"feeder {feeder.name!r}: the AC check of a switch configuration needs its OpenDSS "
            "master"
        )
    master = Path(feeder.source_path).resolve()
    lines = [f'Redirect "{master}"']
    for name, closed in states.items():
        if closed:
            lines += [f"Close Line.{name} term=1", f"Close Line.{name} term=2"]
        else:
            lines += [f"Open Line.{name} term=1", f"Open Line.{name} term=2"]
    with tempfile.TemporaryDirectory(prefix="gridrecourse-switches-") as folder:
        script = Path(folder) / "configuration.dss"
        script.write_text("\n".join(lines) + "\n")
        result = validate_feeder(script).result
    return ACAgreement(
        result.max_abs_voltage_error_pu,
        result.max_abs_voltage_error_pu_loss_corrected,
        result.worst_node,
        result.ac_converged,
    )
