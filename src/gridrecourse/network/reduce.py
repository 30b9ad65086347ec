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
    Line,
    Load,
    PVSystem,
    ReductionReport,
    Root,
    Storage,
    Transformer,
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


def _merge_lines(lines: list[Line]) -> Line:
    """Parallel lines as one: admittances add (``Z = inv(Σ inv(Z_k))``), ratings add."""
    first = lines[0]
    y = sum(np.linalg.inv(ln.z_ohm) for ln in lines)
    return replace(
        first,
        z_ohm=np.linalg.inv(y),
        y_shunt_siemens=sum(ln.y_shunt_siemens for ln in lines),
        norm_amps=float(sum(ln.norm_amps for ln in lines)),
        emerg_amps=float(sum(ln.emerg_amps for ln in lines)),
    )


def _merge_transformers(group: list[Transformer]) -> Transformer:
    """Parallel two-winding transformers as one bank of the summed kVA.

    Each unit's series impedance ``z_k = (r1 + r2) + j x_HL`` (percent on its own kVA ``S_k``)
    is an admittance ``S_k / z_k`` on a common base; the bank's impedance on ``S = Σ S_k`` is
    ``S / Σ (S_k / z_k)``, its resistance split equally over the two windings.
    """
    first = group[0]
    s_k = np.array([x.windings[0].kva for x in group])
    z_k = np.array(
        [w0.r_pct + w1.r_pct + 1j * x.x_pct[0] for x in group for w0, w1 in [x.windings]]
    )
    s = float(s_k.sum())
    z = s / np.sum(s_k / z_k)
    windings = tuple(replace(w, kva=s, r_pct=float(z.real) / 2.0) for w in first.windings)
    return replace(first, windings=windings, x_pct=(float(z.imag),))


def merge_parallel_branches(feeder: Feeder) -> Feeder:
    """Merge parallel lines, transformers and closed switches into equivalents.

    Elements are parallel when they connect the same buses on the same phases (lines and
    switches in either direction; two-winding transformers with the same windings: bus, phases,
    connection, kV and tap). Real feeders have them (split line sections, two substation or step
    transformers side by side); a radial model needs one branch per bus pair. The kept element
    has the name of the first; regulators of a merged-away transformer are dropped when the
    kept one has a regulator on the same winding, else they point at the kept one.

    Returns
    -------
    Feeder
        Unchanged if nothing is parallel; else with a :class:`ReductionReport` naming the merged
        groups.
    """
    line_groups: dict[tuple, list[Line]] = {}
    for ln in feeder.lines:
        key = (ln.bus1, ln.bus2, ln.phases1, ln.phases2)
        rkey = (ln.bus2, ln.bus1, ln.phases2, ln.phases1)
        line_groups.setdefault(rkey if rkey in line_groups else key, []).append(ln)
    xf_groups: dict[tuple, list[Transformer]] = {}
    for xf in feeder.transformers:
        if len(xf.windings) != 2:
            xf_groups[("<single>", xf.name)] = [xf]
            continue
        key = tuple(
            (w.bus, w.phases, w.connection, round(w.kv, 9), round(w.tap, 9)) for w in xf.windings
        )
        xf_groups.setdefault(key, []).append(xf)
    sw_groups: dict[tuple, list] = {}
    for sw in feeder.switches:
        key = (sw.bus1, sw.bus2, sw.phases1, sw.phases2, sw.closed)
        rkey = (sw.bus2, sw.bus1, sw.phases2, sw.phases1, sw.closed)
        if not sw.closed:
            key = ("<open>", sw.name)
            rkey = key
        sw_groups.setdefault(rkey if rkey in sw_groups else key, []).append(sw)
    merged_lines = [g for g in line_groups.values() if len(g) > 1]
    merged_xf = [g for g in xf_groups.values() if len(g) > 1]
    merged_sw = [g for g in sw_groups.values() if len(g) > 1]
    if not (merged_lines or merged_xf or merged_sw):
        return feeder
    lines = tuple(_merge_lines(g) if len(g) > 1 else g[0] for g in line_groups.values())
    transformers = tuple(_merge_transformers(g) if len(g) > 1 else g[0] for g in xf_groups.values())
    switches = tuple(g[0] for g in sw_groups.values())
    kept_of = {x.name: g[0].name for g in merged_xf for x in g}
    regulators, seen = [], set()
    for reg in feeder.regulators:
        target = kept_of.get(reg.transformer, reg.transformer)
        if (target, reg.winding) in seen:
            continue
        seen.add((target, reg.winding))
        regulators.append(replace(reg, transformer=target))
    reduced = replace(
        feeder,
        lines=lines,
        transformers=transformers,
        switches=switches,
        regulators=tuple(regulators),
    )
    names = ["+".join(x.name for x in g) for g in (*merged_lines, *merged_xf, *merged_sw)]
    report = _report(
        f"merged parallel branches into equivalents: {len(merged_lines)} line group(s), "
        f"{len(merged_xf)} transformer group(s), {len(merged_sw)} closed-switch group(s) "
        f"(e.g. {names[:5]})",
        feeder,
        reduced,
    )
    return replace(reduced, reductions=(*feeder.reductions, report))


def cut_parallel_banks(feeder: Feeder, bank_power_kva: dict[str, float] | None = None) -> Feeder:
    """Feed every lower-voltage network from one transformer bank (parallel step banks).

    A *bank* is the set of transformers between one pair of buses. When two or more banks feed
    the same network below them (its buses joined by lines and switches, any state) from the
    same network above, the feeder is meshed through them. The bank carrying the most power in
    the source model's AC snapshot (``bank_power_kva``; else the largest kVA rating) is kept,
    the others are removed when the kept bank reaches every phase they reach (their power then
    flows through the kept bank). Banks on other phases are left alone (then the mesh is
    reported by the radiality check).

    Parameters
    ----------
    feeder : Feeder
    bank_power_kva : dict, optional
        ``{transformer name: |S| (kVA) at its first terminal}`` from an AC solution.

    Returns
    -------
    Feeder
        With a :class:`ReductionReport` naming the removed transformers; unchanged if none.
    """
    labels, index = _components_without_transformers(feeder)
    power = bank_power_kva or {}
    banks: dict[tuple[str, str], list[Transformer]] = {}
    for xf in feeder.transformers:
        if len(xf.windings) != 2:
            continue
        banks.setdefault((xf.windings[0].bus, xf.windings[1].bus), []).append(xf)
    by_component: dict[tuple[int, int], list[tuple[str, str]]] = {}
    for hv, lv in banks:
        key = (int(labels[index[hv]]), int(labels[index[lv]]))
        if key[0] != key[1]:
            by_component.setdefault(key, []).append((hv, lv))
    removed: list[str] = []
    for pairs in by_component.values():
        if len(pairs) < 2:
            continue

        def weight(pair: tuple[str, str]) -> tuple[float, float]:
            units = banks[pair]
            return (
                sum(power.get(x.name, 0.0) for x in units),
                sum(x.windings[0].kva for x in units),
            )

        keep = max(pairs, key=weight)
        kept_phases = {p for x in banks[keep] for p in x.windings[1].phases}
        for pair in pairs:
            if pair == keep:
                continue
            phases = {p for x in banks[pair] for p in x.windings[1].phases}
            if phases <= kept_phases:
                removed += [x.name for x in banks[pair]]
    if not removed:
        return feeder
    gone = set(removed)
    reduced = replace(
        feeder,
        transformers=tuple(x for x in feeder.transformers if x.name not in gone),
        regulators=tuple(r for r in feeder.regulators if r.transformer not in gone),
    )
    cut_kva = sum(power.get(n, 0.0) for n in removed)
    report = _report(
        f"cut {len(removed)} transformer(s) of banks in parallel with another bank feeding the "
        f"same network (AC snapshot power {cut_kva:.0f} kVA moved to the kept bank): "
        f"{removed[:10]}",
        feeder,
        reduced,
    )
    return replace(reduced, reductions=(*feeder.reductions, report))
