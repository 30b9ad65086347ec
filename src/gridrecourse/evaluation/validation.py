"""Validate LinDist3Flow against OpenDSS's AC power flow on the same operating point.

The AC snapshot is OpenDSS's own controlled solution (regulator taps and capacitor states as
OpenDSS settled them). The linear model gets exactly the same nodal injections that OpenDSS
solved for (per conductor of every load, PV, generator and storage element, so voltage-dependent
load models are evaluated at the AC voltages) and the same root voltages. The remaining error is
the physics approximation itself: no losses, no second-order drop, balanced angles.

The loss-corrected figures are the validation's second-order correction
(:meth:`LinDist3Flow.solve` with :attr:`PhaseAngles.OPERATING_POINT`, ``SECOND_ORDER_ITERATIONS``
passes): series losses, ``|Z I|²`` and the drop at the phase angles of the operating point,
which the model sweeps from its own flows (never from the AC solution it is compared with).
What is left is the element modeling (impedances, transformer connections, injections). The
optimization models' loss correction at balanced angles (:attr:`PhaseAngles.NOMINAL`, 3 passes)
is reported next to it (``*_loss_corrected_nominal_angles``).

Nodes behind an ungrounded (delta) winding have no defined node-to-ground voltage; they are
compared on ``|V_LL|/√3``. Folded split-phase secondaries (8500/9500) are compared on the
primary only; their AC injections are moved to the primary node they were folded into.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import opendssdirect as dss
import pandas as pd

from gridrecourse.errors import MeshedNetworkError
from gridrecourse.evaluation.ac_check import ACSnapshot, ensure_compiled, read_snapshot
from gridrecourse.network.components import Feeder
from gridrecourse.network.io_opendss import compile_opendss
from gridrecourse.network.loading import FeederSpec, resolve_feeder_spec
from gridrecourse.network.math_model import _NOMINAL_ANGLE, MathFeeder, build_math_feeder
from gridrecourse.network.reduce import (
    fold_split_phase_secondaries,
    root_at_substations,
    substation_transformers,
)
from gridrecourse.physics.lindistflow import LinDist3Flow, PhaseAngles, PowerFlowSolution

#: Fixed-point passes of the validation's correction at the operating point's angles.
SECOND_ORDER_ITERATIONS = 8
#: Passes of the optimization models' loss correction at balanced angles (reported beside it).
NOMINAL_ANGLE_ITERATIONS = 3


@dataclass(frozen=True)
class ValidationResult:
    """Accuracy of LinDist3Flow against OpenDSS (keys of ``validate --json``).

    Voltage errors are ``max/mean |V_lin − V_AC|`` in p.u. over all compared nodes; the
    substation error is ``100 (P_lin − P_AC) / P_AC``. ``*_loss_corrected`` fields use the
    second-order correction at the operating point's angles (module docstring);
    ``*_loss_corrected_nominal_angles`` the optimization models' correction at balanced angles.
    """

    feeder: str
    n_buses: int
    n_nodes: int
    n_branches: int
    n_compared_nodes: int
    max_abs_voltage_error_pu: float
    mean_abs_voltage_error_pu: float
    worst_node: str
    substation_p_error_pct: float
    substation_q_error_pct: float
    max_abs_voltage_error_pu_loss_corrected: float
    mean_abs_voltage_error_pu_loss_corrected: float
    substation_p_error_pct_loss_corrected: float
    max_abs_voltage_error_pu_loss_corrected_nominal_angles: float
    ac_substation_kw: float
    build_seconds: float
    solve_seconds: float
    ac_converged: bool
    reductions: tuple[str, ...]


@dataclass(frozen=True, eq=False)
class ValidationRun:
    """A validation result with its per-node table and the models behind it."""

    result: ValidationResult
    table: pd.DataFrame
    feeder: Feeder
    math: MathFeeder


def prepare_for_linear_model(feeder: Feeder, snapshot: ACSnapshot | None = None) -> Feeder:
    """Apply the documented reductions a feeder needs before LinDist3Flow.

    Folds split-phase secondaries, and if the network is meshed above the distribution level
    (IEEE 9500's 69 kV loop) roots it at the substation secondaries with the snapshot's
    voltages there (1.0 p.u. without a snapshot).
    """
    feeder = fold_split_phase_secondaries(feeder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            build_math_feeder(feeder)
        return feeder
    except MeshedNetworkError:
        if not substation_transformers(feeder):
            raise
    v_pu = None
    if snapshot is not None:
        idx = snapshot.index()
        v_pu = {}
        for b in feeder.buses:
            keys = [f"{b.name}.{p}".lower() for p in b.phases]
            if all(k in idx for k in keys):
                v_pu[b.name] = tuple(float(snapshot.v_pu[idx[k]]) for k in keys)
    return root_at_substations(feeder, v_pu)


def _map_injections(
    snapshot: ACSnapshot, original: Feeder, feeder: Feeder, math: MathFeeder
) -> np.ndarray:
    """AC nodal injections (complex p.u.) on the math model's nodes.

    For a folded split-phase secondary, the injection is the AC power entering its service
    transformer's primary terminal, so the transformer and triplex losses the primary carries
    are included.
    """
    node_of = {name.lower(): i for name, i in math.node_index().items()}  # OpenDSS: no case
    folded = {bus.lower() for r in feeder.reductions for bus, _, _ in r.folded_buses}
    s = np.zeros(math.n_nodes, dtype=complex)
    values = snapshot.injection_kw + 1j * snapshot.injection_kvar
    targets = np.array([node_of.get(name, -1) for name in snapshot.node_names])
    ok = targets >= 0
    np.add.at(s, targets[ok], values[ok])
    if folded:
        for xf in original.transformers:
            if not xf.is_center_tapped or xf.windings[1].bus.lower() not in folded:
                continue
            primary = xf.windings[0]
            dss.Circuit.SetActiveElement(f"Transformer.{xf.name}")
            powers = np.asarray(dss.CktElement.Powers(), dtype=float)
            n_cond = dss.CktElement.NumConductors()
            terminal = powers[: 2 * n_cond]
            node = node_of.get(f"{primary.bus}.{primary.phases[0]}".lower(), -1)
            if node >= 0:
                s[node] += terminal[0::2].sum() + 1j * terminal[1::2].sum()
    return _to_pair_powers(s, snapshot, math) / math.s_base_kva


def _to_pair_powers(s: np.ndarray, snapshot: ACSnapshot, math: MathFeeder) -> np.ndarray:
    """Node powers of pair-fed 3-wire buses in the model's pair semantics.

    OpenDSS reports ``S_k = V_k I_k*`` per conductor; a delta-fed node x of the model stands
    for the pair ``V'_x = (V_x − V_{x+1})/√3``. With ``V' = A V`` and ``I = Aᵀ I'`` (the zero-sum
    ``I'`` of the line currents), ``S'_x = V'_x I'_x*``; the total is unchanged.
    """
    delta = np.flatnonzero(_pair_mask(math))
    if len(delta) == 0:
        return s
    idx = snapshot.index()
    out = s.copy()
    a = np.array([[1.0, -1.0, 0.0], [0.0, 1.0, -1.0], [-1.0, 0.0, 1.0]]) / np.sqrt(3.0)
    pinv_at = np.linalg.pinv(a.T)
    for b in np.unique(math.node_bus[delta]):
        nodes = np.flatnonzero((math.node_bus == b) & _pair_mask(math))
        if len(nodes) == 2:
            _open_delta_powers(s, out, snapshot, math, nodes, a, pinv_at)
            continue
        if sorted(math.node_phase[nodes].tolist()) != [1, 2, 3]:
            continue
        nodes = nodes[np.argsort(math.node_phase[nodes])]
        keys = [math.node_names[n].lower() for n in nodes]
        if not all(k in idx for k in keys):
            continue
        v = snapshot.v_phasor_pu[[idx[k] for k in keys]]
        if np.any(np.abs(v) == 0):
            continue
        current = np.conj(s[nodes] / v)
        out[nodes] = (a @ v) * np.conj(pinv_at @ current)
    return out


def _pair_mask(math: MathFeeder) -> np.ndarray:
    pair = getattr(math, "pair_fed", None)
    return np.zeros(math.n_nodes, dtype=bool) if pair is None else np.asarray(pair, dtype=bool)


def _ll_equivalent(
    v: np.ndarray, math: MathFeeder, ac: bool, angle: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """|V_x − V_y|/√3 for delta-fed (not pair-fed) nodes whose next phase is on the bus.

    ``v`` is the AC phasor (``ac``) or the model's magnitude, at the model's angles ``angle``
    (rad, per node) or the balanced ones.
    """
    idx = math.node_index()
    nodes, partners = [], []
    for n in np.flatnonzero(math.delta_fed & ~_pair_mask(math)):
        bus, ph = math.bus_names[math.node_bus[n]], int(math.node_phase[n])
        partner = idx.get(f"{bus}.{ph % 3 + 1}")
        if partner is not None:
            nodes.append(n)
            partners.append(partner)
    nodes_a, partners_a = np.asarray(nodes, dtype=int), np.asarray(partners, dtype=int)
    if ac:
        out = np.abs(v[nodes_a] - v[partners_a]) / np.sqrt(3.0)
    else:
        ang = (
            np.array([_NOMINAL_ANGLE[int(p)] for p in math.node_phase]) if angle is None else angle
        )
        ph = v * np.exp(1j * ang)
        out = np.abs(ph[nodes_a] - ph[partners_a]) / np.sqrt(3.0)
    return nodes_a, out


def ac_base_scale(math: MathFeeder) -> np.ndarray:
    """Factor taking OpenDSS's per-unit node voltages to the model's base, per model node.

    1 except where the importer corrected a voltage base OpenDSS chose wrongly (floating
    secondaries): there it is ``OpenDSS base / model base``. Reads the engine's bus bases.
    """
    scale = np.ones(math.n_nodes)
    cache: dict[int, float] = {}
    for n, b in enumerate(math.node_bus):
        if b not in cache:
            dss.Circuit.SetActiveBus(math.bus_names[b])
            base = float(dss.Bus.kVBase())
            model = float(math.kv_base_ln[n])
            cache[b] = base / model if base > 0 and model > 0 else 1.0
        scale[n] = cache[b]
    return scale


def _open_delta_powers(
    s: np.ndarray,
    out: np.ndarray,
    snapshot: ACSnapshot,
    math: MathFeeder,
    nodes: np.ndarray,
    a: np.ndarray,
    pinv_at: np.ndarray,
) -> None:
    """Winding powers of an open-delta bus (pairs a, b present, pair m missing), in place.

    The conductor powers of all three AC nodes give the pair powers ``S'``; the missing pair's
    current flows through both windings, so node a gets ``S'_a − S'_m V'_a/V'_m`` and node b
    ``S'_b − S'_m V'_b/V'_m`` (the total is unchanged).
    """
    phases = sorted(int(p) for p in math.node_phase[nodes])
    first = phases[0] if phases[1] == phases[0] % 3 + 1 else phases[1]
    pa, pb = first, first % 3 + 1
    pm = pb % 3 + 1
    if sorted((pa, pb)) != phases:
        return
    bus = math.bus_names[math.node_bus[nodes[0]]].lower()
    idx = snapshot.index()
    keys = [f"{bus}.{p}" for p in (1, 2, 3)]
    if not all(k in idx for k in keys):
        return
    rows = [idx[k] for k in keys]
    v = snapshot.v_phasor_pu[rows]
    conductor = (snapshot.injection_kw + 1j * snapshot.injection_kvar)[rows]
    if np.any(np.abs(v) == 0):
        return
    node_of = {int(math.node_phase[n]): n for n in nodes}
    conductor[pa - 1], conductor[pb - 1] = s[node_of[pa]], s[node_of[pb]]
    vp = a @ v
    sp_ = vp * np.conj(pinv_at @ np.conj(conductor / v))
    im = pm - 1
    out[node_of[pa]] = sp_[pa - 1] - sp_[im] * vp[pa - 1] / vp[im]
    out[node_of[pb]] = sp_[pb - 1] - sp_[im] * vp[pb - 1] / vp[im]


def _compare(sol: PowerFlowSolution, v_ac: np.ndarray, v_ac_phasor, math) -> np.ndarray:
    """``|V_lin − V_AC|`` per model node.

    * pair-fed nodes (behind a wye–delta winding): node x stands for the pair (x, x+1), so its
      model magnitude is compared with the AC ``|V_x − V_{x+1}|/√3`` (node x+1 read from the
      engine when the model lacks it, as behind an open delta);
    * other delta-fed nodes (delta–delta): ``|V_x − V_{x+1}|/√3`` of the model's virtual wye
      phasors (at the solution's angles when it has them, else balanced) against the same of
      the AC solution; a lone delta-fed node is not compared (NaN);
    * all other nodes: node-to-ground magnitudes.
    """
    lin = np.asarray(sol.v_pu, dtype=float).copy()
    ac = np.asarray(v_ac, dtype=float).copy()
    nodes, ll_ac = _ll_equivalent(v_ac_phasor, math, ac=True)
    _, ll_lin = _ll_equivalent(lin, math, ac=False, angle=getattr(sol, "v_angle_rad", None))
    lin[nodes], ac[nodes] = ll_lin, ll_ac
    err = np.abs(lin - ac)
    pair = _pair_mask(math)
    single_delta = math.delta_fed & ~pair
    single_delta[nodes] = False
    err[single_delta] = np.nan
    pair_nodes = np.flatnonzero(pair)
    if len(pair_nodes):
        partner = _partner_phasors(math, v_ac_phasor, pair_nodes)
        ll = np.abs(v_ac_phasor[pair_nodes] - partner) / np.sqrt(3.0)
        err[pair_nodes] = np.where(np.isfinite(partner), np.abs(lin[pair_nodes] - ll), np.nan)
    return err


def ac_model_frame(v_ac: np.ndarray, v_ac_phasor: np.ndarray, math: MathFeeder) -> np.ndarray:
    """AC voltage magnitude of every model node in the model's own meaning (p.u.).

    Node-to-ground magnitude, except ``|V_x − V_{x+1}|/√3`` for delta-fed nodes (pair-fed or
    with the next phase on the bus); a lone delta-fed node keeps its node-to-ground value.
    """
    out = np.asarray(v_ac, dtype=float).copy()
    nodes, ll_ac = _ll_equivalent(v_ac_phasor, math, ac=True)
    out[nodes] = ll_ac
    pair_nodes = np.flatnonzero(_pair_mask(math))
    if len(pair_nodes):
        partner = _partner_phasors(math, v_ac_phasor, pair_nodes)
        ll = np.abs(v_ac_phasor[pair_nodes] - partner) / np.sqrt(3.0)
        out[pair_nodes] = np.where(np.isfinite(partner), ll, out[pair_nodes])
    return out


def _partner_phasors(math: MathFeeder, v_ac_phasor: np.ndarray, nodes: np.ndarray) -> np.ndarray:
    """AC phasor of node x+1 of each of ``nodes``' buses (NaN where it has none).

    Node x+1 may be missing from the model (open delta) but present in OpenDSS: then it is
    read from the engine's solution.
    """
    idx = math.node_index()
    out = np.full(len(nodes), np.nan, dtype=complex)
    missing: list[tuple[int, str]] = []
    for k, n in enumerate(nodes):
        bus, ph = math.bus_names[math.node_bus[n]], int(math.node_phase[n])
        partner = idx.get(f"{bus}.{ph % 3 + 1}")
        if partner is not None:
            out[k] = v_ac_phasor[partner]
        else:
            missing.append((k, f"{bus}.{ph % 3 + 1}".lower()))
    if missing:
        names = [n.lower() for n in dss.Circuit.AllNodeNames()]
        position = {n: i for i, n in enumerate(names)}
        volts = np.asarray(dss.Circuit.AllBusVolts(), dtype=float)
        phasor = volts[0::2] + 1j * volts[1::2]
        for k, name in missing:
            i = position.get(name)
            if i is not None:  # in p.u. of the model's base of that bus
                base = float(math.kv_base_ln[nodes[k]]) * 1000.0
                out[k] = phasor[i] / base if base > 0 else np.nan
    return out


def _ac_root_power(math: MathFeeder, feeder: Feeder) -> complex:
    """AC complex power (kVA) entering the modeled feeder at its root buses."""
    roots = {r.bus.lower() for r in feeder.roots}
    total = 0j
    for name in set(math.branch_names):
        dss.Circuit.SetActiveElement(name)
        buses = [b.split(".")[0].lower() for b in dss.CktElement.BusNames()]
        n = dss.CktElement.NumConductors()
        powers = np.asarray(dss.CktElement.Powers(), dtype=float)
        for t, bus in enumerate(buses[:2]):
            if bus in roots:
                seg = powers[2 * n * t : 2 * n * (t + 1)]
                total += seg[0::2].sum() + 1j * seg[1::2].sum()
    return total


def validate_feeder(spec: FeederSpec) -> ValidationRun:
    """Compare LinDist3Flow with OpenDSS's AC power flow on one feeder.

    Parameters
    ----------
    spec : str or Path
        Built-in name, OpenDSS master path or feeder JSON.

    Returns
    -------
    ValidationRun
    """
    feeder = resolve_feeder_spec(spec)
    from_json = isinstance(spec, str | Path) and str(spec).lower().endswith(".json")
    if feeder.source_kind != "opendss" or from_json:
        # Not just compiled by the import (another source, or a JSON feeder, whose OpenDSS
        # master is compiled here when it exists): solve its master exactly as the import
        # does, or a written copy.
        master = feeder.source_path
        if feeder.source_kind == "opendss" and master and Path(master).is_file():
            compile_opendss(master)
        else:
            ensure_compiled(feeder)
            dss.Text.Command("Set maxiterations=100 maxcontroliter=100")
            dss.Text.Command("Solve")
    snapshot = read_snapshot()
    t0 = time.perf_counter()
    model_feeder = prepare_for_linear_model(feeder, snapshot)
    math = build_math_feeder(model_feeder)
    physics = LinDist3Flow(math)
    build_seconds = time.perf_counter() - t0

    s = _map_injections(snapshot, feeder, model_feeder, math)
    idx = snapshot.index()
    take = np.array([idx[n.lower()] for n in math.node_names])
    scale = ac_base_scale(math)
    v_ac, v_ac_phasor = snapshot.v_pu[take] * scale, snapshot.v_phasor_pu[take] * scale
    v_root = v_ac[math.is_root]
    t1 = time.perf_counter()
    lossless = physics.solve(s.real, s.imag, v_root)
    solve_seconds = time.perf_counter() - t1
    corrected = physics.solve(
        s.real,
        s.imag,
        v_root,
        second_order_iterations=SECOND_ORDER_ITERATIONS,
        angles=PhaseAngles.OPERATING_POINT,
    )
    nominal = physics.solve(
        s.real, s.imag, v_root, second_order_iterations=NOMINAL_ANGLE_ITERATIONS
    )
    err = _compare(lossless, v_ac, v_ac_phasor, math)
    err_c = _compare(corrected, v_ac, v_ac_phasor, math)
    err_n = _compare(nominal, v_ac, v_ac_phasor, math)
    ac_root = (
        complex(snapshot.substation_kw, snapshot.substation_kvar)
        if len(feeder.roots) == len(model_feeder.roots)
        and feeder.roots[0].bus == model_feeder.roots[0].bus
        else _ac_root_power(math, model_feeder)
    )
    lin_p = float(lossless.substation_p_pu) * math.s_base_kva
    lin_q = float(lossless.substation_q_pu) * math.s_base_kva
    cor_p = float(corrected.substation_p_pu) * math.s_base_kva
    worst = int(np.nanargmax(err))
    result = ValidationResult(
        feeder=feeder.name,
        n_buses=math.n_buses,
        n_nodes=math.n_nodes,
        n_branches=len(math.branch_names),
        n_compared_nodes=int(np.isfinite(err).sum()),
        max_abs_voltage_error_pu=float(np.nanmax(err)),
        mean_abs_voltage_error_pu=float(np.nanmean(err)),
        worst_node=math.node_names[worst],
        substation_p_error_pct=100.0 * (lin_p - ac_root.real) / abs(ac_root.real),
        substation_q_error_pct=100.0 * (lin_q - ac_root.imag) / max(abs(ac_root.imag), 1e-9),
        max_abs_voltage_error_pu_loss_corrected=float(np.nanmax(err_c)),
        mean_abs_voltage_error_pu_loss_corrected=float(np.nanmean(err_c)),
        substation_p_error_pct_loss_corrected=100.0 * (cor_p - ac_root.real) / abs(ac_root.real),
        max_abs_voltage_error_pu_loss_corrected_nominal_angles=float(np.nanmax(err_n)),
        ac_substation_kw=float(ac_root.real),
        build_seconds=build_seconds,
        solve_seconds=solve_seconds,
        ac_converged=snapshot.converged,
        reductions=tuple(r.description for r in model_feeder.reductions),
    )
    table = pd.DataFrame(
        {
            "node": math.node_names,
            "bus": [math.bus_names[b] for b in math.node_bus],
            "phase": math.node_phase,
            "distance_km": math.distance_km,
            "delta_fed": math.delta_fed,
            "v_ac_pu": v_ac,
            "v_lin_pu": lossless.v_pu,
            "v_lin_corrected_pu": corrected.v_pu,
            "abs_error_pu": err,
            "abs_error_corrected_pu": err_c,
        }
    )
    return ValidationRun(result=result, table=table, feeder=model_feeder, math=math)
