"""Documented reductions of large feeders (IEEE 8500 / 9500 style).

``fold_split_phase_secondaries``
    Every split-phase (center-tapped, three-winding, single-phase) service transformer is
    removed together with the secondary network behind it (triplex lines and 120/240 V buses,
    i.e. everything reachable from its secondary without crossing another transformer). The
    loads, PV, generators and storage of that secondary are moved, with their total P and Q, onto
    the transformer's primary bus and phase as wye elements. The service transformer's leakage
    and the triplex drops are not represented: voltages are then modeled on the primary only.

``root_at_substations``
    The IEEE 9500 feeds three substations through a meshed 69 kV loop. LinDist3Flow needs a
    radial network, so the subtransmission part is cut away and each substation transformer's
    secondary bus becomes a root with a given voltage (e.g. from an OpenDSS AC solution).
    A substation transformer is one with a winding at or above ``min_kv_ll`` and one below.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import scipy.sparse as sp
from scipy.sparse.csgraph import connected_components

from gridrecourse.errors import FeederInputError
from gridrecourse.network.components import (
    Connection,
    Feeder,
    Generator,
    Load,
    PVSystem,
    ReductionReport,
    Root,
    Storage,
)

DEFAULT_SUBTRANSMISSION_KV_LL = 35.0


def _components_without_transformers(feeder: Feeder) -> tuple[np.ndarray, dict[str, int]]:
    """Connected components of the bus graph over lines and switches (any state)."""
    index = {b.name: i for i, b in enumerate(feeder.buses)}
    pairs = [(index[e.bus1], index[e.bus2]) for e in (*feeder.lines, *feeder.switches)]
    n = len(feeder.buses)
    if pairs:
        u, v = np.array(pairs).T
    else:
        u = v = np.zeros(0, dtype=int)
    graph = sp.coo_matrix((np.ones(len(u)), (u, v)), shape=(n, n))
    _, labels = connected_components(graph, directed=False)
    return labels, index


def _report(
    description: str,
    before: Feeder,
    after: Feeder,
    folded: tuple[tuple[str, str, int], ...] = (),
) -> ReductionReport:
    return ReductionReport(
        description=description,
        buses_before=before.n_buses,
        buses_after=after.n_buses,
        nodes_before=before.n_nodes,
        nodes_after=after.n_nodes,
        branches_before=before.n_branches,
        branches_after=after.n_branches,
        folded_buses=folded,
    )


def _keep_buses(feeder: Feeder, keep: set[str], **changes) -> Feeder:
    """A copy of ``feeder`` restricted to ``keep`` buses (elements touching others dropped)."""

    def inside(*buses: str) -> bool:
        return all(b in keep for b in buses)

    return replace(
        feeder,
        buses=tuple(b for b in feeder.buses if b.name in keep),
        lines=tuple(x for x in feeder.lines if inside(x.bus1, x.bus2)),
        switches=tuple(x for x in feeder.switches if inside(x.bus1, x.bus2)),
        transformers=changes.pop(
            "transformers",
            tuple(x for x in feeder.transformers if inside(*(w.bus for w in x.windings))),
        ),
        capacitors=tuple(x for x in feeder.capacitors if inside(x.bus)),
        loads=changes.pop("loads", tuple(x for x in feeder.loads if inside(x.bus))),
        pv_systems=changes.pop("pv_systems", tuple(x for x in feeder.pv_systems if inside(x.bus))),
        generators=changes.pop("generators", tuple(x for x in feeder.generators if inside(x.bus))),
        storage=changes.pop("storage", tuple(x for x in feeder.storage if inside(x.bus))),
        **changes,
    )


def fold_split_phase_secondaries(feeder: Feeder) -> Feeder:
    """Fold split-phase service transformers and their secondaries into the primary.

    Parameters
    ----------
    feeder : Feeder
        A feeder with center-tapped service transformers (``Transformer.is_center_tapped``).

    Returns
    -------
    Feeder
        The reduced feeder, with a :class:`ReductionReport` appended to ``reductions``.
        Unchanged if it has no split-phase transformers.
    """
    center_tapped = [x for x in feeder.transformers if x.is_center_tapped]
    if not center_tapped:
        return feeder
    labels, index = _components_without_transformers(feeder)
    target_of_label: dict[int, tuple[str, int]] = {}
    for xf in center_tapped:
        primary = xf.windings[0]
        label = labels[index[xf.windings[1].bus]]
        if label == labels[index[primary.bus]]:
            raise FeederInputError(
                f"transformer {xf.name!r}: its secondary is connected to its primary through "
                "lines; cannot fold the split-phase secondary"
            )
        target_of_label[label] = (primary.bus, primary.phases[0])
    # Secondary components must hold no other transformer windings or roots.
    folded_labels = set(target_of_label)
    folded_xf = {x.name for x in center_tapped}
    for xf in feeder.transformers:
        if xf.name in folded_xf:
            continue
        for w in xf.windings:
            if labels[index[w.bus]] in folded_labels:
                raise FeederInputError(
                    f"transformer {xf.name!r} connects to a split-phase secondary; only plain "
                    "secondaries (triplex and loads) can be folded"
                )
    keep = {b.name for b in feeder.buses if labels[index[b.name]] not in folded_labels}

    def move(el):
        label = labels[index[el.bus]]
        if label not in folded_labels:
            return el
        bus, phase = target_of_label[label]
        kv = feeder.bus(bus).kv_base_ln
        return replace(el, bus=bus, phases=(phase,), connection=Connection.WYE, kv=kv)

    loads: tuple[Load, ...] = tuple(move(x) for x in feeder.loads)
    # Constant-power at the primary: the folded load keeps its P, Q and model.
    pv: tuple[PVSystem, ...] = tuple(move(x) for x in feeder.pv_systems)
    gens: tuple[Generator, ...] = tuple(move(x) for x in feeder.generators)
    storage: tuple[Storage, ...] = tuple(move(x) for x in feeder.storage)
    reduced = _keep_buses(
        feeder,
        keep,
        transformers=tuple(x for x in feeder.transformers if x.name not in folded_xf),
        loads=loads,
        pv_systems=pv,
        generators=gens,
        storage=storage,
    )
    report = _report(
        f"folded {len(center_tapped)} split-phase service transformers and their secondaries "
        "into the primary bus and phase",
        feeder,
        reduced,
        folded=tuple(
            (b.name, *target_of_label[labels[index[b.name]]])
            for b in feeder.buses
            if b.name not in keep
        ),
    )
    return replace(reduced, reductions=(*feeder.reductions, report))


def substation_transformers(
    feeder: Feeder, min_kv_ll: float = DEFAULT_SUBTRANSMISSION_KV_LL
) -> list[str]:
    """Names of transformers stepping down from ``>= min_kv_ll`` to below it."""
    return [
        x.name
        for x in feeder.transformers
        if max(w.kv for w in x.windings) >= min_kv_ll and min(w.kv for w in x.windings) < min_kv_ll
    ]


def root_at_substations(
    feeder: Feeder,
    v_pu: dict[str, tuple[float, ...]] | None = None,
    *,
    min_kv_ll: float = DEFAULT_SUBTRANSMISSION_KV_LL,
) -> Feeder:
    """Cut the subtransmission network and root the feeder at substation secondaries.

    Parameters
    ----------
    feeder : Feeder
    v_pu : dict, optional
        ``{secondary bus: per-phase voltage magnitude (p.u.)}``; default 1.0 on every phase.
    min_kv_ll : float
        Line-to-line kV from which a winding counts as subtransmission.

    Returns
    -------
    Feeder
        The radial distribution part with one :class:`Root` per substation.
    """
    names = substation_transformers(feeder, min_kv_ll)
    if not names:
        raise FeederInputError(
            f"feeder {feeder.name!r} has no transformer stepping down from {min_kv_ll} kV; "
            "nothing to root at"
        )
    v_pu = v_pu or {}
    xfs = [x for x in feeder.transformers if x.name in names]
    root_buses = [min(x.windings, key=lambda w: w.kv).bus for x in xfs]
    labels, index = _components_without_transformers(feeder)
    # Everything reachable from the new roots without crossing a substation transformer.
    others = [x for x in feeder.transformers if x.name not in names]
    keep_labels = {labels[index[b]] for b in root_buses}
    changed = True
    while changed:  # walk through distribution transformers (a few passes)
        changed = False
        for x in others:
            wl = {labels[index[w.bus]] for w in x.windings}
            if wl & keep_labels and not wl <= keep_labels:
                keep_labels |= wl
                changed = True
    keep = {b.name for b in feeder.buses if labels[index[b.name]] in keep_labels}
    roots = []
    for bus in root_buses:
        phases = feeder.bus(bus).phases
        vals = tuple(v_pu.get(bus, (1.0,) * len(phases)))
        roots.append(Root(bus=bus, v_pu=vals))
    reduced = _keep_buses(
        feeder,
        keep,
        transformers=tuple(x for x in others if all(w.bus in keep for w in x.windings)),
        roots=tuple(roots),
    )
    report = _report(
        f"rooted at substation secondaries {root_buses} (cut {len(names)} substation "
        f"transformers and the network at or above {min_kv_ll} kV)",
        feeder,
        reduced,
    )
    return replace(reduced, reductions=(*feeder.reductions, report))
